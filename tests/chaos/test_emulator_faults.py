"""Emulator faults under load: every request ends (answer or an error of the right kind), no call outlives
its deadline, transient faults never bench a key, and the fleet serves normally once the fault stops."""

from __future__ import annotations

import time

import pytest

from chaos_stack import generate_calls, pool_leases, prompt_of, record_figures

REQUEST_TIMEOUT = 3.0  # GEMINI_TASKS_REQUEST_TIMEOUT of the workers (chaos_stack.worker_env)
BENCHED = ("TEMPORARILY_EXHAUSTED", "FULLY_EXHAUSTED", "FAILED_INIT")

TRANSIENT_FAULTS = {
    "http500": {"action": "status", "status": 500},
    "http503": {"action": "status", "status": 503},
    "http504": {"action": "status", "status": 504},
    "hang_past_timeout": {"action": "hang", "seconds": 30},
    "connection_reset": {"action": "reset"},
    "malformed_json": {"action": "malformed"},
}


#: above the longest a request can hold its message here (5 attempts of up to 3 s plus backoff sleeps):
#: a shorter one hands slow-but-alive requests to a second worker (docs/reliability.md, "what it costs")
VISIBILITY = "40"


@pytest.fixture(scope="module")
def fleet(stack):
    stack.worker(concurrency=4, GEMINI_TASKS_VISIBILITY_TIMEOUT=VISIBILITY)
    stack.worker(concurrency=4, GEMINI_TASKS_VISIBILITY_TIMEOUT=VISIBILITY)
    return stack


def _processor(manager, **kw):
    from gemini_tasks import GeminiParallelProcessor

    kw.setdefault("api_call_retries", 4)
    return GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                   max_workers=8, **kw)


def _slow_calls(manager) -> dict[str, float]:
    """Calls the workers timed above the bucket that holds the request timeout (metrics call counters)."""
    from gemini_tasks.ops.metrics import read_calls

    return {f: v for f, v in read_calls(manager.pool).items()
            if f.startswith("lat_le|") and f.split("|")[1] not in ("0.1", "0.25", "0.5", "1.0", "2.5", "5.0")}


def test_every_transient_fault_under_load(fleet):
    """All six kinds at once, each on ~8% of calls (seeded): ~40% of calls fail, retries absorb them."""
    ctl = fleet.control
    ctl.reset(seed=7, latency_seconds=0.05)
    ctl.add_faults([{"endpoint": "generateContent", "probability": 0.08, **rule}
                    for rule in TRANSIENT_FAULTS.values()])
    manager = fleet.manager()
    n = 32
    t0 = time.monotonic()
    results = _processor(manager, api_call_retries=5).process_prompts(
        [{"prompt": f"fault-{i:02d}", "metadata": {"i": i}} for i in range(n)], timeout=120, progress=False)
    elapsed = time.monotonic() - t0
    injected = {name: rule["applied"] for name, rule in zip(TRANSIENT_FAULTS, ctl.faults())}
    assert all(injected.values()), f"a fault kind never fired: {injected}"  # hangs are logged only when they end
    answered = 0
    for meta, response, error in results:  # every request ends: its answer, or a transient error after retries
        if error is None:
            assert f"fault-{meta['i']:02d}" in response
            answered += 1
        else:
            assert error.startswith("Transient error") and "failed after 5 attempts" in error, error
    assert answered >= n - 3
    summary = manager.get_keys_status_summary()
    assert not [k for k, s in summary.items() if s["status"] in BENCHED or s["total_exhausted_count"]], summary
    assert pool_leases(fleet.client(), manager.pool_name) == 0
    assert _slow_calls(manager) == {}, "a call outlived the request timeout"
    # the faults stop: the next batch is answered in full, first time
    ctl.clear_faults()
    again = _processor(manager).process_prompts([{"prompt": f"after-{i}"} for i in range(8)], timeout=30,
                                                progress=False)
    assert all(e is None for _, _, e in again)
    record_figures("transient_faults", requests=n + 8, faults_injected=injected, answered=answered + 8,
                   transient_errors=n - answered, lost=0, seconds=round(elapsed, 1))


def test_429_storm_on_every_key_ends_in_exhausted_errors_and_recovers(fleet):
    ctl = fleet.control
    ctl.reset()
    ctl.add_fault(endpoint="generateContent", action="status", status=429, quota_kind="minute", retry_delay="1s")
    settings = {"paid": {"exhausted_wait_seconds": 1, "fully_exhausted_wait_seconds": 3, "max_exhausted_retries": 3}}
    from chaos_stack import KEY_IDS

    manager = fleet.manager(KEY_IDS[:4], key_settings=settings)
    n = 8
    t0 = time.monotonic()
    results = _processor(manager, max_wait_seconds=6).process_prompts(
        [{"prompt": f"storm-{i}", "metadata": {"i": i}} for i in range(n)], timeout=60, progress=False)
    elapsed = time.monotonic() - t0
    errors = [e for _, _, e in results]
    assert all(e is not None and "exhausted" in e.lower() for e in errors), errors
    assert elapsed < 6 + REQUEST_TIMEOUT + 10, elapsed  # bounded by max_wait_seconds, not by the storm
    storm_calls = len(generate_calls(ctl.log()))
    summary = manager.get_keys_status_summary()
    assert all(s["status"] != "FAILED_INIT" for s in summary.values())
    assert all(s["total_exhausted_count"] >= 1 for s in summary.values())  # each key was benched, not failed
    # the storm ends: once the benches run out, the same manager's keys answer everything
    ctl.clear_faults()
    time.sleep(3.5)
    after = _processor(manager).process_prompts([{"prompt": f"calm-{i}"} for i in range(8)], timeout=30,
                                                progress=False)
    assert all(e is None for _, _, e in after), after
    assert pool_leases(fleet.client(), manager.pool_name) == 0
    record_figures("fault_429_storm", requests=n + 8, faults_injected=storm_calls, exhausted_errors=n,
                   answered_after=8, lost=0, seconds=round(elapsed, 1))


def test_streaming_caller_deadline_holds_when_every_call_hangs(fleet):
    from gemini_tasks import GeminiStreamingProcessor

    ctl = fleet.control
    ctl.reset()
    ctl.add_fault(endpoint="generateContent", action="hang", seconds=30)
    manager = fleet.manager()
    sp = GeminiStreamingProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                  api_call_retries=10)
    sp.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            sp.process_single({"prompt": "deadline-hang"}, timeout=4)
        assert time.monotonic() - t0 < 4.5
        time.sleep(0.2)
        arrived = ctl.faults()[0]["applied"]  # counted on arrival (a hung call is logged only when it ends)
        time.sleep(2 + 1)  # past the worker's own deadline (caller's timeout + 2 s grace)
        assert ctl.faults()[0]["applied"] == arrived, "a call started after the caller gave up"
        ctl.clear_faults()
        meta, response, error = sp.process_single({"prompt": "deadline-after"}, timeout=10)
        assert error is None and "deadline-after" in response
    finally:
        sp.stop()
    assert pool_leases(fleet.client(), manager.pool_name) == 0
