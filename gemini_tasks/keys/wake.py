"""Waking waiters when a lease ends, instead of polling Redis.

A caller that waits for a busy key (``leased``) or a busy ``max_workers`` slot cannot know when the call
holding it ends. Every script that ends a lease publishes the key id on the pool's ``freed`` channel
(lib.lua ``release_lease``); one subscriber thread per process and Redis client turns those messages into a
generation counter and a condition that waiters block on. A waiter remembers the generation *before* its
admission attempt, so a lease that ends between the attempt and the wait still wakes it. Without a
subscription (pub/sub unavailable), waiters fall back to the script's suggested wait (``busy_poll``).
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis

log = logging.getLogger("gemini_tasks.keys")


class FreedListener:
    """Counts ``freed`` messages of the pools it was asked about, on one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.generation = 0
        self.cond = threading.Condition()
        self._channels: set[str] = set()
        self._pending: set[str] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gemini-tasks-freed-listener", daemon=True)
        self._thread.start()

    def watch(self, channel: str, timeout: float = 1.0) -> bool:
        """Subscribe to ``channel`` (once); True when the subscription is live."""
        with self.cond:
            if channel not in self._channels:
                self._channels.add(channel)
                self._pending.add(channel)
                self._ready.clear()
        return self._ready.wait(timeout)

    @property
    def live(self) -> bool:
        """True while the subscription is confirmed (notifications will arrive)."""
        return self._ready.is_set()

    def wait(self, seen: int, timeout: float) -> bool:
        """Block until the generation moves past ``seen`` or ``timeout`` passes; True when woken."""
        end = time.monotonic() + timeout
        with self.cond:
            while self.generation == seen:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def _run(self) -> None:
        while True:
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                with self.cond:
                    self._pending = set(self._channels)
                while True:
                    with self.cond:
                        todo, self._pending = self._pending, set()
                    if todo:
                        pubsub.subscribe(*todo)
                    if self._channels and not self._pending:
                        self._ready.set()
                    msg = pubsub.get_message(timeout=0.2)
                    if msg is not None and msg.get("type") == "message":
                        with self.cond:
                            self.generation += 1
                            self.cond.notify_all()
            except Exception as exc:  # noqa: BLE001 - Redis away: waiters fall back to polling meanwhile
                self._ready.clear()
                log.debug("freed-lease listener reconnecting after %s: %s", type(exc).__name__, exc)
                with self.cond:  # wake everyone: a lease may have ended while we were away
                    self.generation += 1
                    self.cond.notify_all()
                time.sleep(0.5)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception as exc:  # noqa: BLE001 - closing a broken connection may fail too
                        log.debug("closing the freed-lease subscription: %s", exc)


_listeners: dict[tuple[int, int], FreedListener] = {}
_lock = threading.Lock()


def listener_for(client: redis.Redis) -> FreedListener:
    """The process's listener for ``client`` (one subscriber connection per client and process)."""
    key = (id(client), os.getpid())
    with _lock:
        found = _listeners.get(key)
        if found is None:
            found = _listeners[key] = FreedListener(client)
        return found
