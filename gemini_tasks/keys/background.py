"""What a process keeps one of in the background: :class:`PerProcess` (one object per process; a forked child
makes its own) and :class:`Ticker` (a daemon thread that does one round every few seconds until stopped)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """One ``T`` per process, made on first use by the ``make`` given then."""

    def __init__(self) -> None:
        self._items: dict[int, T] = {}
        self._lock = threading.Lock()

    def get(self, make: Callable[[], T]) -> T:
        pid = os.getpid()
        with self._lock:
            item = self._items.get(pid)
            if item is None:
                item = self._items[pid] = make()
            return item


class Ticker:
    """Calls :meth:`tick` every ``interval`` seconds from one daemon thread named ``thread_name``, from the first
    :meth:`start` (idempotent, thread-safe) until :meth:`stop`."""

    thread_name = "gemini-tasks-ticker"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def tick(self) -> None:
        raise NotImplementedError

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Ticker:
        if self.running():
            return self
        with self._start_lock:
            if not self.running():
                self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
                self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def stop(self) -> None:
        self._stop.set()
