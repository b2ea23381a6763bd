"""JSON only: a pickled task message is refused by the worker and never runs.

The message below is what an attacker with access to the broker would send: a pickle whose loading runs
code (here it only creates a marker file). A worker that unpickled it would create the file, whatever task
it names; ours must reject the message untouched and keep serving JSON tasks.
"""

from __future__ import annotations

import pathlib
import pickle
import time
import uuid

import pytest

from gemini_tasks.testing.stack import Stack

SECRETS = {"GEMINI_API_KEY_J1": f"json-only-secret-{uuid.uuid4().hex}"}


class _Trap:
    """Unpickling this calls ``Path.touch(marker)``: proof that someone deserialised the message."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture(scope="module")
def json_stack():
    """This suite's settings (calls of at most 5 s, a 30 s visibility timeout), one worker logging at INFO."""
    with Stack(SECRETS, request_timeout=5, visibility_timeout=30, emulator_in_process=True) as stack:
        stack.worker(concurrency=2)
        yield stack


def test_pickled_message_is_refused_and_never_runs(json_stack, tmp_path):
    import redis
    from kombu import Connection

    from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor
    from gemini_tasks.client.jobs import CallPolicy, generate_job

    s = json_stack
    manager = AdvancedApiKeyManager(list(SECRETS), paid_keys="all", pool="json" + uuid.uuid4().hex[:6],
                                    redis_url=s.url)
    marker = tmp_path / "unpickled"
    job = generate_job({"prompt": "PICKLED-CALL"}, model="gemini-2.5-flash", manager=manager, policy=CallPolicy())
    task_id = str(uuid.uuid4())
    body = pickle.dumps(((job, _Trap(str(marker))), {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                         "chord": None}))
    headers = {"lang": "py", "task": "gemini_tasks.generate_batch", "id": task_id, "root_id": task_id,
               "parent_id": None, "group": None, "retries": 0, "eta": None, "expires": None,
               "argsrepr": "pickled", "kwargsrepr": "{}", "origin": "attacker"}
    with Connection(s.url) as conn:
        conn.Producer().publish(body, routing_key="batch", exchange="", headers=headers,
                                content_type="application/x-python-serialize", content_encoding="binary",
                                serializer=None)
    client = redis.Redis.from_url(s.url)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "untrusted content" not in s.workers[0].log_tail(20000):
        time.sleep(0.2)
    log = s.workers[0].log_tail(20000)
    assert "Refusing to deserialize untrusted content of type pickle" in log, log[-2000:]
    time.sleep(0.5)
    assert not marker.exists(), "the worker unpickled the message"
    assert client.llen("batch") == 0 and client.hlen("unacked") == 0  # refused and dropped, not redelivered
    assert not [e for e in s.control.log() if "PICKLED-CALL" in str(e.get("parts"))], "the pickled task ran"
    assert client.get(f"celery-task-meta-{task_id}") is None
    client.close()
    # the worker keeps serving JSON tasks
    results = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                      ).process_prompts([{"prompt": "json still works"}], timeout=30, progress=False)
    assert results[0][2] is None and "json still works" in results[0][1]


def test_configuration_accepts_json_only():
    from gemini_tasks.celery_app import app

    assert app.conf.accept_content == ["json"] and app.conf.result_accept_content == ["json"]
    assert app.conf.task_serializer == "json" and app.conf.result_serializer == "json"
    assert app.conf.event_serializer == "json"
