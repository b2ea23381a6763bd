"""The workers' tasks as the client sees them: names on the Celery app, sent by name.

A client never imports worker code (:mod:`gemini_tasks.worker`): it publishes job messages
(:mod:`gemini_tasks.messages`) to a task *name* with ``app.send_task``, Celery's way of calling a task whose
code lives elsewhere. :class:`TaskRef` offers the two calls the client makes on a task (``apply_async`` and
``s``), so code written against a task object works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery, Signature
from celery.result import AsyncResult

from gemini_tasks.celery_app import app as default_app
from gemini_tasks.messages import task_name


@dataclass(frozen=True)
class TaskRef:
    """A worker task by name: ``apply_async`` publishes one message, ``s`` makes a signature for a group."""

    app: Celery
    name: str

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> AsyncResult:
        return self.app.send_task(self.name, args=args, kwargs=kwargs, **options)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        return self.app.signature(self.name, args=args, kwargs=kwargs)


def task_ref(kind: str, queue: str, app: Celery | None = None) -> TaskRef:
    """The task that runs ``kind`` jobs (``generate``, ``speech``) from ``queue`` (``batch``, ``interactive``)."""
    return TaskRef(app or default_app, task_name(kind, queue))
