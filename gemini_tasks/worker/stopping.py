"""Is this worker stopping? Then a request that has not started its call is handed back, not waited for.

Celery's warm shutdown (SIGTERM) stops taking messages and waits for every running task, and a task here can
run long: it may wait for a key (short waits sleep in the slot), back off between transient errors, and make
several attempts. A stop would then last as long as the slowest of those. Instead, :func:`worker_stopping`
is checked before every admission: a request between calls is re-queued at once (another worker takes it,
and it is not paid twice because no call of it is in flight), and only a call already on the wire is
finished. So a stop ends within one call timeout (``GEMINI_TASKS_REQUEST_TIMEOUT``) plus one short wait
(5 s) of the signal.

Threads and gevent run tasks in the worker's process and see the flag Celery sets when the signal arrives.
Prefork children are separate processes: :func:`install` (at ``worker_init``, in the main process, before the
pool forks) makes one shared byte that the main process sets on ``worker_shutting_down`` and every child
reads.
"""

from __future__ import annotations

from typing import Any

_shared: Any = None


def install(**_: Any) -> None:
    """``worker_init`` receiver: a flag in shared memory that forked pool children inherit."""
    global _shared
    import multiprocessing

    _shared = multiprocessing.Value("b", 0, lock=False)


def announce_stop(**_: Any) -> None:
    """``worker_shutting_down`` receiver (main process): tell the pool children."""
    if _shared is not None:
        _shared.value = 1


def worker_stopping() -> bool:
    """True once this worker (or, in a prefork child, its parent) received a warm or cold shutdown request."""
    if _shared is not None and _shared.value:
        return True
    from celery.worker import state

    return state.should_stop is not None or state.should_terminate is not None


class WorkerStopping(Exception):
    """Raised out of a wait when the worker is stopping: the request is handed back before its call."""


def stoppable_sleep(seconds: float, step: float = 0.2) -> None:
    """``time.sleep`` that ends early, raising :class:`WorkerStopping`, once the worker is stopping."""
    import time

    end = time.monotonic() + max(0.0, seconds)
    while True:
        if worker_stopping():
            raise WorkerStopping()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(step, left))
