"""Flower shows the fleet: a real Flower process (basic auth) watching a real worker, asked over its HTTP API.

What an operator must see, and must not: task names, a short description instead of the job (no media
bytes, no secrets), the key id that answered, the outcome; and nothing without credentials.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from gemini_tasks.testing.flower import Flower

USER, PASSWORD = "fleet-operator", "flower-pass-123"
#: base64 of the start of fleet_client.pattern_bytes(): must never show up in Flower
PATTERN_B64 = base64.b64encode(bytes(range(256))).decode()[:40]


def poll(what: str, fn, timeout: float = 30.0, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def flower(fleet):
    fl = Flower(fleet.env, user=USER, password=PASSWORD)
    try:
        def healthy():
            if fl.proc.poll() is not None:
                raise AssertionError(f"flower exited:\n{fl.log_tail()}")
            try:
                return fl.get("/healthcheck", auth=None) == (200, "OK")
            except OSError:
                return False

        poll("flower /healthcheck", healthy, timeout=30)
        node = fleet.worker.name.replace("%h", __import__("os").uname().nodename)
        # ?status=1 comes from Flower's event state: once the worker is there, events are flowing
        poll("the worker in Flower's event state",
             lambda: fl.get_json("/api/workers?status=1").get(node) is True, timeout=30)
        fl.node = node
        yield fl
    finally:
        fl.stop()


def finished_tasks(flower: Flower, ids: set[str], *, need_result: bool = True) -> dict[str, dict] | None:
    tasks = flower.get_json("/api/tasks?limit=1000")
    mine = {tid: t for tid, t in tasks.items() if t.get("args", "") and tid in ids}
    done = {tid: t for tid, t in mine.items() if t.get("state") in ("SUCCESS", "FAILURE")
            and (not need_result or t.get("result") or t.get("exception"))}
    return done if len(done) == len(ids) else None


def task_ids_by_metadata(flower: Flower, tag: str) -> set[str]:
    tasks = flower.get_json("/api/tasks?limit=1000")
    return {tid for tid, t in tasks.items() if tag in (t.get("args") or "")}


def test_api_needs_credentials(flower):
    for path in ("/api/workers", "/api/tasks", "/api/task/types"):
        assert flower.get(path, auth=None)[0] == 401
        assert flower.get(path, auth=(USER, "wrong"))[0] == 401
        assert flower.get(path)[0] == 200
    # the credentials came from the environment: nothing on Flower's command line shows the password
    cmdline = open(f"/proc/{flower.proc.pid}/cmdline", "rb").read().decode(errors="replace")
    assert PASSWORD not in cmdline and "basic" not in cmdline.lower(), cmdline


def test_workers_and_tasks_show_names_descriptions_key_ids_and_outcomes(fleet, fleet_emu, flower):
    fleet_emu.add_fault(action="status", status=400, prompt_contains="PLEASE-FAIL")
    tag = f"flowertest{time.time_ns()}"
    prompts = [{"prompt": f"plain question {i}", "metadata": {"tag": tag, "i": i}} for i in range(3)]
    prompts.append({"prompt": "<audio> describe this sound", "audio_bytes_pattern": 6000,
                    "metadata": {"tag": tag, "i": 3}})
    prompts.append({"prompt": "this one will PLEASE-FAIL", "metadata": {"tag": tag, "i": 4}})
    # a long answer: the key id must still be visible in Flower's truncated result (1024 chars)
    prompts.append({"prompt": "long " * 600, "metadata": {"tag": tag, "i": 5}})
    fleet_emu.configure(echo_max_chars=4000)
    results = fleet.run_client({"pool": "flowerpool", "prompts": prompts})
    assert [r["error"] is None for r in results] == [True, True, True, True, False, True]

    workers = flower.get_json("/api/workers")
    assert flower.node in workers
    assert "interactive" in json.dumps(workers[flower.node].get("active_queues", []))

    ids = poll("the batch's task ids in Flower", lambda: (lambda s: s if len(s) == 6 else None)(
        task_ids_by_metadata(flower, tag)))
    tasks = poll("six finished tasks with results in Flower", lambda: finished_tasks(flower, ids))
    by_index = {}
    for tid, t in tasks.items():
        assert t["name"] == "gemini_tasks.generate_batch"
        assert t["worker"] == flower.node
        assert t["sent"] is not None, "task_send_sent_event reaches Flower"
        args = t["args"]
        assert args.startswith("generate model=gemini-2.5-flash prompt="), args
        assert "__b64__" not in args and PATTERN_B64[:16] not in args and len(args) < 600, args
        by_index[int(json.loads(args.split("metadata=", 1)[1])["i"])] = t
    assert sorted(by_index) == list(range(6))
    assert "media=[" in by_index[3]["args"] and "audio" in by_index[3]["args"]
    for i in (0, 1, 2, 3, 5):
        assert by_index[i]["state"] == "SUCCESS"
        assert "'key_id': 'GEMINI_API_KEY_" in by_index[i]["result"], by_index[i]["result"][:300]
    failed = by_index[4]
    assert failed["state"] == "FAILURE"
    assert "persistent" in failed["exception"].lower() and "400" in failed["exception"]

    everything = flower.get("/api/tasks?limit=1000")[1] + flower.get("/api/workers")[1]
    for secret in fleet.secrets.values():
        assert secret not in everything
    assert PATTERN_B64[:16] not in everything


def test_a_requeued_task_keeps_its_short_description(fleet, fleet_emu, flower):
    """A rate-limit wait longer than a slot may sleep re-queues the task; Flower must still show argsrepr."""
    tag = f"requeue{time.time_ns()}"
    prompts = [{"prompt": f"spaced {i}", "audio_bytes_pattern": 3000, "metadata": {"tag": tag, "i": i}}
               for i in range(2)]
    # api_call_interval 6 s > the 5 s a slot may sleep: the second admission is re-queued with a countdown
    results = fleet.run_client({"pool": "flowerspacing", "prompts": prompts,
                                "processor": {"api_call_interval": 6.0}}, timeout=60)
    assert [r["error"] for r in results] == [None, None]
    ids = poll("both tasks in Flower", lambda: (lambda s: s if len(s) == 2 else None)(
        task_ids_by_metadata(flower, tag)))
    tasks = poll("both tasks finished", lambda: finished_tasks(flower, ids))
    assert any(t.get("retries") for t in tasks.values()) or any(
        t.get("retried") for t in tasks.values()), "one task was re-queued"
    for t in tasks.values():
        assert t["args"].startswith("generate model="), t["args"][:300]
        assert "__b64__" not in t["args"] and PATTERN_B64[:16] not in t["args"]
        assert "'key_id': 'GEMINI_API_KEY_" in t["result"]
