"""The Celery application. ``celery -A gemini_tasks worker`` finds it as ``gemini_tasks.app``.

It imports no worker code: a worker loads its own (bootsteps, signal handlers, tasks) through ``include``,
which Celery imports when it builds a worker, before the consumer (:mod:`gemini_tasks.worker.startup`).
"""

from __future__ import annotations

import importlib
import inspect

from celery import Celery, signals

from gemini_tasks.transport.brokers import stamp_sent_at
from gemini_tasks.transport.kombu_redis import install as _share_redis_clients

_share_redis_clients()

#: what a worker imports when it is built, in order: its start-up (consumer bootsteps, stop and pool-sizing
#: signal handlers) first, then the tasks. Names only: this module imports none of them.
WORKER_MODULES = ["gemini_tasks.worker.startup", "gemini_tasks.worker.tasks", "gemini_tasks.worker.token_stream",
                  "gemini_tasks.worker.images", "gemini_tasks.worker.key_probe"]

app = Celery("gemini_tasks", include=WORKER_MODULES)
app.config_from_object("gemini_tasks.celeryconfig")
# every message carries its enqueue time, for the oldest-waiting-message metric (ops/queue_metrics.py)
signals.before_task_publish.connect(stamp_sent_at, weak=False)


def _load_operator_overrides() -> None:
    """Apply a top-level ``celeryconfig`` module (or ``GEMINI_TASKS_CELERY_CONFIG``) when importable."""
    from gemini_tasks.settings import get_settings

    name = get_settings().celery_config_module
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return
    # Celery settings are the module's lowercase, public, non-callable names (as config_from_object reads them)
    app.conf.update({k: v for k, v in vars(module).items()
                     if k.islower() and not k.startswith("_") and not callable(v) and not inspect.ismodule(v)})


_load_operator_overrides()
