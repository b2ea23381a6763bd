"""Awaiting Celery results on an event loop, without a thread per request and without blocking the loop.

Celery's Redis result backend stores each result under ``celery-task-meta-<id>`` and PUBLISHes it on a channel
of the same name. :class:`ResultWaiter` keeps one ``redis.asyncio`` pub/sub connection per event loop (and
result-backend URL), subscribes to the channels of the tasks being awaited, and resolves one future per task
when a ready state (SUCCESS, FAILURE, REVOKED) arrives; intermediate states (RETRY: a rate-limit wait
re-queued) are ignored. After subscribing it also reads the stored key once, so a result stored before the
subscription took effect is never missed; after a reconnection it reads them all again.

Publishing a task (``apply_async``) is a short blocking call into kombu; :func:`run_blocking` runs it on a
small thread pool so the loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import weakref
from typing import Any, Callable, TypeVar

import redis.asyncio as aredis
from celery import states

from gemini_tasks.celery_app import app

log = logging.getLogger("gemini_tasks.client.aio")

T = TypeVar("T")

#: threads that publish tasks and run other short blocking calls for the asyncio API (shared by all loops)
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="gemini-tasks-aio")
_waiters: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, ResultWaiter]]" = \
    weakref.WeakKeyDictionary()


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a short blocking call (publishing to the broker, a file write) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_executor, fn, *args)


def run_in_background(fn: Callable[..., Any], *args: Any) -> None:
    """Fire and forget a blocking call (cancelling a request) without awaiting it; errors are logged."""
    def safe() -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a failed cleanup must not surface in an unrelated place
            log.warning("background cleanup %s failed", getattr(fn, "__name__", fn), exc_info=True)

    _executor.submit(safe)


def _backend_url() -> str:
    url = app.conf.result_backend
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise RuntimeError(f"the asyncio API needs a Redis result backend (redis:// or rediss://), got {url!r:.60}")
    return url


class ResultWaiter:
    """One pub/sub connection on one event loop; futures keyed by result key."""

    def __init__(self, url: str) -> None:
        self.client = aredis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=25)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.futures: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self.reader: asyncio.Task[None] | None = None
        # redis-py's PubSub takes its connection on the first command: concurrent first subscribes would each
        # take one and all but the last would be lost; commands on it go one at a time
        self.lock = asyncio.Lock()

    @staticmethod
    def key_for(task_id: str) -> bytes:
        key = app.backend.get_key_for_task(task_id)
        return key if isinstance(key, bytes) else str(key).encode()

    async def watch(self, task_ids: list[str]) -> list[asyncio.Future[dict[str, Any]]]:
        """Subscribe to the results of ``task_ids``; returns one future per task (its decoded meta)."""
        loop = asyncio.get_running_loop()
        keys = [self.key_for(t) for t in task_ids]
        futures = []
        for key in keys:
            fut = self.futures.get(key)
            if fut is None or fut.done():
                fut = loop.create_future()
                self.futures[key] = fut
            futures.append(fut)
        async with self.lock:
            for start in range(0, len(keys), 500):
                await self.pubsub.subscribe(*keys[start:start + 500])
        if self.reader is None or self.reader.done():
            self.reader = loop.create_task(self._read(), name="gemini-tasks-result-reader")
        return futures

    async def check_stored(self, task_ids: list[str]) -> None:
        """Read results already stored (published before the subscription took effect)."""
        keys = [self.key_for(t) for t in task_ids]
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            for key, raw in zip(chunk, await self.client.mget(chunk)):
                if raw is not None:
                    self._deliver(key, raw)

    async def unwatch(self, task_ids: list[str]) -> None:
        keys = [self.key_for(t) for t in task_ids]
        for key in keys:
            self.futures.pop(key, None)
        try:
            async with self.lock:
                for start in range(0, len(keys), 500):
                    await self.pubsub.unsubscribe(*keys[start:start + 500])
        except (aredis.ConnectionError, RuntimeError):  # reconnecting: the subscription is gone with it
            pass

    async def forget(self, task_ids: list[str]) -> None:
        """Delete stored results the caller has consumed (``AsyncResult.forget``)."""
        if task_ids:
            await self.client.delete(*[self.key_for(t) for t in task_ids])

    def _deliver(self, key: bytes, raw: bytes | str) -> None:
        fut = self.futures.get(key)
        if fut is None or fut.done():
            return
        meta = app.backend.decode_result(raw)
        if meta.get("status") in states.READY_STATES:
            fut.set_result(meta)

    async def _read(self) -> None:
        while self.futures:
            try:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (aredis.ConnectionError, aredis.TimeoutError, OSError) as exc:
                log.warning("result subscription lost (%s); reconnecting", exc)
                await asyncio.sleep(0.5)
                try:
                    pending = list(self.futures)
                    async with self.lock:
                        await self.pubsub.reset()
                        for start in range(0, len(pending), 500):
                            await self.pubsub.subscribe(*pending[start:start + 500])
                    for start in range(0, len(pending), 500):
                        chunk = pending[start:start + 500]
                        for key, raw in zip(chunk, await self.client.mget(chunk)):
                            if raw is not None:
                                self._deliver(key, raw)
                except (aredis.ConnectionError, aredis.TimeoutError, OSError):
                    continue
                continue
            if message and message.get("type") == "message":
                channel = message["channel"]
                self._deliver(channel if isinstance(channel, bytes) else str(channel).encode(), message["data"])


def waiter() -> ResultWaiter:
    """The waiter of the running event loop for the configured result backend."""
    loop = asyncio.get_running_loop()
    url = _backend_url()
    per_loop = _waiters.setdefault(loop, {})
    found = per_loop.get(url)
    if found is None:
        found = per_loop[url] = ResultWaiter(url)
    return found


async def await_results(task_ids: list[str], publish: Callable[[], Any], timeout: float | None,
                        on_result: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any] | None]:
    """Subscribe, publish (off the loop), then await every result's meta in order.

    Returns the metas in ``task_ids`` order; on timeout the missing ones are None and ``TimeoutError`` is
    raised by the caller's logic via :func:`asyncio.wait_for` semantics (here: the list has Nones).
    Raises ``asyncio.CancelledError`` when the caller is cancelled (the caller cleans up).
    """
    w = waiter()
    futures = await w.watch(task_ids)
    try:
        await run_blocking(publish)
        await w.check_stored(task_ids)
        pending = set(futures)
        index = {id(f): i for i, f in enumerate(futures)}
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while pending:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if on_result is not None:
                for fut in done:
                    on_result(index[id(fut)], fut.result())
        return [f.result() if f.done() else None for f in futures]
    finally:
        await asyncio.shield(w.unwatch(task_ids))
