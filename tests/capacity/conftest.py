"""Capacity fixtures: a private redis-server, the emulator in its own process, workers as real subprocesses.

The application side runs in a subprocess too (``capacity_client.py``), so this process's Celery app is never
pointed at this stack (other test directories share the session).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gemini_tasks.testing.environment import stack_environ

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KEY_SECRETS = {f"GEMINI_API_KEY_{i}": f"capacity-secret-{i:02d}-zxcvbnmasdfg" for i in range(1, 3)}


@dataclass
class Stack:
    redis_url: str
    emulator: Any
    env: dict[str, str]

    def worker(self, **kw: Any) -> Any:
        """A ``WorkerProcess`` with exactly this stack's environment (not started)."""
        from gemini_tasks.testing.local_fleet import WorkerProcess

        kw.setdefault("name", f"cap-{uuid.uuid4().hex[:6]}@%h")
        return WorkerProcess(self.env, inherit_env=False, **kw)

    def run_client(self, spec: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        """Run ``capacity_client.py`` (the application side) with ``spec``."""
        proc = subprocess.run([sys.executable, str(HERE / "capacity_client.py")], input=json.dumps(spec),
                              check=False, capture_output=True, text=True, env=self.env, timeout=timeout, cwd=str(ROOT))
        if proc.returncode != 0:
            raise AssertionError(f"client failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def stack():
    from gemini_tasks.emulator.runner import EmulatorProcess
    from gemini_tasks.testing.local_redis import RedisServer

    with RedisServer() as redis_server, EmulatorProcess(config={"log_max": 100000}) as emulator:
        env = stack_environ(redis_server.url, emulator.url, KEY_SECRETS, request_timeout=30, visibility_timeout=120)
        yield Stack(redis_server.url, emulator, env)


@pytest.fixture
def emu(stack):
    stack.emulator.control.reset(log_max=100000)
    yield stack.emulator.control
    stack.emulator.control.clear_faults()
