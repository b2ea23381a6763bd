"""A worker's task events, published in batches at most every :data:`FLUSH_SECONDS` instead of one by one.

Celery buffers a worker's task events (received, started, succeeded, ...) and publishes the buffer as one
``task.multi`` message, which Flower and every event receiver split back into events. But it flushes on the
event loop's next turn after each event (``Consumer.on_send_event_buffered``), so under load almost every
event still went out alone: one serialisation and one PUBLISH each, three per task, about an eighth of a
worker's CPU per request (``bench/profile_cpu.py``).

This consumer step makes the flush wait: the first event buffered after a flush arms one timer on the event
loop, and the buffer goes out :data:`FLUSH_SECONDS` later (or as soon as Celery's own limit of 24 buffered
events is reached, as before). Flower sees every event, at most that much later.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import bootsteps

#: Longest an event waits in the worker's buffer before it is published.
FLUSH_SECONDS = 0.1


class BatchedEvents(bootsteps.StartStopStep):
    """Replace the event dispatcher's flush-on-next-loop-turn with a flush timer (event-loop workers only)."""

    requires = ("celery.worker.consumer.events:Events",)

    def start(self, c: Any) -> None:
        dispatcher = getattr(c, "event_dispatcher", None)
        hub = getattr(c, "hub", None)
        if dispatcher is None or hub is None or not dispatcher.buffer_group:
            return
        armed = threading.Event()

        def flush() -> None:
            armed.clear()
            c._flush_events()

        def arm() -> None:  # on the event loop's thread, where its timer may be used
            hub.call_later(FLUSH_SECONDS, flush)

        def on_buffered() -> None:  # any thread: the loop is woken once per window, not once per event
            if not armed.is_set():
                armed.set()
                hub.call_soon(arm)

        dispatcher.on_send_buffered = on_buffered
