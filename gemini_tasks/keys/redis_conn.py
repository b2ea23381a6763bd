"""Redis clients for key-manager state, one per URL and process (safe after a prefork fork).

``sentinel://h1:p1;sentinel://h2:p2;sentinel://h3:p3/0`` (Celery's own form, the master named by
``REDIS_SENTINEL_MASTER``, default ``mymaster``) gives a client that follows the master through a failover:
redis-py's :class:`redis.sentinel.Sentinel` asks the sentinels for the master at every (re)connection, and
a connection that finds its server demoted (``READONLY``) is dropped as a connection error. Every command,
scripts included, is retried on connection errors and timeouts by :class:`RideOutRetry`: a bounded budget
(~20 s) that covers a failover (sentinels here decide in a few seconds; their ``down-after-milliseconds``
sets it).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.retry import Retry

from gemini_tasks.transport.pools import pool_size

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
    process's slots plus a margin (:func:`gemini_tasks.transport.pools.pool_size`; redis-py's own default is 100, which
    a worker with more slots would exceed with "Too many connections").
    """
    key = (url, os.getpid())
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = client_for(
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


@dataclass(frozen=True)
class SentinelSpec:
    """A parsed ``sentinel://`` URL: the sentinels' addresses and what to use on the master."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def is_sentinel_url(url: str) -> bool:
    return url.startswith(("sentinel://", "sentinels://"))


def parse_sentinel_url(url: str) -> SentinelSpec:
    """``sentinel://[:pw@]h1:p1[/db];sentinel://h2:p2;…`` (Celery's and kombu's form) -> :class:`SentinelSpec`."""
    hosts: list[tuple[str, int]] = []
    db, username, password, ssl = 0, None, None, False
    for part in (p.strip() for p in url.split(";")):
        if not part:
            continue
        parsed = urlsplit(part)
        if parsed.scheme not in ("sentinel", "sentinels") or not parsed.hostname:
            raise ValueError(f"not a sentinel URL part: {part!r} (expected sentinel://host:port)")
        hosts.append((parsed.hostname, parsed.port or 26379))
        ssl = ssl or parsed.scheme == "sentinels"
        if parsed.password:
            password = unquote(parsed.password)
            username = unquote(parsed.username) if parsed.username else None
        path = parsed.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"the database in {part!r} must be a number")
            db = int(path)
    if not hosts:
        raise ValueError("a sentinel URL needs at least one sentinel://host:port")
    return SentinelSpec(tuple(hosts), db, username, password, ssl)


def client_for(url: str, *, master: str | None = None, **kwargs: object) -> redis.Redis:
    """A client for ``url``: plain ``redis://``/``rediss://``/``unix://``, or the master behind sentinels."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **kwargs)  # type: ignore[arg-type]
    from redis.sentinel import Sentinel

    from gemini_tasks.settings import get_settings

    spec = parse_sentinel_url(url)
    name = master or get_settings().sentinel_master
    sentinel_kwargs = {"socket_timeout": kwargs.get("socket_connect_timeout", 5),
                       "socket_connect_timeout": kwargs.get("socket_connect_timeout", 5)}
    sentinel_password = get_settings().sentinel_password
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    kwargs.pop("max_connections", None)  # the Sentinel pool sizes itself per master
    manager = Sentinel(list(spec.sentinels), sentinel_kwargs=sentinel_kwargs, db=spec.db, username=spec.username,
                       password=spec.password, ssl=spec.ssl, **kwargs)
    return manager.master_for(name)


def close_all() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
