"""What a worker process installs before it runs: consumer bootsteps, stop signals, pool sizing.

The Celery app (:mod:`gemini_tasks.celery_app`) names this module first in its ``include``; it never imports
it. Celery imports the included modules when a worker is built (``WorkController.__init__`` ->
``loader.init_worker()``), before it sends ``worker_init`` and before it builds the worker and consumer
blueprints, so the steps added here to ``app.steps["consumer"]`` are part of every consumer, and the
``worker_init`` handlers run. A client process, which never builds a worker, loads none of this.

* :class:`~gemini_tasks.worker.holding.HoldRefresh`: a live worker keeps the broker messages it holds marked
  as its own (Redis), so only a dead worker's come back;
* :class:`~gemini_tasks.worker.event_batching.BatchedEvents`: task events are published in batches;
* :mod:`~gemini_tasks.worker.stopping`: a stopping worker hands back what has not started its call, prefork
  children included;
* :mod:`~gemini_tasks.worker.capacity`: connection pools sized to the worker's concurrency at start.
"""

from __future__ import annotations

from celery import signals

from gemini_tasks.celery_app import app
from gemini_tasks.worker import capacity as _capacity  # noqa: F401 - its worker_init handlers
from gemini_tasks.worker import stopping
from gemini_tasks.worker.event_batching import BatchedEvents
from gemini_tasks.worker.holding import HoldRefresh

app.steps["consumer"].add(HoldRefresh)
app.steps["consumer"].add(BatchedEvents)
signals.worker_init.connect(stopping.install, weak=False)
signals.worker_shutting_down.connect(stopping.announce_stop, weak=False)
