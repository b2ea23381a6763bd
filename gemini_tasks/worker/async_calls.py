"""Gemini calls multiplexed on one asyncio event loop per worker process (``GEMINI_TASKS_ASYNC_CALLS``).

A threads worker with ``-c 2000`` holds 2,000 calls in flight. With the SDK's sync client each of them is a
thread doing blocking httpx I/O: 2,000 threads wake for their own socket and fight for one GIL, and the HTTP/1.1
parsing (h11) is pure Python. Here the Celery task (still a thread of the threads pool: admission, leases,
mark-sent, report, retries, done markers and stop handling are unchanged, in :mod:`gemini_tasks.worker.execution`)
hands only the SDK call to this process's event loop thread, which sends it with the SDK's async client
(``client.aio.models.generate_content`` over aiohttp, whose HTTP parser is C), and waits on the concurrent
future. Thousands of sockets are served by one loop; the task thread sleeps on a lock until its answer is there.

* **One loop thread per process** (after a fork, the child starts its own); one aiohttp session for every key
  of the process (the key is a header, so any connection serves any key), whose connection pool allows the
  process's slots (:func:`gemini_tasks.transport.pools.slots_per_process`) plus a margin: no hidden cap (aiohttp's default
  is 100), and none at all outside a worker.
* **No SDK retry**: ``HttpRetryOptions(attempts=1)``. With ``retry_options=None`` the SDK's aiohttp path resends a
  request after a connection error on its own (after sleeping 1-10 s), outside the key manager and possibly after
  Gemini received it; retries belong to :mod:`gemini_tasks.worker.execution`.
* **Stops**: a call on the wire is finished (the loop keeps running while Celery's warm shutdown waits for the
  task); the task thread waits at most the call's own timeout plus :data:`WAIT_MARGIN`, then cancels the call and
  raises ``TimeoutError`` (a transient outcome, as a sync call's timeout is).

Only ``models.generate_content`` moves to the loop (text and speech); uploads, streaming and the other SDK
methods use the sync client of the same key (:class:`LoopClient` hands them through).

When it is on (:func:`enabled`): ``GEMINI_TASKS_ASYNC_CALLS=auto`` turns it on in a worker process running more
than one slot on real threads (the threads pool); off in prefork children and solo (one call per process: nothing
to multiplex) and under gevent (its threads are greenlets). ``1`` forces it on wherever real threads run; ``0``
(the default, for now) keeps each call in its own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import urllib.request
from typing import Any

from celery.signals import worker_shutdown
from google import genai
from google.genai import types

from gemini_tasks.gemini.client import shared_ssl_context
from gemini_tasks.transport.pools import POOL_MARGIN, slots_per_process
from gemini_tasks.settings import get_settings

log = logging.getLogger("gemini_tasks")

__all__ = ["CallLoop", "LoopClient", "default_loop", "enabled", "on_loop"]

#: Seconds a task thread waits beyond its call's own timeout before it cancels the call (the SDK's timeout
#: normally ends it first; this only guards against a loop that stopped serving).
WAIT_MARGIN = 30.0


def _threads_are_greenlets() -> bool:
    gevent_monkey = sys.modules.get("gevent.monkey")
    return bool(gevent_monkey is not None and gevent_monkey.is_module_patched("threading"))


def enabled() -> bool:
    """Whether this process sends ``generate_content`` calls through its event loop (module docstring)."""
    mode = get_settings().async_calls
    if mode == "off" or _threads_are_greenlets():
        return False
    if mode == "on":
        return True
    slots = slots_per_process()
    return slots is not None and slots > 1


class CallLoop:
    """This process's event loop thread, its aiohttp session and one async SDK client per key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: Any = None
        self._clients: dict[tuple[str, str, float, str], genai.Client] = {}

    # ---------------------------------------------------------------------------------------------- loop

    def _start(self) -> asyncio.AbstractEventLoop:
        """The running loop of this process, started on first use (and again in a forked child)."""
        pid = os.getpid()
        loop = self._loop
        if loop is not None and self._pid == pid:
            return loop
        with self._lock:
            if self._loop is not None and self._pid == pid:
                return self._loop
            # a forked child inherits the parent's objects but not its thread: start afresh, never touch them
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                try:
                    loop.run_forever()
                finally:
                    loop.close()

            threading.Thread(target=serve, name="gemini-tasks-call-loop", daemon=True).start()
            ready.wait()
            self._session = asyncio.run_coroutine_threadsafe(self._new_session(), loop).result()
            self._clients = {}
            self._loop, self._pid = loop, pid
            log.info("Gemini calls run on this process's event loop (aiohttp pool: %s connections)",
                     self._session.connector.limit or "unlimited")
            return loop

    @staticmethod
    async def _new_session() -> Any:
        import aiohttp

        slots = slots_per_process()
        connector = aiohttp.TCPConnector(limit=0 if slots is None else slots + POOL_MARGIN,
                                         ssl=shared_ssl_context())
        # proxies from the environment are honoured, as the sync client (httpx) honours them; but only when one
        # is set: aiohttp's trust_env looks up the proxy and ~/.netrc for every request in a worker thread
        proxies = {scheme for scheme in urllib.request.getproxies() if scheme != "no"}  # NO_PROXY alone: none
        return aiohttp.ClientSession(connector=connector, trust_env=bool(proxies))

    def client(self, key_id: str, api_key: str, *, timeout_s: float, api_version: str) -> genai.Client:
        """The async-capable SDK client for one key in this process (built on first use)."""
        self._start()
        slot = (key_id, api_key, timeout_s, api_version)
        with self._lock:
            client = self._clients.get(slot)
            if client is None:
                for old in [s for s in self._clients if s[0] == key_id]:  # a rotated secret or changed options
                    del self._clients[old]
                client = self._clients[slot] = genai.Client(
                    api_key=api_key,
                    vertexai=False,
                    http_options=types.HttpOptions(
                        timeout=max(1, int(timeout_s * 1000)),
                        api_version=api_version,
                        retry_options=types.HttpRetryOptions(attempts=1),
                        aiohttp_client=self._session,
                        # the sync half of this client is never used (LoopClient hands those calls to the
                        # worker's own sync client): keep its pool minimal, and share the process's TLS context
                        client_args={"verify": shared_ssl_context()},
                        async_client_args={"ssl": shared_ssl_context(), "verify": shared_ssl_context()},
                    ),
                )
        return client

    def run(self, coro: Any, *, timeout: float) -> Any:
        """Run ``coro`` on the loop and return its result, waiting at most ``timeout`` seconds."""
        future = asyncio.run_coroutine_threadsafe(coro, self._start())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the Gemini call did not end within {timeout:.0f}s (its own timeout plus "
                               f"{WAIT_MARGIN:g}s): cancelled") from None

    def close(self) -> None:
        """Close the session and stop the loop (this process's; a parent's inherited one is left alone)."""
        with self._lock:
            loop, session, mine = self._loop, self._session, self._pid == os.getpid()
            self._loop, self._session, self._clients = None, None, {}
        if loop is None or not mine:
            return
        try:
            if session is not None:
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(5)
        except Exception:  # noqa: BLE001 - closing is best effort at shutdown
            log.debug("closing the call loop's HTTP session failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)


#: The process's call loop.
default_loop = CallLoop()


class _LoopModels:
    """``client.models`` whose ``generate_content`` runs on the loop; every other method is the sync one."""

    def __init__(self, sync_models: Any, aio_models: Any, loop: CallLoop, timeout_s: float) -> None:
        self._sync = sync_models
        self._aio = aio_models
        self._loop = loop
        self._timeout_s = timeout_s

    def generate_content(self, *, model: str, contents: Any,
                         config: types.GenerateContentConfig | None = None) -> types.GenerateContentResponse:
        timeout = self._timeout_s
        if config is not None and config.http_options is not None and config.http_options.timeout:
            timeout = config.http_options.timeout / 1000  # a Flex call's longer timeout (tier_calls.call_config)
        return self._loop.run(self._aio.generate_content(model=model, contents=contents, config=config),
                              timeout=timeout + WAIT_MARGIN)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sync, name)


class LoopClient:
    """A ``genai.Client`` stand-in for the execution: ``models.generate_content`` on the loop, the rest sync."""

    def __init__(self, sync_client: genai.Client, aio_client: genai.Client, loop: CallLoop, timeout_s: float) -> None:
        self._sync = sync_client
        self.models = _LoopModels(sync_client.models, aio_client.aio.models, loop, timeout_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sync, name)


@worker_shutdown.connect
def _close_at_shutdown(**_: Any) -> None:
    """After the pool has finished its tasks (a warm shutdown waits for the calls on the wire): close the session."""
    default_loop.close()


def on_loop(sync_client: genai.Client, key_id: str, api_key: str, *, timeout_s: float,
            api_version: str) -> LoopClient:
    """``sync_client`` with its ``generate_content`` calls sent from this process's event loop."""
    aio = default_loop.client(key_id, api_key, timeout_s=timeout_s, api_version=api_version)
    return LoopClient(sync_client, aio, default_loop, timeout_s)
