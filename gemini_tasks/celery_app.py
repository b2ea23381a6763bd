"""The Celery application. ``celery -A gemini_tasks worker`` finds it as ``gemini_tasks.app``."""

from __future__ import annotations

import importlib
import inspect

from celery import Celery, signals

from gemini_tasks.transport.brokers import stamp_sent_at
from gemini_tasks.transport.kombu_redis import install as _share_redis_clients
from gemini_tasks.worker import stopping
from gemini_tasks.worker.event_batching import BatchedEvents
from gemini_tasks.worker.holding import HoldRefresh

_share_redis_clients()

app = Celery("gemini_tasks", include=["gemini_tasks.worker.tasks", "gemini_tasks.worker.token_stream",
                                       "gemini_tasks.worker.images", "gemini_tasks.worker.key_probe"])
app.config_from_object("gemini_tasks.celeryconfig")
app.steps["consumer"].add(HoldRefresh)
app.steps["consumer"].add(BatchedEvents)
# every message carries its enqueue time, for the oldest-waiting-message metric (ops/queue_metrics.py)
signals.before_task_publish.connect(stamp_sent_at, weak=False)
# a stopping worker hands back what has not started its call, prefork children included (worker/stopping.py)
signals.worker_init.connect(stopping.install, weak=False)
signals.worker_shutting_down.connect(stopping.announce_stop, weak=False)


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

# sizes the worker's connection pools to its concurrency (and caps one the machine cannot serve) at start
from gemini_tasks.worker import capacity as _capacity  # noqa: E402, F401
