"""The Celery tasks. Thin on purpose: each adapts one job to :mod:`gemini_tasks.worker.execution`.

Two names per kind, one per queue (``interactive`` for streaming and single TTS, ``batch`` for groups), so
Flower and the routing table tell them apart; the bodies are the same.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any, NoReturn

from celery import Task

from gemini_tasks.celery_app import app
from gemini_tasks.worker import logs
from gemini_tasks.worker import result_store  # noqa: F401 - a worker stores results in one round trip
from gemini_tasks.messages import Job
from gemini_tasks.worker.execution import JobContext, TaskFailed, execute_generate, execute_speech, read_job


def _context(task: Task) -> JobContext:
    def requeue(job: Job, countdown: float) -> NoReturn:
        # a rate-limit wait or a backoff: re-queued with its state. The tasks have no retry limit
        # (max_retries=None below; ``retry(max_retries=None)`` alone means "the task's default, 3"): waits are
        # bounded by max_wait_seconds and errors by the job's own budget, both kept in the job's state.
        # argsrepr again: Celery does not carry it over to the retry message, and Flower would show the raw job
        raise task.retry(args=[job.to_wire()], kwargs={}, countdown=max(0.0, countdown), argsrepr=job.describe())

    request = task.request
    if request.called_directly or not request.id:
        # the task function called as a plain function: no broker to re-queue to, no task id; each call gets
        # its own id, so its done marker is its own
        return JobContext(task_id=f"direct-{uuid.uuid4().hex}", requeue=None, result_ttl=_result_ttl(task.app))
    if request.is_eager:  # task_always_eager / apply(): a retry would run at once, ignoring its countdown
        return JobContext(task_id=request.id, requeue=None, result_ttl=_result_ttl(task.app))
    return JobContext(task_id=request.id, requeue=requeue, result_ttl=_result_ttl(task.app))


logs.quiet_success_line()  # Celery's success line never carries the answer, whoever started this worker

log = logging.getLogger("gemini_tasks")


def _expected(fn: Any) -> Any:
    """A request that ends in a :class:`TaskFailed` is an expected outcome: one WARNING line, no traceback.

    Failures of a call were logged with the call; the others (an exhausted wait, bad input, no usable key) are
    logged here. Celery itself logs it at INFO as "raised expected" (``throws`` below), without a traceback.
    """
    def run(wire: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        try:
            return fn(read_job(wire), ctx)  # the one place a wire dict becomes a Job
        except TaskFailed as exc:
            if not exc.info.get("key_id"):
                log.warning("request task=%s model=%s outcome=%s: %s", ctx.task_id,
                            wire.get("model") if isinstance(wire, dict) else None, exc.info.get("kind"),
                            exc.message)
            raise

    return run


_generate = _expected(execute_generate)
_speech = _expected(execute_speech)


def _result_ttl(app: Any) -> float:
    """How long a done marker lives: as long as results (``result_expires``), and never less than twice the
    visibility timeout, since a message whose acknowledgement was lost comes back after that long."""
    expires = app.conf.result_expires
    seconds = expires.total_seconds() if isinstance(expires, timedelta) else float(expires or 24 * 3600)
    visibility = float((app.conf.broker_transport_options or {}).get("visibility_timeout") or 3600)
    return max(seconds, 2 * visibility)


@app.task(bind=True, name="gemini_tasks.generate_batch", max_retries=None, throws=(TaskFailed,))
def generate_batch(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    return _generate(job, _context(self))


@app.task(bind=True, name="gemini_tasks.generate_interactive", max_retries=None, throws=(TaskFailed,))
def generate_interactive(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    return _generate(job, _context(self))


@app.task(bind=True, name="gemini_tasks.speech_batch", max_retries=None, throws=(TaskFailed,))
def speech_batch(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    return _speech(job, _context(self))


@app.task(bind=True, name="gemini_tasks.speech_interactive", max_retries=None, throws=(TaskFailed,))
def speech_interactive(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    return _speech(job, _context(self))


TASKS = {
    ("generate", "batch"): generate_batch,
    ("generate", "interactive"): generate_interactive,
    ("speech", "batch"): speech_batch,
    ("speech", "interactive"): speech_interactive,
}

# the batch-tier step task (service_tier="batch"): registered with the others
from gemini_tasks.worker import batch_tasks as _batch_tasks  # noqa: E402,F401
