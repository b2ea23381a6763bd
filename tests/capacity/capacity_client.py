"""The application side of a capacity test, run as a subprocess: a JSON spec on stdin, one JSON line on stdout.

Spec: ``{"pool", "model", "keys": 2, "leases": 1000, "max_workers": 1000, "prompts": [...], "timeout": 60}``;
``"chunk": N`` publishes N messages per round trip; ``"fail_chunks": [i, ...]`` makes those chunks' pipelined
publish fail before anything is sent (as a broken connection would), so they take the one-by-one fallback.
Output: ``{"results": [{"metadata", "text", "error"}, ...], "submit_s": float}``.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    spec = json.load(sys.stdin)
    from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor
    from gemini_tasks.client import publish

    if "chunk" in spec:
        publish.CHUNK = int(spec["chunk"])
        publish.publish_group.__kwdefaults__["chunk"] = publish.CHUNK
    failing = set(spec.get("fail_chunks") or [])
    broken = []
    if failing:
        real = publish._publish_chunk
        seen = [0]

        def flaky(*args, **kwargs):
            index = seen[0]
            seen[0] += 1
            if index in failing:
                broken.append(index)
                raise ConnectionError(f"simulated broken pipeline on chunk {index}")
            return real(*args, **kwargs)

        publish._publish_chunk = flaky

    manager = AdvancedApiKeyManager(spec.get("keys", 2), paid_keys="all", pool=spec["pool"],
                                    key_settings={"paid": {"max_concurrent_leases": spec.get("leases", 1000)}})
    proc = GeminiParallelProcessor(manager, spec.get("model", "gemini-2.5-flash"), worker_cooldown_seconds=0,
                                   api_call_interval=0, max_workers=spec.get("max_workers", 1000))
    t0 = time.perf_counter()
    handle = proc.submit(spec["prompts"])
    submit_s = time.perf_counter() - t0
    results = proc.collect(handle, timeout=spec.get("timeout", 60), progress=False)
    print(json.dumps({"submit_s": submit_s, "broken_chunks": broken,
                      "results": [{"metadata": m, "text": t, "error": e} for m, t, e in results]}))


if __name__ == "__main__":
    main()
