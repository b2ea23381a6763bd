"""The client side of ``service_tier="batch"``: prompts go through the Gemini Batch API instead of one call each.

:func:`submit` splits the batch-tier prompts into parts, one per project of the key pool (a batch job belongs to
the project of the key that creates it; each project has its own batch limits), each part at most
``max_requests_per_job`` prompts, saves the group in Redis and enqueues one self-rescheduling step task per
part (:mod:`gemini_tasks.worker.batch_jobs`): the fleet creates, polls and reads the jobs, the client only
waits for answers. Prompts of other tiers in the same submission go as an ordinary Celery group under the
same group id. :func:`collect` waits (with progress) and returns ``(metadata, response, error)`` in input
order from any process; :func:`cancel` stops the group (the fleet cancels its remote jobs).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from celery.result import GroupResult

from gemini_tasks.celery_app import app
from gemini_tasks.gemini.pricing import UsageSummary
from gemini_tasks.gemini.tiers import batch_enqueued_tokens
from gemini_tasks.gemini.tokens import estimate_job_tokens
from gemini_tasks.keys.redis_conn import get_redis
from gemini_tasks.keys.tier_batches import GROUP_PREFIX, TierBatchRecord
from gemini_tasks.messages import BATCH_TIER_STEP, Job
from gemini_tasks.settings import get_settings

#: defaults of ``batch_options``: poll every 30 s (jobs take minutes to hours), parts of at most 10,000
#: prompts, inline below 19 MB of request JSON (the API's inline limit is 20 MB), 2 re-submits of a job that
#: ends FAILED/EXPIRED/CANCELLED, and ``enqueued_tokens``: the project's enqueued-token budget for the model
#: (None: Google's Tier 1 figure for it, :func:`gemini_tasks.gemini.tiers.batch_enqueued_tokens`)
DEFAULT_OPTIONS: dict[str, Any] = {"poll_interval": 30.0, "max_requests_per_job": 10_000,
                                   "inline_limit": 19_000_000, "max_resubmits": 2, "enqueued_tokens": None}


def check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(DEFAULT_OPTIONS)
    for name, value in (options or {}).items():
        if name not in DEFAULT_OPTIONS:
            raise ValueError(f"batch_options: unknown option {name!r}; known: {', '.join(DEFAULT_OPTIONS)}")
        if name == "enqueued_tokens" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"batch_options[{name!r}] must be a number >= 0, got {value!r}")
        out[name] = value
    if out["max_requests_per_job"] < 1:
        raise ValueError("batch_options['max_requests_per_job'] must be >= 1")
    if out["enqueued_tokens"] is not None and out["enqueued_tokens"] < 1:
        raise ValueError("batch_options['enqueued_tokens'] must be >= 1 (or None for the model's default)")
    return out


def _record(group_id: str) -> TierBatchRecord:
    return TierBatchRecord(get_redis(get_settings().keys_redis_url), group_id)


def plan_parts(indices: list[int], projects: dict[str, list[str]], max_per_job: int,
               tokens: dict[int, int] | None = None, max_tokens: int | None = None) -> list[dict[str, Any]]:
    """Contiguous slices of ``indices``, one per project (in project order), each cut to ``max_per_job``
    prompts and, with ``tokens`` (estimated input tokens per index) and ``max_tokens``, to at most that many
    estimated tokens (a prompt larger than that alone is a part of its own, refused by the fleet)."""
    names = sorted(projects)
    parts: list[dict[str, Any]] = []
    if not indices or not names:
        return parts
    per_project = -(-len(indices) // len(names))
    for k, project in enumerate(names):
        chunk = indices[k * per_project:(k + 1) * per_project]
        current: list[int] = []
        used = 0
        for idx in chunk:
            cost = (tokens or {}).get(idx, 0)
            if current and (len(current) >= max_per_job or (max_tokens is not None and used + cost > max_tokens)):
                parts.append(_part(project, projects[project], current, used))
                current, used = [], 0
            current.append(idx)
            used += cost
        if current:
            parts.append(_part(project, projects[project], current, used))
    return parts


def _step(group_id: str, part: int) -> None:
    """Publish a step of one part (the fleet's ``gemini_tasks.batch_tier_step``, sent by name)."""
    app.send_task(BATCH_TIER_STEP, args=[group_id, part], queue="batch")


def _part(project: str, keys: list[str], indices: list[int], tokens: int) -> dict[str, Any]:
    return {"project": project, "keys": keys, "indices": indices, "attempts": 0, "tokens": tokens}


def submit(processor: Any, jobs: list[Job], options: dict[str, Any], *, model: str | None = None) -> str:
    """Save and start a submission whose jobs include batch-tier ones; returns its group id (``tb-...``).

    ``processor`` gives the key manager (and, for other-tier jobs, the task and queue); ``model`` defaults
    to its ``model_name``. Speech jobs (``"kind": "speech"``, the TTS processor's) go through the same path."""
    manager = processor.key_manager
    group_id = f"{GROUP_PREFIX}{uuid.uuid4().hex}"
    batch_idx = [i for i, j in enumerate(jobs) if j.tier == "batch"]
    sync_idx = [i for i, j in enumerate(jobs) if j.tier != "batch"]
    wire = [j.to_wire() for j in jobs]  # what is stored and sent
    projects: dict[str, list[str]] = {}
    for key_id in manager.key_ids:
        projects.setdefault(manager.projects.get(key_id) or key_id, []).append(key_id)
    model = model or processor.model_name
    budget = int(options.get("enqueued_tokens") or batch_enqueued_tokens(model))
    options = {**options, "enqueued_tokens": budget}
    tokens = {i: estimate_job_tokens(wire[i]) for i in batch_idx}
    parts = plan_parts(batch_idx, projects, int(options["max_requests_per_job"]), tokens, budget)
    sync_group = None
    sync_ids: list[str] = []
    if sync_idx:
        from gemini_tasks.client.publish import publish_group

        res = publish_group(processor._task(), [wire[i] for i in sync_idx],
                            [jobs[i].describe() for i in sync_idx], queue=processor.queue)
        sync_group, sync_ids = res.id, [r.id for r in res.results]
    meta = {"model": model, "pool": manager.spec(), "total": len(jobs),
            "jobs": {str(i): wire[i] for i in batch_idx}, "batch_indices": batch_idx, "sync_indices": sync_idx,
            "sync_group": sync_group, "sync_task_ids": sync_ids, "created": time.time(),
            "metadata": [j.metadata for j in jobs], **options}
    record = _record(group_id)
    record.create(meta, parts)
    for n in range(len(parts)):
        _step(group_id, n)
    return group_id


def progress(group_id: str) -> tuple[int, int]:
    """(answered, total) of the batch-tier prompts of a submission."""
    record = _record(group_id)
    meta = record.meta()
    if meta is None:
        raise LookupError(f"batch {group_id} is unknown or its results expired")
    return record.result_count(), len(meta["batch_indices"])


def restore_sync(group_id: str) -> GroupResult | None:
    return GroupResult.restore(group_id, app=app)


def wait_celery_group(group_id: str, timeout: float | None) -> dict[str, Any]:
    """Task id -> outcome of every task of a saved Celery group (the other-tier prompts of a submission)."""
    values: dict[str, Any] = {}
    res = restore_sync(group_id)
    if res is not None:
        res.join_native(timeout=timeout, propagate=False, interval=0.2,
                        callback=lambda tid, value: values.__setitem__(tid, value))
    return values


def collect_raw(group_id: str, *, timeout: float | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                wait_sync: Callable[..., dict[str, Any]] | None = wait_celery_group
                ) -> tuple[dict[str, Any], list[Any]]:
    """Wait for every answer of a submission: (meta, one raw result per prompt in input order).

    A raw result is what the generate task returns (``{"ok": True, "text", "usage", "tier", ...}``), a
    batch-tier error ``{"ok": False, "error": "..."}``, or a synchronous prompt's task outcome.
    """
    record = _record(group_id)
    meta = record.meta()
    if meta is None:
        raise LookupError(f"batch {group_id} is unknown or its results expired (24 h)")
    batch_idx: list[int] = meta["batch_indices"]
    total = int(meta["total"])
    deadline = None if timeout is None else time.monotonic() + timeout
    poll = min(0.5, max(0.05, float(meta.get("poll_interval", 30.0)) / 4))
    last = -1
    while True:
        done = record.result_count()
        if done != last:
            last = done
            if on_progress is not None:
                on_progress(done, total)
        if done >= len(batch_idx):
            break
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"batch {group_id}: {done} of {len(batch_idx)} batch-tier answers after {timeout} "
                               f"seconds; collect the rest later with collect({group_id!r}), or cancel({group_id!r})")
        if record.meta() is None:
            raise LookupError(f"batch {group_id} was lost: Redis no longer holds it after {done} answers")
        time.sleep(poll)
    stored = record.results()
    sync_values: dict[str, Any] = {}
    if meta.get("sync_group") and wait_sync is not None:
        left = None if deadline is None else max(0.1, deadline - time.monotonic())
        sync_values = wait_sync(meta["sync_group"], left)
    values: list[Any] = [None] * total
    for i in batch_idx:
        values[i] = stored.get(i) or {"ok": False, "error": "Persistent API error: no answer stored"}
    for i, tid in zip(meta["sync_indices"], meta.get("sync_task_ids") or []):
        values[i] = sync_values.get(tid)
    if on_progress is not None:
        on_progress(total, total)
    return meta, values


