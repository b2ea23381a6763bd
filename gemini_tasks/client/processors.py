"""``GeminiParallelProcessor`` and ``GeminiStreamingProcessor``: the original API, run by a Celery fleet.

The processors only validate and enqueue; every Gemini call happens on a worker. Results keep the
original's ``(metadata, response, error)`` shape, in input order, with failures in place.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, GroupResult
from google.genai import types

from gemini_tasks.celery_app import app
from gemini_tasks.client.aio import AsyncBatchMixin, AsyncSingleMixin
from gemini_tasks.client.token_stream import TokenStreamMixin
from gemini_tasks.client.sending import TaskRef, task_ref
from gemini_tasks.messages import DEADLINE_GRACE, TaskFailed
from gemini_tasks.client import quiet_exit
from gemini_tasks.client.publish import publish_group
from gemini_tasks.client.jobs import (
    CallPolicy,
    build_generate_job,
    check_manager,
    check_model,
    require_sync_tier,
    validate_batch,
)
from gemini_tasks.keys.manager import AdvancedApiKeyManager
from gemini_tasks.gemini.pricing import UsageSummary, check_table
from gemini_tasks.client import batch_api, collect
from gemini_tasks.client.collect import release_pending
from gemini_tasks.keys.tier_batches import is_tier_batch

log = logging.getLogger("gemini_tasks")
quiet_exit.install()

ResultTuple = tuple[dict[str, Any], Any, str | None]
#: seconds the worker keeps trying after the streaming caller's timeout (the cancel flag stops it first)
STREAM_DEADLINE_GRACE = DEADLINE_GRACE
ProgressCallback = Callable[[int, int], None]
#: how often a waiting batch caller checks that Redis still holds its batch (one EXISTS)
LOST_CHECK_SECONDS = 5.0


class BatchLost(LookupError):
    """Redis no longer holds a batch that is still being waited for (restarted without persistence, flushed)."""


def _lost_batch_check(group_id: str, received: Callable[[], int], total: int) -> Callable[[], None] | None:
    """An ``on_interval`` hook for ``join_native`` that raises :class:`BatchLost` when the saved group is gone.

    Without it a caller waiting with ``timeout=None`` would wait forever for messages and results that a
    Redis restart without persistence has erased. A Redis that is unreachable is not a loss: the result
    consumer reconnects, and the check runs again. The check renews the group record's expiry (one
    ``EXPIRE``), so a batch that runs longer than ``result_expires`` is never mistaken for a lost one.
    """
    backend = app.backend
    client = getattr(backend, "client", None)
    if client is None or not hasattr(backend, "get_key_for_group"):
        return None
    key = backend.get_key_for_group(group_id)
    expires = getattr(backend, "expires", None)
    every = min(LOST_CHECK_SECONDS, expires / 3) if expires else LOST_CHECK_SECONDS
    last = [float("-inf")]  # the first check renews at once: submitting a large batch may take a while

    def check() -> None:
        now = time.monotonic()
        if now - last[0] < every:
            return
        last[0] = now
        try:
            present = client.expire(key, int(expires)) if expires else client.exists(key)
        except Exception:  # noqa: BLE001 - unreachable is not lost; the next check tries again
            return
        if not present:
            raise BatchLost(f"batch {group_id} was lost: Redis no longer holds it (restarted without persistence, "
                            f"flushed, or its results expired) after {received()} of {total} results; resubmit "
                            "the prompts that have no answer")

    return check


def raise_if_timed_out(value: Any, timeout: float | None) -> None:
    """A streaming request no key could be admitted for within its timeout: the worker said so before the
    deadline, naming the cause; the caller gets the builtin ``TimeoutError`` with that cause."""
    if isinstance(value, TaskFailed) and value.info.get("kind") == "timeout":
        raise TimeoutError(f"Processing timed out after {timeout} seconds. {value.message}") from None


def to_result_tuple(value: Any, fallback_metadata: dict[str, Any] | None = None) -> ResultTuple:
    """One task outcome as the original's ``(metadata, response, error)``."""
    if isinstance(value, dict) and value.get("ok"):
        meta = value.get("metadata") or fallback_metadata or {}
        if "response" in value:
            return meta, types.GenerateContentResponse.model_validate(value["response"]), None
        return meta, value.get("text"), None
    if isinstance(value, dict) and value.get("ok") is False and isinstance(value.get("error"), str):
        return (value.get("metadata") or fallback_metadata or {}), None, value["error"]  # a batch-tier error
    if isinstance(value, TaskFailed):
        return (value.info.get("metadata") or fallback_metadata or {}), None, value.message
    if isinstance(value, BaseException):
        # an unexpected failure: its text may quote the task's arguments (Celery's own errors do); keep it short
        text = str(value)
        if len(text) > 300:
            text = text[:300] + "..."
        return fallback_metadata or {}, None, f"Task failed: {type(value).__name__}: {text}"
    return fallback_metadata or {}, None, f"Task failed: unexpected result {value!r:.200}"


