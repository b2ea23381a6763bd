"""The lease keeper: one daemon thread per process that renews the leases its calls hold.

A lease is issued with a short TTL (``GEMINI_TASKS_LEASE_TTL``, 15 s by default) and renewed every quarter of it
while its call runs, so:

* a holder that dies (SIGKILL, a lost host) stops renewing, and its keys, ``max_workers`` slots and token
  reservations come back within one TTL, whatever the call's own timeout;
* a call that legitimately runs for many minutes (Flex tier, slow uploads) keeps its lease for as long as its
  holder lives;
* a holder that was cut off from Redis for longer than the TTL loses its leases (renew.lua never revives an
  expired one); its late report is fenced and frees only its own, already-ended lease.

Use::

    with lease_keeper().hold(pool, lease) as held:
        ...make the call...
    if held.lost: ...   # the lease expired while the call ran (Redis unreachable for longer than the TTL)

The keeper is safe to use from many threads; after a fork (prefork pool) the child gets its own keeper.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gemini_tasks.keys.background import PerProcess, Ticker
from gemini_tasks.keys.pool import LEASE_TTL, KeyPool, Lease

log = logging.getLogger("gemini_tasks.keys")


@dataclass
class Held:
    """One lease under the keeper's care; ``lost`` turns True when a renewal found it gone."""

    lease: Lease
    lost: bool = False
    renewals: int = 0


class LeaseKeeper(Ticker):
    """Renews held leases every ``ttl / 4`` seconds from one daemon thread (started on first use)."""

    thread_name = "gemini-tasks-lease-keeper"

    def __init__(self, ttl: float = LEASE_TTL, interval: float | None = None) -> None:
        if ttl <= 0:
            raise ValueError(f"lease ttl must be > 0, got {ttl!r}")
        self.ttl = float(ttl)
        super().__init__(float(interval) if interval is not None else self.ttl / 4)
        self._lock = threading.Lock()
        self._pools: dict[tuple[int, str], KeyPool] = {}
        self._held: dict[tuple[int, str], dict[str, Held]] = {}

    @contextmanager
    def hold(self, pool: KeyPool, lease: Lease) -> Iterator[Held]:
        """Keep ``lease`` alive until the block ends (renewal stops; reporting the lease is the caller's job)."""
        where = (id(pool.client), pool.prefix)
        held = Held(lease)
        with self._lock:
            self._pools.setdefault(where, pool)
            self._held.setdefault(where, {})[lease.lease_id] = held
        self.start()  # normally started before admission (lease_keeper()): nothing to wait for here
        try:
            yield held
        finally:
            with self._lock:
                leases = self._held.get(where)
                if leases is not None:
                    leases.pop(lease.lease_id, None)

    def renew_now(self) -> None:
        """One renewal round for every held lease (the thread calls this; tests may too)."""
        with self._lock:
            work = [(self._pools[w], list(h.values())) for w, h in self._held.items() if h]
        for pool, helds in work:
            try:
                result = pool.renew([h.lease.lease_id for h in helds], self.ttl)
            except Exception as exc:  # noqa: BLE001 - Redis away: try again next round, the call goes on
                log.warning("lease renewal for pool %r failed (%s: %s); retrying in %.1fs",
                            pool.pool, type(exc).__name__, exc, self.interval)
                continue
            for h in helds:
                if result.get(h.lease.lease_id, 0):
                    h.renewals += 1
                elif not h.lost:
                    h.lost = True
                    log.warning("lease on %s ended while its call was still running (Redis was unreachable for "
                                "longer than the %.0fs lease TTL, or lost its data); its report will be fenced",
                                h.lease.key_id, self.ttl)

    def start(self) -> LeaseKeeper:
        """Start the renewal thread (idempotent). Done before the first admission, so starting a thread never
        delays a call between its admission and its send (the quota windows count from admission)."""
        super().start()
        return self

    def tick(self) -> None:
        self.renew_now()


_keepers: PerProcess[LeaseKeeper] = PerProcess()


def lease_keeper(ttl: float | None = None) -> LeaseKeeper:
    """This process's keeper (the TTL from ``GEMINI_TASKS_LEASE_TTL`` unless given on first use)."""

    def make() -> LeaseKeeper:
        if ttl is not None:
            return LeaseKeeper(ttl)
        from gemini_tasks.settings import get_settings

        return LeaseKeeper(get_settings().lease_ttl)

    return _keepers.get(make).start()
