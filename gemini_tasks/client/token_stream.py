"""Token streaming: ``for chunk in processor.stream_single(...)`` and ``async for chunk in processor.astream_single(...)``.

The request goes through the same queue (interactive), admission and report as ``process_single``; a worker
calls ``generate_content_stream`` and appends each text piece to the request's Redis Stream
(:mod:`gemini_tasks.keys.token_streams`), which this side reads from its first entry, so chunks are never lost
to a late reader and never pass through the broker or the result backend.

A caller that goes away cancels the call: closing the stream (``close()``, leaving a ``with`` block, breaking out
of the loop and dropping it, a cancelled ``async for``, a timeout) sets the request's cancel flag, which refuses
its admission or stops the worker after the next chunk. Errors arrive as :class:`GeminiStreamError`, whose
``kind`` and message are those of the result tuple's error string ("exhausted", "persistent", ...).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from typing import Any

import redis.asyncio as aredis

from gemini_tasks.keys.token_streams import CHUNK, END, ERROR, decode_entry, stream_key
from gemini_tasks.messages import Job

#: the longest a stream without a timeout may run (its worker-side deadline)
UNBOUNDED_STREAM_SECONDS = 3600.0
_READ_BLOCK_MS = 1000
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aredis.Redis]]" = \
    weakref.WeakKeyDictionary()


class GeminiStreamError(RuntimeError):
    """A streamed request failed. ``kind`` is the error's kind (``exhausted``, ``persistent``, ``transient``,
    ``blocked``, ``cancelled``, ...) and the message is the result tuple's error string."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


class _StreamBase:
    def __init__(self, processor: Any, job: Job, timeout: float | None) -> None:
        self.processor = processor
        self.job = job
        self.task_id = uuid.uuid4().hex
        self.timeout = timeout
        pool = processor.key_manager.pool
        self.key = stream_key(pool.prefix, self.task_id)
        self.last_id = "0-0"
        self.buffer: list[str] = []
        self.pieces: list[str] = []
        self.finished = False
        self.published = False
        self.info: dict[str, Any] = {}
        self.deadline: float | None = None

    @property
    def text(self) -> str:
        """The text received so far (all of it once the stream ended)."""
        return "".join(self.pieces)

    @property
    def usage(self) -> dict[str, Any] | None:
        """Token counts of the call, once the stream ended."""
        return self.info.get("usage")

    def _publish(self) -> None:
        from gemini_tasks.client.sending import task_ref

        grace = _grace()
        task_ref("stream", "interactive").apply_async(
            args=[self.job.to_wire()], task_id=self.task_id, queue="interactive", ignore_result=True,
            expires=(self.timeout or UNBOUNDED_STREAM_SECONDS) + grace, argsrepr="stream " + self.job.describe())
        self.published = True
        self.deadline = None if self.timeout is None else time.monotonic() + self.timeout

    def _handle(self, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            self.last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            kind, data = decode_entry(fields)
            if kind == CHUNK:
                self.buffer.append(data)
                self.pieces.append(data)
            elif kind == END:
                self.finished = True
                self.info = json.loads(data)
            elif kind == ERROR:
                self.finished = True
                err = json.loads(data)
                raise GeminiStreamError(err.get("message", "stream failed"), err.get("kind", ""))

    def _left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _abandon(self) -> None:
        from gemini_tasks.celery_app import app

        self.processor.key_manager.pool.cancel(self.task_id)
        app.control.revoke(self.task_id)

    def _timeout_error(self) -> TimeoutError:
        return TimeoutError(f"Streaming timed out after {self.timeout} seconds ({len(self.pieces)} chunk(s) "
                            "received)")


def _grace() -> float:
    from gemini_tasks.client.processors import STREAM_DEADLINE_GRACE

    return STREAM_DEADLINE_GRACE


class TextStream(_StreamBase):
    """The chunks of one streamed answer (an iterator of ``str``); also a context manager."""

    def __init__(self, processor: Any, job: Job, timeout: float | None) -> None:
        super().__init__(processor, job, timeout)
        self._publish()

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        client = self.processor.key_manager.pool.client
        while not self.buffer:
            if self.finished:
                self._cleanup()
                raise StopIteration
            left = self._left()
            if left is not None and left <= 0:
                self.close()
                raise self._timeout_error()
            block = _READ_BLOCK_MS if left is None else max(1, min(_READ_BLOCK_MS, int(left * 1000)))
            reply = client.xread({self.key: self.last_id}, count=256, block=block)
            try:
                for _name, entries in reply or []:
                    self._handle(entries)
            except GeminiStreamError:
                self._cleanup()
                raise
        return self.buffer.pop(0)

    def _cleanup(self) -> None:
        self.processor.key_manager.pool.client.delete(self.key)

    def close(self) -> None:
        """Stop reading; an unfinished call is cancelled (never admitted, or stopped after the next chunk)."""
        if not self.finished:
            self.finished = True
            self._abandon()

    def __enter__(self) -> "TextStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self.finished:
                self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


def _async_client() -> aredis.Redis:
    from gemini_tasks.settings import get_settings

    loop = asyncio.get_running_loop()
    url = get_settings().keys_redis_url
    per_loop = _async_clients.setdefault(loop, {})
    client = per_loop.get(url)
    if client is None:
        client = per_loop[url] = aredis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=25)
    return client


