"""A whole stack made of real processes for chaos tests: redis-server, emulator, celery worker subprocesses.

Everything is started here and stopped by PID. The test process is the *client* (the application): its
process-wide Celery app is pointed at this stack's Redis for as long as the stack lives and put back after,
so other test directories that configure the same app are not disturbed.

This module is imported by ``tests/chaos/conftest.py`` and the chaos tests (pytest puts this directory on
``sys.path``); the security and bad-input suites carry their own small copies on purpose.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import redis

from gemini_tasks.testing.app_config import celery_app_on, forget_backend  # noqa: F401 - used by the chaos tests
from gemini_tasks.testing.lifecycle import StartStop

#: Names that cannot collide with the integration suite's GEMINI_API_KEY_1..4.
KEY_SECRETS = {f"GEMINI_API_KEY_C{i}": f"chaos-secret-{i:02d}-{uuid.uuid4().hex}" for i in range(1, 9)}
KEY_IDS = list(KEY_SECRETS)
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def worker_env(redis_url: str, emulator_url: str, **extra: str) -> dict[str, str]:
    """Environment for worker subprocesses: this stack's Redis and emulator, only this stack's keys."""
    env = {name: "" for name in os.environ if name.startswith("GEMINI_API_KEY")}  # hide other suites' keys
    env.update(KEY_SECRETS)
    env.update({
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": "",
        "CELERY_RESULT_BACKEND": "",
        "GEMINI_TASKS_KEYS_REDIS_URL": "",
        "GOOGLE_GEMINI_BASE_URL": emulator_url,
        "GEMINI_TASKS_REQUEST_TIMEOUT": "3",
        "GEMINI_TASKS_VISIBILITY_TIMEOUT": "10",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def rss_kib(pid: int) -> int:
    """Resident memory of one process (KiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pool_leases(client: redis.Redis, pool: str) -> int:
    """Active leases recorded for a pool (the ``leases`` ZSET; 0 when nothing is leaked)."""
    return int(client.zcard(f"gt:{{{pool}}}:leases"))


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


def generate_calls(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in log if e.get("endpoint") == "generateContent"]


def prompt_of(entry: dict[str, Any]) -> str:
    for part in entry.get("parts") or []:
        if part.get("kind") == "text":
            return part.get("text") or ""
    return ""


class Stack(StartStop):
    """redis-server + emulator subprocess + N worker subprocesses, and the client app pointed at them."""

    def __init__(self, *, persistence: bool = False, password: str | None = None,
                 emulator_config: dict[str, Any] | None = None, **env: str) -> None:
        self.persistence = persistence
        self.password = password
        self.emulator_config = emulator_config or {}
        self.extra_env = env
        self.redis_server: Any = None
        self.emulator: Any = None
        self.workers: list[Any] = []
        self._app_ctx: Any = None
        self._env_ctx: Any = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "Stack":
        import pytest

        from gemini_tasks.emulator.runner import EmulatorProcess
        from gemini_tasks.testing.local_redis import RedisServer

        self.redis_server = RedisServer(persistence=self.persistence, password=self.password).start()
        self.emulator = EmulatorProcess(config=self.emulator_config).start()
        self._env_ctx = pytest.MonkeyPatch()
        for name, secret in KEY_SECRETS.items():  # the client holds the same secrets as the workers
            self._env_ctx.setenv(name, secret)
        self._app_ctx = celery_app_on(self.url)
        self.app = self._app_ctx.__enter__()
        return self

    def stop(self) -> None:
        for w in self.workers:  # SIGKILL: a warm shutdown after chaos can wait on a broker that went away
            with contextlib.suppress(Exception):
                w.kill()
        if self._app_ctx is not None:
            self._app_ctx.__exit__(None, None, None)
        if self._env_ctx is not None:
            self._env_ctx.undo()
        if self.emulator is not None:
            self.emulator.stop()
        if self.redis_server is not None:
            self.redis_server.stop()


    # -- parts ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.redis_server.url

    @property
    def control(self) -> Any:
        return self.emulator.control

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=10)

    def env(self, **extra: str) -> dict[str, str]:
        return worker_env(self.url, self.emulator.url, **{**self.extra_env, **extra})

    def worker(self, *, queues: str = "interactive,batch", concurrency: int = 4, **extra_env: str) -> Any:
        from gemini_tasks.testing.local_fleet import WorkerProcess

        w = WorkerProcess(self.env(**extra_env), queues=queues, concurrency=concurrency, loglevel="INFO")
        self.workers.append(w)
        w.start(timeout=60)
        return w

    def manager(self, keys: list[str] | None = None, **kw: Any) -> Any:
        from gemini_tasks import AdvancedApiKeyManager

        kw.setdefault("pool", "c" + uuid.uuid4().hex[:10])
        kw.setdefault("paid_keys", "all")
        return AdvancedApiKeyManager(keys or KEY_IDS, redis_url=self.url, **kw)

    def worker_logs(self) -> str:
        return "\n".join(w.log_path.read_text(errors="replace") for w in self.workers if w.log_path.exists())


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
