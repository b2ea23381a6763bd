"""kombu's Redis transport, minus a redis-py client object built for every broker command.

``kombu.transport.redis.Channel.conn_or_acquire()`` builds a new ``redis.Redis`` around the channel's connection
pool each time it is entered: for every message delivered (the unacked-message bookkeeping), every ack and every
task event a worker publishes. Building one costs ~0.15 ms of CPU (redis-py copies ~170 response callbacks
into a case-insensitive dict), about 0.4 ms per request across a task's life (``bench/profile_cpu.py``).

A ``redis.Redis`` object holds no connection of its own (each command checks one out of the pool) and is safe
to share between threads, so one per channel and pool is enough: :func:`install` makes ``conn_or_acquire`` reuse
it, and builds a new one whenever the channel's pool changes (after a fork or a reconnection). A caller that
passes its own client still gets that client.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_ATTR = "_gemini_tasks_sync_client"


def install() -> bool:
    """Patch kombu's Redis channel once per process (a no-op without redis-py). Returns True when active."""
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:  # pragma: no cover - redis-py missing: the transport is unusable anyway
        return False
    channel_cls = kombu_redis.Channel
    if getattr(channel_cls, "_gemini_tasks_shared_client", False):
        return True

    @contextmanager
    def conn_or_acquire(self: Any, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        shared = self.__dict__.get(_ATTR)
        if shared is None or shared.connection_pool is not pool:
            shared = self._create_client()
            self.__dict__[_ATTR] = shared
        yield shared

    channel_cls.conn_or_acquire = conn_or_acquire  # type: ignore[method-assign]
    channel_cls._gemini_tasks_shared_client = True  # type: ignore[attr-defined]
    return True
