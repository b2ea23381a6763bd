"""Web fixtures: real redis-server, the emulator over HTTP, a real worker process with many slots, uvicorn.

The worker runs as a child process (``celery -A gemini_tasks worker``, threads pool) so that 50 requests can
all be in flight on slow Gemini calls at once, and so that neither it nor the emulator shares an interpreter
with the ASGI server under test. The emulator (``emulator``, ``emu``) is the session's
(gemini_tasks/testing/pytest_plugin.py).
"""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gemini_tasks.testing.app_config import celery_app_on

KEY_SECRETS = {f"GEMINI_API_KEY_{i}": f"emu-secret-{i:02d}-abcdefghijklmnop" for i in range(1, 51)}
HERE = Path(__file__).parent


@pytest.fixture(scope="package")
def web_redis_server():
    """A redis-server of this directory's own: its worker process consumes every queue of the Redis it is
    given, so sharing the session's Redis with other directories' workers would mix their tasks. (A distinct
    name: overriding the session-scoped ``redis_server`` here would leak into the cached ``redis_url``.)"""
    from gemini_tasks.testing.local_redis import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture(scope="package")
def redis_url(web_redis_server) -> str:
    return web_redis_server.url


@pytest.fixture(scope="package")
def fleet_env(redis_url, emulator):
    from gemini_tasks.testing.environment import client_environ

    with client_environ(redis_url, emulator.url, KEY_SECRETS, request_timeout=10, visibility_timeout=120) as env:
        with celery_app_on(redis_url):
            yield env
            # results still referenced by finished tests unsubscribe now, while this Redis still runs (their
            # finalizers would otherwise retry a stopped Redis at some later garbage collection)
            gc.collect()


@pytest.fixture(scope="package")
def worker(fleet_env):
    from gemini_tasks.testing.local_fleet import WorkerProcess

    with WorkerProcess(dict(fleet_env), concurrency=64) as w:
        yield w


@pytest.fixture
def manager(fleet_env, pool_name):
    from gemini_tasks.keys import AdvancedApiKeyManager

    return AdvancedApiKeyManager(8, paid_keys="all", pool=pool_name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def asgi_server(worker, fleet_env, pool_name):
    """The example FastAPI app (tests/web/asgi_app.py) under a real uvicorn process; yields its base URL."""
    port = _free_port()
    log_path = Path(f"/tmp/gemini-tasks-uvicorn-{uuid.uuid4().hex[:8]}.log")
    env = {**fleet_env, "WEB_POOL": pool_name}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "asgi_app:app", "--app-dir", str(HERE),
                                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not start:\n{log_path.read_text()[-3000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        print(f"uvicorn log:\n{log_path.read_text(errors='replace')[-4000:]}")  # shown when a test fails
        log_path.unlink(missing_ok=True)
