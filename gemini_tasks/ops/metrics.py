"""Prometheus metrics for the key pools and the Gemini calls the fleet makes.

Two sources, both already in Redis, so any number of worker hosts add up without a push gateway and the
exporter is one small stateless process (``gemini-tasks metrics`` or ``python -m gemini_tasks.ops.metrics``):

* the key manager's own state, read on every scrape with the ``status`` script (one ``EVALSHA`` per pool):
  per-key state, wait, leases and exhaustion counts, and the pool's ``stats`` counters (admissions, waits by
  reason, reports by outcome, 429s by quota kind, expired leases);
* a per-pool hash of call counters, ``gt:{pool}:calls``, that each worker bumps once per Gemini call
  (:func:`gemini_tasks.keys.calls.record_call`, beside the key pool: one pipelined round trip of
  ``HINCRBY``/``HINCRBYFLOAT``): calls by model and outcome,
  a latency histogram and token counts.

Why not ``prometheus_client`` in each worker: Celery prefork children, threads and short-lived containers
would each need a scrape target (or the multiprocess mode's shared directory); a Redis hash is one more
cheap write on a path that already makes two Redis round trips per call.

Nothing here ever sees a secret: labels are key ids (environment variable names), projects and models.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Iterable, Iterator, Mapping

import click
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gemini_tasks.keys import names
from gemini_tasks.keys.calls import LATENCY_BUCKETS, bucket_label
from gemini_tasks.keys.manager import summarize
from gemini_tasks.keys.pool import KeyPool
from gemini_tasks.keys.states import ALL_STATES

log = logging.getLogger("gemini_tasks.ops.metrics")

#: Seconds a scrape waits for Redis: to connect, and for each reply (no retries).
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 2.0
#: How long a discovered pool list is reused when the exporter was started without explicit pools.
DISCOVERY_TTL_S = 60.0


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_calls(pool: KeyPool) -> dict[str, float]:
    """The raw call-counter hash of a pool (field -> number)."""
    raw = pool.client.hgetall(names.calls_key(pool.prefix))
    return {_s(k): float(_s(v)) for k, v in raw.items()}


def discover_pools(client: Any) -> list[str]:
    """Every pool that has registered keys in this Redis (``gt:{<pool>}:ids``), sorted."""
    found: set[str] = set()
    for name in client.scan_iter(match=names.IDS_PATTERN, count=1000):
        found.add(names.pool_of_ids_key(_s(name)))
    return sorted(found)


class PoolCollector(Collector):
    """Reads the key pools and the call counters on each scrape (nothing is cached between scrapes).

    ``pools`` empty means "every pool found in this Redis" (re-discovered at most every minute).
    ``gemini_tasks_pool_up`` is 1 for a pool that was read and has registered keys, 0 otherwise: a pool that
    cannot be read, one that does not exist (a typo), and, when Redis cannot be reached, every pool known
    (``pool="*"`` when none is known yet). ``gemini_tasks_redis_up`` says whether Redis answered at all.
    Once Redis has failed to answer in a scrape, the remaining pools are reported 0 without asking again,
    so a scrape with Redis down costs one connection timeout, not one per pool.
    """

    def __init__(self, client: Any, pools: Iterable[str] = ()) -> None:
        self.client = client
        self.pools = [p for p in pools if p]
        self._discovered: tuple[float, list[str]] = (0.0, [])
        self._lock = threading.Lock()

    def pool_names(self) -> list[str]:
        """The pools to export; raises when they must be discovered and Redis does not answer."""
        if self.pools:
            return self.pools
        with self._lock:
            stamp, names = self._discovered
            if time.monotonic() - stamp > DISCOVERY_TTL_S or not names:
                names = discover_pools(self.client)
                self._discovered = (time.monotonic(), names)
            return names

    def describe(self) -> list[Metric]:
        return []  # the families depend on Redis contents; an empty describe keeps registration side-effect free

    def collect(self) -> Iterator[Metric]:
        fam = _Families()
        redis_up = True
        try:
            names = self.pool_names()
        except Exception as exc:  # noqa: BLE001 - an unreachable Redis shows as up=0
            log.debug("metrics: pool discovery failed: %r", exc)
            redis_up = False
            names = self._discovered[1] or ["*"]
        for name in names:
            if not redis_up:
                fam.up.add_metric([name], 0)
                continue
            try:
                pool = KeyPool(self.client, name)
                snap = pool.status()
                calls = read_calls(pool)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.debug("metrics: Redis unreachable while reading pool %s: %r", name, exc)
                redis_up = False
                fam.up.add_metric([name], 0)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad pool must not hide the others
                log.debug("metrics: pool %s unreadable: %r", name, exc)
                fam.up.add_metric([name], 0)
                continue
            fam.up.add_metric([name], 1 if snap.keys else 0)  # no registered key: not a pool (yet)
            fam.add_pool(name, snap, calls)
        fam.redis_up.add_metric([], 1 if redis_up else 0)
        yield fam.redis_up
        yield from fam.all()


class _Families:
    """The metric families of one scrape, filled pool by pool."""

    def __init__(self) -> None:
        k = ["pool", "key_id"]
        self.redis_up = GaugeMetricFamily("gemini_tasks_redis_up", "1 when Redis answered this scrape")
        self.up = GaugeMetricFamily("gemini_tasks_pool_up",
                                    "1 when the pool's state was read from Redis and it has registered keys",
                                    labels=["pool"])
        self.keys = GaugeMetricFamily("gemini_tasks_pool_keys", "Registered API keys in the pool", labels=["pool"])
        self.state = GaugeMetricFamily(
            "gemini_tasks_key_state", "Key state, one-hot: 1 for the key's current state, 0 for the others",
            labels=[*k, "project", "category", "state"])
        self.wait = GaugeMetricFamily("gemini_tasks_key_available_in_seconds",
                                      "Seconds until the key may be admitted again (0 = now)", labels=k)
        self.leases = GaugeMetricFamily("gemini_tasks_key_active_leases", "Calls in flight on the key", labels=k)
        self.exh = GaugeMetricFamily("gemini_tasks_key_exhausted_count",
                                     "Consecutive rate-limit exhaustions (reset by a success)", labels=k)
        self.texh = GaugeMetricFamily("gemini_tasks_key_exhausted_total_count",
                                      "Rate-limit exhaustions since the key was registered", labels=k)
        self.key_admits = CounterMetricFamily("gemini_tasks_key_admissions", "Admissions (leases) granted per key",
                                              labels=k)
        self.gate = GaugeMetricFamily("gemini_tasks_spacing_gate_seconds",
                                      "Seconds until the fleet-wide spacing gate (api_call_interval) opens",
                                      labels=["pool"])
        self.admitted = CounterMetricFamily("gemini_tasks_admissions", "Admissions granted by the key manager",
                                            labels=["pool"])
        self.waits = CounterMetricFamily("gemini_tasks_admission_waits",
                                         "Admission attempts answered with a wait, by reason",
                                         labels=["pool", "reason"])
        self.refused = CounterMetricFamily("gemini_tasks_admissions_refused",
                                           "Admissions refused for good (cancelled caller, no usable key)",
                                           labels=["pool", "reason"])
        self.reports = CounterMetricFamily("gemini_tasks_reports", "Call outcomes reported to the key manager",
                                           labels=["pool", "outcome"])
        self.r429 = CounterMetricFamily("gemini_tasks_rate_limited",
                                        "429 responses reported, by quota kind (minute, day, tokens, ...)",
                                        labels=["pool", "quota_kind"])
        self.r429_dup = CounterMetricFamily("gemini_tasks_rate_limited_duplicate",
                                            "429s on leases issued before the key was benched (not re-counted)",
                                            labels=["pool"])
        self.expired = CounterMetricFamily("gemini_tasks_leases_expired",
                                           "Leases never reported (a worker died mid-call) that expired",
                                           labels=["pool"])
        self.calls = CounterMetricFamily("gemini_tasks_calls", "Gemini API calls made by workers, by outcome",
                                         labels=["pool", "model", "outcome"])
        self.latency = HistogramMetricFamily("gemini_tasks_call_latency_seconds",
                                             "Gemini API call latency as measured by the worker",
                                             labels=["pool", "model"])
        self.tokens = CounterMetricFamily("gemini_tasks_tokens", "Tokens reported by the API in usage metadata",
                                          labels=["pool", "model", "kind"])
        from gemini_tasks.ops.tier_metrics import TierFamilies

        self.tiers = TierFamilies()  # tokens, requests and estimated cost by service tier

    def add_pool(self, pool: str, snap: Any, calls: Mapping[str, float]) -> None:
        summary = summarize(snap)
        self.keys.add_metric([pool], len(summary))
        for key_id, info in summary.items():
            lab = [pool, key_id]
            for state in ALL_STATES:
                self.state.add_metric([*lab, str(info["project"]), str(info["category"]), state],
                                      1 if info["status"] == state else 0)
            self.wait.add_metric(lab, info["available_in_seconds"])
            self.leases.add_metric(lab, info["active_leases"])
            self.exh.add_metric(lab, info["exhausted_count"])
            self.texh.add_metric(lab, info["total_exhausted_count"])
            self.key_admits.add_metric(lab, info["admissions"])
        self.gate.add_metric([pool], max(0, snap.gate_ms - snap.now_ms) / 1000.0)
        self._add_stats(pool, snap.stats)
        self._add_calls(pool, calls)

    def _add_stats(self, pool: str, stats: Mapping[str, int]) -> None:
        self.admitted.add_metric([pool], stats.get("admitted", 0))
        self.r429_dup.add_metric([pool], stats.get("r429_duplicate", 0))
        self.expired.add_metric([pool], stats.get("leases_expired", 0))
        for name, value in sorted(stats.items()):
            if name.startswith("wait_"):
                self.waits.add_metric([pool, name[5:]], value)
            elif name.startswith("refused_"):
                self.refused.add_metric([pool, name[8:]], value)
            elif name.startswith("report_"):
                self.reports.add_metric([pool, name[7:]], value)
            elif name.startswith("r429_") and name != "r429_duplicate":
                self.r429.add_metric([pool, name[5:]], value)

    def _add_calls(self, pool: str, calls: Mapping[str, float]) -> None:
        buckets: dict[str, dict[str, float]] = {}
        sums: dict[str, float] = {}
        for field, value in sorted(calls.items()):
            kind, _, rest = field.partition("|")
            if kind == "calls":
                outcome, _, model = rest.partition("|")
                self.calls.add_metric([pool, model, outcome], value)
            elif kind == "lat_le":
                bound, _, model = rest.partition("|")
                buckets.setdefault(model, {})[bound] = value
            elif kind == "latency_sum":
                sums[rest] = value
            elif kind.startswith("tokens_"):
                self.tokens.add_metric([pool, rest, kind[7:]], value)
            else:
                self.tiers.add(pool, kind, rest, value)
        for model in sorted(set(buckets) | set(sums)):
            counts = buckets.get(model, {})
            running = 0.0
            cumulative: list[tuple[str, float]] = []
            for upper in (*LATENCY_BUCKETS, math.inf):
                label = bucket_label(upper)
                running += counts.get(label, 0.0)
                cumulative.append((label, running))
            self.latency.add_metric([pool, model], cumulative, sum_value=sums.get(model, 0.0))

    def all(self) -> list[Metric]:
        return [self.up, self.keys, self.state, self.wait, self.leases, self.exh, self.texh, self.key_admits,
                self.gate, self.admitted, self.waits, self.refused, self.reports, self.r429, self.r429_dup,
                self.expired, self.calls, self.latency, self.tokens, *self.tiers.all()]


def exporter_client(url: str) -> Any:
    """A Redis client for scrapes: short timeouts and no retries, so a scrape with Redis down or hung answers
    in a few seconds (Prometheus's default ``scrape_timeout`` is 10 s). The workers' clients ride out a
    restart for ~20 s instead (:mod:`gemini_tasks.keys.redis_conn`); an exporter must not."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=READ_TIMEOUT_S,
                                retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0)


