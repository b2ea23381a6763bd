"""Shared fixtures: a private redis-server per session (tests never touch a Redis they did not start), and the
emulator fixtures of gemini_tasks/testing/pytest_plugin.py."""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ["no_proxy"] = os.environ["NO_PROXY"]
for _var in ("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE"):
    os.environ.pop(_var, None)

#: the shared fixtures ``emulator`` and ``emu`` (gemini_tasks/testing/pytest_plugin.py)
pytest_plugins = ("gemini_tasks.testing.pytest_plugin",)


@pytest.fixture(scope="session")
def redis_server():
    from gemini_tasks.testing.local_redis import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def pool_name() -> str:
    """A fresh pool namespace per test, so tests sharing one Redis never see each other's keys."""
    return "t" + uuid.uuid4().hex[:10]