def _queue_size(queue: str) -> int:
    """Messages waiting in a broker queue (a Redis broker deletes an empty queue: that is 0)."""
    from amqp.exceptions import ChannelError

    with app.connection_for_write() as conn:
        try:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:
            return 0


@dataclass(frozen=True)
class BatchHandle:
    """A submitted batch: store ``group_id`` and collect later, from this process or another."""

    group_id: str
    size: int

    def progress(self) -> tuple[int, int]:
        """(finished, total): how many requests have an answer, success or error."""
        if is_tier_batch(self.group_id):
            return batch_api.progress(self.group_id)
        if collect.supported(app.backend):  # a few round trips for the whole batch, not one per prompt
            ids = collect.group_task_ids(app.backend, self.group_id)
            if ids is None:
                raise LookupError(f"batch {self.group_id} is unknown or its results expired")
            return collect.count_ready(app.backend, ids), len(ids)
        res = GroupResult.restore(self.group_id, app=app)
        if res is None:
            raise LookupError(f"batch {self.group_id} is unknown or its results expired")
        return sum(1 for r in res.results if r.ready()), len(res.results)


class _Processor:
    queue = "batch"

    def __init__(self, key_manager: AdvancedApiKeyManager, model_name: str, worker_cooldown_seconds: float = 20,
                 api_call_interval: float = 2.0, max_workers: int = 4, return_response: bool = False,
                 *, api_call_retries: int = 3, max_wait_seconds: float = 3600.0, spacing_scope: str = "fleet",
                 strip: bool = True, service_tier: str = "standard", flex_fallback_after: float | None = None,
                 flex_retry_backoff: float = 2.0, prices: dict[str, dict[str, float]] | None = None,
                 batch_options: dict[str, Any] | None = None) -> None:
        self.key_manager = check_manager(key_manager)
        self.model_name = check_model(model_name)
        self.policy = CallPolicy(
            worker_cooldown_seconds=worker_cooldown_seconds, api_call_interval=api_call_interval,
            max_workers=max_workers, api_call_retries=api_call_retries, max_wait_seconds=max_wait_seconds,
            spacing_scope=spacing_scope, return_response=return_response, strip=strip, service_tier=service_tier,
            flex_fallback_after=flex_fallback_after, flex_retry_backoff=flex_retry_backoff,
        )
        self.prices = check_table(prices) if prices is not None else None
        #: service_tier="batch": poll_interval, max_requests_per_job, inline_limit, max_resubmits (batch_api)
        self.batch_options = batch_api.check_options(batch_options)
        #: tokens by tier and kind and the estimated cost of the last batch collected (see gemini/pricing.py)
        self.last_summary: UsageSummary | None = None
        self.max_workers = max_workers

    def _task(self) -> TaskRef:
        """This processor's task, by name (:mod:`gemini_tasks.client.sending`: no worker code is imported)."""
        return task_ref("generate", self.queue)


