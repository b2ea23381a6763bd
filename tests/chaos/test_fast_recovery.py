"""Fast recovery on the Redis broker with the default settings (issue 13, item 1 broker side, item 7).

Live workers refresh the messages they hold (gemini_tasks/worker/holding.py), so the default visibility
timeout is short: a SIGKILLed worker's requests are answered again within about 30 s, while a call that runs
longer than the visibility timeout, or a countdown that waits longer, is still delivered once.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time

import pytest
from chaos_stack import (
    KEY_IDS,
    generate_calls,
    held_since,
    prompt_of,
    queue_lengths,
    record_figures,
    task_events,
    wait_for,
)

from gemini_tasks.settings import DEFAULT_VISIBILITY_TIMEOUT

HEAVY = os.environ.get("GEMINI_TASKS_HEAVY") == "1"

#: the package defaults: no visibility timeout, no call timeout configured
DEFAULTS = {"GEMINI_TASKS_VISIBILITY_TIMEOUT": "", "GEMINI_TASKS_REQUEST_TIMEOUT": ""}


def test_sigkilled_worker_requests_answered_within_30s_with_defaults(stack):
    from gemini_tasks import GeminiParallelProcessor
    from gemini_tasks.celeryconfig import UNACKED_RESTORE_INTERVAL

    ctl = stack.control
    ctl.reset(latency_seconds=1.0)
    victim = stack.worker(concurrency=4, **DEFAULTS)
    survivor = stack.worker(concurrency=4, **DEFAULTS)
    manager = stack.manager()
    proc = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                   max_workers=8)
    n = 20
    prompts = [{"prompt": f"fast-{i:03d}", "metadata": {"i": i}} for i in range(n)]
    handle = proc.submit(prompts)
    victim_tag = f":{victim.pid}:"
    wait_for(lambda: sum(1 for s in manager.get_keys_status_summary().values()
                         if victim_tag in (s["assigned_worker"] or "")) >= 2, 30, interval=0.05,
             what="victim mid-call")
    victim.kill()
    killed_at, killed_wall = time.monotonic(), time.time()
    held_at_kill = held_since(stack.client())  # the victim's entries keep the score of its last refresh

    results = proc.collect(handle, timeout=90)
    recovered_s = time.monotonic() - killed_at
    errors = [(m, e) for m, _, e in results if e is not None]
    assert errors == [], errors
    assert [m["i"] for m, _, _ in results] == list(range(n))
    log = generate_calls(ctl.log())
    # a request cut off by the kill while its body was being sent reaches the emulator without a prompt; it
    # was never answered, so it is not a paid call
    assert all(e.get("status") != 200 for e in log if not prompt_of(e)), [e for e in log if not prompt_of(e)]
    calls = collections.Counter(prompt_of(e) for e in log if prompt_of(e))
    assert set(calls) == {p["prompt"] for p in prompts}
    duplicates = sum(c - 1 for c in calls.values())
    assert duplicates <= victim.concurrency, calls

    # the timeline, from the workers' own logs: which messages the victim left behind, when the survivor got
    # them back and how long their calls took (on a loaded machine a 1 s call can take several)
    victim_tasks = task_events(victim.log_path.read_text(errors="replace"))
    survivor_tasks = task_events(survivor.log_path.read_text(errors="replace"))
    stranded = {t for t in held_at_kill if t in victim_tasks and "succeeded" not in victim_tasks[t]}
    assert stranded, (held_at_kill, victim_tasks)  # it was mid-call: it held messages
    last_refresh = max(held_at_kill[t] for t in stranded)
    back = {t: survivor_tasks[t] for t in stranded if "received" in survivor_tasks.get(t, {})}
    timeline = {"last_refresh_before_kill_s": round(killed_wall - last_refresh, 2),
                "redelivered_after_kill_s": sorted(round(ev["received"] - killed_wall, 2) for ev in back.values()),
                "stranded_call_runtimes_s": sorted(ev.get("runtime", -1) for ev in back.values()),
                "slowest_call_s": max(ev.get("runtime", 0) for ev in survivor_tasks.values()),
                "recovered_s": round(recovered_s, 2), "load": os.getloadavg()}
    assert set(back) == stranded, ("stranded messages the survivor never received", stranded - set(back), timeline)
    # the mechanism: a message is restored by the first sweep after it is visibility_timeout older than its
    # holder's last refresh (sweeps every UNACKED_RESTORE_INTERVAL s), and its BRPOP takes it at once. Five
    # seconds allow for the survivor's event loop running late on a loaded machine; a sweep that no longer runs
    # every 2 s (kombu's own default: every 100 s) or a longer timeout fails this
    restore_bound = last_refresh + DEFAULT_VISIBILITY_TIMEOUT + UNACKED_RESTORE_INTERVAL + 5
    assert max(ev["received"] for ev in back.values()) <= restore_bound, timeline
    # then one call each: the promise is "within 60 s of the kill, aiming at 30" (visibility timeout 25 s after
    # the last refresh, a sweep every 2 s, then one call); on a loaded machine the call itself is what grows,
    # so the bound also grants the slowest call this run measured; figures go to docs/reliability.md
    answer_bound = max(60.0, restore_bound - killed_wall + timeline["slowest_call_s"] + 10)
    assert recovered_s <= answer_bound, timeline
    # acknowledgements follow the stored results by a moment (later still under load)
    client = stack.client()
    wait_for(lambda: queue_lengths(client) == {"interactive": 0, "batch": 0, "unacked": 0}, 20,
             what="queues empty and every message acknowledged")
    record_figures("redis_default_sigkill", broker="redis", requests=n, lost=0, duplicates=duplicates,
                   recovery_seconds=round(recovered_s, 1), visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT,
                   **{k: v for k, v in timeline.items() if k != "recovered_s"})
    survivor.stop()


def test_a_call_longer_than_the_visibility_timeout_is_delivered_once(stack):
    """The issue's double payment: a visibility timeout shorter than a call. The holder keeps its message."""
    from gemini_tasks import GeminiParallelProcessor

    ctl = stack.control
    ctl.reset()
    ctl.add_fault(action="latency", seconds=16, prompt_contains="LONG-CALL")
    env = {"GEMINI_TASKS_VISIBILITY_TIMEOUT": "10", "GEMINI_TASKS_REQUEST_TIMEOUT": "60"}
    workers = [stack.worker(concurrency=2, **env), stack.worker(concurrency=2, **env)]
    proc = GeminiParallelProcessor(stack.manager(), "gemini-2.5-flash", worker_cooldown_seconds=0,
                                   api_call_interval=0)
    started = time.monotonic()
    results = proc.process_prompts([{"prompt": "LONG-CALL one"}, {"prompt": "short two"}], timeout=60,
                                   progress=False)
    took = time.monotonic() - started
    assert [e for _, _, e in results] == [None, None]
    calls = collections.Counter(prompt_of(e) for e in generate_calls(ctl.log()))
    assert calls["LONG-CALL one"] == 1, calls  # 16 s with a 10 s visibility timeout: still called once
    assert took >= 16
    record_figures("long_call_once", visibility_timeout=10, call_seconds=16, calls=calls["LONG-CALL one"])
    for w in workers:
        w.stop()


