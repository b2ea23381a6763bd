"""A worker's task events reach an event receiver (Flower's source) complete, in fewer messages than events.

Real worker subprocess, real Redis broker, Celery's own ``EventReceiver`` in this process: every task of a
batch shows task-received (with its description), task-started and task-succeeded, and the worker published
them batched (``gemini_tasks.worker.event_batching``), not one message per event.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

from celery import Celery
from celery.events import EventReceiver


def test_task_events_arrive_complete_and_batched(stack, emu):
    app = Celery("capacity-events", broker=stack.redis_url)
    app.conf.update(accept_content=["json"], event_serializer="json")
    seen: dict[str, set[str]] = defaultdict(set)
    described: dict[str, str] = {}
    messages = [0]

    class CountingReceiver(EventReceiver):
        def _receive(self, body, message, list=list, isinstance=isinstance):
            messages[0] += 1
            return super()._receive(body, message, list=list, isinstance=isinstance)

    def on_event(event):
        if event.get("type", "").startswith("task-") and event.get("uuid"):
            seen[event["uuid"]].add(event["type"])
            if event["type"] == "task-received":
                described[event["uuid"]] = event.get("args") or ""

    stop = threading.Event()

    def listen():
        with app.connection() as conn:
            recv = CountingReceiver(conn, handlers={"*": on_event}, app=app)
            while not stop.is_set():
                try:
                    recv.capture(limit=None, timeout=0.5, wakeup=False)
                except (TimeoutError, OSError):  # socket.timeout from drain_events ends one capture
                    continue

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1.0)  # the receiver's queue is bound before anything is published
    tag = uuid.uuid4().hex[:8]
    n = 30
    try:
        with stack.worker(queues="batch", pool="threads", concurrency=8):
            out = stack.run_client({"pool": "ev" + tag, "keys": 2, "timeout": 60,
                                    "prompts": [{"prompt": f"{tag} e{i}", "metadata": {"i": i}} for i in range(n)]})
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                mine = {u: t for u, t in seen.items() if tag in described.get(u, "")}
                if len(mine) == n and all({"task-received", "task-started", "task-succeeded"} <= t
                                          for t in mine.values()):
                    break
                time.sleep(0.2)
    finally:
        stop.set()
        listener.join(5)
    assert [r["error"] for r in out["results"]] == [None] * n
    mine = {u: t for u, t in seen.items() if tag in described.get(u, "")}
    assert len(mine) == n, f"{len(mine)} of {n} tasks seen received with their description"
    for types in mine.values():
        assert {"task-received", "task-started", "task-succeeded"} <= types, types
    task_events = sum(len(t) for t in seen.values())
    # one flush per 0.1 s window: 30 tasks gave ~12 messages for 120 events (~54 when flushed per loop turn)
    assert messages[0] <= task_events // 4, f"{messages[0]} event messages for {task_events} task events"
