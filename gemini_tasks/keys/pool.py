"""The Redis side of the key manager: one object per pool and Redis client, one script call per operation.

``KeyPool`` is deliberately small and policy-free: it turns Python arguments into one ``EVALSHA`` and the
script's reply into typed values. What to do with a wait (sleep in the slot, or re-queue the task) is the
caller's business (:mod:`gemini_tasks.keys.admission`).

Leases (the API other modules rely on):

* ``admit(candidates, policy, admission_id=None) -> Lease | Wait``: the lease id *is* the admission id (random,
  made here when not given), so re-sending the same admission returns the same lease (redis-py re-sends
  ``EVALSHA`` after a timeout) and a lease id never repeats, even after Redis lost recent writes.
* ``renew(lease_ids, ttl) -> {lease_id: expires_ms or 0}``: a live holder extends its leases; 0 means the lease
  is gone (expired, reported, or lost with Redis's data) and the holder must not count on the key any more.
  Leases are short (``AdmitPolicy.lease_ttl``, by default :data:`LEASE_TTL` seconds) and renewed every
  ``ttl/4`` by :class:`gemini_tasks.keys.keeper.LeaseKeeper` while the call runs, so a dead holder's keys,
  ``max_workers`` slots and token reservations come back within one TTL, and a call of any length keeps its key.
* ``report(lease, outcome, ...)``: ends the lease; a late report of a holder that was cut off finds only its own
  (already ended) lease and never frees a newer one (fencing by identity). Safe to repeat.
* ``epoch()``: a random id the pool gets when first registered; a missing or changed epoch means Redis lost
  the pool's state, and whoever knows the configuration registers it again (managers, workers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import redis

from gemini_tasks.keys.names import pool_prefix
from gemini_tasks.keys.scripts import Scripts
from gemini_tasks.keys.states import OUTCOMES, QUOTA_KINDS
from gemini_tasks.keys.timeutil import pacific_tz_table

log = logging.getLogger("gemini_tasks.keys")

#: seconds an unrenewed lease lives: a dead holder's keys and slots come back within this
LEASE_TTL = 15.0
#: the oldest Redis whose commands the scripts use (ZMSCORE, ZADD GT/LT: 6.2)
MIN_REDIS_VERSION = (6, 2, 0)


class KeyManagerError(RuntimeError):
    """Base class for key-manager failures."""


class NoUsableKeys(KeyManagerError):
    """Every candidate key is invalid (FAILED_INIT) or unknown: waiting would never help."""


class Cancelled(KeyManagerError):
    """The caller gave up on this task (streaming timeout), so no call may be made for it."""


class FingerprintConflict(KeyManagerError):
    """This host's secret for a key id differs from the one another host registered."""


class SettingsConflict(KeyManagerError):
    """A manager's explicit settings differ from the ones someone else set explicitly for the shared pool."""

    def __init__(self, message: str, differences: list[tuple[str, str, str, str, str]]) -> None:
        super().__init__(message)
        self.differences = differences


class RedisVersionError(KeyManagerError):
    """The Redis server is older than the key manager's scripts need."""


_checked_clients: set[int] = set()
_checked_lock = threading.Lock()


def check_redis_version(client: redis.Redis) -> None:
    """Fail with a clear message when the server is older than :data:`MIN_REDIS_VERSION` (checked once per
    client). The scripts use ZMSCORE and ZADD GT, which Redis 6.2 introduced."""
    if id(client) in _checked_clients:
        return
    info = client.info("server")
    found = str(info.get("redis_version", "0"))
    parts = tuple(int(x) if x.isdigit() else 0 for x in found.split(".")[:3])
    if parts < MIN_REDIS_VERSION:
        raise RedisVersionError(
            f"Redis {found} is too old for gemini-tasks: the key manager needs Redis >= "
            f"{'.'.join(map(str, MIN_REDIS_VERSION))} (ZMSCORE, ZADD GT). Upgrade the server at this REDIS_URL."
        )
    with _checked_lock:
        _checked_clients.add(id(client))


