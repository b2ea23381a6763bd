"""The chaos tests' stack (the shared :class:`gemini_tasks.testing.stack.Stack` with this suite's keys and
settings) and what the chaos tests measure with: leases, queues, memory, the emulator's log, figures.

This module is imported by ``tests/chaos/conftest.py`` and the chaos tests (pytest puts this directory on
``sys.path``).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from gemini_tasks.keys.names import pool_prefix
from gemini_tasks.testing.app_config import celery_app_on, forget_backend  # noqa: F401 - used by the chaos tests
from gemini_tasks.testing.stack import Stack as SharedStack

#: Names that cannot collide with the integration suite's GEMINI_API_KEY_1..4.
KEY_SECRETS = {f"GEMINI_API_KEY_C{i}": f"chaos-secret-{i:02d}-{uuid.uuid4().hex}" for i in range(1, 9)}
KEY_IDS = list(KEY_SECRETS)
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def rss_kib(pid: int) -> int:
    """Resident memory of one process (KiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pool_leases(client: redis.Redis, pool: str) -> int:
    """Active leases recorded for a pool (the ``leases`` ZSET; 0 when nothing is leaked)."""
    return int(client.zcard(pool_prefix(pool) + "leases"))


def queue_lengths(client: redis.Redis) -> dict[str, int]:
    """Messages waiting in the broker queues and held unacknowledged."""
    return {"interactive": int(client.llen("interactive")), "batch": int(client.llen("batch")),
            "unacked": int(client.hlen("unacked"))}


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition") -> float:
    """Poll ``predicate`` until it is true; returns the seconds it took. Raises AssertionError on timeout."""
    t0 = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


_TASK_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/MainProcess\] Task [\w.]+\[([0-9a-f-]+)\] "
                        r"(received|succeeded in ([\d.]+)s)", re.MULTILINE)


def task_events(log_text: str) -> dict[str, dict[str, float]]:
    """A worker's INFO log as ``{task id: {"received": epoch, "succeeded": epoch, "runtime": seconds}}`` (the
    worker's local-time stamps, millisecond resolution; the last line of each kind wins)."""
    events: dict[str, dict[str, float]] = {}
    for stamp, task_id, what, runtime in _TASK_LINE.findall(log_text):
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        entry = events.setdefault(task_id, {})
        if what == "received":
            entry["received"] = at
        else:
            entry["succeeded"], entry["runtime"] = at, float(runtime)
    return events


def held_since(client: redis.Redis) -> dict[str, float]:
    """The messages held unacknowledged on the Redis broker: ``{task id: score in unacked_index}`` (the time of
    delivery or of the holder's last refresh)."""
    scores = {tag.decode(): score for tag, score in client.zrange("unacked_index", 0, -1, withscores=True)}
    held = {}
    for tag, raw in client.hgetall("unacked").items():
        payload = json.loads(raw)[0]
        if tag.decode() in scores:
            held[payload["headers"]["id"]] = scores[tag.decode()]
    return held


def generate_calls(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in log if e.get("endpoint") == "generateContent"]


def prompt_of(entry: dict[str, Any]) -> str:
    for part in entry.get("parts") or []:
        if part.get("kind") == "text":
            return part.get("text") or ""
    return ""


class Stack(SharedStack):
    """redis-server (no persistence unless asked) + emulator subprocess + the workers a test starts, with this
    suite's keys and settings (calls of at most 3 s, a 10 s visibility timeout); workers are SIGKILLed at the end."""

    def __init__(self, *, persistence: bool = False, password: str | None = None,
                 emulator_config: dict[str, Any] | None = None, **env: str) -> None:
        super().__init__(KEY_SECRETS, request_timeout=3, visibility_timeout=10, persistence=persistence,
                         password=password, emulator_config=emulator_config or {}, kill_workers=True, extra_env=env)


def record_figures(test: str, **figures: Any) -> None:
    """Keep a test's measured figures: printed (``pytest -s``) and appended as JSON lines to the file named by
    ``GEMINI_TASKS_CHAOS_FIGURES`` when it is set (docs/reliability.md quotes them)."""
    import json

    line = json.dumps({"test": test, **figures}, sort_keys=True, default=str)
    print(f"\nFIGURES {line}")
    path = os.environ.get("GEMINI_TASKS_CHAOS_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
