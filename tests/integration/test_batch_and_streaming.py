"""The original README's batch and streaming examples, through real workers, Redis and the emulator."""

from __future__ import annotations

import time

import pytest

FAST = dict(worker_cooldown_seconds=0, api_call_interval=0, max_workers=8)


def fast_manager(manager_factory, **kw):
    kw.setdefault("paid_keys", "all")
    return manager_factory(4, **kw)


def test_batch_results_in_input_order_with_failures_in_place(worker, emu, manager_factory):
    from gemini_tasks import GeminiParallelProcessor

    emu.add_fault(action="status", status=400, prompt_contains="BAD-REQUEST")
    emu.add_fault(action="blocked", reason="SAFETY", prompt_contains="BLOCK-ME")
    proc = GeminiParallelProcessor(fast_manager(manager_factory), "gemini-2.5-flash", **FAST)
    prompts = [{"prompt": f"question {i}", "metadata": {"task_id": f"t{i}"}} for i in range(12)]
    prompts[3]["prompt"] = "this is a BAD-REQUEST"
    prompts[7]["prompt"] = "please BLOCK-ME"
    results = proc.process_prompts(prompts, progress=False)
    assert [m["task_id"] for m, _, _ in results] == [f"t{i}" for i in range(12)]
    for i, (meta, response, error) in enumerate(results):
        if i == 3:
            assert response is None and "persistent" in error.lower()
        elif i == 7:
            assert response is None and "block" in error.lower() and "SAFETY" in error
        else:
            assert error is None, error
            assert f"question {i}" in response  # the emulator echoes the prompt it answered


def test_submit_now_collect_later_by_group_id(worker, emu, manager_factory):
    from gemini_tasks import GeminiParallelProcessor

    proc = GeminiParallelProcessor(fast_manager(manager_factory), "gemini-2.5-flash", **FAST)
    handle = proc.submit([{"prompt": f"later {i}", "metadata": {"n": i}} for i in range(5)])
    seen = []
    # another processor object (as another process would) collects by the stored id
    other = GeminiParallelProcessor(fast_manager(manager_factory), "gemini-2.5-flash", **FAST)
    results = other.collect(handle.group_id, timeout=30, progress=lambda done, total: seen.append((done, total)))
    assert [m["n"] for m, _, _ in results] == list(range(5))
    assert all(e is None and f"later {m['n']}" in r for m, r, e in results)
    assert seen[-1] == (5, 5)
    assert handle.progress() == (5, 5)


def test_streaming_process_single_and_status(worker, emu, manager_factory):
    from gemini_tasks import GeminiStreamingProcessor

    sp = GeminiStreamingProcessor(fast_manager(manager_factory), "gemini-2.5-flash", **FAST)
    with pytest.raises(RuntimeError, match="start"):
        sp.process_single({"prompt": "hi"})
    sp.start()
    try:
        meta, response, error = sp.process_single({"prompt": "What is the capital of France?",
                                                   "metadata": {"task_id": "q1"}}, timeout=30)
        assert error is None and "capital of France" in response and meta["task_id"] == "q1"
        meta, response, error = sp.process_single({"prompt": "no metadata"}, timeout=30)
        assert meta["task_id"]  # a task id is filled in, as the original did
        status = sp.get_worker_status()
        assert status["workers_running"] is True and status["active_workers"] >= 1
        assert status["queue_size"] == 0 and status["max_workers"] == 8
        assert set(status["key_status"]) == {f"GEMINI_API_KEY_{i}" for i in range(1, 5)}
    finally:
        sp.stop()
    assert not sp.is_running()


def test_streaming_timeout_leaves_no_ghost_call(worker, emu, manager_factory):
    import threading

    from gemini_tasks import GeminiStreamingProcessor

    # one paid key, one lease at a time; the first request holds it for 3 s (emulator latency)
    m = manager_factory(["GEMINI_API_KEY_1"], paid_keys="all")
    sp = GeminiStreamingProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)
    emu.add_fault(action="latency", seconds=3, prompt_contains="SLOW")
    sp.start()
    try:
        slow: list = []
        t = threading.Thread(target=lambda: slow.append(sp.process_single({"prompt": "SLOW one"}, timeout=30)))
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="timed out after 1"):
            sp.process_single({"prompt": "GHOST request"}, timeout=1)
        assert time.monotonic() - t0 < 2.5
        t.join(30)
        assert slow and slow[0][2] is None
        time.sleep(2.5)  # the key is free again: a ghost would call now
        calls = [e for e in emu.log() if "GHOST" in str(e.get("parts"))]
        assert calls == [], f"a timed-out request still reached the API: {calls}"
    finally:
        sp.stop()


def test_streaming_request_that_cannot_be_admitted_in_time_fails_fast(worker, emu, manager_factory):
    from gemini_tasks import GeminiStreamingProcessor

    m = manager_factory(["GEMINI_API_KEY_2"], key_settings={"free": {"key_cooldown_seconds": 30}})
    sp = GeminiStreamingProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)
    sp.start()
    try:
        assert sp.process_single({"prompt": "first"}, timeout=10)[2] is None
        t0 = time.monotonic()
        # the key is free again in 30 s, after the 5 s timeout: TimeoutError at once, naming the cause
        with pytest.raises(TimeoutError, match="cooldown"):
            sp.process_single({"prompt": "second"}, timeout=5)
        assert time.monotonic() - t0 < 3
    finally:
        sp.stop()


def test_mixed_free_and_paid_keys_prefer_paid(worker, emu, manager_factory):
    from gemini_tasks import GeminiParallelProcessor

    m = manager_factory(4, paid_keys=["GEMINI_API_KEY_3"],
                        key_settings={"free": {"key_cooldown_seconds": 60}, "paid": {"key_cooldown_seconds": 0}})
    proc = GeminiParallelProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                   max_workers=1)
    results = proc.process_prompts([{"prompt": f"p{i}", "metadata": {"i": i}} for i in range(6)], progress=False)
    assert all(e is None for _, _, e in results)
    used = [e["key_label"] for e in emu.log() if e.get("endpoint") == "generateContent"]
    # with one call in flight at a time the paid key is always free: it takes every call
    assert len(used) == 6 and len(set(used)) == 1
    summary = m.get_keys_status_summary()
    assert summary["GEMINI_API_KEY_3"]["admissions"] == 6
    assert all(summary[f"GEMINI_API_KEY_{i}"]["admissions"] == 0 for i in (1, 2, 4))
