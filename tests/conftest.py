"""Shared fixtures: a private redis-server per session (tests never touch a Redis they did not start)."""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ["no_proxy"] = os.environ["NO_PROXY"]
for _var in ("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def redis_server():
    from gemini_tasks.testing.local_redis import RedisServer

    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


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
