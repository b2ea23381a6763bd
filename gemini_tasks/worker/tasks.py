"""The Celery tasks. Thin on purpose: each adapts one job to :mod:`gemini_tasks.worker.execution`.

Two names per kind, one per queue (``interactive`` for streaming and single TTS, ``batch`` for groups), so
Flower and the routing table tell them apart; the bodies are the same.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NoReturn

from celery import Task

from gemini_tasks.celery_app import app
from gemini_tasks.worker.execution import JobContext, execute_generate, execute_speech
from gemini_tasks.client.jobs import describe_job


def _context(task: Task) -> JobContext:
    def requeue(job: dict[str, Any], countdown: float) -> NoReturn:
        # a rate-limit wait or a backoff: re-queued with its state, never counted against max_retries
        # argsrepr again: Celery does not carry it over to the retry message, and Flower would show the raw job
        raise task.retry(args=[job], kwargs={}, countdown=max(0.0, countdown), max_retries=None,
                         argsrepr=describe_job(job))

    return JobContext(task_id=task.request.id or "eager", requeue=requeue, result_ttl=_result_ttl(task.app))


def _result_ttl(app: Any) -> float:
    """How long a done marker lives: as long as results (``result_expires``), and never less than twice the
    visibility timeout, since a message whose acknowledgement was lost comes back after that long."""
    expires = app.conf.result_expires
    seconds = expires.total_seconds() if isinstance(expires, timedelta) else float(expires or 24 * 3600)
    visibility = float((app.conf.broker_transport_options or {}).get("visibility_timeout") or 3600)
    return max(seconds, 2 * visibility)


@app.task(bind=True, name="gemini_tasks.generate_batch")
def generate_batch(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    return execute_generate(job, _context(self))


@app.task(bind=True, name="gemini_tasks.generate_interactive")
def generate_interactive(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    return execute_generate(job, _context(self))


@app.task(bind=True, name="gemini_tasks.speech_batch")
def speech_batch(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    return execute_speech(job, _context(self))


@app.task(bind=True, name="gemini_tasks.speech_interactive")
def speech_interactive(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    return execute_speech(job, _context(self))


TASKS = {
    ("generate", "batch"): generate_batch,
    ("generate", "interactive"): generate_interactive,
    ("speech", "batch"): speech_batch,
    ("speech", "interactive"): speech_interactive,
}