def parse_pools(values: Iterable[str]) -> list[str]:
    """``--pool`` values (repeatable, comma-separated) as a list; empty means every pool ("all" anywhere)."""
    names = [name.strip() for item in values for name in str(item).split(",") if name.strip()]
    return [] if "all" in names else list(dict.fromkeys(names))


def make_registry(pools: Iterable[str], redis_url: str | None = None, *, client: Any = None,
                  broker_url: str | None = None) -> CollectorRegistry:
    """A registry holding the pool collector and the broker queue collector (no process metrics of the
    exporter itself). The queues are read from ``broker_url``, or from the configured broker
    (``CELERY_BROKER_URL`` or ``REDIS_URL``) when no ``client`` is given."""
    from gemini_tasks.settings import get_settings

    queues = broker_url is not None or client is None
    if client is None:
        client = exporter_client(redis_url or get_settings().keys_redis_url)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(client, pools))
    if queues:
        from gemini_tasks.ops.queue_metrics import QueueCollector

        url = broker_url or get_settings().broker_url
        # a scrape answers within seconds when the broker is down, as the pool collector does
        options: dict[str, Any] = {"socket_timeout": READ_TIMEOUT_S, "socket_connect_timeout": CONNECT_TIMEOUT_S,
                                   "max_retries": 1}
        if url.startswith("sentinel"):
            options["master_name"] = get_settings().sentinel_master
        registry.register(QueueCollector(url, transport_options=options))
    return registry