class GeminiParallelProcessor(AsyncBatchMixin, _Processor):
    """Batch processing: ``process_prompts`` submits a Celery group and returns results in input order."""

    queue = "batch"

    def submit(self, prompts_data: Iterable[dict[str, Any]]) -> BatchHandle:
        """Validate every prompt (raising before anything is enqueued), enqueue them, return a handle."""
        prompts = validate_batch(prompts_data)
        jobs = [build_generate_job(p, model=self.model_name, manager=self.key_manager, policy=self.policy,
                                   where=f"prompts_data[{i}]") for i, p in enumerate(prompts)]
        if any(job.tier == "batch" for job in jobs):  # the Gemini Batch API (client/batch_api.py)
            gid = batch_api.submit(self, jobs, self.batch_options)
            log.info("batch %s: %d prompt(s) submitted (batch tier)", gid, len(jobs))
            return BatchHandle(group_id=gid, size=len(jobs))
        result = publish_group(self._task(), [job.to_wire() for job in jobs], [job.describe() for job in jobs],
                               queue=self.queue)
        log.info("batch %s: %d prompt(s) submitted", result.id, len(jobs))
        return BatchHandle(group_id=result.id, size=len(jobs))

    def collect(self, group_id: str | BatchHandle, *, timeout: float | None = None,
                progress: bool | ProgressCallback | None = None) -> list[ResultTuple]:
        """Wait for a submitted batch and return its ``(metadata, response, error)`` tuples in input order."""
        gid = group_id.group_id if isinstance(group_id, BatchHandle) else group_id
        if is_tier_batch(gid):
            return self._collect_tiered(gid, timeout=timeout, progress=progress)
        return self._wait(gid, timeout=timeout, progress=progress)

    def process_prompts(self, prompts_data: Iterable[dict[str, Any]], *, timeout: float | None = None,
                        progress: bool | ProgressCallback | None = None) -> list[ResultTuple]:
        """Submit and wait: one result per prompt, in input order, failures in place."""
        prompts = validate_batch(prompts_data)
        if not prompts:
            return []
        handle = self.submit(prompts)
        if is_tier_batch(handle.group_id):
            return self._collect_tiered(handle.group_id, timeout=timeout, progress=progress)
        metas = [dict(p.get("metadata") or {}) for p in prompts]
        return self._wait(handle.group_id, timeout=timeout, progress=progress, metadata=metas)

    def cancel(self, group_id: str | BatchHandle) -> None:
        """Give up on a submitted batch: batch-tier jobs are cancelled by the fleet (their prompts end with a
        "Cancelled" error); other prompts not yet answered are revoked."""
        gid = group_id.group_id if isinstance(group_id, BatchHandle) else group_id
        if is_tier_batch(gid):
            batch_api.cancel(gid)
            return
        res = GroupResult.restore(gid, app=app)
        if res is None:
            raise LookupError(f"batch {gid} is unknown or its results expired")
        res.revoke()

    def _collect_tiered(self, gid: str, *, timeout: float | None,
                        progress: bool | ProgressCallback | None) -> list[ResultTuple]:
        summary = self.last_summary = UsageSummary(getattr(self, "model_name", ""), getattr(self, "prices", None))
        bars: list[_Progress] = []

        def on_progress(done: int, total: int) -> None:
            if not bars:
                bars.append(_Progress(progress, total))
            bars[0].update(done, total, summary)

        try:
            rows = batch_api.collect(gid, timeout=timeout, on_progress=on_progress, summary=summary)
        finally:
            for bar in bars:
                bar.close()
        log.info("batch %s: %s", gid, summary.line())
        return rows

    def _wait(self, gid: str, *, timeout: float | None, progress: bool | ProgressCallback | None,
              metadata: list[dict[str, Any]] | None = None) -> list[ResultTuple]:
        group = _WaitedGroup(gid)
        ids = group.ids
        values: dict[str, Any] = {}
        total = len(ids)
        bar = _Progress(progress, total)
        summary = self.last_summary = UsageSummary(getattr(self, "model_name", ""), getattr(self, "prices", None))

        def on_result(task_id: str, value: Any) -> None:
            values[task_id] = value
            if isinstance(value, dict) and value.get("ok"):
                summary.add(value.get("usage"), value.get("tier") or "standard", shed=int(value.get("shed") or 0),
                            fallback=bool(value.get("fallback")), model=value.get("model"))
            bar.update(len(values), total, summary)

        try:
            group.wait(on_result, timeout=timeout, on_interval=_lost_batch_check(gid, lambda: len(values), total))
        except CeleryTimeoutError:
            raise TimeoutError(f"batch {gid}: {len(values)} of {total} results after {timeout} seconds; "
                               f"collect the rest later with collect({gid!r})") from None
        finally:
            bar.close()
        log.info("batch %s: %s", gid, summary.line())
        return [to_result_tuple(values.get(tid), (metadata or [{}] * total)[i]) for i, tid in enumerate(ids)]


class _WaitedGroup:
    """A saved group's task ids, and waiting for their results (:func:`collect.wait_all`)."""

    def __init__(self, gid: str) -> None:
        self.gid = gid
        if collect.supported(app.backend):
            ids = collect.group_task_ids(app.backend, gid)
        else:
            native = GroupResult.restore(gid, app=app)
            ids = None if native is None else [r.id for r in native.results]
        if ids is None:
            raise LookupError(f"batch {gid} is unknown or its results expired (result_expires)")
        self.ids: list[str] = ids

    def wait(self, on_result: Callable[[str, Any], None], *, timeout: float | None,
             on_interval: Callable[[], None] | None) -> None:
        collect.wait_all(app, self.ids, on_result, timeout=timeout, on_interval=on_interval)


