"""Is this worker stopping? Then a request that has not started its call is handed back, not waited for.

Celery's warm shutdown (SIGTERM) stops taking messages and waits for every running task, and a task here can
run long: it may wait for a key (short waits sleep in the slot), back off between transient errors, and make
several attempts. A stop would then last as long as the slowest of those. Instead, :func:`worker_stopping`
is checked before every admission: a request between calls is re-queued at once (another worker takes it,
and it is not paid twice because no call of it is in flight), and only a call already on the wire is
finished. So a stop ends within one call timeout (``GEMINI_TASKS_REQUEST_TIMEOUT``) plus one short wait
(5 s) of the signal, on the threads pool (the default) and gevent, where tasks run in the worker's process
and see the flag Celery sets when the signal arrives.
"""

from __future__ import annotations


def worker_stopping() -> bool:
    """True once this worker process received a warm or cold shutdown request."""
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
