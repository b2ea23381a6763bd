"""Bad-input fixtures: a private redis-server, the emulator, one worker subprocess, and the client app
pointed at them (and put back afterwards): the shared :class:`gemini_tasks.testing.stack.Stack`."""

from __future__ import annotations

import os
import uuid

import pytest

from gemini_tasks.testing.stack import Stack

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ["no_proxy"] = os.environ["NO_PROXY"]

SECRETS = {f"GEMINI_API_KEY_B{i}": f"badinput-secret-{i}-{uuid.uuid4().hex}" for i in range(1, 4)}


@pytest.fixture(scope="module")
def stack():
    """redis-server + emulator + the client app; no worker until a test asks for one (``worker``), so anything
    enqueued before stays visible in the queues."""
    with Stack(SECRETS, request_timeout=5, visibility_timeout=30, emulator_in_process=True) as s:
        yield s


@pytest.fixture(scope="module")
def worker(stack):
    """One worker subprocess, started the first time a test needs requests to be answered."""
    return stack.workers[0] if stack.workers else stack.worker(concurrency=4, loglevel="WARNING")


@pytest.fixture
def manager(stack):
    from gemini_tasks import AdvancedApiKeyManager

    return AdvancedApiKeyManager(list(SECRETS), paid_keys="all", pool="b" + uuid.uuid4().hex[:10],
                                 redis_url=stack.url)


@pytest.fixture(autouse=True)
def _collect_results_while_stack_lives():
    """Drop a test's AsyncResults while its Redis still runs: their finalizers talk to the result backend."""
    yield
    import gc

    gc.collect()
