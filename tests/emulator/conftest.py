"""Fixtures for the emulator tests: one in-process emulator per session, reset before every test.

Tests talk to it through the real google-genai SDK (sync client, no SDK retries, short timeout)
and script it through EmulatorControl, exactly as a test in another process would.
"""

from __future__ import annotations

import os

import pytest

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"
for _var in ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE"):
    os.environ.pop(_var, None)

from google import genai  # noqa: E402
from google.genai import types  # noqa: E402


@pytest.fixture
def emu(emulator):
    """The session's emulator (gemini_tasks/testing/pytest_plugin.py), back to its start-up state (config,
    windows, files, faults, log). Here ``emu`` is the emulator thread itself; ``ctl`` its control client."""
    emulator.control.reset()
    return emulator


@pytest.fixture
def ctl(emu):
    return emu.control


@pytest.fixture
def make_client(emu):
    """Factory for SDK clients pointed at the emulator (sync, no retries, timeout in ms)."""
    clients = []

    def make(api_key: str = "test-key", timeout_ms: int = 5000, base_url: str | None = None) -> genai.Client:
        client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url or emu.url, api_version="v1beta", timeout=timeout_ms, retry_options=None
            ),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture(autouse=True)
def no_server_errors(caplog):
    """Fail any test during which the emulator (or aiohttp under it) logged an error: a bug."""
    yield
    bad = [
        r
        for r in caplog.get_records("call")
        if r.levelno >= 40 and r.name.startswith(("aiohttp", "gemini_tasks.emulator"))
    ]
    assert not bad, [r.getMessage() for r in bad]