def test_a_live_worker_refreshes_the_message_it_holds(stack):
    """The worker's consumer runs the hold-refresh step (registered by gemini_tasks.worker.startup, which the app
    includes): while a call runs, the score of its message in kombu's ``unacked_index`` keeps moving to now."""
    from gemini_tasks import GeminiParallelProcessor
    from gemini_tasks.settings import REFRESH_SECONDS

    ctl = stack.control
    ctl.reset()
    ctl.add_fault(action="latency", seconds=9, prompt_contains="HELD-CALL")
    worker = stack.worker(concurrency=1, GEMINI_TASKS_REQUEST_TIMEOUT="60")
    proc = GeminiParallelProcessor(stack.manager(), "gemini-2.5-flash", worker_cooldown_seconds=0,
                                   api_call_interval=0)
    handle = proc.submit([{"prompt": "HELD-CALL one"}])
    client = stack.client()
    wait_for(lambda: client.zcard("unacked_index") == 1, 20, interval=0.05, what="the message held by the worker")
    delivered = client.zrange("unacked_index", 0, -1, withscores=True)[0][1]
    time.sleep(3 * REFRESH_SECONDS)
    entries = client.zrange("unacked_index", 0, -1, withscores=True)
    assert len(entries) == 1 and entries[0][1] >= delivered + REFRESH_SECONDS, (delivered, entries)
    assert time.time() - entries[0][1] <= REFRESH_SECONDS + 1.5  # refreshed within the last cadence
    assert [e for _, _, e in proc.collect(handle, timeout=60)] == [None]
    assert "refreshing held broker messages every 2s" in stack.worker_logs()
    worker.stop()


@pytest.mark.skipif(not HEAVY, reason="heavy variant (20 s): set GEMINI_TASKS_HEAVY=1")
def test_a_countdown_longer_than_the_visibility_timeout_runs_once(stack):
    """A rate-limit wait re-queues with a countdown (held by a worker until due): refreshed, never redelivered."""
    from gemini_tasks import GeminiParallelProcessor

    ctl = stack.control
    ctl.reset()
    ctl.add_fault(action="status", status=429, retry_delay=14, times=1, prompt_contains="ETA-WAIT")
    env = {"GEMINI_TASKS_VISIBILITY_TIMEOUT": "10"}
    workers = [stack.worker(concurrency=2, **env), stack.worker(concurrency=2, **env)]
    # one key only, so the 429 benches every key the request may use and the wait (14 s) is a countdown
    proc = GeminiParallelProcessor(stack.manager(KEY_IDS[:1], key_settings={"paid": {"exhausted_wait_seconds": 1}}), "gemini-2.5-flash", worker_cooldown_seconds=0,
                                   api_call_interval=0)
    started = time.monotonic()
    [(_meta, _text, error)] = proc.process_prompts([{"prompt": "ETA-WAIT one"}], timeout=60, progress=False)
    took = time.monotonic() - started
    assert error is None, error
    calls = [e for e in generate_calls(ctl.log()) if prompt_of(e) == "ETA-WAIT one"]
    assert len(calls) == 2, calls  # the 429 and the answer: the held countdown was not handed to anyone else
    assert took >= 14
    record_figures("countdown_once", visibility_timeout=10, countdown_seconds=14, calls=len(calls))
    for w in workers:
        w.stop()


