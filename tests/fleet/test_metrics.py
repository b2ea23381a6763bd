"""Prometheus metrics from real calls: a worker subprocess, the emulator, a scripted 429, then a scrape."""

from __future__ import annotations

import math
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

MODEL = "gemini-2.5-flash"  # the fleet client's default model
LATENCY = 0.3


def scrape(url: str) -> tuple[str, dict[str, list[tuple[dict[str, str], float]]]]:
    """The exposition text and its samples by sample name."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return text, samples


def value(samples, name: str, **labels: str) -> float:
    """The single sample of ``name`` matching ``labels`` (0 when absent)."""
    found = [v for lab, v in samples.get(name, []) if all(lab.get(k) == want for k, want in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


@pytest.fixture
def metrics_server(fleet):
    from gemini_tasks.ops.metrics import serve_metrics

    servers = []

    def start(pools):
        server = serve_metrics(0, pools, fleet.redis_url, addr="127.0.0.1")
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/metrics"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_scrape_shows_key_states_admissions_429s_latency_and_tokens(fleet, fleet_emu, pool_name, metrics_server):
    fleet_emu.configure(latency_seconds=LATENCY)
    fleet_emu.add_fault(action="status", status=429, quota_kind="minute", times=1)
    prompts = [{"prompt": f"metrics question number {i}", "metadata": {"i": i}} for i in range(6)]
    results = fleet.run_client({"pool": pool_name, "prompts": prompts, "processor": {"return_response": True}})
    assert [r["error"] for r in results] == [None] * 6
    prompt_tokens = sum(r["usage"]["prompt_token_count"] for r in results)
    answer_tokens = sum(r["usage"]["candidates_token_count"] for r in results)
    assert prompt_tokens > 0 and answer_tokens > 0

    url = metrics_server([pool_name])
    text, samples = scrape(url)
    pool = {"pool": pool_name}

    assert value(samples, "gemini_tasks_pool_up", **pool) == 1
    assert value(samples, "gemini_tasks_pool_keys", **pool) == 4
    # key states: one-hot per key; the key that drew the 429 is benched, the other three are available
    states = {}
    for labels, v in samples["gemini_tasks_key_state"]:
        if labels["pool"] == pool_name and v == 1:
            assert labels["key_id"] not in states, "one-hot: exactly one state per key"
            states[labels["key_id"]] = labels["state"]
    assert sorted(states) == [f"GEMINI_API_KEY_{i}" for i in range(1, 5)]
    assert sorted(states.values()) == ["AVAILABLE"] * 3 + ["TEMPORARILY_EXHAUSTED"]
    benched = next(k for k, s in states.items() if s == "TEMPORARILY_EXHAUSTED")
    assert value(samples, "gemini_tasks_key_available_in_seconds", key_id=benched, **pool) > 10
    assert value(samples, "gemini_tasks_key_exhausted_count", key_id=benched, **pool) == 1
    assert value(samples, "gemini_tasks_key_exhausted_total_count", key_id=benched, **pool) == 1
    assert all(value(samples, "gemini_tasks_key_active_leases", key_id=k, **pool) == 0 for k in states)
    # the pool's counters: 7 calls were admitted (6 answers + the one that drew the 429)
    assert value(samples, "gemini_tasks_admissions_total", **pool) == 7
    assert sum(value(samples, "gemini_tasks_key_admissions_total", key_id=k, **pool) for k in states) == 7
    assert value(samples, "gemini_tasks_rate_limited_total", quota_kind="minute", **pool) == 1
    assert value(samples, "gemini_tasks_reports_total", outcome="success", **pool) == 6
    assert value(samples, "gemini_tasks_reports_total", outcome="rate_limited", **pool) == 1
    assert value(samples, "gemini_tasks_leases_expired_total", **pool) == 0
    # the workers' call counters
    model = {"model": MODEL, **pool}
    assert value(samples, "gemini_tasks_calls_total", outcome="success", **model) == 6
    assert value(samples, "gemini_tasks_calls_total", outcome="rate_limited", **model) == 1
    assert value(samples, "gemini_tasks_call_latency_seconds_count", **model) == 7
    assert value(samples, "gemini_tasks_call_latency_seconds_bucket", le="+Inf", **model) == 7
    # every answered call waited for the emulator's latency: at most the 429 can be in a bucket below it
    assert value(samples, "gemini_tasks_call_latency_seconds_bucket", le="0.25", **model) <= 1
    assert value(samples, "gemini_tasks_call_latency_seconds_sum", **model) >= 6 * LATENCY
    buckets = sorted(((float(lab["le"]), v) for lab, v in samples["gemini_tasks_call_latency_seconds_bucket"]
                      if lab["pool"] == pool_name), key=lambda x: x[0])
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets are cumulative"
    assert math.isinf(buckets[-1][0])
    assert value(samples, "gemini_tasks_tokens_total", kind="prompt", **model) == prompt_tokens
    assert value(samples, "gemini_tasks_tokens_total", kind="candidates", **model) == answer_tokens
    # never a secret, nor a fingerprint of one
    for secret in fleet.secrets.values():
        assert secret not in text
    assert "fleet-secret" not in text and "fingerprint" not in text


def test_all_pools_and_an_unreachable_redis(fleet, fleet_emu, pool_name, metrics_server):
    from gemini_tasks.ops.metrics import make_registry

    results = fleet.run_client({"pool": pool_name, "prompts": [{"prompt": "discover me"}]})
    assert results[0]["error"] is None
    _, samples = scrape(metrics_server([]))  # no pool named: every pool in this Redis
    assert value(samples, "gemini_tasks_pool_up", pool=pool_name) == 1
    assert value(samples, "gemini_tasks_calls_total", pool=pool_name, model=MODEL, outcome="success") == 1

    # a Redis that is down: the scrape still answers, with pool_up 0
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    from prometheus_client import generate_latest

    text = generate_latest(make_registry(["p1"], client=dead)).decode()
    assert 'gemini_tasks_pool_up{pool="p1"} 0.0' in text


def test_record_call_never_raises(caplog):
    import logging

    from gemini_tasks.keys.calls import latency_bucket, record_call

    class Broken:
        pool = "x"
        prefix = "gt:{x}:"

        @property
        def client(self):
            raise ConnectionError("redis is down")

    with caplog.at_level(logging.DEBUG, logger="gemini_tasks"):
        record_call(Broken(), model="m", latency_s=1.0, usage={"prompt_token_count": 3}, outcome="success")
    assert "could not record" in caplog.text
    assert latency_bucket(0.05) == "0.1" and latency_bucket(0.1) == "0.1" and latency_bucket(0.11) == "0.25"
    assert latency_bucket(10_000) == "+Inf"


def test_unknown_pool_is_not_up(fleet, metrics_server):
    _, samples = scrape(metrics_server(["nonexistent"]))
    assert value(samples, "gemini_tasks_pool_up", pool="nonexistent") == 0  # a typo must not look healthy
    assert value(samples, "gemini_tasks_pool_keys", pool="nonexistent") == 0
