"""SDK clients: one per API key per worker process, built after the fork and reused.

Why a cache: a ``genai.Client`` owns an ``httpx2`` connection pool; building one per call throws the pool
(and its TLS handshakes) away. Why keyed by process id: Celery's prefork pool forks workers, and a pool
inherited across ``fork()`` shares sockets with the parent, so each process must build its own. Clients
inherited from a parent are never used and never closed by the child (closing them there could disturb
the parent's connections); they are simply ignored.

Settings that matter (wire doc §1, §6.3): always a timeout (the SDK's default is none: a hung server
would block a worker slot forever); SDK retries off (``retry_options=None``: rate-limit waits and error
retries belong to the task layer and the key manager, which honour ``retryDelay``; the SDK ignores it);
``api_version`` pinned; **no base_url** -- the SDK reads ``GOOGLE_GEMINI_BASE_URL`` itself, which is
how the emulator or a proxy stands in for Google; and a connection pool that follows the process's slots
(:mod:`gemini_tasks.transport.pools`): httpx's default (100 connections, 20 kept alive) capped a ``-c 600`` worker at 100
calls in flight per key and reopened a connection for most calls above 20.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import ssl
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from google import genai
from google.genai import types

from gemini_tasks.transport.pools import slots_per_process

logger = logging.getLogger("gemini_tasks")

__all__ = ["ClientCache", "close_all", "connection_limits", "default_cache", "get_client", "make_client"]


#: Connections kept alive between calls outside a worker (httpx keeps only 20 by default).
DEFAULT_KEEPALIVE = 100


def connection_limits(slots: int | None = None) -> Any:
    """The httpx ``Limits`` for one client: ``slots`` connections, all kept alive between calls.

    ``slots`` defaults to this process's (:func:`gemini_tasks.transport.pools.slots_per_process`); outside a worker the
    number of connections is not capped at all. Built from the httpx flavour the SDK uses (httpx2 when
    installed), which the SDK recognises from the object's type.
    """
    try:
        import httpx2 as httpx_mod
    except ImportError:  # pragma: no cover - the SDK falls back to httpx
        import httpx as httpx_mod  # type: ignore[no-redef,import-not-found]
    slots = slots_per_process() if slots is None else slots
    if slots is None:
        return httpx_mod.Limits(max_connections=None, max_keepalive_connections=DEFAULT_KEEPALIVE)
    return httpx_mod.Limits(max_connections=max(1, slots), max_keepalive_connections=max(1, slots))


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client of the process, built as the SDK builds its own (``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR`` when set, else the system trust store through httpx2). Each ``genai.Client`` would build
    two (sync and async), about 1 MiB each: with many clients per key that was tens of MiB."""
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"),
                                          capath=os.environ.get("SSL_CERT_DIR"))
    try:
        import httpx2
    except ImportError:  # pragma: no cover - the SDK falls back to httpx, which uses certifi
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    return httpx2.create_ssl_context()


