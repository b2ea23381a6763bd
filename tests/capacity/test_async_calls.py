"""Gemini calls on one event loop per worker process (gemini_tasks/worker/async_calls.py).

Real parts: the google-genai SDK's async client over HTTP (aiohttp) to the emulator in its own process, and for
the worker tests a ``celery worker`` subprocess (threads pool) with a private redis-server.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid

import pytest
from capacity_helpers import max_in_flight

from gemini_tasks.transport import pools
from gemini_tasks.settings import get_settings
from gemini_tasks.worker import async_calls

MODEL = "gemini-2.5-flash"
SECRET = "capacity-secret-01-zxcvbnmasdfg"
LOOP_LINE = "Gemini calls run on this process's event loop"


@pytest.fixture
def settings_env(monkeypatch):
    """Set GEMINI_TASKS_ASYNC_CALLS and the slots for one test; both restored afterwards."""
    saved = pools.slots_per_process()

    def apply(mode: str | None, slots: int | None) -> None:
        if mode is None:
            monkeypatch.delenv("GEMINI_TASKS_ASYNC_CALLS", raising=False)
        else:
            monkeypatch.setenv("GEMINI_TASKS_ASYNC_CALLS", mode)
        get_settings.cache_clear()
        pools.set_slots(slots)

    yield apply
    pools.set_slots(saved)
    monkeypatch.delenv("GEMINI_TASKS_ASYNC_CALLS", raising=False)
    get_settings.cache_clear()


@pytest.mark.parametrize(("mode", "slots", "expected"), [
    (None, None, False),    # outside a worker: the caller's own thread makes the call
    (None, 1, False),       # a prefork child or solo: one call per process, nothing to multiplex
    (None, 64, False),      # off unless asked for
    ("auto", 64, True),
    ("0", 64, False),
    ("off", 2000, False),
    ("1", None, True),      # forced on wherever real threads run
    ("on", 1, True),
])
def test_enabled_follows_the_setting_and_the_slots(settings_env, mode, slots, expected):
    settings_env(mode, slots)
    assert async_calls.enabled() is expected


def test_a_bad_setting_is_refused(settings_env):
    with pytest.raises(ValueError, match="GEMINI_TASKS_ASYNC_CALLS must be auto, 1 or 0, got 'maybe'"):
        settings_env("maybe", None)
        get_settings()


@pytest.fixture
def sdk_env(stack, monkeypatch):
    """This process's SDK pointed at the emulator (the SDK reads GOOGLE_GEMINI_BASE_URL itself)."""
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", stack.emulator.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield
    async_calls.default_loop.close()


def _loop_client(loop: async_calls.CallLoop, timeout_s: float = 30.0) -> async_calls.LoopClient:
    from gemini_tasks.gemini.client import make_client

    sync = make_client(SECRET, timeout_s=timeout_s)
    aio = loop.client("k1", SECRET, timeout_s=timeout_s, api_version="v1beta")
    return async_calls.LoopClient(sync, aio, loop, timeout_s)


def test_many_threads_share_one_loop_and_hold_every_call_in_flight(stack, emu, sdk_env):
    """120 threads, one call each, 2 s latency: all 120 at the emulator at once, each answer its own prompt,
    sent from the loop thread (the callers only wait)."""
    emu.reset(latency_seconds=2.0, log_max=100000)
    loop = async_calls.CallLoop()
    client = _loop_client(loop)
    answers: dict[int, str] = {}
    senders: set[str] = set()
    real_generate = client.models._aio.generate_content

    async def spying_generate(**kw):
        senders.add(threading.current_thread().name)
        return await real_generate(**kw)

    client.models._aio = type("Spy", (), {"generate_content": staticmethod(spying_generate)})()

    def one(i: int) -> None:
        answers[i] = client.models.generate_content(model=MODEL, contents=f"prompt {i}").text

    since = emu.clear_log()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(120)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        loop.close()
    assert sorted(answers) == list(range(120))
    assert all(f"prompt {i}" in answers[i] for i in answers)
    assert senders == {"gemini-tasks-call-loop"}
    entries = emu.log(since=since)
    assert max_in_flight(entries) == 120
    # one aiohttp pool for the process: connections are reused, never more than the calls at once
    assert len({e.get("client_port") for e in entries if e.get("endpoint") == "generateContent"}) <= 120