def fingerprint(secret: str) -> str:
    """A one-way fingerprint that tells two secrets apart without revealing either."""
    return hashlib.sha256(b"gemini-tasks/key-fingerprint/v1:" + secret.strip().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Lease:
    """Permission to make one call with ``key_id``. Report it exactly once (or let it expire)."""

    key_id: str
    lease_id: str
    issued_ms: int
    expires_ms: int
    slot: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "lease_id": self.lease_id, "issued_ms": self.issued_ms,
                "expires_ms": self.expires_ms, "slot": self.slot}


@dataclass(frozen=True)
class Wait:
    """No call now: the earliest moment one might be admitted is ``seconds`` away, because of ``reason``."""

    reason: str
    seconds: float


@dataclass(frozen=True)
class ReportResult:
    """The key's state after a report; ``counted`` is True when a 429 started a new exhaustion event."""

    status: str
    until_ms: int
    counted: bool
    ended_ms: int


@dataclass(frozen=True)
class AdmitPolicy:
    """Everything an admission depends on besides the candidate keys (carried in each task message)."""

    model: str
    owner: str = ""
    processor_id: str = ""
    max_workers: int = 0
    worker_cooldown: float = 0.0
    api_call_interval: float = 0.0
    spacing_scope: str = "fleet"
    #: seconds until an unrenewed lease expires (the lease keeper renews it while the call runs)
    lease_ttl: float = LEASE_TTL
    rate_window: float = 60.0
    window_margin: float | None = None
    cancel_id: str = ""
    #: the longest wait suggested for a busy key or slot; waiters wake earlier when a lease ends (keys/wake.py)
    busy_poll: float = 1.0
    #: estimated input tokens of the request, checked against tpm limits (0: not counted)
    tokens: int = 0

    def margin_seconds(self) -> float:
        """Default margin: 2% of the window (at least 100 ms), covering the delay between our admission
        and the moment the API counts the request."""
        return max(self.rate_window * 0.02, 0.1) if self.window_margin is None else self.window_margin


@dataclass
class PoolStatus:
    """A snapshot of every registered key (raw Redis fields, parsed), the spacing gate and the counters."""

    now_ms: int
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    gate_ms: int = 0
    stats: dict[str, int] = field(default_factory=dict)


_FIELD_NAMES = {"cat": "category", "cool": "key_cooldown_seconds", "ewait": "exhausted_wait_seconds",
                "fwait": "fully_exhausted_wait_seconds", "maxr": "max_exhausted_retries",
                "maxl": "max_concurrent_leases", "proj": "project"}
_MS_FIELDS = {"cool", "ewait", "fwait"}


def _show(field_name: str, value: str) -> str:
    if value == "":
        return "(none)"
    if field_name in _MS_FIELDS:
        return f"{int(float(value)) / 1000:g}"
    return repr(value) if field_name in ("cat", "proj") else value


def _ms(seconds: float) -> int:
    return int(math.ceil(seconds * 1000))