def make_client(api_key: str, *, timeout_s: float, api_version: str = "v1beta",
                slots: int | None = None) -> genai.Client:
    """A sync Gemini Developer API client for one key (Vertex mode forced off, whatever the environment).

    Its connection pool holds ``slots`` connections (default: this process's slots; unlimited outside a worker).
    """
    if not api_key or not api_key.strip():
        raise ValueError("make_client needs a non-empty API key")
    if timeout_s is None or timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 (the SDK's default is no timeout at all), got {timeout_s!r}")
    return genai.Client(
        api_key=api_key,
        vertexai=False,
        http_options=types.HttpOptions(
            timeout=max(1, int(timeout_s * 1000)),
            api_version=api_version,
            retry_options=None,
            client_args={"limits": connection_limits(slots), "verify": shared_ssl_context()},
        ),
    )


def _fingerprint(secret: str) -> str:
    """Detects a rotated secret without keeping a second copy of it in the cache's keys."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass
class _Entry:
    client: genai.Client
    fingerprint: str
    timeout_s: float
    api_version: str


#: Most connections one client's pool holds. httpcore scans every connection of a pool under its lock for each
#: request (one pool of 1,000 connections was ~11 % of a 2,000-slot worker's CPU), while each extra client costs
#: ~1.6 MiB; larger slot counts get several clients per key (shards), each slot keeping to one of them.
MAX_POOL = 256


def shard_layout(slots: int | None) -> tuple[int, int | None]:
    """(clients per key, connections per client) for ``slots`` calls in flight per process."""
    if slots is None:
        return 1, None
    shards = max(1, -(-slots // MAX_POOL))
    return shards, -(-slots // shards) + 4  # a few spare: never a cap below what the slots of a shard need


_shard_counter = itertools.count()
_thread_shard = threading.local()


def _my_shard(shards: int) -> int:
    """This thread's (or greenlet's) shard, given round-robin on its first call and kept after."""
    if shards == 1:
        return 0
    mine = getattr(_thread_shard, "n", None)
    if mine is None:
        mine = _thread_shard.n = next(_shard_counter)
    return mine % shards


class ClientCache:
    """Clients keyed by ``(key id, os.getpid(), shard)``; rebuilt when the secret, timeout or version changes.

    A worker with many slots gets several clients per key (:func:`shard_layout`); each slot always uses the same
    one, so its connection stays alive between calls.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int, int], _Entry] = {}
        self._lock = threading.Lock()
        ref = weakref.ref(self)

        def _reset_lock_in_child() -> None:  # a lock held by another thread at fork time stays held
            cache = ref()
            if cache is not None:
                cache._lock = threading.Lock()

        os.register_at_fork(after_in_child=_reset_lock_in_child)

    def get(self, key_id: str, api_key: str, *, timeout_s: float, api_version: str = "v1beta") -> genai.Client:
        """The client for ``key_id`` in this process (and this slot's shard), built on first use."""
        shards, per_client = shard_layout(slots_per_process())
        slot = (key_id, os.getpid(), _my_shard(shards))
        fingerprint = _fingerprint(api_key)
        with self._lock:
            entry = self._entries.get(slot)
            if entry is not None and (entry.fingerprint, entry.timeout_s, entry.api_version) == (
                fingerprint,
                timeout_s,
                api_version,
            ):
                return entry.client
            stale = entry
            client = make_client(api_key, timeout_s=timeout_s, api_version=api_version, slots=per_client)
            self._entries[slot] = _Entry(client, fingerprint, timeout_s, api_version)
        if stale is not None:
            logger.info("rebuilding the Gemini client for %s (secret or options changed)", key_id)
            _close_quietly(stale.client)
        return client

    def discard(self, key_id: str) -> None:
        """Close and forget this process's clients for ``key_id`` (e.g. after the key was rejected)."""
        pid = os.getpid()
        with self._lock:
            gone = [slot for slot in self._entries if slot[0] == key_id and slot[1] == pid]
            entries = [self._entries.pop(slot) for slot in gone]
        for entry in entries:
            _close_quietly(entry.client)

    def close_all(self) -> None:
        """Close this process's clients (those inherited from a parent process are left alone)."""
        pid = os.getpid()
        with self._lock:
            mine = [e for slot, e in self._entries.items() if slot[1] == pid]
            self._entries = {slot: e for slot, e in self._entries.items() if slot[1] != pid}
        for entry in mine:
            _close_quietly(entry.client)

    def __len__(self) -> int:
        pid = os.getpid()
        return sum(1 for slot in self._entries if slot[1] == pid)


def _close_quietly(client: genai.Client) -> None:
    try:
        client.close()
    except Exception:  # closing is best effort; a failure here must not fail a task
        logger.debug("closing a Gemini client failed", exc_info=True)


#: The process-wide cache the tasks use.
default_cache = ClientCache()


def get_client(key_id: str, api_key: str, *, timeout_s: float, api_version: str = "v1beta") -> genai.Client:
    """``default_cache.get(...)``."""
    return default_cache.get(key_id, api_key, timeout_s=timeout_s, api_version=api_version)


def close_all() -> None:
    """Close this process's cached clients (call on worker shutdown)."""
    default_cache.close_all()