@pytest.mark.parametrize("value", ["3", "9"])
def test_a_visibility_timeout_that_would_deliver_twice_is_refused_at_start(value, tmp_path):
    env = {"GEMINI_TASKS_VISIBILITY_TIMEOUT": value, "GEMINI_TASKS_REQUEST_TIMEOUT": "60",
           "REDIS_URL": "redis://127.0.0.1:1/0"}
    out = subprocess.run([sys.executable, "-m", "celery", "-A", "gemini_tasks", "worker", "-P", "threads", "-c", "1"],
                         check=False,
                         env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert f"GEMINI_TASKS_VISIBILITY_TIMEOUT={value} is too short" in text, text[-2000:]
    assert "GEMINI_TASKS_REQUEST_TIMEOUT=60" in text


def test_queue_depth_and_oldest_message_age_metrics_on_redis(stack):
    """Item 8: what an autoscaler needs, with no worker consuming: depth, oldest age, held messages."""
    from prometheus_client import generate_latest

    from gemini_tasks import GeminiParallelProcessor
    from gemini_tasks.ops.metrics import make_registry

    manager = stack.manager()
    proc = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)
    handle = proc.submit([{"prompt": f"waiting-{i}"} for i in range(3)])
    time.sleep(1.5)
    text = generate_latest(make_registry([manager.pool_name], stack.url, broker_url=stack.url)).decode()
    assert 'gemini_tasks_queue_messages{queue="batch"} 3.0' in text, text
    assert 'gemini_tasks_queue_messages{queue="interactive"} 0.0' in text
    assert 'gemini_tasks_queue_oldest_age_seconds{queue="interactive"} 0.0' in text
    [age] = [float(line.split()[-1]) for line in text.splitlines()
             if line.startswith('gemini_tasks_queue_oldest_age_seconds{queue="batch"}')]
    assert 1.4 <= age < 30, age
    assert "gemini_tasks_queue_held_messages 0.0" in text and "gemini_tasks_queue_up 1.0" in text
    worker = stack.worker(concurrency=4)
    assert all(e is None for _, _, e in proc.collect(handle, timeout=60))
    text = generate_latest(make_registry([manager.pool_name], stack.url, broker_url=stack.url)).decode()
    assert 'gemini_tasks_queue_messages{queue="batch"} 0.0' in text
    assert 'gemini_tasks_queue_oldest_age_seconds{queue="batch"} 0.0' in text
    worker.stop()


def kill_while_holding_every_lease(stack, env: dict[str, str], figures: str, broker: str) -> float:
    """The issue's stall: one call per key, the dead worker held the lease of every key. Its leases come back
    within one lease TTL (15 s, renewed while alive: keys/keeper.py) and its messages within the broker's
    bound; returns the seconds from the SIGKILL to the last stranded request answered."""
    from gemini_tasks import GeminiParallelProcessor

    ctl = stack.control
    ctl.reset()
    ctl.add_fault(action="latency", seconds=20, times=3)  # the victim's three calls are still running at the kill
    keys = KEY_IDS[:3]
    victim = stack.worker(concurrency=4, **env)
    manager = stack.manager(keys)
    proc = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                   max_workers=6)
    n = 9
    handle = proc.submit([{"prompt": f"{broker}-all-{i}"} for i in range(n)])
    victim_tag = f":{victim.pid}:"
    wait_for(lambda: all(victim_tag in (s["assigned_worker"] or "")
                         for s in manager.get_keys_status_summary().values()), 30, interval=0.05,
             what="the victim holding every key's lease")
    survivor = stack.worker(concurrency=4, **env)
    victim.kill()
    killed = time.monotonic()
    results = proc.collect(handle, timeout=120)
    recovered_s = time.monotonic() - killed
    assert [e for _, _, e in results] == [None] * n
    log = generate_calls(ctl.log())
    calls = collections.Counter(prompt_of(e) for e in log if prompt_of(e))
    assert len(calls) == n
    duplicates = sum(c - 1 for c in calls.values())
    assert duplicates <= victim.concurrency, calls
    assert recovered_s <= 60, recovered_s
    record_figures(figures, broker=broker, requests=n, keys=len(keys), victim_held_every_lease=True, lost=0,
                   duplicates=duplicates, recovery_seconds=round(recovered_s, 1))
    survivor.stop()
    return recovered_s


@pytest.mark.skipif(not HEAVY, reason="heavy variant (30 s; RabbitMQ's runs in CI): set GEMINI_TASKS_HEAVY=1")
def test_sigkilled_worker_holding_every_keys_lease_with_defaults(stack):
    kill_while_holding_every_lease(stack, DEFAULTS, "redis_default_sigkill_every_lease", "redis")
