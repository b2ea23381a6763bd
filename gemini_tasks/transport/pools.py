"""The number of calls this process may hold in flight, which every connection pool it builds follows.

A worker sets it at start (:mod:`gemini_tasks.worker.capacity`): ``-c`` for the threads and gevent pools, 1 for a
prefork child. The SDK clients (:mod:`gemini_tasks.gemini.client`) and the key manager's Redis clients
(:mod:`gemini_tasks.keys.redis_conn`) size their pools from it, so no library default (httpx: 100 connections,
20 kept alive; redis-py: 100) caps or churns the calls in flight. Outside a worker it is unset (``None``).
"""

from __future__ import annotations

#: Connections each pool allows above the slot count (consumer, heartbeats, metrics, control replies).
POOL_MARGIN = 32

_slots: int | None = None


def slots_per_process() -> int | None:
    """Calls this process may hold in flight at once (``None`` outside a worker)."""
    return _slots


def set_slots(slots: int | None) -> None:
    """Record the slots per process. Pools built afterwards follow it; existing ones keep their size."""
    global _slots
    _slots = None if slots is None else max(1, int(slots))


def pool_size(default: int) -> int:
    """Connections a per-process pool should allow: the slots plus a margin, never below ``default``."""
    return default if _slots is None else max(default, _slots + POOL_MARGIN)