def serve_metrics(port: int, pools: list[str], redis_url: str | None = None, *, addr: str = "0.0.0.0") -> Any:
    """Serve ``/metrics`` on ``addr:port`` from a background thread; returns the HTTP server (``.shutdown()``).

    ``pools`` empty exports every pool found in Redis. ``port`` 0 picks a free port: read
    ``server.server_port``.
    """
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=make_registry(pools, redis_url))
    log.info("metrics for pool(s) %s on http://%s:%d/metrics", ", ".join(pools) or "(all)", addr,
             server.server_port)
    return server


def serve_metrics_forever(port: int, pools: list[str], redis_url: str | None, *, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` until interrupted (SIGINT/SIGTERM end the process as usual)."""
    server = serve_metrics(port, pools, redis_url, addr=addr)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (docker stop) ends serve_metrics_forever like Ctrl-C


@click.command("metrics")
@click.option("--port", type=int, default=None,
              help="port to serve /metrics on  [default: GEMINI_TASKS_METRICS_PORT or 9808]")
@click.option("--addr", default=None, help="address to bind  [default: GEMINI_TASKS_METRICS_ADDR or 0.0.0.0]")
@click.option("--pool", "pools", multiple=True,
              help="pool(s) to export, repeatable or comma-separated; 'all' for every pool found in Redis  "
                   "[default: GEMINI_TASKS_METRICS_POOLS, else GEMINI_TASKS_POOL]")
@click.option("--redis-url", default=None, help="Redis with the key state  [default: GEMINI_TASKS_KEYS_REDIS_URL "
                                                "or REDIS_URL]")
def metrics_command(port: int | None, addr: str | None, pools: tuple[str, ...], redis_url: str | None) -> None:
    """Serve Prometheus metrics for the key pool(s) and calls (the same command as
    ``python -m gemini_tasks.ops.metrics``)."""
    import signal

    from gemini_tasks.settings import get_settings

    s = get_settings()
    chosen = parse_pools(pools or (s.metrics_pools or s.pool,))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    serve_metrics_forever(s.metrics_port if port is None else port, chosen, redis_url or s.keys_redis_url,
                          addr=addr or s.metrics_addr)


if __name__ == "__main__":
    metrics_command()
