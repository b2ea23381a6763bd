"""Redis clients for key-manager state, one per URL and process (safe after a prefork fork)."""

from __future__ import annotations

import os
import threading

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.retry import Retry

from gemini_tasks.pools import pool_size

_lock = threading.Lock()


class RideOutRetry(Retry):
    """Retry connection errors and timeouts long enough to ride out a Redis restart, never a refused password.

    redis-py's default gives up after about 3 s, so a worker whose Redis restarted (with persistence: nothing
    lost) failed the request it was answering. 15 retries at most 2 s apart wait about 20 s in all; a wrong
    password (a ``ConnectionError`` subclass) still fails at once.
    """

    def __init__(self) -> None:
        super().__init__(ExponentialWithJitterBackoff(base=0.05, cap=2.0), 15)

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):  # type: ignore[override]
        def retryable(error: Exception) -> bool:
            if isinstance(error, (AuthenticationError, AuthorizationError)):
                return False
            return is_retryable(error) if is_retryable is not None else True

        return super().call_with_retry(do, fail, retryable, with_failure_count)
_clients: dict[tuple[str, int], redis.Redis] = {}


def get_redis(url: str) -> redis.Redis:
    """A shared client for ``url`` in this process, with timeouts so a dead Redis never hangs a caller.

    ``rediss://`` URLs (TLS) and passwords in the URL work as redis-py documents them. The pool allows the
    process's slots plus a margin (:func:`gemini_tasks.pools.pool_size`; redis-py's own default is 100, which
    a worker with more slots would exceed with "Too many connections").
    """
    key = (url, os.getpid())
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = redis.Redis.from_url(
                url,
                socket_timeout=10,
                socket_connect_timeout=5,
                socket_keepalive=True,
                health_check_interval=25,
                retry_on_timeout=True,
                retry=RideOutRetry(),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                max_connections=pool_size(100),
            )
            _clients[key] = client
        return client


def close_all() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
