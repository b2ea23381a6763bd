"""The asyncio API: ``await processor.aprocess_single(...)``, ``aprocess_prompts(...)``, ``agenerate_speech(...)``.

Same jobs, queues, admission and results as the blocking methods; only the waiting differs. Results are awaited
through one ``redis.asyncio`` pub/sub connection per event loop (:mod:`gemini_tasks.client.result_waiter`),
publishing runs on a small thread pool, so a web server's event loop keeps answering while hundreds of requests
wait on Gemini. Errors are the blocking methods' errors: ``RuntimeError`` before ``start()``, ``ValueError``
for bad input (raised before anything is enqueued), the builtin ``TimeoutError``; a caller that is cancelled
(a client that disconnects from an ASGI server) cancels its request, so it never spends quota later.

These are mixins so the processors keep one definition each; they import the processors lazily.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from gemini_tasks.client.result_waiter import (
    await_results,
    run_blocking,
    run_in_background,
    waiter,
)

if TYPE_CHECKING:
    from gemini_tasks.messages import SpeechSpec

ResultTuple = tuple[dict[str, Any], Any, str | None]


def _check_timeout(timeout: Any) -> float | None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    return None if timeout is None else float(timeout)


class _Pending:
    """A request awaited on the event loop: what ``stop()`` needs to cancel it. (Not a Celery ``AsyncResult``:
    those subscribe through the blocking result consumer, and their finalizers touch Redis at GC time.)"""

    def __init__(self, task_id: str) -> None:
        self.id = task_id

    def revoke(self) -> None:
        from gemini_tasks.celery_app import app

        app.control.revoke(self.id)


def _value_of(meta: Mapping[str, Any] | None) -> Any:
    return None if meta is None else meta.get("result")


class AsyncSingleMixin:
    """``aprocess_single`` for :class:`~gemini_tasks.client.processors.GeminiStreamingProcessor`."""

    async def aprocess_single(self, prompt_data: dict[str, Any], timeout: float | None = 300.0) -> ResultTuple:
        """Process one prompt on the fleet without blocking the event loop.

        Raises ``RuntimeError`` before ``start()``, ``TimeoutError`` after ``timeout`` seconds (the request is
        cancelled), ``ValueError`` for bad input. Cancelling the awaiting task cancels the request.
        """
        from gemini_tasks.client.jobs import build_generate_job, require_sync_tier
        from gemini_tasks.client.processors import STREAM_DEADLINE_GRACE, raise_if_timed_out, to_result_tuple

        self_: Any = self
        if not self_._running:
            raise RuntimeError("Workers are not running. Call start() first.")
        timeout = _check_timeout(timeout)
        deadline = None if timeout is None else time.time() + timeout + STREAM_DEADLINE_GRACE
        job = require_sync_tier(build_generate_job(prompt_data, model=self_.model_name, manager=self_.key_manager,
                                                   policy=self_.policy, deadline=deadline))
        wire, description = job.to_wire(), job.describe()
        expires = None if timeout is None else timeout + STREAM_DEADLINE_GRACE
        task_id = uuid.uuid4().hex
        task = self_._task()

        def publish() -> None:
            task.apply_async(args=[wire], task_id=task_id, queue=self_.queue, expires=expires,
                             argsrepr=description)

        metadata = dict(prompt_data.get("metadata") or {})
        metadata.setdefault("task_id", task_id)
        self_._in_flight[task_id] = _Pending(task_id)  # stop() cancels it like a blocking call
        try:
            (meta,) = await await_results([task_id], publish, timeout)
        except asyncio.CancelledError:
            run_in_background(self_._abandon, task_id)
            raise
        finally:
            self_._in_flight.pop(task_id, None)
        if meta is None:
            run_in_background(self_._abandon, task_id)
            raise TimeoutError(f"Processing timed out after {timeout} seconds")
        await waiter().forget([task_id])
        raise_if_timed_out(_value_of(meta), timeout)
        meta_out, response, error = to_result_tuple(_value_of(meta), metadata)
        if "task_id" not in meta_out:
            meta_out = {**meta_out, "task_id": task_id}
        return _with_parsed((meta_out, response, error), prompt_data, self_.policy.return_response)

    def _abandon(self, task_id: str) -> None:
        """The caller gave up: refuse any later admission, and revoke the message."""
        self_: Any = self
        self_.key_manager.pool.cancel(task_id)
        _Pending(task_id).revoke()


def _with_parsed(result: ResultTuple, prompt_data: Any, return_response: bool) -> ResultTuple:
    if not return_response or result[1] is None:
        return result
    from gemini_tasks.gemini.structured import attach_parsed

    return result[0], attach_parsed(result[1], (prompt_data or {}).get("generation_config")), result[2]


class AsyncBatchMixin:
    """``aprocess_prompts`` for :class:`~gemini_tasks.client.processors.GeminiParallelProcessor`."""

    async def aprocess_prompts(self, prompts_data: Iterable[dict[str, Any]], *, timeout: float | None = None,
                               progress: Callable[[int, int], None] | None = None) -> list[ResultTuple]:
        """Submit a batch and await every result (input order, failures in place) without blocking the loop.

        Raises ``ValueError`` for a bad prompt (naming its index) before anything is enqueued, ``TimeoutError``
        after ``timeout`` seconds (the batch keeps running: collect it later with ``collect(group_id)``).
        Cancelling the awaiting task revokes the batch's requests that have not started.
        """
        from gemini_tasks.client.jobs import build_generate_job, validate_batch
        from gemini_tasks.client.publish import publish_group
        from gemini_tasks.client.processors import to_result_tuple

        self_: Any = self
        timeout = _check_timeout(timeout)
        prompts = validate_batch(prompts_data)
        if not prompts:
            return []
        jobs = [build_generate_job(p, model=self_.model_name, manager=self_.key_manager, policy=self_.policy,
                                   where=f"prompts_data[{i}]") for i, p in enumerate(prompts)]  # raises first
        if any(job.tier == "batch" for job in jobs):
            handle = await run_blocking(self_.submit, prompts)  # service_tier="batch": the Gemini Batch API
            try:
                # a long wait (jobs take minutes to hours): a thread of its own, not the short-call pool
                return await asyncio.to_thread(self_.collect, handle, timeout=timeout, progress=progress or False)
            except asyncio.CancelledError:
                run_in_background(self_.cancel, handle)
                raise

        def publish() -> tuple[str, list[str]]:
            res = publish_group(self_._task(), [job.to_wire() for job in jobs], [job.describe() for job in jobs],
                                queue=self_.queue)
            return res.id, [child.id for child in res.results]  # never registered with Celery's result consumer

        group_id, ids = await run_blocking(publish)
        done = [0]

        def on_result(_i: int, _meta: dict[str, Any]) -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], len(ids))

        try:
            metas = await await_results(ids, lambda: None, timeout, on_result)
        except asyncio.CancelledError:
            run_in_background(self_._abandon_batch, ids)
            raise
        if any(m is None for m in metas):
            raise TimeoutError(f"batch {group_id}: {sum(m is not None for m in metas)} of {len(ids)} results "
                               f"after {timeout} seconds; collect the rest later with collect({group_id!r})")
        out = []
        for prompt, meta in zip(prompts, metas):
            result = to_result_tuple(_value_of(meta), dict(prompt.get("metadata") or {}))
            out.append(_with_parsed(result, prompt, self_.policy.return_response))
        return out

    def _abandon_batch(self, task_ids: list[str]) -> None:
        from gemini_tasks.celery_app import app

        app.control.revoke(task_ids)


class AsyncTTSMixin:
    """``agenerate_speech`` and ``agenerate_multi_speaker_dialogue`` for ``GeminiTTSProcessor``."""

    async def _arun(self, speech: SpeechSpec, output_file: str | None) -> bytes | None:
        from gemini_tasks.client.processors import STREAM_DEADLINE_GRACE
        from gemini_tasks.client.sending import task_ref
        from gemini_tasks.client.tts_processor import speech_argsrepr

        self_: Any = self
        if self_.policy.service_tier == "batch":  # the Batch API: submitted, then waited for off the loop
            return await run_blocking(self_._run, speech, output_file)
        deadline = time.time() + self_.timeout + STREAM_DEADLINE_GRACE
        job = self_._job(speech, None, self_.policy, deadline)
        task_id = uuid.uuid4().hex

        def publish() -> None:
            task_ref("speech", "interactive").apply_async(
                args=[job.to_wire()], task_id=task_id, queue="interactive",
                expires=self_.timeout + STREAM_DEADLINE_GRACE, argsrepr=speech_argsrepr(speech))

        def abandon() -> None:
            self_.key_manager.pool.cancel(task_id)
            _Pending(task_id).revoke()

        try:
            (meta,) = await await_results([task_id], publish, self_.timeout)
        except asyncio.CancelledError:
            run_in_background(abandon)
            raise
        if meta is None:
            run_in_background(abandon)
            self_.last_error = f"TTS timed out after {self_.timeout} seconds"
            return None
        await waiter().forget([task_id])
        # fetching the audio blob and writing the WAV are blocking I/O: off the loop
        return await run_blocking(self_._collect, _value_of(meta), output_file)

    async def agenerate_speech(self, text: str, voice: str | None = None, output_file: str | None = None,
                               style_prompt: str | None = None) -> bytes | None:
        """``generate_speech`` without blocking the event loop."""
        self_: Any = self
        return await self._arun(self_._single_speech(text, voice, style_prompt), output_file)

    async def agenerate_multi_speaker_dialogue(self, dialogue: Any, voices: Mapping[str, str],
                                               output_file: str | None = None,
                                               style_prompt: str | None = None) -> bytes | None:
        """``generate_multi_speaker_dialogue`` without blocking the event loop."""
        self_: Any = self
        return await self._arun(self_._dialogue_speech(dialogue, voices, style_prompt), output_file)
