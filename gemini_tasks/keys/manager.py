"""``AdvancedApiKeyManager``: the original library's key manager, now one pool shared by a whole fleet.

The constructor keeps the original's forms and defaults; the state lives in Redis (see ``lua/``), so the
application that builds the manager, every worker process and every host see the same keys, cooldowns and
exhaustion counts. Secrets never leave the process that holds them: Redis stores ids and fingerprints.

Who sets a shared pool's settings (configure.lua):

* A manager that only *names* keys (``AdvancedApiKeyManager("all")``, ``([names])``) uses the pool as it is;
  keys the pool does not know yet are added with the original's defaults (marked ``default``).
* A manager given explicit settings (``paid_keys``, ``key_settings``, ``projects``, ``project_limits``) writes
  them for its keys, unless someone else set different explicit settings: then it raises
  :class:`~gemini_tasks.keys.pool.SettingsConflict` naming each difference and who set it, and changes nothing.
  ``replace_settings=True`` makes its settings the pool's and prunes what it does not list (keys, limits).
* The key table shows who set each key's settings (``configured_by``) and whether they were explicit.
* After Redis lost its data (the pool's epoch is gone or changed), the manager registers its keys again
  the next time it builds a job (checked at most once a second), and workers re-announce theirs.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from gemini_tasks.keys.pool import KeyPool, PoolStatus, SettingsConflict, flatten_limits
from gemini_tasks.keys.redis_conn import get_redis
from gemini_tasks.keys.selection import (
    merge_settings,
    normalise_limits,
    resolve_key_names,
    resolve_paid,
)
from gemini_tasks.keys.states import (
    AVAILABLE,
    COOLDOWN,
    FAILED_INIT,
    FREE,
    FULLY_EXHAUSTED,
    PAID,
    TEMPORARILY_EXHAUSTED,
)
from gemini_tasks.settings import get_settings, load_env_file

log = logging.getLogger("gemini_tasks")


class AdvancedApiKeyManager:
    """A pool of Gemini API keys shared through Redis by every process that uses the same pool name.

    Args:
        keylist_names: ``"all"``, a count ``N`` (``GEMINI_API_KEY_1..N``), a range ``"1-15"``, or a list of
            environment variable names.
        paid_keys: ``None`` (all free), ``"all"``, or a list of names.
        key_settings: per category (``"free"``/``"paid"``) overrides of ``key_cooldown_seconds``,
            ``exhausted_wait_seconds``, ``fully_exhausted_wait_seconds``, ``max_exhausted_retries``,
            ``max_concurrent_leases``, and optional per-key limits ``rpm``/``rpd`` for keys without a project.
        projects: key id -> Google Cloud project. Gemini quotas are per project, so keys of one project
            share one quota and are benched together on a 429.
        project_limits: project -> ``{"rpm": n, "rpd": n, "tpm": n, "models": {model: {"rpm": n}}}`` (tpm:
            input tokens per minute); admissions are paced to stay within them, so a pool can run at its
            real quota without drawing 429s.
        rate_window_seconds: the length of a quota "minute" (60; tests and benchmarks scale it down).
        pool: the Redis namespace (default from ``GEMINI_TASKS_POOL`` or ``"default"``).
        redis_url: Redis for key state (default ``REDIS_URL``); must be the one the workers use.
        replace_fingerprints: accept a changed secret for an id (after rotating a key).
        replace_settings: make this manager's explicit settings the pool's even where someone else set
            different ones, and prune keys and limits it does not list (otherwise a difference raises
            ``SettingsConflict`` and nothing changes).
    """

    #: seconds between two checks that the pool still has the state this manager registered
    EPOCH_CHECK_INTERVAL = 1.0

    def __init__(
        self,
        keylist_names: str | int | Iterable[str] = "all",
        paid_keys: str | Iterable[str] | None = None,
        key_settings: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        projects: Mapping[str, str] | None = None,
        project_limits: Mapping[str, Mapping[str, Any]] | None = None,
        rate_window_seconds: float = 60.0,
        pool: str | None = None,
        redis_url: str | None = None,
        replace_fingerprints: bool = False,
        replace_settings: bool = False,
    ) -> None:
        load_env_file()
        settings = get_settings()
        self.settings_by_category = merge_settings(key_settings)
        if not isinstance(rate_window_seconds, (int, float)) or rate_window_seconds <= 0:
            raise ValueError(f"rate_window_seconds must be > 0, got {rate_window_seconds!r}")
        self.rate_window_seconds = float(rate_window_seconds)
        self.redis_url = redis_url or settings.keys_redis_url
        self.pool_name = pool or settings.pool
        self.pool = KeyPool(get_redis(self.redis_url), self.pool_name)

        self.key_ids: list[str] = resolve_key_names(keylist_names, os.environ, self.pool.held_ids())
        self.paid: set[str] = resolve_paid(paid_keys, self.key_ids)
        self.projects: dict[str, str] = self._resolve_projects(projects)
        limits = {p: normalise_limits(p, v) for p, v in (project_limits or {}).items()}
        unknown_projects = set(limits) - set(self.projects.values())
        if unknown_projects:
            raise ValueError(
                f"project_limits names project(s) no key belongs to: {', '.join(sorted(unknown_projects))} "
                f"(assign keys with projects={{'GEMINI_API_KEY_1': 'my-project', ...}})"
            )
        #: explicit settings were given (else the manager only names keys and uses the pool as it is)
        self.explicit = any(x is not None for x in (paid_keys, key_settings, projects, project_limits))
        self.replace_settings = bool(replace_settings)
        self.replace_fingerprints = bool(replace_fingerprints)
        self._rows, self._limits = self._desired(limits)
        self._epoch: str | None = None
        self._epoch_checked = 0.0
        self._epoch_lock = threading.Lock()
        self._register("replace" if replace_settings else "explicit" if self.explicit else "default")
        if not self.explicit:  # the pool's own categories, as someone configured them
            cats = self.pool.client.pipeline()
            for key_id in self.key_ids:
                cats.hget(f"{self.pool.prefix}key:{key_id}", "cat")
            self.paid = {k for k, c in zip(self.key_ids, cats.execute()) if c in (b"paid", "paid")}
        log.info("key pool %r: %d key(s) registered (%d paid)", self.pool_name, len(self.key_ids), len(self.paid))

    def _desired(self, limits: Mapping[str, Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
        """This manager's configuration: one row per key, and the limits of every project its keys use."""
        rows: list[dict[str, Any]] = []
        flat: dict[str, dict[str, int]] = {}
        for key_id in self.key_ids:
            cat = PAID if key_id in self.paid else FREE
            s = self.settings_by_category[cat]
            project = self.projects.get(key_id, "")
            rows.append({
                "id": key_id, "category": cat, "cooldown": s["key_cooldown_seconds"],
                "exhausted_wait": s["exhausted_wait_seconds"], "fully_exhausted_wait": s["fully_exhausted_wait_seconds"],
                "max_exhausted_retries": s["max_exhausted_retries"], "max_concurrent_leases": s["max_concurrent_leases"],
                "project": project, "secret": os.environ.get(key_id) or None,
            })
            if project:
                flat[project] = flatten_limits(limits.get(project) or {})
            else:  # a key without a project is its own quota unit: per-key limits from key_settings
                flat[key_id] = flatten_limits({n: s.get(n) for n in ("rpm", "rpd", "tpm")})
        return rows, flat

    def _register(self, mode: str) -> None:
        by = f"{socket.gethostname()}:{os.getpid()}:{Path(sys.argv[0] if sys.argv and sys.argv[0] else 'python').name}"
        self._epoch = self.pool.configure(
            self._rows, limits=self._limits if mode != "default" else None, mode=mode, by=by,
            replace_fingerprints=self.replace_fingerprints)
        self._epoch_checked = time.monotonic()

    def ensure_registered(self, *, force: bool = False) -> bool:
        """Register the keys again when Redis lost the pool's state (its epoch changed); True when it did.

        Called before each job is built (at most once per ``EPOCH_CHECK_INTERVAL``), so a long-lived
        application recovers from a Redis restart without persistence on its own."""
        now = time.monotonic()
        if not force and now - self._epoch_checked < self.EPOCH_CHECK_INTERVAL:
            return False
        with self._epoch_lock:
            self._epoch_checked = now
            current = self.pool.epoch()
            if current == self._epoch and current is not None and not force:
                return False
            log.warning("key pool %r lost its state in Redis (epoch %s -> %s); registering %d key(s) again",
                        self.pool_name, self._epoch, current, len(self.key_ids))
            try:
                self._register("explicit" if self.explicit else "default")
            except SettingsConflict as exc:  # someone re-registered first, with other explicit settings
                log.error("key pool %r: re-registered by another manager with different settings: %s",
                          self.pool_name, exc)
                self._epoch = self.pool.epoch()
            return True

    def _resolve_projects(self, projects: Mapping[str, str] | None) -> dict[str, str]:
        if not projects:
            return {}
        if not isinstance(projects, Mapping):
            raise ValueError("projects must be a dict of key name -> project id")
        unknown = [k for k in projects if k not in self.key_ids]
        if unknown:
            raise ValueError(f"projects names keys that are not in the pool: {', '.join(map(str, unknown))}")
        for key_id, project in projects.items():
            if not isinstance(project, str) or not project or any(c in project for c in "|{}: "):
                raise ValueError(f"project of {key_id} must be a non-empty id without '|{{}}: ', got {project!r}")
        return dict(projects)

    # -- the original's surface -------------------------------------------------------------------
    @property
    def num_keys(self) -> int:
        return len(self.key_ids)

    def spec(self) -> dict[str, Any]:
        """What a task message carries about the pool: ids and names only, never a secret or a URL."""
        self.ensure_registered()
        return {"pool": self.pool_name, "keys": list(self.key_ids), "rate_window": self.rate_window_seconds}

    def get_keys_status_summary(self) -> dict[str, dict[str, Any]]:
        """Per key id: the original's fields (status, category, exhausted_count, total_exhausted_count,
        assigned_worker) plus timing and lease details from the shared pool."""
        return summarize(self.pool.status(), self.key_ids)

    def check_key_status(self, key_id: str) -> str:
        """The status of one key id (``FAILED_INIT`` for an id the pool does not know, as the original)."""
        return self.get_keys_status_summary().get(key_id, {}).get("status", FAILED_INIT)

    def reset_key(self, key_id: str) -> None:
        """Return a key to AVAILABLE with cleared counts (e.g. after fixing an invalid key)."""
        if key_id not in self.key_ids:
            raise ValueError(f"{key_id} is not in this pool")
        self.pool.reset_key(key_id)

    def __repr__(self) -> str:
        return f"AdvancedApiKeyManager(pool={self.pool_name!r}, keys={self.key_ids!r}, paid={sorted(self.paid)!r})"