class _Progress:
    """Progress while a batch is collected: a callback, a rich progress bar on a terminal, or nothing."""

    def __init__(self, progress: bool | ProgressCallback | None, total: int) -> None:
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is None:
            progress = sys.stderr.isatty()
        if self.callback is None and progress is True and total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn())
            self.bar.start()
            self.task = self.bar.add_task("gemini", total=total)

    def update(self, done: int, total: int, summary: UsageSummary | None = None) -> None:
        if self.callback is not None:
            self.callback(done, total)
        elif self.bar is not None:
            desc = f"gemini ~${summary.cost_usd:.4f}" if summary is not None else "gemini"
            self.bar.update(self.task, completed=done, description=desc)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class GeminiStreamingProcessor(TokenStreamMixin, AsyncSingleMixin, _Processor):
    """One request at a time, answered as soon as a worker has it: ``apply_async(...).get(timeout)``.

    Requests go to the ``interactive`` queue, which batch floods never fill. A caller that times out
    cancels its request: the key manager refuses to admit it afterwards, so no ghost call spends quota.
    """

    queue = "interactive"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("strip", False)  # the original's streaming mode returned response.text unstripped
        if str(kwargs.get("service_tier", "standard")).strip().lower() == "batch":
            raise ValueError("service_tier 'batch' is asynchronous (the Gemini Batch API): use GeminiParallelProcessor; "
                             "the streaming processor takes 'standard', 'flex' or 'priority'")
        super().__init__(*args, **kwargs)
        self._running = False
        self._lock = threading.Lock()
        self._in_flight: dict[str, AsyncResult] = {}
        self._workers_cache: tuple[float, list[str]] | None = None

    def start(self) -> None:
        with self._lock:
            if self._running:
                log.warning("streaming processor already running")
                return
            self._running = True
        if not self._live_workers():
            log.warning("no live worker consumes the %r queue yet; requests wait until one starts", self.queue)

    def stop(self) -> None:
        """Stop accepting requests and cancel the ones still in flight (their callers get an error)."""
        with self._lock:
            self._running = False
            pending = list(self._in_flight.items())
        for task_id, res in pending:
            self.key_manager.pool.cancel(task_id)
            res.revoke()

    def is_running(self) -> bool:
        return self._running

    def process_single(self, prompt_data: dict[str, Any], timeout: float | None = 300.0) -> ResultTuple:
        """Process one prompt on the fleet. Raises RuntimeError before start(), TimeoutError on timeout."""
        if not self._running:
            raise RuntimeError("Workers are not running. Call start() first.")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
        # the worker gives up a little after the caller; the caller's cancel flag (set when it times out)
        # is what stops a late admission, so the caller always sees TimeoutError rather than a race
        deadline = None if timeout is None else time.time() + float(timeout) + STREAM_DEADLINE_GRACE
        job = require_sync_tier(build_generate_job(prompt_data, model=self.model_name, manager=self.key_manager,
                                                   policy=self.policy, deadline=deadline))
        expires = None if timeout is None else float(timeout) + STREAM_DEADLINE_GRACE
        res = self._task().apply_async(args=[job.to_wire()], queue=self.queue, expires=expires,
                                       argsrepr=job.describe())
        metadata = dict(prompt_data.get("metadata") or {})
        metadata.setdefault("task_id", res.id)
        with self._lock:
            self._in_flight[res.id] = res
        try:
            value = res.get(timeout=timeout, propagate=False, interval=0.05)
        except CeleryTimeoutError:
            self.key_manager.pool.cancel(res.id)
            res.revoke()
            release_pending([res])
            raise TimeoutError(f"Processing timed out after {timeout} seconds") from None
        finally:
            with self._lock:
                self._in_flight.pop(res.id, None)
        res.forget()
        raise_if_timed_out(value, timeout)
        meta, response, error = to_result_tuple(value, metadata)
        if "task_id" not in meta:
            meta = {**meta, "task_id": res.id}
        if self.policy.return_response and response is not None:
            from gemini_tasks.gemini.structured import attach_parsed

            response = attach_parsed(response, prompt_data.get("generation_config"))
        return meta, response, error

    def get_queue_size(self) -> int:
        """Requests waiting in the interactive queue (all callers, fleet-wide)."""
        return _queue_size(self.queue)

    def _live_workers(self, max_age: float = 2.0) -> list[str]:
        """Worker nodes consuming this processor's queue (a broadcast; cached briefly, as status pages poll)."""
        if self._workers_cache and time.monotonic() - self._workers_cache[0] < max_age:
            return self._workers_cache[1]
        try:
            queues = app.control.inspect(timeout=0.5).active_queues() or {}
        except Exception:  # noqa: BLE001 - status must not fail because the broker hiccups
            return []
        nodes = sorted(node for node, qs in queues.items() if any(q.get("name") == self.queue for q in qs))
        self._workers_cache = (time.monotonic(), nodes)
        return nodes

    def get_worker_status(self) -> dict[str, Any]:
        """The original's fields, reporting the real fleet: live workers, queue length, key status."""
        workers = self._live_workers()
        return {
            "workers_running": self._running,
            "queue_size": self.get_queue_size(),
            "max_workers": self.max_workers,
            "active_workers": len(workers),
            "worker_nodes": workers,
            "in_flight": len(self._in_flight),
            "key_status": self.key_manager.get_keys_status_summary(),
        }