def _pairs(flat: list[Any]) -> dict[str, str]:
    it = iter(flat)
    return {_s(k): _s(v) for k, v in zip(it, it)}


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class KeyPool:
    """One key pool in Redis (all of its names share the ``gt:{pool}:`` prefix and hash tag)."""

    def __init__(self, client: redis.Redis, pool: str = "default") -> None:
        if not pool or any(c in pool for c in "{}: "):
            raise ValueError(f"pool name must be non-empty without braces, colons or spaces, got {pool!r}")
        self.client = client
        self.pool = pool
        self.prefix = pool_prefix(pool)
        check_redis_version(client)
        self._scripts = Scripts(client)
        # built here, off the hot path: computing it inside the first admission held the GIL for tens of ms
        # while other threads of the process had a lease and were about to send (the window counts from admission)
        pacific_tz_table()

    @property
    def freed_channel(self) -> str:
        """The pub/sub channel on which every ended lease is announced (payload: its key id)."""
        return self.prefix + "freed"

    def epoch(self) -> str | None:
        """The pool's epoch (None: never registered, or Redis lost its state since)."""
        value = self.client.get(self.prefix + "epoch")
        return None if value is None else _s(value)

    def configure(
        self,
        keys: list[dict[str, Any]],
        *,
        limits: Mapping[str, Mapping[str, int]] | None = None,
        mode: str = "explicit",
        by: str = "",
        replace_fingerprints: bool = False,
        held: bool = False,
    ) -> str:
        """Register many keys at once (configure.lua); returns the pool's epoch.

        ``keys``: dicts with ``id, category, cooldown, exhausted_wait, fully_exhausted_wait,
        max_exhausted_retries, max_concurrent_leases, project, secret`` (seconds; secret optional).
        ``limits``: project -> flat limit fields (``{"rpm": 10, "rpm|model": 5}``); a project given ``{}`` has none.
        Raises :class:`SettingsConflict` (mode ``explicit``) or :class:`FingerprintConflict`.
        """
        if mode not in ("default", "explicit", "replace"):
            raise ValueError(f"mode must be default, explicit or replace, got {mode!r}")
        rows = [[k["id"], k["category"], _ms(k["cooldown"]), _ms(k["exhausted_wait"]),
                 _ms(k["fully_exhausted_wait"]), int(k["max_exhausted_retries"]),
                 int(k.get("max_concurrent_leases", 1)), k.get("project") or "",
                 fingerprint(k["secret"]) if k.get("secret") else ""] for k in keys]
        config = {"keys": rows, "limits": {p: dict(v) for p, v in (limits or {}).items()}}
        reply = self._scripts.configure(
            keys=[self.prefix],
            args=[mode, by, uuid.uuid4().hex, json.dumps(config), "1" if replace_fingerprints else "0",
                  "1" if held else "0"],
        )
        if int(reply[0]) == 1:
            return _s(reply[1])
        kind = _s(reply[1])
        if kind == "fingerprint":
            key_id = _s(reply[2])
            mine = next((r[8] for r in rows if r[0] == key_id), "")
            raise self._conflict(key_id, _s(reply[3]), mine)
        flat = [_s(x) for x in reply[2:]]
        diffs = [(flat[i], flat[i + 1], flat[i + 2], flat[i + 3], flat[i + 4]) for i in range(0, len(flat), 5)]
        lines = [f"{what} {_FIELD_NAMES.get(f, f)}: pool has {_show(f, theirs)} (set by {who or 'unknown'}), "
                 f"this manager has {_show(f, mine)}" for what, f, theirs, mine, who in diffs]
        raise SettingsConflict(
            f"pool {self.pool!r} already has different explicit settings; nothing was changed:\n  "
            + "\n  ".join(lines)
            + "\nUse the pool as it is (build the manager with key names only), or make these settings the "
            "pool's with AdvancedApiKeyManager(..., replace_settings=True).",
            diffs,
        )

    # -- configuration -----------------------------------------------------------------------------
    def register_key(
        self,
        key_id: str,
        *,
        category: str,
        cooldown: float,
        exhausted_wait: float,
        fully_exhausted_wait: float,
        max_exhausted_retries: int,
        max_concurrent_leases: int = 1,
        project: str = "",
        secret: str | None = None,
        replace: bool = False,
    ) -> None:
        """Add or update a key's configuration; state (status, counts, leases) is kept as it is."""
        fp = fingerprint(secret) if secret else ""
        ok, existing = self._scripts.register(
            keys=[self.prefix],
            args=[key_id, category, _ms(cooldown), _ms(exhausted_wait), _ms(fully_exhausted_wait),
                  int(max_exhausted_retries), int(max_concurrent_leases), project, fp, "1" if replace else "0", "0"],
        )
        if not int(ok):
            raise self._conflict(key_id, _s(existing), fp)

    def announce_held(self, secrets: Mapping[str, str], *, replace: bool = False) -> None:
        """A worker announces the key ids it holds, checking each fingerprint against the pool's."""
        for key_id, secret in secrets.items():
            fp = fingerprint(secret)
            ok, existing = self._scripts.register(
                keys=[self.prefix], args=[key_id, "", 0, 0, 0, 0, 0, "", fp, "1" if replace else "0", "1"]
            )
            if not int(ok):
                raise self._conflict(key_id, _s(existing), fp)

    @staticmethod
    def _conflict(key_id: str, existing: str, mine: str) -> FingerprintConflict:
        return FingerprintConflict(
            f"{key_id} holds a different secret on this host (fingerprint {mine}) than the one already "
            f"registered for the pool (fingerprint {existing}). Every host must give {key_id} the same key; "
            "if the key was rotated, build the manager with AdvancedApiKeyManager(..., replace_fingerprints=True)."
        )

    def set_project_limits(self, project: str, limits: Mapping[str, Any]) -> None:
        """Quota limits of one project: ``{"rpm": n, "rpd": n, "tpm": n, "models": {model: {"rpm": n, ...}}}``
        (tpm: input tokens per minute)."""
        fields = flatten_limits(limits)
        key = self.prefix + "proj:" + project
        pipe = self.client.pipeline()
        pipe.delete(key)
        if fields:
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.sadd(self.prefix + "limited", project)
        else:
            pipe.srem(self.prefix + "limited", project)
        pipe.execute()

    def registered_ids(self) -> list[str]:
        return sorted(_s(x) for x in self.client.smembers(self.prefix + "ids"))

    def held_ids(self) -> list[str]:
        return sorted(_s(x) for x in self.client.smembers(self.prefix + "held"))

    # -- the two hot operations -------------------------------------------------------------------
    def admit(self, candidates: Iterable[str], policy: AdmitPolicy, admission_id: str | None = None) -> Lease | Wait:
        """One atomic admission decision. Raises :class:`NoUsableKeys` or :class:`Cancelled`.

        ``admission_id`` (random when not given) becomes the lease id; sending the same admission again
        returns the same lease while it lives."""
        ids = list(candidates)
        aid = admission_id or uuid.uuid4().hex
        if not ids:
            raise NoUsableKeys("no candidate keys: this worker holds none of the pool's keys")
        reply = self._scripts.admit(
            keys=[self.prefix],
            args=[
                policy.owner, policy.processor_id, int(policy.max_workers), _ms(policy.worker_cooldown),
                _ms(policy.api_call_interval), policy.spacing_scope, _ms(policy.lease_ttl), policy.model,
                pacific_tz_table(), _ms(policy.rate_window), _ms(policy.margin_seconds()), policy.cancel_id,
                max(1, _ms(policy.busy_poll)), max(0, int(policy.tokens)), aid, *ids,
            ],
        )
        code = int(reply[0])
        if code == 1:
            return Lease(key_id=_s(reply[1]), lease_id=_s(reply[2]), expires_ms=int(reply[3]),
                         issued_ms=int(reply[4]), slot=_s(reply[5]))
        if code == 0:
            return Wait(reason=_s(reply[1]), seconds=int(reply[2]) / 1000.0)
        reason = _s(reply[1])
        if reason == "cancelled":
            raise Cancelled(f"task {policy.cancel_id} was cancelled by its caller; no call was made")
        raise NoUsableKeys(
            f"No usable API keys: all {len(ids)} candidate key(s) are invalid (FAILED_INIT) or unknown to "
            f"pool {self.pool!r}: {', '.join(ids)}"
        )

    def report(
        self,
        lease: Lease,
        outcome: str,
        *,
        retry_after: float | None = None,
        quota_kind: str | None = None,
        worker_cooldown: float = 0.0,
        prompt_tokens: int | None = None,
        pipe: Any = None,
    ) -> ReportResult | None:
        """Record a call's outcome and end its lease; ``prompt_tokens`` (what the API counted) corrects the
        admission's token estimate in the project's tpm window.

        With ``pipe`` (a pipeline of this pool's client) the script is only queued there (``EVALSHA``), to run in
        the same round trip as what else the caller queues (the worker's metrics and done marker); returns None
        then, and the caller handles a ``NoScriptError`` reply (Redis lost its scripts) by calling without it.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
        kind = quota_kind or "unknown"
        if kind not in QUOTA_KINDS:
            kind = "unknown"
        args: list[str | int] = [lease.lease_id, lease.key_id, lease.issued_ms, outcome,
                -1 if retry_after is None else _ms(retry_after), kind, _ms(worker_cooldown),
                pacific_tz_table(), -1 if prompt_tokens is None else max(0, int(prompt_tokens))]
        if pipe is not None:  # EVALSHA alone: a Script on a pipeline costs a SCRIPT EXISTS round trip first
            pipe.evalsha(self._scripts.report.sha, 1, self.prefix, *args)
            return None
        status, until, counted, now = self._scripts.report(keys=[self.prefix], args=args)
        return ReportResult(_s(status), int(until), bool(int(counted)), int(now))

    def renew(self, lease_ids: Iterable[str], ttl: float = LEASE_TTL) -> dict[str, int]:
        """Extend the caller's own leases to expire ``ttl`` seconds from now (renew.lua).

        Returns lease id -> new expiry (Redis ms), or 0 for a lease that is gone: expired and reaped, reported,
        or lost with Redis's data. A gone lease is never revived."""
        ids = list(lease_ids)
        if not ids:
            return {}
        reply = self._scripts.renew(keys=[self.prefix], args=[_ms(ttl), *ids])
        return {lid: int(exp) for lid, exp in zip(ids, reply[1:])}

    def mark_sent(self, lease: Lease) -> bool:
        """Move the lease's rate-window entry to now (call it just before a call that follows slow work)."""
        return bool(int(self._scripts.mark_sent(keys=[self.prefix], args=[lease.lease_id])))

    # -- observation and operations ---------------------------------------------------------------
    def status(self) -> PoolStatus:
        reply = self._scripts.status(keys=[self.prefix])
        snap = PoolStatus(now_ms=int(reply[0]))
        for row in reply[1:-1]:
            key_id = _s(row[0])
            fields = _pairs(row[1:])
            if key_id == "__gate__":
                snap.gate_ms = int(fields.get("fleet", "0") or 0)
                continue
            snap.keys[key_id] = fields
        snap.stats = {k: int(v) for k, v in _pairs(reply[-1]).items()}
        return snap

    def cancel(self, task_id: str, ttl: float = 3600.0) -> None:
        """Refuse every future admission for ``task_id`` (its caller gave up)."""
        self.client.set(self.prefix + "cancel:" + task_id, 1, px=_ms(ttl))

    def reset_key(self, key_id: str) -> None:
        """Operator action: put a key back to AVAILABLE with its counters cleared (e.g. a fixed FAILED_INIT)."""
        if not int(self._scripts.reset(keys=[self.prefix], args=[key_id])):
            raise KeyError(f"{key_id} is not registered in pool {self.pool!r}")

    def advance_clock(self, seconds: float) -> None:
        """Move this pool's notion of time forward (tests: exercise cooldowns without waiting)."""
        self.client.incrby(self.prefix + "clock_offset", _ms(seconds))

    def clear(self) -> None:
        """Delete every Redis key of this pool (tests, ``gemini-tasks keys --reset-pool``)."""
        cursor = 0
        while True:
            cursor, names = self.client.scan(cursor, match=self.prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=500)
            if names:
                self.client.delete(*names)
            if cursor == 0:
                break


def flatten_limits(limits: Mapping[str, Any]) -> dict[str, int]:
    """``{"rpm": n, "models": {m: {"rpm": n}}}`` -> ``{"rpm": n, "rpm|m": n}`` (the proj:<project> hash fields)."""
    fields: dict[str, int] = {}
    for name in ("rpm", "rpd", "tpm"):
        if limits.get(name) is not None:
            fields[name] = int(limits[name])
    for model, per_model in (limits.get("models") or {}).items():
        for name in ("rpm", "rpd", "tpm"):
            if per_model.get(name) is not None:
                fields[f"{name}|{model}"] = int(per_model[name])
    return fields
