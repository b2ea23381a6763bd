"""Nothing printed at interpreter exit by results an application never waited for to the end.

Celery subscribes to every task's result channel when it sends the task, and each ``AsyncResult`` unsubscribes
in ``__del__``. Results still alive when the interpreter shuts down (a batch submitted and then lost, requests
that timed out) are destroyed after Python's import machinery is gone: each unsubscribe then fails and prints an
``Exception ignored in: AsyncResult.__del__ ... ImportError: sys.meta_path is None`` block (18 lines after one
timeout, ~3,000 after a lost batch). At exit, while the interpreter is still whole, this module forgets those
subscriptions and closes the result consumers' pub/sub connections, so the late ``__del__`` calls have nothing
left to do.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import threading

_registered = False
_lock = threading.Lock()


def install() -> None:
    """Register the exit hook once per process."""
    global _registered
    with _lock:
        if not _registered:
            atexit.register(release_result_consumers)
            _registered = True


def release_result_consumers() -> None:
    """Forget every Redis result subscription of this process and close its pub/sub connections."""
    try:
        from celery.backends.redis import ResultConsumer
    except ImportError:  # pragma: no cover - celery is a dependency
        return
    for obj in gc.get_objects():
        if not isinstance(obj, ResultConsumer):
            continue
        with contextlib.suppress(Exception):
            with obj._pubsub_lock:
                obj.subscribed_to.clear()
                obj._pending_unsubscribe.clear()
                pubsub, obj._pubsub = obj._pubsub, None
            if pubsub is not None:
                pubsub.close()
