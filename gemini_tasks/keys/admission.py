"""Waiting for an admission: sleep in the slot for short waits, hand long ones back to the caller.

Rate-limit waits are not errors: they never spend the error-retry budget. A wait up to ``max_sleep`` is
slept here (with a little jitter so waiters on one gate do not wake in lockstep); a longer one raises
:class:`WaitTooLong` so the task can re-queue itself with a countdown and free its worker slot.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from gemini_tasks.keys.pool import AdmitPolicy, KeyPool, Lease, Wait


@dataclass
class WaitTooLong(Exception):
    """The next admission is further away than the caller wants to sleep in its slot."""

    wait: Wait

    def __str__(self) -> str:
        return f"next admission in {self.wait.seconds:.1f}s ({self.wait.reason})"


def acquire(
    pool: KeyPool,
    candidates: Iterable[str],
    policy: AdmitPolicy,
    *,
    max_sleep: float = 5.0,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Lease:
    """Admit, sleeping through short waits. Raises WaitTooLong, NoUsableKeys or Cancelled.

    ``deadline`` (a ``clock()`` value) bounds the whole wait: a wait that would end after it raises
    WaitTooLong at once, so a caller with a timeout never sleeps past it.
    """
    ids = list(candidates)
    while True:
        got = pool.admit(ids, policy)
        if isinstance(got, Lease):
            return got
        remaining = None if deadline is None else deadline - clock()
        if got.seconds > max_sleep or (remaining is not None and got.seconds > remaining):
            raise WaitTooLong(got)
        sleep(got.seconds + random.uniform(0, min(0.01, got.seconds * 0.1)))
