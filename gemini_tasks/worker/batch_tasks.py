"""The Celery task that drives one part of a batch-tier group (:mod:`gemini_tasks.worker.batch_jobs`).

It re-queues itself with a countdown (``task.retry``, never counted against retries) until the part's Gemini
Batch API job has ended and its answers are stored, so polling needs no beat process and survives restarts:
the next step is a message in the broker.
"""

from __future__ import annotations

from typing import Any, NoReturn

from celery import Task

from gemini_tasks.celery_app import app
from gemini_tasks.messages import BATCH_TIER_STEP
from gemini_tasks.worker.batch_jobs import step


@app.task(bind=True, name=BATCH_TIER_STEP, max_retries=None)
def batch_tier_step(self: Task, group_id: str, part: int) -> dict[str, Any]:
    def requeue(countdown: float) -> NoReturn:
        from gemini_tasks.celeryconfig import MAX_COUNTDOWN

        raise self.retry(args=[group_id, part], kwargs={}, countdown=max(0.0, min(countdown, MAX_COUNTDOWN)),
                         max_retries=None)

    return step(group_id, int(part), requeue)
