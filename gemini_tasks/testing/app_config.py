"""Point the process-wide Celery app at a stack's Redis and back (Celery caches connections per app).

The client side of every test stack (the test process is the application) publishes through the one
``gemini_tasks.celery_app.app``. Celery caches its producer pool and its result backend (per thread), so
changing ``app.conf`` alone leaves a test talking to the previous stack's Redis: :func:`celery_app_on`
changes the configuration and drops those caches, on entry and again on exit.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import kombu.pools


@contextlib.contextmanager
def celery_app_on(url: str) -> Iterator[Any]:
    """Point the process-wide Celery app at ``url`` (broker and results), then restore it.

    Celery caches the producer pool and the result backend per app (the backend per thread); both are
    dropped here so the next use builds them from the new configuration.
    """
    from gemini_tasks.celery_app import app

    saved = {name: app.conf[name] for name in ("broker_url", "result_backend", "result_expires")}

    def forget_connections() -> None:
        # forgotten, not closed: kombu keeps one connection pool per broker URL for the whole process
        # (``kombu.pools.connections``), and another stack's in-process worker may still use the one of its own
        # Redis; closing it made that stack's next revoke/publish fail with "Acquire on closed pool"
        app._pool = None
        amqp = app.__dict__.get("amqp")
        if amqp is not None:
            amqp._producer_pool = None
        # the app's pools come from kombu's process-wide registries, keyed by broker URL: a closed pool left
        # there is handed out again the next time a stack uses the same URL ("Acquire on closed pool")
        kombu.pools.reset()
        control = app.__dict__.get("control")
        if control is not None:  # the control mailbox (revoke, ping) caches its producer pool for good
            control.mailbox.__dict__.pop("producer_pool", None)
        forget_backend(app)

    app.conf.update(broker_url=url, result_backend=url)
    forget_connections()
    try:
        yield app
    finally:
        app.conf.update(saved)
        forget_connections()


def forget_backend(app: Any) -> None:
    """Close the app's cached result backend (this thread's) and forget it, so the next use reads the
    configuration again. Its pubsub is dropped first: AsyncResults that outlive the stack then have nothing
    to unsubscribe from (their finalizers would otherwise retry a Redis that is gone, at GC time)."""
    backend = app._backend_cache or getattr(app._local, "backend", None)
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
        with contextlib.suppress(Exception):
            consumer.stop()
        consumer._pubsub = None
        consumer.subscribed_to.clear()
    app._backend_cache = None
    app._local = threading.local()
