"""Bad-input fixtures: a private redis-server, the emulator, one worker subprocess, and the client app
pointed at them (and put back afterwards), from the shared test stack's parts (:mod:`gemini_tasks.testing`)."""

from __future__ import annotations

import os
import uuid

import pytest

from gemini_tasks.testing.app_config import celery_app_on
from gemini_tasks.testing.environment import stack_environ

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ["no_proxy"] = os.environ["NO_PROXY"]

SECRETS = {f"GEMINI_API_KEY_B{i}": f"badinput-secret-{i}-{uuid.uuid4().hex}" for i in range(1, 4)}


@pytest.fixture(scope="module")
def stack():
    """redis-server + emulator + the client app; no worker, so anything enqueued stays visible in the queues."""
    import redis

    from gemini_tasks.emulator.runner import EmulatorThread
    from gemini_tasks.testing.local_redis import RedisServer

    server = RedisServer().start()
    emu = EmulatorThread().start()
    mp = pytest.MonkeyPatch()
    for name, secret in SECRETS.items():
        mp.setenv(name, secret)
    env = stack_environ(server.url, emu.url, SECRETS, request_timeout=5, visibility_timeout=30)
    state = {"url": server.url, "emu": emu.control, "worker_env": env, "worker": None}
    try:
        with celery_app_on(server.url):
            state["redis"] = redis.Redis.from_url(server.url)
            yield state
            state["redis"].close()
    finally:
        if state["worker"] is not None:
            state["worker"].stop()
        emu.stop()
        mp.undo()
        server.stop()


@pytest.fixture(scope="module")
def worker(stack):
    """One worker subprocess, started the first time a test needs requests to be answered."""
    from gemini_tasks.testing.local_fleet import WorkerProcess

    if stack["worker"] is None:
        stack["worker"] = WorkerProcess(stack["worker_env"], inherit_env=False, concurrency=4).start(timeout=60)
    return stack["worker"]


@pytest.fixture
def manager(stack):
    from gemini_tasks import AdvancedApiKeyManager

    return AdvancedApiKeyManager(list(SECRETS), paid_keys="all", pool="b" + uuid.uuid4().hex[:10],
                                 redis_url=stack["url"])


@pytest.fixture(autouse=True)
def _collect_results_while_stack_lives():
    """Drop a test's AsyncResults while its Redis still runs: their finalizers talk to the result backend."""
    yield
    import gc

    gc.collect()
