"""Redis clients for key-manager state, one per URL and process (safe after a prefork fork)."""

from __future__ import annotations

import os
import threading

import redis

_lock = threading.Lock()
_clients: dict[tuple[str, int], redis.Redis] = {}


def get_redis(url: str) -> redis.Redis:
    """A shared client for ``url`` in this process, with timeouts so a dead Redis never hangs a caller.

    ``rediss://`` URLs (TLS) and passwords in the URL work as redis-py documents them.
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
            )
            _clients[key] = client
        return client


def close_all() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
