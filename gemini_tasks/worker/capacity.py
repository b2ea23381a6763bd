"""How many calls one worker process holds in flight, and every pool that must follow that number.

A worker slot (a thread, a greenlet) holding a Gemini call needs, at the same moment, one HTTP connection
to Gemini (from its key's SDK client), and at times one Redis connection (key manager, result backend,
broker when it re-queues itself). Every library in that path ships a pool with a default size that nobody
asked for: httpx keeps 100 connections per client (and only 20 alive between calls, so the rest are opened
again for every call), redis-py 100 per client, kombu's Redis channel 10, Celery's producer pool 10. A worker
started with ``-c 600`` then held 200 calls in flight on 2 keys, and nothing said so.

At worker start (Celery's ``worker_init`` signal, before any pool or connection exists) this module:

* checks the requested concurrency against what the machine can serve (open files: each slot may need
  :data:`FDS_PER_SLOT` sockets; threads: the kernel's thread limits), raising the soft open-files limit to
  the hard one when that is enough, and otherwise **capping the concurrency with an ERROR log line** that
  names the limit and how to raise it;
* records the slots per process (``-c`` for threads/gevent/eventlet, 1 for a prefork child or solo) in
  :mod:`gemini_tasks.transport.pools`, which the SDK clients and the key manager's Redis clients size their pools from;
* sizes Celery's own pools (``broker_pool_limit``, the Redis transport's ``max_connections``,
  ``redis_max_connections`` of the result backend) to at least the slots plus a margin, and shares one result
  backend between a process's threads (``result_backend_thread_safe``; Celery builds one per thread otherwise).
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from typing import Any

from celery import signals

from gemini_tasks.transport.pools import POOL_MARGIN, set_slots

log = logging.getLogger("gemini_tasks.worker.capacity")

#: Sockets one slot may hold at once: its Gemini connection, a key-manager connection, a result-backend one.
FDS_PER_SLOT = 3
#: Descriptors kept for everything else a worker opens (logs, the broker consumer, Redis pub/sub, imports).
RESERVED_FDS = 256
#: Pools that run many calls in one process; prefork and solo run one call per process.
SHARED_POOLS = ("threads", "gevent", "eventlet")


@dataclass(frozen=True)
class Limit:
    slots: int
    reason: str


def pool_name(pool_cls: Any) -> str:
    """``threads``, ``gevent``, ``prefork``, ... from whatever Celery holds at ``worker_init`` (a name or a class)."""
    if isinstance(pool_cls, str):
        name = pool_cls
    else:
        name = f"{getattr(pool_cls, '__module__', '')}"
    name = name.rsplit(".", 1)[-1].rsplit(":", 1)[0].lower()
    return {"thread": "threads", "threads": "threads", "processes": "prefork", "prefork": "prefork"}.get(name, name)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
        return None if text in ("", "max") else int(text)
    except (OSError, ValueError):
        return None


def machine_limit(pool: str, *, raise_nofile: bool = True) -> Limit:
    """The most slots one process of ``pool`` can serve here, and what sets that bound.

    With ``raise_nofile`` the soft open-files limit is first raised to the hard limit (allowed for any user).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raise_nofile and soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    limits: list[Limit] = []
    if soft != resource.RLIM_INFINITY:
        limits.append(Limit(max(1, (soft - RESERVED_FDS) // FDS_PER_SLOT),
                            f"the open-files limit (ulimit -n {soft}; each in-flight call may hold "
                            f"{FDS_PER_SLOT} sockets); raise it with `ulimit -n` or LimitNOFILE="))
    if pool == "threads":
        for path, what in (("/proc/sys/kernel/threads-max", "kernel.threads-max"),
                           ("/sys/fs/cgroup/pids.max", "the cgroup's pids.max")):
            value = _read_int(path)
            if value is not None:
                limits.append(Limit(max(1, value // 2), f"{what} ({value}) shared by every process here"))
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
        if nproc != resource.RLIM_INFINITY:
            limits.append(Limit(max(1, nproc - 64), f"the user's process/thread limit (ulimit -u {nproc})"))
    if not limits:
        return Limit(1 << 31, "no limit found")
    return min(limits, key=lambda lim: lim.slots)


def plan(concurrency: int, pool: str) -> tuple[int, int, str | None]:
    """(concurrency to run, slots per process, the ERROR line to log or None) for ``concurrency`` slots of ``pool``.

    The concurrency is capped when this machine cannot serve it.
    """
    shared = pool in SHARED_POOLS
    problem = None
    if shared:
        limit = machine_limit(pool)
        if concurrency > limit.slots:
            problem = (f"worker concurrency {concurrency} is more than this machine can serve with the {pool} pool: "
                       f"capped to {limit.slots} by {limit.reason}")
            concurrency = limit.slots
    return concurrency, (concurrency if shared else 1), problem


def configure_celery(conf: Any, slots: int) -> None:
    """Size Celery's and kombu's Redis/producer pools to the slots (never below their own defaults)."""
    need = slots + POOL_MARGIN
    if (conf.broker_pool_limit or 0) < need:
        conf.broker_pool_limit = need
    options = dict(conf.broker_transport_options or {})
    if int(options.get("max_connections") or 10) < need:
        options["max_connections"] = need
        conf.broker_transport_options = options
    if conf.redis_max_connections is None or int(conf.redis_max_connections) < need:
        conf.redis_max_connections = need


def share_result_backend(conf: Any) -> None:
    """One result backend per worker process instead of one per thread (Celery's default): with 2,000 threads
    that was 2,000 backends, each with its own Redis connection pool, built as each thread first stored a
    result. A worker's tasks only store results (they never wait on one: Celery forbids it), which redis-py's
    pooled client does safely from any thread."""
    conf.result_backend_thread_safe = True


#: What the worker decided at ``worker_init``, logged once Celery has set up logging (``celeryd_after_setup``).
_pending: list[tuple[int, str]] = []


@signals.worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    if sender is None or not isinstance(getattr(sender, "concurrency", None), int):
        return  # "auto" concurrency is resolved by Celery after this signal, for prefork only
    pool = pool_name(getattr(sender, "pool_cls", ""))
    concurrency, slots, problem = plan(sender.concurrency, pool)
    sender.concurrency = concurrency
    set_slots(slots)
    configure_celery(sender.app.conf, slots)
    if pool in SHARED_POOLS:
        share_result_backend(sender.app.conf)
    if problem:
        _pending.append((logging.ERROR, problem))
    summary = (f"worker capacity: {slots} slot(s) per process ({pool} pool, concurrency {concurrency}); "
               "SDK, Redis and broker connection pools sized to follow")
    _pending.append((logging.INFO, summary))


@signals.celeryd_after_setup.connect
def _log_decisions(**_: Any) -> None:
    while _pending:
        level, message = _pending.pop(0)
        log.log(level, "%s", message)
