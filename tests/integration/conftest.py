"""Integration fixtures: real redis-server + the emulator over HTTP + a real Celery worker in-process.

The worker runs Celery's own WorkController (``start_worker``) with the threads pool, consuming both
queues; the SDK talks HTTP to the emulator through ``GOOGLE_GEMINI_BASE_URL`` exactly as it would to Google.
The emulator (``emulator``, ``emu``) is the session's, from gemini_tasks/testing/pytest_plugin.py.
"""

from __future__ import annotations

import pytest

KEY_SECRETS = {f"GEMINI_API_KEY_{i}": f"emu-secret-{i:02d}-abcdefghijklmnop" for i in range(1, 5)}


@pytest.fixture(scope="session")
def fleet_env(redis_url, emulator):
    """Process environment for the client and the in-process worker."""
    from gemini_tasks.testing.environment import client_environ

    with client_environ(redis_url, emulator.url, KEY_SECRETS, request_timeout=5, visibility_timeout=120) as env:
        yield env


@pytest.fixture(scope="session")
def celery_app(fleet_env, redis_url):
    from gemini_tasks.testing.app_config import celery_app_on

    with celery_app_on(redis_url) as app:
        app.conf.update(broker_connection_retry_on_startup=True)
        yield app


@pytest.fixture(scope="session")
def worker(celery_app):
    from celery.contrib.testing.worker import start_worker

    import gemini_tasks.worker.tasks  # noqa: F401 - register the tasks

    with start_worker(celery_app, pool="threads", concurrency=8, perform_ping_check=False,
                      queues=["interactive", "batch"], shutdown_timeout=30, loglevel="WARNING") as w:
        yield w


@pytest.fixture
def manager_factory(fleet_env, pool_name):
    from gemini_tasks.keys import AdvancedApiKeyManager

    def make(keys=4, **kw):
        kw.setdefault("pool", pool_name)
        return AdvancedApiKeyManager(keys, **kw)

    return make


@pytest.fixture(scope="session")
def key_secrets() -> dict[str, str]:
    """This folder's key secrets (test modules cannot ``import conftest``: every folder has one)."""
    return dict(KEY_SECRETS)
