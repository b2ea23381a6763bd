"""No API key secret appears in Redis, broker messages, results, logs, Flower or metrics.

A realistic workload (batch with 429s and 5xx, an invalid key, a persistent error, streaming, TTS single,
dialogue and batch, a direct ``text_to_speech(api_key=...)`` that fails) runs on a private stack while a Redis
MONITOR records every command; then everything is scanned for every secret (whole, a 16-character middle
piece, and base64).
"""

from __future__ import annotations

import logging
import os
import time
import uuid

import pytest
from prometheus_client import generate_latest

from security_stack import (
    Flower,
    Monitor,
    celery_app_on,
    find_secrets,
    redis_dump,
    start_worker,
    worker_env,
)

MODEL = "gemini-2.5-flash"
VALID = {f"GEMINI_API_KEY_S{i}": f"AIzaSy-sec-{i}-{uuid.uuid4().hex}" for i in range(1, 5)}
INVALID = {"GEMINI_API_KEY_S5": f"AIzaSy-sec-bad-{uuid.uuid4().hex}"}  # the emulator does not know it
SECRETS = {**VALID, **INVALID}


@pytest.fixture(scope="module")
def leaky_stack():
    from gemini_tasks.emulator.runner import EmulatorProcess
    from gemini_tasks.testing.local_redis import RedisServer

    server = RedisServer().start()
    emu = EmulatorProcess(config={"keys": {s: {"label": k, "project": f"proj-{k[-2:]}"} for k, s in VALID.items()},
                                  "tts_seconds": 0.3}).start()
    env = worker_env(server.url, emu.url, SECRETS)
    mp = pytest.MonkeyPatch()
    for name, secret in SECRETS.items():
        mp.setenv(name, secret)
    mp.setenv("GOOGLE_GEMINI_BASE_URL", emu.url)  # text_to_speech(api_key=...) calls from this process
    monitor = Monitor(server.url).start()
    flower = Flower(env)
    worker = None
    try:
        flower.wait_ready()
        worker = start_worker(env, concurrency=4, loglevel="DEBUG")
        with celery_app_on(server.url):
            yield {"url": server.url, "emu": emu.control, "worker": worker, "flower": flower, "monitor": monitor}
    finally:
        monitor.stop()
        if worker is not None:
            worker.stop()
        flower.stop()
        emu.stop()
        mp.undo()
        server.stop()


def test_workload_leaves_no_secret_anywhere(leaky_stack, caplog):
    from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor, GeminiStreamingProcessor
    from gemini_tasks import GeminiTTSProcessor, text_to_speech
    from gemini_tasks.ops.metrics import make_registry

    caplog.set_level(logging.DEBUG)  # every logger of this process: gemini_tasks, celery, kombu, httpx, ...
    s = leaky_stack
    emu = s["emu"]
    emu.add_fault(endpoint="generateContent", action="status", status=429, quota_kind="minute", retry_delay="1s",
                  times=3)
    emu.add_fault(endpoint="generateContent", action="status", status=503, times=2)
    emu.add_fault(action="status", status=400, prompt_contains="REFUSE-ME")
    pool = "sec" + uuid.uuid4().hex[:8]
    manager = AdvancedApiKeyManager(list(SECRETS), paid_keys="all", pool=pool, redis_url=s["url"],
                                    key_settings={"paid": {"exhausted_wait_seconds": 1}})
    fast = dict(worker_cooldown_seconds=0, api_call_interval=0, max_workers=4)

    batch = GeminiParallelProcessor(manager, MODEL, **fast).process_prompts(
        [{"prompt": f"secret-scan {i}", "metadata": {"i": i}} for i in range(12)]
        + [{"prompt": "REFUSE-ME please", "metadata": {"i": 12}}], timeout=90, progress=False)
    assert all(e is None for _, _, e in batch[:12]), batch
    assert "persistent" in batch[12][2].lower()
    summary = manager.get_keys_status_summary()
    assert summary["GEMINI_API_KEY_S5"]["status"] == "FAILED_INIT"  # the invalid key was used and quarantined

    sp = GeminiStreamingProcessor(manager, MODEL, **fast)
    sp.start()
    try:
        streamed = [sp.process_single({"prompt": f"stream {i}"}, timeout=30) for i in range(2)]
        status = sp.get_worker_status()
    finally:
        sp.stop()
    assert all(e is None for _, _, e in streamed)

    tts = GeminiTTSProcessor(manager, api_call_interval=0, timeout=60)
    assert tts.generate_speech("Hello from the secret scan", voice="Kore")
    assert tts.generate_multi_speaker_dialogue([("Ann", "Hi"), ("Bob", "Hello")], {"Ann": "Kore", "Bob": "Puck"})
    spoken = tts.batch_generate_speech([{"text": "one"}, {"text": "two", "voice": "Puck"}])
    assert all(e is None for _, _, e in spoken)
    # a direct call with a secret that the API rejects: the failure is logged, the secret is not
    assert text_to_speech("direct", api_key=INVALID["GEMINI_API_KEY_S5"]) is None

    time.sleep(1.0)  # last events reach Flower
    secrets = list(SECRETS.values())
    found: dict[str, list[str]] = {}
    assert find_secrets(b"x" + secrets[0][5:30].encode() + b"y", secrets)  # the scanner sees a partial copy

    def scan(where: str, data: bytes | str) -> None:
        hits = find_secrets(data, secrets)
        if hits:
            found[where] = hits

    # results and status handed to the caller
    scan("results", repr((batch, streamed, spoken, status, summary)))
    # every command Redis executed: broker messages (publish, unacked, ack), results, events, key-manager calls
    monitor_text = "\n".join(s["monitor"].lines)
    assert "gemini_tasks.generate_batch" in monitor_text and "EVALSHA" in monitor_text.upper(), \
        (s["monitor"].error, len(s["monitor"].lines), monitor_text[-2000:])
    scan("redis MONITOR", monitor_text)
    # every key left in Redis: names, DUMP and logical values
    import redis

    client = redis.Redis.from_url(s["url"])
    for name, blob in redis_dump(client).items():
        scan(f"redis key {name!r}", blob)
    client.close()
    # logs: this process (every logger) and the worker subprocess (DEBUG)
    scan("client logs", "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records))
    worker_log = s["worker"].log_path.read_text(errors="replace")
    assert "gemini_tasks.generate_batch" in worker_log
    scan("worker log", worker_log)
    # Flower: workers, tasks (args, kwargs, results, exceptions), one task in detail, its own metrics
    flower = s["flower"]
    tasks_status, tasks_body = flower.get("/api/tasks?limit=1000")
    assert tasks_status == 200 and "secret-scan" in tasks_body, tasks_body[:300]
    scan("flower /api/tasks", tasks_body)
    for path in ["/", "/workers", "/tasks", "/api/workers", "/api/workers?refresh=1", "/metrics"] + [
            f"/api/task/info/{tid}" for tid in list(__import__("json").loads(tasks_body))[:5]]:
        code, body = flower.get(path)
        assert code == 200, (path, code)
        scan(f"flower {path}", body)
    # the Prometheus exporter of the key pools
    scrape = generate_latest(make_registry([pool], client=manager.pool.client))
    assert b"gemini_tasks" in scrape
    scan("metrics", scrape)
    assert found == {}, f"secrets leaked: {found}"


def test_flower_requires_authentication(leaky_stack):
    flower = leaky_stack["flower"]
    for path in ("/api/workers", "/api/tasks", "/workers", "/tasks", "/"):
        assert flower.get(path, auth=None)[0] == 401, path
        assert flower.get(path, auth=("sec-operator", "wrong"))[0] == 401, path