class AsyncTextStream(_StreamBase):
    """The chunks of one streamed answer for ``async for``; also an async context manager."""

    def __aiter__(self) -> "AsyncTextStream":
        return self

    async def __anext__(self) -> str:
        from gemini_tasks.client.result_waiter import run_blocking, run_in_background

        try:
            if not self.published:
                await run_blocking(self._publish)
            client = _async_client()
            while not self.buffer:
                if self.finished:
                    await client.delete(self.key)
                    raise StopAsyncIteration
                left = self._left()
                if left is not None and left <= 0:
                    self.finished = True
                    run_in_background(self._abandon)
                    raise self._timeout_error()
                block = _READ_BLOCK_MS if left is None else max(1, min(_READ_BLOCK_MS, int(left * 1000)))
                reply = await client.xread({self.key: self.last_id}, count=256, block=block)
                try:
                    for _name, entries in reply or []:  # type: ignore[str-unpack]
                        self._handle(entries)  # type: ignore[arg-type]
                except GeminiStreamError:
                    await client.delete(self.key)
                    raise
        except asyncio.CancelledError:
            if not self.finished:
                self.finished = True
                run_in_background(self._abandon)
            raise
        return self.buffer.pop(0)

    async def aclose(self) -> None:
        """Stop reading; an unfinished call is cancelled."""
        from gemini_tasks.client.result_waiter import run_in_background

        if not self.finished:
            self.finished = True
            if self.published:
                run_in_background(self._abandon)

    async def __aenter__(self) -> "AsyncTextStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        try:
            if not self.finished and self.published:
                from gemini_tasks.client.result_waiter import run_in_background

                self.finished = True
                run_in_background(self._abandon)
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


class TokenStreamMixin:
    """``stream_single`` / ``astream_single`` for :class:`~gemini_tasks.client.processors.GeminiStreamingProcessor`."""

    def _stream_job(self, prompt_data: dict[str, Any], timeout: float | None) -> tuple[Job, float | None]:
        from gemini_tasks.client.aio import _check_timeout
        from gemini_tasks.client.jobs import build_generate_job, require_sync_tier

        self_: Any = self
        if not self_._running:
            raise RuntimeError("Workers are not running. Call start() first.")
        timeout = _check_timeout(timeout)
        # a stream always has a deadline: it is what makes the caller's cancel flag stop it
        deadline = time.time() + (timeout or UNBOUNDED_STREAM_SECONDS) + _grace()
        job = require_sync_tier(build_generate_job(prompt_data, model=self_.model_name, manager=self_.key_manager,
                                                   policy=self_.policy, deadline=deadline))  # no Batch API tier
        return job, timeout

    def stream_single(self, prompt_data: dict[str, Any], timeout: float | None = 300.0) -> TextStream:
        """Enqueue one prompt and return an iterator of its text as the model writes it.

        Raises ``RuntimeError`` before ``start()`` and ``ValueError`` for bad input, before anything is enqueued;
        iterating raises ``TimeoutError`` after ``timeout`` seconds and :class:`GeminiStreamError` on failure.
        """
        job, timeout = self._stream_job(prompt_data, timeout)
        return TextStream(self, job, timeout)

    def astream_single(self, prompt_data: dict[str, Any], timeout: float | None = 300.0) -> AsyncTextStream:
        """``stream_single`` for ``async for``: validated now, enqueued on the first iteration."""
        job, timeout = self._stream_job(prompt_data, timeout)
        return AsyncTextStream(self, job, timeout)
