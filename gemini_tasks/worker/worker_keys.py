"""Which keys this worker process holds, and announcing them to the pool.

A worker leases only keys whose secret it holds in its own environment (or ``.env``); the secret is looked up
here at call time and never leaves the process.

Workers announce the ids they hold when they start (Celery's ``worker_ready`` signal, for the pool named by
``GEMINI_TASKS_POOL``), so an application that holds only key *names* works against a fresh Redis with idle
workers; keys the pool does not know yet are added with the original's defaults (an application's explicit
settings replace those). A watcher thread checks every few seconds that the pool still has its epoch; when
Redis lost its state, the worker announces again, so pools come back without an application's help.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from gemini_tasks.keys.background import PerProcess, Ticker
from gemini_tasks.keys.pool import FingerprintConflict, KeyPool
from gemini_tasks.keys.states import DEFAULT_KEY_SETTINGS, FREE
from gemini_tasks.settings import key_env_names, load_env_file

log = logging.getLogger("gemini_tasks")
_conflicts: set[str] = set()

#: seconds between two checks that a pool this worker announced to still has its state
WATCH_INTERVAL = 3.0


def held_secrets(ids: Iterable[str]) -> dict[str, str]:
    """``{id: secret}`` for the ids whose secret this process holds (and that did not fail a fingerprint check)."""
    out = {}
    for key_id in ids:
        value = os.environ.get(key_id, "").strip()
        if len(value) > 10 and key_id not in _conflicts:
            out[key_id] = value
    return out


def _default_row(key_id: str, secret: str) -> dict[str, Any]:
    s = DEFAULT_KEY_SETTINGS[FREE]
    return {"id": key_id, "category": FREE, "cooldown": s["key_cooldown_seconds"],
            "exhausted_wait": s["exhausted_wait_seconds"], "fully_exhausted_wait": s["fully_exhausted_wait_seconds"],
            "max_exhausted_retries": s["max_exhausted_retries"], "max_concurrent_leases": s["max_concurrent_leases"],
            "project": "", "secret": secret}


def announce(pool: KeyPool) -> list[str]:
    """Tell the pool which ids this host holds (adding unknown ones with default settings); ids whose secret
    differs from the pool's are refused here."""
    load_env_file()
    held: list[str] = []
    by = f"worker {socket.gethostname()}:{os.getpid()}"
    for key_id in key_env_names():
        try:
            pool.configure([_default_row(key_id, os.environ[key_id])], mode="default", by=by, held=True)
            held.append(key_id)
        except FingerprintConflict as exc:
            _conflicts.add(key_id)
            log.error("refusing to use %s on this worker: %s", key_id, exc)
    return held


class PoolWatcher(Ticker):
    """Announces this host's keys to pools, and again whenever a pool's epoch changes (Redis lost its state)."""

    thread_name = "gemini-tasks-pool-watcher"

    def __init__(self, interval: float = WATCH_INTERVAL) -> None:
        super().__init__(interval)
        self._pools: dict[tuple[int, str], tuple[KeyPool, str | None]] = {}
        self._lock = threading.Lock()

    def add(self, pool: KeyPool) -> None:
        """Announce to ``pool`` now (once) and keep watching it."""
        where = (id(pool.client), pool.prefix)
        with self._lock:
            if where in self._pools:
                return
            announce(pool)
            self._pools[where] = (pool, pool.epoch())
        self.start()

    def check_now(self) -> int:
        """Re-announce to every pool whose epoch changed; returns how many."""
        with self._lock:
            items = list(self._pools.items())
        changed = 0
        for where, (pool, epoch) in items:
            try:
                current = pool.epoch()
                if current is not None and current == epoch:
                    continue
                log.warning("key pool %r lost its state in Redis; announcing this worker's keys again", pool.pool)
                announce(pool)
                with self._lock:
                    self._pools[where] = (pool, pool.epoch())
                changed += 1
            except Exception as exc:  # noqa: BLE001 - Redis away: try again next round
                log.debug("pool watcher: %s: %s", type(exc).__name__, exc)
        return changed

    def recover(self, pool: KeyPool) -> bool:
        """Announce to ``pool`` again at once when it lost its state (an admission found none of its keys);
        True when it did, so the caller may try the admission again instead of failing the request."""
        where = (id(pool.client), pool.prefix)
        with self._lock:
            known = self._pools.get(where)
        if known is None:
            self.add(pool)
            return False
        try:
            if pool.epoch() == known[1] and known[1] is not None:
                return False
            log.warning("key pool %r lost its state in Redis; announcing this worker's keys again", pool.pool)
            announce(pool)
        except Exception as exc:  # noqa: BLE001 - Redis away: the request fails as it would have
            log.debug("pool watcher: %s: %s", type(exc).__name__, exc)
            return False
        with self._lock:
            self._pools[where] = (pool, pool.epoch())
        return True

    def tick(self) -> None:
        self.check_now()


_watchers: PerProcess[PoolWatcher] = PerProcess()


def pool_watcher() -> PoolWatcher:
    """This process's watcher (one per process: a forked child gets its own)."""
    return _watchers.get(PoolWatcher)


@worker_ready.connect
def _announce_at_start(**_: Any) -> None:
    """A worker makes its keys known when it starts, not on its first task."""
    from gemini_tasks.keys.redis_conn import get_redis
    from gemini_tasks.settings import get_settings

    settings = get_settings()
    try:
        pool_watcher().add(KeyPool(get_redis(settings.keys_redis_url), settings.pool))
    except Exception as exc:  # noqa: BLE001 - the worker still starts; its first task announces again
        log.error("could not announce this worker's keys to pool %r at start: %s: %s", settings.pool,
                  type(exc).__name__, exc)


@worker_shutdown.connect
def _stop_watching(**_: Any) -> None:
    pool_watcher().stop()