def test_other_sdk_methods_use_the_sync_client(stack, emu, sdk_env):
    loop = async_calls.CallLoop()
    client = _loop_client(loop)
    try:
        assert client.models.count_tokens.__self__ is client._sync.models
        assert client.files is client._sync.files
        assert client.models.count_tokens(model=MODEL, contents="four words of text").total_tokens > 0
    finally:
        loop.close()


def test_a_connection_reset_is_raised_once_never_resent_by_the_sdk(stack, emu, sdk_env):
    """The SDK's aiohttp path resends after a connection error by itself unless retry options are given: our
    client gives them (one attempt), so the error reaches the execution, which reports it and decides."""
    from gemini_tasks.gemini.classification import classify

    emu.reset(latency_seconds=0.0, log_max=100000)
    loop = async_calls.CallLoop()
    client = _loop_client(loop)
    since = emu.clear_log()
    emu.add_fault(action="reset", prompt_contains="reset me", times=5)
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            client.models.generate_content(model=MODEL, contents="reset me")
        assert time.monotonic() - started < 1.0  # no sleep-and-resend (the SDK's implicit retry sleeps 1-10 s)
    finally:
        loop.close()
        emu.clear_faults()
    assert classify(caught.value).kind == "transient"
    calls = [e for e in emu.log(since=since) if e.get("endpoint") == "generateContent"]
    assert len(calls) == 1


def test_a_call_the_loop_does_not_end_is_cancelled_after_its_timeout():
    loop = async_calls.CallLoop()
    cancelled = threading.Event()

    async def never_ends() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        with pytest.raises(TimeoutError, match="did not end within"):
            loop.run(never_ends(), timeout=0.3)
        assert cancelled.wait(5)
    finally:
        loop.close()


def test_a_forked_child_starts_its_own_loop(stack, emu, sdk_env):
    """A prefork child inherits the parent's loop object but not its thread: it must start its own."""
    loop = async_calls.CallLoop()
    client = _loop_client(loop)
    assert client.models.generate_content(model=MODEL, contents="parent").text
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one call through the same CallLoop object
        try:
            child = _loop_client(loop)
            ok = "child" in child.models.generate_content(model=MODEL, contents="child").text
            os.write(write, b"1" if ok and loop._pid == os.getpid() else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"1"
    finally:
        os.waitpid(pid, 0)
        os.close(read)
        loop.close()


def test_worker_holds_every_slot_in_flight_on_its_event_loop(stack, emu):
    """One threads worker at -c 400 on two keys, GEMINI_TASKS_ASYNC_CALLS=auto: the emulator sees (nearly) all 400 calls
    at once, sent from the worker's event loop (its log says so), every answer in place."""
    slots = 400
    emu.reset(latency_seconds=5.0, log_max=100000)
    worker = stack.worker(queues="batch", pool="threads", concurrency=slots, loglevel="INFO")
    worker.env = {**worker.env, "GEMINI_TASKS_ASYNC_CALLS": "auto"}
    with worker:
        since = emu.clear_log()
        out = stack.run_client({"pool": "cap" + uuid.uuid4().hex[:8], "keys": 2, "leases": slots,
                                "max_workers": slots, "timeout": 120,
                                "prompts": [{"prompt": f"p{i}", "metadata": {"i": i}} for i in range(slots)]},
                               timeout=180)
        log = worker.log_path.read_text(errors="replace")
    results = out["results"]
    assert [r["metadata"]["i"] for r in results] == list(range(slots))
    assert [r["error"] for r in results if r["error"]] == []
    assert LOOP_LINE in log and f"aiohttp pool: {slots + pools.POOL_MARGIN} connections" in log
    peak = max_in_flight(emu.log(since=since))
    assert peak >= 0.8 * slots, f"only {peak} calls in flight at once with {slots} slots"


def test_worker_with_async_calls_off_makes_its_calls_in_its_threads(stack, emu):
    emu.reset(latency_seconds=0.0, log_max=100000)
    worker = stack.worker(queues="batch", pool="threads", concurrency=4, loglevel="INFO")
    worker.env = {**worker.env, "GEMINI_TASKS_ASYNC_CALLS": "0"}
    with worker:
        out = stack.run_client({"pool": "cap" + uuid.uuid4().hex[:8], "keys": 2, "timeout": 60,
                                "prompts": [{"prompt": f"s{i}", "metadata": {"i": i}} for i in range(8)]})
        log = worker.log_path.read_text(errors="replace")
    assert [r["error"] for r in out["results"]] == [None] * 8
    assert LOOP_LINE not in log
