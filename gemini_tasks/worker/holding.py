"""A live worker keeps the broker messages it holds marked as its own, so a dead worker's come back fast.

kombu's Redis transport emulates acknowledgements: a delivered message is copied into the ``unacked`` hash
and its delivery tag into the ``unacked_index`` sorted set, scored by the time of delivery. Every consuming
worker sweeps that index every ``unacked_restore_interval`` seconds and puts back on its queue whatever was
delivered more than ``visibility_timeout`` seconds ago: Redis cannot tell a dead worker from a slow one.

This step runs a thread in each worker (the main process, which holds the messages in every pool) that
re-scores the worker's own entries to *now* every :data:`REFRESH_SECONDS` seconds (``ZADD ... XX``: one
command for all of them; an entry that was acknowledged or restored meanwhile is not re-created). A live
worker's messages therefore never look older than ``REFRESH_SECONDS``, however long their call runs or
however far off their countdown is, while a dead worker's stop being refreshed and are restored
``visibility_timeout`` (+ one sweep) after its last refresh. That is what lets the default visibility timeout
be short (:data:`gemini_tasks.settings.DEFAULT_VISIBILITY_TIMEOUT`) without delivering a long call twice.

The refresh cadence is a constant (:data:`gemini_tasks.settings.REFRESH_SECONDS`), not derived from one worker's
settings, so workers configured with different visibility timeouts cannot restore each other's live messages as
long as each timeout is at least :data:`~gemini_tasks.settings.MIN_VISIBILITY_TIMEOUT` (checked at start by
:func:`gemini_tasks.settings.check_delivery_settings`).
Clocks: kombu compares delivery scores written by one host with ``time()`` on another; hosts must agree
within a few seconds (NTP), as kombu itself already requires.

Only the Redis transport (``redis://``, ``rediss://``, ``sentinel://``) needs this; with RabbitMQ the broker
itself returns a dead consumer's messages when its connection closes, and the step does nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import bootsteps

from gemini_tasks.settings import MIN_VISIBILITY_TIMEOUT, REFRESH_SECONDS  # noqa: F401 - importable from here too

log = logging.getLogger("gemini_tasks.worker.holding")


def held_tags(consumer: Any) -> list[str]:
    """Delivery tags of the messages this worker holds unacknowledged (running, prefetched, on a countdown)."""
    task_consumer = getattr(consumer, "task_consumer", None)
    channel = getattr(task_consumer, "channel", None)
    qos = getattr(channel, "qos", None)
    delivered = getattr(qos, "_delivered", None)
    if not delivered:
        return []
    for _ in range(3):  # the event loop may add or remove one while we copy; copying a dict is near-atomic
        try:
            return [str(tag) for tag in list(delivered)]
        except RuntimeError:
            continue
    return []


def refresh_once(channel: Any, client: Any, tags: list[str], now: float | None = None) -> int:
    """Re-score ``tags`` in the channel's ``unacked_index`` to ``now``; entries that are gone stay gone.

    Returns how many entries were updated (``ZADD XX CH`` counts changed scores).
    """
    if not tags:
        return 0
    stamp = time.time() if now is None else now
    return int(client.zadd(channel.unacked_index_key, {tag: stamp for tag in tags}, xx=True, ch=True))


def is_redis_transport(consumer: Any) -> bool:
    connection = getattr(consumer, "connection", None)
    transport = getattr(connection, "transport", None)
    return getattr(transport, "driver_type", "") == "redis"


class HoldRefresher:
    """The refresh loop of one worker (a daemon thread; :meth:`stop` ends it)."""

    def __init__(self, consumer: Any, interval: float = REFRESH_SECONDS) -> None:
        self.consumer = consumer
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._client_of: Any = None
        self.refreshes = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gemini-tasks-hold-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 5)

    def _client_for(self, channel: Any) -> Any:
        # a synchronous client over the channel's own connection pool (thread-safe; same URL, password,
        # TLS, Sentinel master and key prefix as the consumer), rebuilt when the consumer reconnects
        if self._client is None or self._client_of is not channel:
            self._client = channel._create_client()
            self._client_of = channel
        return self._client

    def tick(self) -> int:
        tags = held_tags(self.consumer)
        if not tags:
            return 0
        channel = self.consumer.task_consumer.channel
        n = refresh_once(channel, self._client_for(channel), tags)
        self.refreshes += 1
        return n

    def _run(self) -> None:
        failing_since: float | None = None
        while not self._stop.wait(self.interval):
            try:
                self.tick()
                if failing_since is not None:
                    log.warning("held messages refreshed again after %.1fs of broker errors",
                                time.monotonic() - failing_since)
                    failing_since = None
            except Exception as exc:  # noqa: BLE001 - never let the refresher die: the next tick retries
                self._client = None
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("could not refresh held messages (%s: %s); retrying every %.0fs",
                                type(exc).__name__, exc, self.interval)


class HoldRefresh(bootsteps.StartStopStep):
    """Consumer bootstep: runs :class:`HoldRefresher` while the worker consumes from a Redis broker."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.refresher: HoldRefresher | None = None
        # a worker refuses to start with settings that would deliver a call twice (both named in the error);
        # raised here, while the worker is built: Celery only logs what a signal handler raises
        url = str(getattr(getattr(parent, "app", None), "conf", {}).get("broker_url") or "")
        if url.split(":", 1)[0] in ("redis", "rediss", "sentinel", "redis+socket"):
            from gemini_tasks.settings import check_delivery_settings, get_settings

            check_delivery_settings(get_settings())

    def start(self, parent: Any) -> None:
        if self.refresher is not None or not is_redis_transport(parent):
            return
        self.refresher = HoldRefresher(parent)
        self.refresher.start()
        log.info("refreshing held broker messages every %.0fs", REFRESH_SECONDS)

    def stop(self, parent: Any) -> None:
        # a consumer restart (reconnect) stops and starts the blueprint: keep one thread across it
        pass

    def shutdown(self, parent: Any) -> None:
        if self.refresher is not None:
            self.refresher.stop()
            self.refresher = None
