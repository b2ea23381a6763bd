"""After Gemini has answered: the bookkeeping that follows a paid call never costs the answer.

Reporting the outcome to the key manager, writing the done marker and storing an audio blob are Redis writes
made after the call was paid for. Redis may refuse them for a while (a restart longer than the client's own
retries, ``READONLY`` during a failover). Each is retried here with backoff for a bounded time; then the
answer goes to the caller anyway (an unreported lease simply expires), or, for a blob that cannot be stored,
the request fails with a storage error. Gemini is never called again because of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

log = logging.getLogger("gemini_tasks.worker.settle")

T = TypeVar("T")

#: how long the bookkeeping after an answer is retried (rides out a Redis restart or a Sentinel failover)
BUDGET_SECONDS = 30.0
#: what is worth retrying: Redis refusing or not answering (a programming error is not retried)
RETRYABLE: tuple[type[BaseException], ...] = (redis.RedisError, OSError)


def with_budget(what: str, fn: Callable[[], T], *, task_id: str = "", budget: float | None = None) -> T:
    """``fn()``, retried with backoff while it fails with a Redis error, for at most ``budget`` seconds
    (default :data:`BUDGET_SECONDS`); then the last error is raised."""
    end = time.monotonic() + (BUDGET_SECONDS if budget is None else budget)
    delay = 0.05
    failures = 0
    while True:
        try:
            result = fn()
        except RETRYABLE as exc:
            failures += 1
            left = end - time.monotonic()
            if left <= 0:
                raise
            if failures == 1:
                log.warning("task %s: %s failed (%s: %s); retrying for up to %.0fs", task_id, what,
                            type(exc).__name__, exc, left)
            time.sleep(min(delay, left))
            delay = min(delay * 2, 1.0)
            continue
        if failures:
            log.info("task %s: %s succeeded after %d failure(s)", task_id, what, failures)
        return result


def best_effort(what: str, fn: Callable[[], object], *, task_id: str = "") -> bool:
    """Like :func:`with_budget`, but a failure that outlasts the budget is logged and swallowed: the answer
    matters more than the bookkeeping. Returns whether ``fn`` succeeded."""
    try:
        with_budget(what, fn, task_id=task_id)
    except Exception as exc:  # noqa: BLE001 - the answer was paid for; it goes to the caller regardless
        log.warning("task %s: gave up %s (%s: %s); the answer is returned anyway", task_id, what,
                    type(exc).__name__, exc)
        return False
    return True
