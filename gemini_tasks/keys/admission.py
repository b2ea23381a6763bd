"""Waiting for an admission: sleep in the slot for short waits, hand long ones back to the caller.

Rate-limit waits are not errors: they never spend the error-retry budget. A wait up to ``max_sleep`` is
slept here (with a little jitter so waiters on one gate do not wake in lockstep); a longer one raises
:class:`WaitTooLong` so the task can re-queue itself with a countdown and free its worker slot.

A wait for a busy key or slot (``leased``, ``max_workers``) has no known end: instead of asking Redis again
every few milliseconds, the waiter blocks until a lease of the pool ends (:mod:`gemini_tasks.keys.wake`), with
the script's suggested wait (``AdmitPolicy.busy_poll``) only as a backstop.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gemini_tasks.keys.pool import AdmitPolicy, KeyPool, Lease, Wait
from gemini_tasks.keys.wake import listener_for

#: waits whose end is a lease ending somewhere in the fleet
BUSY_REASONS = frozenset({"leased", "max_workers"})
#: seconds between attempts while no freed-lease subscription is live
FALLBACK_POLL = 0.05


@dataclass
class WaitTooLong(Exception):
    """The next admission is further away than the caller wants to sleep in its slot."""

    wait: Wait

    def __str__(self) -> str:
        return f"next admission in {self.wait.seconds:.1f}s ({self.wait.reason})"


class Interrupted(Exception):
    """``should_stop`` turned true while waiting: the caller gives the request back instead of waiting on."""


def acquire(
    pool: KeyPool,
    candidates: Iterable[str],
    policy: AdmitPolicy,
    *,
    max_sleep: float = 5.0,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wake_on_release: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> Lease:
    """Admit, sleeping through short waits. Raises WaitTooLong, NoUsableKeys or Cancelled.

    ``deadline`` (a ``clock()`` value) bounds the whole wait: a wait that would end after it raises
    WaitTooLong at once, so a caller with a timeout never sleeps past it. ``should_stop`` (a stopping worker)
    is asked before every attempt; once true, :class:`Interrupted` is raised instead of admitting.
    """
    ids = list(candidates)
    listener = None
    while True:
        if should_stop is not None and should_stop():
            raise Interrupted()
        seen = listener.generation if listener is not None else 0
        got = pool.admit(ids, policy)
        if isinstance(got, Lease):
            return got
        remaining = None if deadline is None else deadline - clock()
        if got.seconds > max_sleep or (remaining is not None and got.seconds > remaining):
            raise WaitTooLong(got)
        if got.reason in BUSY_REASONS and wake_on_release:
            if listener is None:
                listener = listener_for(pool.client)
                if listener.watch(pool.freed_channel):
                    continue  # subscribed now: ask again, so no lease can end unseen in between
            limit = got.seconds if remaining is None else min(got.seconds, remaining)
            if not listener.live:  # no subscription (Redis away, pub/sub refused): poll as before
                limit = min(limit, FALLBACK_POLL)
            listener.wait(seen, limit)
            continue
        sleep(got.seconds + random.uniform(0, min(0.01, got.seconds * 0.1)))
