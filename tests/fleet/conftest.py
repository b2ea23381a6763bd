"""Fleet fixtures: a whole private stack per test session, isolated from every other test directory.

Why not the integration fixtures: they run an in-process worker on the session Redis, and Celery events
and queues are global to a Redis server, so a Flower or a worker here would see (and steal) their tasks.
Here everything is a separate process on a private ``redis-server``: the emulator (in a thread of this
process: it only serves HTTP), a real ``celery worker`` subprocess with ``-E``, and the application side
(``fleet_client.py``) in its own subprocess, so this process's Celery app is never re-pointed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gemini_tasks.testing.environment import stack_environ
from gemini_tasks.testing.local_fleet import WorkerProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: Secrets the tests must never find in Flower, metrics or logs (the emulator accepts any key).
KEY_SECRETS = {f"GEMINI_API_KEY_{i}": f"fleet-secret-{i:02d}-qwertyuiopasdfgh" for i in range(1, 5)}
MODEL = "gemini-2.5-flash"


def fleet_environ(redis_url: str, emulator_url: str) -> dict[str, str]:
    """The environment of every fleet process: the shared stack environment with this suite's keys."""
    return stack_environ(redis_url, emulator_url, KEY_SECRETS, request_timeout=10, visibility_timeout=120)


def make_worker(env: dict[str, str], **kw: Any) -> Any:
    """A ``WorkerProcess`` with exactly ``env`` (it pings through ``env``'s broker, never this process's)."""
    return WorkerProcess(env, inherit_env=False, **kw)


@dataclass
class Fleet:
    redis_url: str
    emulator: Any
    worker: Any
    env: dict[str, str]
    secrets: dict[str, str] = field(default_factory=lambda: dict(KEY_SECRETS))

    @property
    def emu(self) -> Any:
        return self.emulator.control

    def run_client(self, spec: dict[str, Any], timeout: float = 90.0) -> list[dict[str, Any]]:
        """Run ``fleet_client.py`` (the application side) with ``spec``; returns one dict per prompt."""
        spec.setdefault("model", MODEL)
        proc = subprocess.run([sys.executable, str(HERE / "fleet_client.py")], input=json.dumps(spec),
                              capture_output=True, text=True, env=self.env, timeout=timeout, cwd=str(ROOT))
        if proc.returncode != 0:
            raise AssertionError(f"fleet client failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n"
                                 f"worker log:\n{self.worker.log_tail()}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def fleet():
    from gemini_tasks.emulator.runner import EmulatorThread
    from gemini_tasks.testing.local_redis import RedisServer

    redis_server = RedisServer().start()
    emulator = EmulatorThread().start()
    env = fleet_environ(redis_server.url, emulator.url)
    worker = make_worker(env, queues="interactive,batch", pool="threads", concurrency=8,
                         name=f"fleet-{uuid.uuid4().hex[:6]}@%h")
    try:
        worker.start(timeout=60)
        yield Fleet(redis_url=redis_server.url, emulator=emulator, worker=worker, env=env)
    finally:
        worker.stop()
        emulator.stop()
        redis_server.stop()


@pytest.fixture
def fleet_emu(fleet):
    """The emulator control, reset for each test."""
    fleet.emu.reset()
    yield fleet.emu
    fleet.emu.clear_faults()


@pytest.fixture
def pool_name() -> str:
    return "f" + uuid.uuid4().hex[:10]
