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
(:mod:`gemini_tasks.pools`): httpx's default (100 connections, 20 kept alive) capped a ``-c 600`` worker at 100
calls in flight per key and reopened a connection for most calls above 20.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from google import genai
from google.genai import types

from gemini_tasks.pools import slots_per_process

logger = logging.getLogger("gemini_tasks")

__all__ = ["ClientCache", "close_all", "connection_limits", "default_cache", "get_client", "make_client"]


#: Connections kept alive between calls outside a worker (httpx keeps only 20 by default).
DEFAULT_KEEPALIVE = 100


def connection_limits(slots: int | None = None) -> Any:
    """The httpx ``Limits`` for one client: ``slots`` connections, all kept alive between calls.

    ``slots`` defaults to this process's (:func:`gemini_tasks.pools.slots_per_process`); outside a worker the
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
            client_args={"limits": connection_limits(slots)},
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


class ClientCache:
    """Clients keyed by ``(key id, os.getpid())``; rebuilt when the secret, timeout or version changes."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], _Entry] = {}
        self._lock = threading.Lock()
        ref = weakref.ref(self)

        def _reset_lock_in_child() -> None:  # a lock held by another thread at fork time stays held
            cache = ref()
            if cache is not None:
                cache._lock = threading.Lock()

        os.register_at_fork(after_in_child=_reset_lock_in_child)

    def get(self, key_id: str, api_key: str, *, timeout_s: float, api_version: str = "v1beta") -> genai.Client:
        """The client for ``key_id`` in this process, built on first use."""
        slot = (key_id, os.getpid())
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
            client = make_client(api_key, timeout_s=timeout_s, api_version=api_version)
            self._entries[slot] = _Entry(client, fingerprint, timeout_s, api_version)
        if stale is not None:
            logger.info("rebuilding the Gemini client for %s (secret or options changed)", key_id)
            _close_quietly(stale.client)
        return client

    def discard(self, key_id: str) -> None:
        """Close and forget this process's client for ``key_id`` (e.g. after the key was rejected)."""
        with self._lock:
            entry = self._entries.pop((key_id, os.getpid()), None)
        if entry is not None:
            _close_quietly(entry.client)

    def close_all(self) -> None:
        """Close this process's clients (those inherited from a parent process are left alone)."""
        pid = os.getpid()
        with self._lock:
            mine = [e for (k, p), e in self._entries.items() if p == pid]
            self._entries = {slot: e for slot, e in self._entries.items() if slot[1] != pid}
        for entry in mine:
            _close_quietly(entry.client)

    def __len__(self) -> int:
        pid = os.getpid()
        return sum(1 for (_, p) in self._entries if p == pid)


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
