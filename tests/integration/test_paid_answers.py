"""A paid answer is never thrown away (issue 11 item 1), through the real worker, the emulator and Redis.

The key manager lives on its own redis-server here, so the test can make it refuse writes (``READONLY``, as a
replica does after a failover) while Gemini is answering, and leave the broker and result backend alone.
Once Gemini has answered, the answer reaches the caller: bookkeeping is retried within a bounded budget and
then given up (the lease expires on its own); a storage failure is never retried by calling Gemini again.
The emulator counts the calls: exactly one per request in every case.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

FAST = {"worker_cooldown_seconds": 0, "api_call_interval": 0}


@pytest.fixture
def keys_redis(fleet_env, monkeypatch):
    """A second redis-server for the key manager only (workers read GEMINI_TASKS_KEYS_REDIS_URL)."""
    from gemini_tasks.settings import get_settings
    from gemini_tasks.testing.local_redis import RedisServer, free_port

    server = RedisServer().start()
    monkeypatch.setenv("GEMINI_TASKS_KEYS_REDIS_URL", server.url)
    get_settings.cache_clear()
    dead_port = free_port()
    import redis

    admin = redis.Redis.from_url(server.url)

    class Control:
        url = server.url

        def readonly(self) -> None:
            # a replica of a master that does not exist: it keeps its data and refuses every write
            admin.execute_command("REPLICAOF", "127.0.0.1", str(dead_port))

        def writable(self) -> None:
            admin.execute_command("REPLICAOF", "NO", "ONE")

    try:
        yield Control()
    finally:
        with contextlib.suppress(Exception):  # the server is stopped next anyway
            admin.execute_command("REPLICAOF", "NO", "ONE")
        admin.close()
        monkeypatch.delenv("GEMINI_TASKS_KEYS_REDIS_URL")
        get_settings.cache_clear()
        server.stop()


def calls(emu, marker):
    return [e for e in emu.log() if e.get("endpoint") == "generateContent"
            and any(marker in (p.get("text") or "") for p in (e.get("parts") or []))]


def when_leased(manager, timeout=20.0):
    """Block until a key of ``manager`` is leased (the call is under way)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(s.get("assigned_worker") for s in manager.get_keys_status_summary().values()):
            return
        time.sleep(0.02)
    raise AssertionError("no lease was taken")


def in_thread(fn):
    out: dict[str, object] = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - asserted by the caller
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_answer_survives_a_key_manager_that_refuses_writes_for_a_while(worker, emu, keys_redis):
    from gemini_tasks import AdvancedApiKeyManager, GeminiStreamingProcessor

    m = AdvancedApiKeyManager(2, paid_keys="all", pool="pa" + str(time.time_ns())[-8:], redis_url=keys_redis.url)
    sp = GeminiStreamingProcessor(m, "gemini-2.5-flash", **FAST)
    sp.start()
    emu.add_fault(action="latency", seconds=1.5, prompt_contains="PAID-A")
    t, out = in_thread(lambda: sp.process_single({"prompt": "PAID-A answer me"}, timeout=60))
    when_leased(m)
    keys_redis.readonly()  # a failover: the answer arrives while the key manager refuses writes
    time.sleep(3.0)
    keys_redis.writable()
    t.join(60)
    sp.stop()
    assert "error" not in out, out
    _, response, error = out["value"]
    assert error is None and "PAID-A answer me" in response
    assert len(calls(emu, "PAID-A")) == 1
    # the success was reported once Redis took writes again: the key is free, not held until its lease expires
    assert not any(s.get("assigned_worker") for s in m.get_keys_status_summary().values())


def test_answer_is_returned_when_the_key_manager_never_comes_back(worker, emu, keys_redis, monkeypatch):
    from gemini_tasks import AdvancedApiKeyManager, GeminiStreamingProcessor
    from gemini_tasks.worker import settle

    monkeypatch.setattr(settle, "BUDGET_SECONDS", 1.0)  # give up on the bookkeeping quickly
    m = AdvancedApiKeyManager(2, paid_keys="all", pool="pb" + str(time.time_ns())[-8:], redis_url=keys_redis.url)
    sp = GeminiStreamingProcessor(m, "gemini-2.5-flash", **FAST)
    sp.start()
    emu.add_fault(action="latency", seconds=1.0, prompt_contains="PAID-B")
    t, out = in_thread(lambda: sp.process_single({"prompt": "PAID-B answer me"}, timeout=60))
    when_leased(m)
    keys_redis.readonly()
    t.join(60)
    keys_redis.writable()
    sp.stop()
    assert "error" not in out, out
    _, response, error = out["value"]
    assert error is None and "PAID-B answer me" in response
    assert len(calls(emu, "PAID-B")) == 1
    # the key manager was never told: the lease is still held and ends at its expiry
    assert any(s.get("assigned_worker") for s in m.get_keys_status_summary().values())


def test_speech_blob_storage_failure_never_calls_gemini_again(worker, emu, keys_redis):
    from gemini_tasks import AdvancedApiKeyManager, GeminiTTSProcessor

    m = AdvancedApiKeyManager(2, paid_keys="all", pool="pc" + str(time.time_ns())[-8:], redis_url=keys_redis.url)
    tts = GeminiTTSProcessor(m, model="flash", api_call_interval=0, timeout=60)
    emu.add_fault(action="latency", seconds=1.5, prompt_contains="PAID-C")
    t, out = in_thread(lambda: tts.generate_speech("PAID-C say this", "Kore"))
    when_leased(m)
    keys_redis.readonly()  # storing the audio fails until Redis takes writes again
    time.sleep(3.0)
    keys_redis.writable()
    t.join(60)
    assert "error" not in out, out
    assert isinstance(out["value"], bytes) and len(out["value"]) > 0, tts.last_error
    assert len(calls(emu, "PAID-C")) == 1


def test_speech_storage_that_never_recovers_fails_without_a_second_call(worker, emu, keys_redis, monkeypatch):
    from gemini_tasks import AdvancedApiKeyManager, GeminiTTSProcessor
    from gemini_tasks.worker import settle

    monkeypatch.setattr(settle, "BUDGET_SECONDS", 1.0)
    m = AdvancedApiKeyManager(2, paid_keys="all", pool="pd" + str(time.time_ns())[-8:], redis_url=keys_redis.url)
    tts = GeminiTTSProcessor(m, model="flash", api_call_interval=0, timeout=60)
    emu.add_fault(action="latency", seconds=1.0, prompt_contains="PAID-D")
    t, out = in_thread(lambda: tts.generate_speech("PAID-D say this", "Kore"))
    when_leased(m)
    keys_redis.readonly()
    t.join(60)
    keys_redis.writable()
    assert "error" not in out, out
    assert out["value"] is None
    assert "stor" in tts.last_error.lower() and "no second call" in tts.last_error
    assert len(calls(emu, "PAID-D")) == 1
