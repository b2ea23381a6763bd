"""Chunked publishing keeps input order and failures in place, through the real stack.

A batch is published ``chunk`` messages per pipelined round trip (``gemini_tasks.client.publish``); here the
chunk is small so one batch spans several, a chunk whose pipeline breaks falls back to publishing one by one,
and prompts the emulator rejects come back as errors at their own index. Each prompt reaches the API once.
"""

from __future__ import annotations

import uuid


def test_chunks_keep_order_and_failures_in_place(stack, emu):
    emu.add_fault(action="status", status=400, prompt_contains="PLEASE-FAIL")
    tag = uuid.uuid4().hex[:8]
    n = 45
    bad = {3, 17, 18, 44}
    prompts = [{"prompt": f"{tag} q{i}" + (" PLEASE-FAIL" if i in bad else ""), "metadata": {"i": i}}
               for i in range(n)]
    worker = stack.worker(queues="batch", pool="threads", concurrency=16)
    with worker:
        since = emu.clear_log()
        out = stack.run_client({"pool": "pub" + tag, "keys": 2, "chunk": 7, "fail_chunks": [2], "timeout": 60,
                                "prompts": prompts})
        calls = [e for e in emu.log(since=since) if e.get("endpoint") == "generateContent"]
    results = out["results"]
    assert [r["metadata"]["i"] for r in results] == list(range(n))
    for i, r in enumerate(results):
        if i in bad:
            assert r["text"] is None and "persistent" in r["error"].lower() and "400" in r["error"], r
        else:
            assert r["error"] is None and r["text"].endswith(f"{tag} q{i}"), r
    assert out["broken_chunks"] == [2]
    assert len(calls) == n, f"{len(calls)} calls for {n} prompts"
