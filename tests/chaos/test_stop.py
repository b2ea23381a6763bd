"""Stopping a worker keeps its promise (issue 13, item 6): SIGTERM finishes the call on the wire, hands back
every request that has not started its call, and the worker is gone within one call plus one short wait;
nothing is paid twice."""

from __future__ import annotations

import collections
import os
import signal
import time

import pytest
from chaos_stack import KEY_IDS, generate_calls, prompt_of, record_figures, wait_for

CALL = 5.0


@pytest.mark.parametrize("pool", ["threads", pytest.param("prefork", marks=pytest.mark.skipif(
    os.environ.get("GEMINI_TASKS_HEAVY") != "1", reason="heavy variant: set GEMINI_TASKS_HEAVY=1"))])
def test_sigterm_finishes_the_call_in_flight_and_hands_back_the_rest(stack, pool):
    from gemini_tasks import GeminiParallelProcessor

    ctl = stack.control
    ctl.reset()
    rule = ctl.add_fault(action="latency", seconds=CALL, prompt_contains="STOP-")
    env = {"GEMINI_TASKS_REQUEST_TIMEOUT": "30"}
    victim = stack.worker(pool=pool, concurrency=4, **env)
    # one key, one call at a time: one request calls, three wait for the key in the worker's slots
    manager = stack.manager(KEY_IDS[:1])
    proc = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)
    prompts = [{"prompt": f"STOP-{i}", "metadata": {"i": i}} for i in range(4)]
    handle = proc.submit(prompts)
    applied = lambda: next((r["applied"] for r in ctl.faults() if r["id"] == rule), 0)
    wait_for(lambda: applied() >= 1, 30, interval=0.05, what="first call on the wire")
    signalled = time.monotonic()
    victim.proc.send_signal(signal.SIGTERM)  # the main process only, as docker stop and systemd's KillMode=mixed
    victim.proc.wait(60)
    stop_s = time.monotonic() - signalled
    # the call on the wire finished (up to CALL s), the waiting requests were handed back, not waited for
    assert stop_s <= CALL + 5 + 4, stop_s
    assert applied() == 1
    stack.worker(concurrency=4, **env)
    results = proc.collect(handle, timeout=120)
    assert [e for _, _, e in results] == [None] * 4
    calls = collections.Counter(prompt_of(e) for e in generate_calls(ctl.log()) if e.get("status") == 200)
    assert calls == collections.Counter({p["prompt"]: 1 for p in prompts}), calls  # nothing paid twice
    assert "handed back before its call" in victim.log_tail(200_000)
    record_figures("sigterm_stop", pool=pool, call_seconds=CALL, stop_seconds=round(stop_s, 1), duplicates=0)
