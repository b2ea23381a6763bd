"""Nothing is printed at interpreter exit after a TimeoutError or a BatchLost (issue 12 item 10).

Before, Celery's ``AsyncResult.__del__`` ran during interpreter shutdown for every pending result and printed
``Exception ignored in: ... ImportError: sys.meta_path is None`` (18 lines after one timeout, ~3,000 after a
lost batch).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).with_name("exit_noise_app.py")


@pytest.fixture(scope="module")
def lonely_redis():
    """A Redis that no worker consumes from, so requests are never answered."""
    from gemini_tasks.testing.local_redis import RedisServer

    server = RedisServer().start()
    yield server.url
    server.stop()


@pytest.mark.parametrize("mode,marker", [("timeout", "timed out"), ("lost", "lost")])
def test_nothing_is_printed_at_exit(fleet_env, lonely_redis, mode, marker):
    env = {**os.environ, "REDIS_URL": lonely_redis, "PYTHONPATH": str(APP.parents[2])}
    proc = subprocess.run([sys.executable, str(APP), mode], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker in proc.stdout
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # the only line allowed: start()'s warning that no worker consumes the queue (true here)
    others = [line for line in proc.stderr.splitlines() if "no live worker consumes" not in line]
    assert others == [], proc.stderr[-3000:]