def summarize(snap: PoolStatus, key_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Turn a raw pool snapshot into the status summary (seconds, not milliseconds; no secrets)."""
    now = snap.now_ms
    wanted = list(key_ids) if key_ids is not None else list(snap.keys)
    out: dict[str, dict[str, Any]] = {}
    for key_id in wanted:
        f = snap.keys.get(key_id)
        if f is None:
            continue
        until = int(f.get("until", 0) or 0)
        nb = int(f.get("nb", 0) or 0)
        status = f.get("st", AVAILABLE)
        wait_ms = max(until - now if status in (COOLDOWN, TEMPORARILY_EXHAUSTED, FULLY_EXHAUSTED) else 0,
                      nb - now if status != FAILED_INIT else 0, 0)
        leases = int(f.get("leases", 0) or 0)
        lease_exp = int(f.get("lease_exp", 0) or 0)
        out[key_id] = {
            "status": status,
            "category": f.get("cat", FREE),
            "exhausted_count": int(f.get("exh", 0) or 0),
            "total_exhausted_count": int(f.get("texh", 0) or 0),
            "assigned_worker": f.get("lease_owner") or None,
            "project": f.get("proj") or key_id,
            "available_in_seconds": round(wait_ms / 1000.0, 3),
            "status_until_ms": until,
            "last_used_ms": int(f.get("last", 0) or 0),
            "active_leases": leases,
            "lease_expires_in_seconds": round(max(0, lease_exp - now) / 1000.0, 3) if leases else None,
            "admissions": int(f.get("admits", 0) or 0),
            "fingerprint": f.get("fp") or None,
            "configured_by": f.get("by") or None,
            "settings_source": f.get("src") or "explicit",
        }
    return out
