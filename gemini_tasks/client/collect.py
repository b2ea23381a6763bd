"""Waiting for many Celery results at once on a Redis result backend, without a round trip per task.

Celery's ``ResultSet.join_native`` registers every task with the backend's result consumer one at a time: one
SUBSCRIBE per task (twice: once when the ``GroupResult`` is built, once more when it is restored), a GET per task
while checking which are ready, and an UNSUBSCRIBE per task as each result arrives. For a 1,000-prompt batch that
was about half of the client's CPU (``bench/profile_cpu.py``).

:func:`wait_for_results` does the same job with one private pub/sub connection: it subscribes to the result
channels 500 per command, reads the results already stored with one MGET per 500, then hands over each result
as the backend PUBLISHes it, and drops the subscriptions all at once at the end (closing the connection). After a
lost connection it subscribes again and reads what was stored meanwhile. Results are decoded by the backend
itself (``decode_result``), so a value is exactly what ``join_native(propagate=False)`` gives.

Backends other than Redis (or its Sentinel variant) are left to ``join_native`` (:func:`supported`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from celery import states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("gemini_tasks.client.collect")

#: channels per SUBSCRIBE and keys per MGET
CHUNK = 500
#: how long one read of the subscription waits before the caller's ``on_interval`` runs again
INTERVAL = 0.2
#: a subscription that has been quiet this long is checked against the stored results (one MGET per 500 pending):
#: a result published while the connection was silently broken is never waited for forever
RECHECK_SECONDS = 10.0


def supported(backend: Any) -> bool:
    """True when ``backend`` stores results in Redis and publishes them (Celery's Redis and Sentinel backends)."""
    from celery.backends.redis import RedisBackend

    return isinstance(backend, RedisBackend)


def _as_bytes(key: Any) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()


class _Collector:
    def __init__(self, backend: Any, task_ids: Sequence[str],
                 on_result: Callable[[str, Any], None]) -> None:
        self.backend = backend
        self.on_result = on_result
        #: result key -> task id, for the tasks without a ready result yet
        self.pending: dict[bytes, str] = {_as_bytes(backend.get_key_for_task(t)): t for t in task_ids}
        self.pubsub: Any = None

    def connect(self) -> None:
        """(Re)subscribe to every pending result's channel, then read the results already stored."""
        self.close()
        self.pubsub = self.backend.client.pubsub(ignore_subscribe_messages=True)
        keys = list(self.pending)
        for start in range(0, len(keys), CHUNK):
            self.pubsub.subscribe(*keys[start:start + CHUNK])
        self.read_stored()

    def read_stored(self) -> None:
        keys = list(self.pending)
        client = self.backend.client
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            for key, raw in zip(chunk, client.mget(chunk)):
                if raw is not None:
                    self.deliver(key, raw)

    def deliver(self, key: bytes, raw: Any) -> None:
        task_id = self.pending.get(key)
        if task_id is None:
            return  # already delivered (a result read from the key and also published), or not ours
        meta = self.backend.decode_result(raw)
        if meta.get("status") not in states.READY_STATES:
            return  # RETRY: the task was re-queued (a rate-limit wait); its final state comes later
        del self.pending[key]
        self.on_result(task_id, meta.get("result"))

    def read_one(self, timeout: float) -> bool:
        """Deliver the next published result, waiting up to ``timeout``; False when none came."""
        message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        if not message or message.get("type") != "message":
            return False
        self.deliver(_as_bytes(message["channel"]), message["data"])
        return True

    def close(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()  # the subscriptions end with the connection: no UNSUBSCRIBE per task
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self.pubsub = None


def wait_for_results(backend: Any, task_ids: Sequence[str], on_result: Callable[[str, Any], None], *,
                     timeout: float | None = None, on_interval: Callable[[], None] | None = None,
                     interval: float = INTERVAL) -> None:
    """Call ``on_result(task_id, value)`` once per task as its result becomes ready (SUCCESS, FAILURE, REVOKED).

    ``value`` is the decoded result (an exception object for a failure), as ``join_native(propagate=False)``
    passes it. ``on_interval`` runs about every ``interval`` seconds while waiting (it may raise to stop).
    Raises Celery's ``TimeoutError`` when ``timeout`` seconds pass with results still missing. A Redis that is
    unreachable is waited for (reconnecting every second) until the timeout.
    """
    c = _Collector(backend, task_ids, on_result)
    deadline = None if timeout is None else time.monotonic() + timeout
    connected = False
    quiet_since = last_interval = time.monotonic()
    try:
        while c.pending:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise CeleryTimeoutError(f"{len(c.pending)} of {len(task_ids)} results still missing after "
                                         f"{timeout} seconds")
            try:
                if not connected:
                    c.connect()
                    connected, quiet_since = True, time.monotonic()
                    continue
                wait = interval if deadline is None else max(0.0, min(interval, deadline - now))
                if c.read_one(wait):
                    quiet_since = time.monotonic()
                    while c.pending and c.read_one(0):  # a burst of results: drain it before anything else
                        pass
                elif time.monotonic() - quiet_since >= RECHECK_SECONDS:
                    c.read_stored()
                    quiet_since = time.monotonic()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if connected:
                    log.warning("result subscription lost (%s); reconnecting", exc)
                connected = False
                c.close()
                time.sleep(min(1.0, interval * 5))
            if on_interval is not None and time.monotonic() - last_interval >= interval:
                last_interval = time.monotonic()
                on_interval()
    finally:
        c.close()


def release_pending(results: Iterable[Any]) -> None:
    """Stop waiting for results the caller gave up on (a timeout, a lost batch), now.

    The result backend holds every awaited result until it is fulfilled; left there, each one is destroyed
    during interpreter shutdown, where Celery's ``AsyncResult.__del__`` fails and prints an ``Exception
    ignored ... sys.meta_path is None`` block per result (thousands of lines after a lost batch).
    """
    for result in results:
        try:
            result.backend.remove_pending_result(result)
        except Exception:  # noqa: BLE001 - best effort; Redis may be gone (a lost batch)
            pass


def wait_all(app: Any, task_ids: Sequence[str], on_result: Callable[[str, Any], None], *,
             timeout: float | None = None, on_interval: Callable[[], None] | None = None) -> None:
    """Every result of ``task_ids`` to ``on_result`` as it arrives: :func:`wait_for_results` on a Redis result
    backend, Celery's ``join_native`` on any other (its results released afterwards, whatever happened)."""
    if supported(app.backend):
        wait_for_results(app.backend, task_ids, on_result, timeout=timeout, on_interval=on_interval)
        return
    from celery.result import AsyncResult, ResultSet

    results = ResultSet([AsyncResult(tid, app=app) for tid in task_ids], app=app)
    try:
        results.join_native(timeout=timeout, propagate=False, callback=on_result, interval=INTERVAL,
                            on_interval=on_interval)
    finally:
        release_pending(results.results)


def count_ready(backend: Any, task_ids: Sequence[str]) -> int:
    """How many of ``task_ids`` have a ready result (SUCCESS, FAILURE, REVOKED): one MGET per 500."""
    keys = [backend.get_key_for_task(t) for t in task_ids]
    ready = 0
    for start in range(0, len(keys), CHUNK):
        for raw in backend.client.mget(keys[start:start + CHUNK]):
            if raw is not None and backend.decode_result(raw).get("status") in states.READY_STATES:
                ready += 1
    return ready


def group_task_ids(backend: Any, group_id: str) -> list[str] | None:
    """The task ids of a saved group, in order (None when the group is unknown or expired).

    ``GroupResult.restore`` builds a ``GroupResult``, and building one registers every child with the result
    consumer (a SUBSCRIBE each); this reads the same record (``GroupResult.save``'s ``as_tuple``) without that.
    """
    raw = backend.get(backend.get_key_for_group(group_id))
    if raw is None:
        return None
    tree = backend.decode(raw)["result"]  # ((group id, parent), [((task id, parent), None), ...])
    return [_node_id(node) for node in tree[1]]


def _node_id(node: Any) -> str:
    head = node[0]
    return str(head[0] if isinstance(head, (list, tuple)) else head)
