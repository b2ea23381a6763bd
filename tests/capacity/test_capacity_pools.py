"""A worker's connection pools follow its concurrency; a concurrency the machine cannot serve is capped, loudly.

Real parts: a ``celery worker`` subprocess (threads pool), a private redis-server, the emulator over HTTP with a
latency, the real google-genai SDK in the worker. Before the pools followed the concurrency, one SDK client per
key kept httpx's default pool of 100 connections, so a ``-c 250`` worker on one key held 100 calls at a time.
"""

from __future__ import annotations

import sys
import uuid

from capacity_helpers import max_in_flight


def test_one_key_holds_every_slot_in_flight(stack, emu):
    """-c 250 on one key: the emulator sees (nearly) all 250 calls at once, far above httpx's default 100."""
    slots = 250
    emu.reset(latency_seconds=4.0, log_max=100000)
    worker = stack.worker(queues="batch", pool="threads", concurrency=slots, loglevel="INFO")
    with worker:
        since = emu.clear_log()
        out = stack.run_client({"pool": "cap" + uuid.uuid4().hex[:8], "keys": 1, "leases": slots,
                                "max_workers": slots, "timeout": 90,
                                "prompts": [{"prompt": f"p{i}", "metadata": {"i": i}} for i in range(slots)]})
        log = worker.log_path.read_text(errors="replace")
        redis_clients = len(__import__("redis").Redis.from_url(stack.redis_url).client_list())
    results = out["results"]
    assert [r["metadata"]["i"] for r in results] == list(range(slots))
    assert [r["error"] for r in results if r["error"]] == []
    entries = emu.log(since=since)
    peak = max_in_flight(entries)
    assert peak >= 200, f"only {peak} calls in flight at once with {slots} slots on one key"
    # every call kept its connection: far fewer TCP connections than calls would mean reuse; here each slot
    # has its own, so the count of distinct client ports stays at or below the slots
    ports = {e.get("client_port") for e in entries if e.get("endpoint") == "generateContent"}
    assert len(ports) <= slots
    assert f"worker capacity: {slots} slot(s) per process (threads pool" in log
    # one result backend for the process, not one per thread: 93 Redis connections here, 297 with one per thread
    assert redis_clients < slots, f"{redis_clients} Redis connections for {slots} slots"


def test_concurrency_beyond_the_open_files_limit_is_capped_with_a_log_line(stack, emu):
    """With ``ulimit -n 1024`` a -c 5000 worker cannot hold 5000 calls (3 sockets each): it runs capped, and says so."""
    from gemini_tasks.worker.capacity import FDS_PER_SLOT, RESERVED_FDS

    class LimitedWorker(type(stack.worker())):
        def args(self) -> list[str]:
            celery = super().args()
            launcher = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)); "
                        "os.execv(sys.argv[1], sys.argv[1:])")
            return [sys.executable, "-c", launcher, *celery]

    worker = LimitedWorker(queues="batch", pool="threads", concurrency=5000, loglevel="INFO",
                           name=f"cap-{uuid.uuid4().hex[:6]}@%h")
    worker.env = dict(stack.env)
    expected = (1024 - RESERVED_FDS) // FDS_PER_SLOT
    with worker:
        from celery import Celery

        app = Celery("cap-inspect", broker=stack.redis_url)
        node = worker.name.replace("%h", __import__("os").uname().nodename)
        stats = app.control.inspect(destination=[node], timeout=5).stats() or {}
        app.close()
        out = stack.run_client({"pool": "cap" + uuid.uuid4().hex[:8], "keys": 2, "timeout": 60,
                                "prompts": [{"prompt": f"q{i}", "metadata": {"i": i}} for i in range(20)]})
        log = worker.log_path.read_text(errors="replace")
    assert stats[node]["pool"]["max-concurrency"] == expected
    assert (f"worker concurrency 5000 is more than this machine can serve with the threads pool: capped to "
            f"{expected} by the open-files limit (ulimit -n 1024") in log
    assert [r["error"] for r in out["results"]] == [None] * 20