def collect(group_id: str, *, timeout: float | None = None, on_progress: Callable[[int, int], None] | None = None,
            summary: UsageSummary | None = None,
            wait_sync: Callable[..., dict[str, Any]] | None = wait_celery_group
            ) -> list[tuple[dict[str, Any], Any, str | None]]:
    """Wait for every answer of a submission; ``(metadata, response, error)`` in input order."""
    from gemini_tasks.client.processors import to_result_tuple

    meta, values = collect_raw(group_id, timeout=timeout, on_progress=on_progress, wait_sync=wait_sync)
    metas = meta.get("metadata") or [{}] * len(values)
    out = []
    for i, value in enumerate(values):
        if summary is not None and isinstance(value, dict) and value.get("ok"):
            summary.add(value.get("usage"), value.get("tier") or "standard", model=value.get("model"),
                        shed=int(value.get("shed") or 0), fallback=bool(value.get("fallback")))
        out.append(to_result_tuple(value, metas[i]))
    return out


def cancel(group_id: str) -> None:
    """Stop a submission: the fleet cancels its Batch API jobs at their next step (made at once here);
    prompts without an answer end with a "Cancelled" error. Other-tier prompts are cancelled as well."""
    record = _record(group_id)
    meta = record.meta()
    if meta is None:
        raise LookupError(f"batch {group_id} is unknown or its results expired")
    record.cancel()
    from gemini_tasks.keys.pool import KeyPool

    pool = KeyPool(get_redis(get_settings().keys_redis_url), meta["pool"]["pool"])
    for tid in meta.get("sync_task_ids") or []:
        pool.cancel(tid)
    if meta.get("sync_group"):
        res = restore_sync(meta["sync_group"])
        if res is not None:
            res.revoke()
    for n in range(int(meta["parts"])):
        _step(group_id, n)
