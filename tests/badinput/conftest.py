"""Bad-input fixtures: a private redis-server, the emulator, one worker subprocess, and the client app
pointed at them (and put back afterwards). Small copies of the chaos suite's helpers, on purpose."""

from __future__ import annotations

import contextlib
import os
import threading
import uuid

import pytest

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ["no_proxy"] = os.environ["NO_PROXY"]

SECRETS = {f"GEMINI_API_KEY_B{i}": f"badinput-secret-{i}-{uuid.uuid4().hex}" for i in range(1, 4)}


@contextlib.contextmanager
def celery_app_on(url: str):
    """Point the process-wide Celery app at ``url``; Celery caches producer pool and backend, so drop them."""
    from gemini_tasks.celery_app import app

    saved = {"broker_url": app.conf.broker_url, "result_backend": app.conf.result_backend}

    def forget() -> None:
        pool, app._pool = app._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.force_close_all()
        if "amqp" in app.__dict__:
            app.__dict__["amqp"]._producer_pool = None
        backend = app._backend_cache or getattr(app._local, "backend", None)
        consumer = getattr(backend, "result_consumer", None)
        if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
            with contextlib.suppress(Exception):  # AsyncResults outliving the stack: nothing to unsubscribe
                consumer.stop()
            consumer._pubsub = None
            consumer.subscribed_to.clear()
        app._backend_cache = None
        app._local = threading.local()

    app.conf.update(broker_url=url, result_backend=url)
    forget()
    try:
        yield app
    finally:
        app.conf.update(saved)
        forget()


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
    env = {name: "" for name in os.environ if name.startswith("GEMINI_API_KEY") and name not in SECRETS}
    env.update({"REDIS_URL": server.url, "CELERY_BROKER_URL": "", "CELERY_RESULT_BACKEND": "",
                "GEMINI_TASKS_KEYS_REDIS_URL": "", "GOOGLE_GEMINI_BASE_URL": emu.url,
                "GEMINI_TASKS_REQUEST_TIMEOUT": "5", "GEMINI_TASKS_VISIBILITY_TIMEOUT": "30"})
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
        stack["worker"] = WorkerProcess(stack["worker_env"], concurrency=4).start(timeout=60)
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
