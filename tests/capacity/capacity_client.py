"""The application side of a capacity test, run as a subprocess: a JSON spec on stdin, one JSON line on stdout.

Spec: ``{"pool", "model", "keys": 2, "leases": 1000, "max_workers": 1000, "prompts": [...], "timeout": 60}``.
Output: ``{"results": [{"metadata", "text", "error"}, ...], "submit_s": float}``.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    spec = json.load(sys.stdin)
    from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor

    manager = AdvancedApiKeyManager(spec.get("keys", 2), paid_keys="all", pool=spec["pool"],
                                    key_settings={"paid": {"max_concurrent_leases": spec.get("leases", 1000)}})
    proc = GeminiParallelProcessor(manager, spec.get("model", "gemini-2.5-flash"), worker_cooldown_seconds=0,
                                   api_call_interval=0, max_workers=spec.get("max_workers", 1000))
    t0 = time.perf_counter()
    handle = proc.submit(spec["prompts"])
    submit_s = time.perf_counter() - t0
    results = proc.collect(handle, timeout=spec.get("timeout", 60), progress=False)
    print(json.dumps({"submit_s": submit_s,
                      "results": [{"metadata": m, "text": t, "error": e} for m, t, e in results]}))


if __name__ == "__main__":
    main()
