"""RabbitMQ as the broker (issue 13, item 2), Redis for results and keys, on the machine's RabbitMQ with a
private vhost made and deleted here (never ``/``): batches, streaming with cancel, TTS, queue sizes, the CLI,
metrics, quorum queues, and a SIGKILLed worker whose messages come back at once."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from chaos_stack import (
    KEY_IDS,
    Stack,
    generate_calls,
    prompt_of,
    record_figures,
    wait_for,
)

from gemini_tasks.testing.rabbitmq import (
    RabbitVhost,
    point_app_at,
    restore_app,
    why_unavailable,
)


@pytest.fixture(scope="module")
def rstack():
    reason = why_unavailable()
    if reason:
        pytest.skip(f"the RabbitMQ tests need a RabbitMQ server: {reason}")
    with RabbitVhost() as vhost, Stack(CELERY_BROKER_URL=vhost.url) as stack:
        saved = point_app_at(stack.app, vhost.url, stack.url)
        stack.vhost = vhost  # type: ignore[attr-defined]
        try:
            yield stack
        finally:
            restore_app(stack.app, saved)


def _processor(stack, **kw):
    from gemini_tasks import GeminiParallelProcessor

    kw.setdefault("max_workers", 8)
    return GeminiParallelProcessor(stack.manager(), "gemini-2.5-flash", worker_cooldown_seconds=0,
                                   api_call_interval=0, **kw)


def test_batch_streaming_cancel_tts_and_queue_sizes_on_rabbitmq(rstack):
    from gemini_tasks import GeminiStreamingProcessor, GeminiTTSProcessor

    ctl = rstack.control
    ctl.reset()
    worker = rstack.worker(concurrency=4)
    batch = _processor(rstack).process_prompts([{"prompt": f"rmq-{i}", "metadata": {"i": i}} for i in range(12)],
                                               timeout=60, progress=False)
    assert [m["i"] for m, _, _ in batch] == list(range(12))
    assert all(e is None and f"rmq-{m['i']}" in r for m, r, e in batch)
    queues = rstack.vhost.queues()
    assert queues["batch"]["type"] == "quorum" and queues["batch"]["durable"]
    assert queues["interactive"]["type"] == "quorum"

    # streaming, and a request whose caller gave up while it waited in the queue: never called
    manager = rstack.manager()
    sp = GeminiStreamingProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)
    sp.start()
    _meta, text, error = sp.process_single({"prompt": "rmq stream hello"}, timeout=60)
    assert error is None and "rmq stream hello" in text
    worker.stop()
    one = rstack.worker(queues="interactive", concurrency=1)
    ctl.add_fault(action="latency", seconds=4, prompt_contains="RMQ-BLOCKER")
    blocker = threading.Thread(target=lambda: sp.process_single({"prompt": "RMQ-BLOCKER"}, timeout=60))
    blocker.start()
    wait_for(lambda: any(prompt_of(e) == "RMQ-BLOCKER" for e in ctl.log()) or
             any(r["applied"] for r in ctl.faults()), 10, interval=0.05, what="blocker in flight")
    status = sp.get_worker_status()
    with pytest.raises(TimeoutError):
        sp.process_single({"prompt": "RMQ-CANCELLED"}, timeout=1)
    waiting = sp.get_queue_size()
    blocker.join(30)
    time.sleep(2.0)
    assert not any(prompt_of(e) == "RMQ-CANCELLED" for e in generate_calls(ctl.log()))
    assert status["active_workers"] == 1 and status["queue_size"] in (0, 1)
    assert waiting == 1  # the cancelled request was still waiting in the interactive queue
    sp.stop()

    # TTS
    tts = GeminiTTSProcessor(manager, timeout=60, api_call_interval=0)
    audio = tts.generate_speech("rabbit speech", voice="Puck")
    assert audio and len(audio) > 1000
    one.stop()


@pytest.mark.skipif(os.environ.get("GEMINI_TASKS_HEAVY") != "1", reason="heavy variant: set GEMINI_TASKS_HEAVY=1")
def test_cli_and_metrics_on_rabbitmq(rstack, tmp_path):
    from prometheus_client import generate_latest

    from gemini_tasks.ops.metrics import make_registry

    worker = rstack.worker(concurrency=4)
    manager = rstack.manager()
    src, out = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    src.write_text("\n".join(json.dumps({"prompt": f"cli-rmq {i}"}) for i in range(5)) + "\n")
    env = {**os.environ, **rstack.env(), "GEMINI_TASKS_POOL": manager.pool_name, "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "gemini_tasks.ops.cli", "submit", str(src), "-o", str(out), "--paid",
                        "all", "--no-progress"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and all(row["error"] is None for row in rows)
    r = subprocess.run([sys.executable, "-m", "gemini_tasks.ops.cli", "keys", "--json"], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0 and KEY_IDS[0] in r.stdout, r.stderr[-2000:]

    # queue depth and the oldest waiting message's age, with no worker consuming
    worker.stop()
    handle = _processor(rstack).submit([{"prompt": f"waiting-{i}"} for i in range(3)])
    time.sleep(1.5)
    registry = make_registry([manager.pool_name], rstack.url, broker_url=rstack.vhost.url)
    text = generate_latest(registry).decode()
    assert 'gemini_tasks_queue_messages{queue="batch"} 3.0' in text, text
    # RabbitMQ cannot show a queue's head without taking it: no age family there (docs/reliability.md)
    assert "gemini_tasks_queue_oldest_age_seconds" not in text
    again = rstack.worker(concurrency=4)
    assert all(e is None for _, _, e in _processor(rstack).collect(handle, timeout=60))
    again.stop()


def test_sigkilled_worker_messages_return_at_once_on_rabbitmq(rstack):
    ctl = rstack.control
    ctl.reset(latency_seconds=1.0)
    victim = rstack.worker(concurrency=4)
    survivor = rstack.worker(concurrency=4)
    proc = _processor(rstack)
    manager = proc.key_manager
    n = 20
    prompts = [{"prompt": f"rkill-{i:03d}", "metadata": {"i": i}} for i in range(n)]
    handle = proc.submit(prompts)
    victim_tag = f":{victim.pid}:"
    wait_for(lambda: sum(1 for s in manager.get_keys_status_summary().values()
                         if victim_tag in (s["assigned_worker"] or "")) >= 2, 30, interval=0.05, what="victim mid-call")
    victim.kill()
    killed_at = time.monotonic()
    results = proc.collect(handle, timeout=90)
    recovered_s = time.monotonic() - killed_at
    assert [e for _, _, e in results] == [None] * n
    log = generate_calls(ctl.log())
    calls = collections.Counter(prompt_of(e) for e in log if prompt_of(e))
    assert set(calls) == {p["prompt"] for p in prompts}
    duplicates = sum(c - 1 for c in calls.values())
    assert duplicates <= victim.concurrency, calls
    assert recovered_s <= 30, recovered_s
    record_figures("rabbitmq_sigkill", broker="rabbitmq", requests=n, lost=0, duplicates=duplicates,
                   recovery_seconds=round(recovered_s, 1))
    survivor.stop()


# CI runs the RabbitMQ SIGKILL above and the lease return of test_fleet_keys.py; both together are heavy
@pytest.mark.skipif(os.environ.get("GEMINI_TASKS_HEAVY") != "1", reason="heavy variant: set GEMINI_TASKS_HEAVY=1")
def test_sigkilled_worker_holding_every_keys_lease_on_rabbitmq(rstack):
    from test_fast_recovery import kill_while_holding_every_lease

    kill_while_holding_every_lease(rstack, {}, "rabbitmq_sigkill_every_lease", "rabbitmq")


@pytest.mark.skipif(os.environ.get("GEMINI_TASKS_HEAVY") != "1", reason="heavy variant: set GEMINI_TASKS_HEAVY=1")
def test_flower_on_rabbitmq(rstack):
    """Flower watches a RabbitMQ fleet: it lists the worker and the tasks it ran (with basic auth)."""
    import base64
    import tempfile
    import urllib.request

    from gemini_tasks.testing.local_redis import free_port

    worker = rstack.worker(concurrency=2)
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finally, after Flower is killed
    env = {**os.environ, **rstack.env(), "FLOWER_BASIC_AUTH": "op:flower-pass-123"}
    flower = subprocess.Popen([sys.executable, "-m", "celery", "-A", "gemini_tasks", "flower", f"--port={port}",
                               "--address=127.0.0.1", "--inspect_timeout=2000"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def get(path: str) -> object:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        req.add_header("Authorization", "Basic " + base64.b64encode(b"op:flower-pass-123").decode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read().decode())

    try:
        node = worker.name.replace("%h", os.uname().nodename)
        wait_for(lambda: _quiet(lambda: node in get("/api/workers?refresh=1")), 60, interval=1.0,
                 what="Flower lists the worker")
        results = _processor(rstack).process_prompts([{"prompt": f"flower-{i}"} for i in range(3)], timeout=60,
                                                     progress=False)
        assert [e for _, _, e in results] == [None] * 3
        # Flower only knows what happened since it started: these three tasks
        wait_for(lambda: _quiet(lambda: sum(1 for t in get("/api/tasks").values() if t.get("state") == "SUCCESS") >= 3),
                 30, interval=1.0, what=f"Flower shows the tasks ({_quiet(lambda: get('/api/tasks'))})")
    finally:
        os.killpg(flower.pid, 9)
        flower.wait(10)
        log.close()
        worker.stop()


def _quiet(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - Flower still starting
        return False
