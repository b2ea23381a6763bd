"""LiteLLM's Router, the way its docs set up several keys of one model with rate limits shared through Redis.

One deployment per key (``gemini/<model>`` with ``api_base`` pointing at the emulator: LiteLLM's Gemini provider
builds ``{api_base}/models/{model}:generateContent`` and sends the key as ``x-goog-api-key``, which the emulator
speaks as it is), each with its ``rpm``; ``routing_strategy="usage-based-routing-v2"`` (LiteLLM's rate-limit
aware strategy, counters in Redis via ``redis_host``/``redis_port``), ``num_retries`` for the Router's own
retries. Nothing of LiteLLM is patched.

A caller process runs ``threads`` callers; every caller pops the next prompt from a Redis list, calls
``router.completion`` until it gets an answer (on an error the Router gives up on -- a ``RateLimitError``, or
"No deployments available" when every deployment is over its rpm or cooling down -- it sleeps a second and asks
again, as an application must; errors are counted by type), and pushes ``{"i", "t"}`` to the done list. Processes wait for a
go flag so that all callers start together after LiteLLM's (slow) import.

    python -m bench.peers.litellm_router '<json spec>'
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from typing import Any

import redis


def build_router(spec: dict[str, Any]) -> Any:
    from litellm import Router

    model_list = [
        {"model_name": "gemini-pool",
         "litellm_params": {"model": f"gemini/{spec['model']}", "api_key": secret,
                            "api_base": spec["api_base"], "rpm": spec["rpm_per_key"]}}
        for secret in spec["secrets"]
    ]
    return Router(model_list=model_list, routing_strategy="usage-based-routing-v2",
                  redis_host=spec["redis_host"], redis_port=spec["redis_port"],
                  num_retries=spec.get("num_retries", 3), timeout=30)


def run(spec: dict[str, Any]) -> None:
    import litellm

    litellm.suppress_debug_info = True
    r = redis.Redis(host=spec["redis_host"], port=spec["redis_port"], db=spec.get("db", 0))
    router = build_router(spec)
    # warm LiteLLM's code paths with another model (a separate quota window), as the other systems are warmed
    litellm.completion(model=f"gemini/{spec['warm_model']}", api_base=spec["api_base"], api_key=spec["secrets"][0],
                       messages=[{"role": "user", "content": "warm"}])
    prompts, done, go = spec["prompts_key"], spec["done_key"], spec["go_key"]
    r.incr(spec["ready_key"])
    while not r.exists(go):
        time.sleep(0.01)
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}
    lock = threading.Lock()

    def caller() -> None:
        while True:
            item = r.lpop(prompts)
            if item is None:
                return
            i, prompt = json.loads(item)
            while True:
                try:
                    router.completion(model="gemini-pool", messages=[{"role": "user", "content": prompt}])
                    break
                except Exception as exc:  # noqa: BLE001 - RateLimitError, "No deployments available", ...
                    name = type(exc).__name__
                    with lock:
                        errors[name] = errors.get(name, 0) + 1
                        samples.setdefault(name, str(exc)[:300])
                    time.sleep(1.0 + random.random() * 0.1)
            r.rpush(done, json.dumps({"i": i, "t": time.time()}))

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(spec["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r.rpush(spec["stats_key"], json.dumps({"errors": errors, "samples": samples}))


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    run(json.loads(sys.argv[1]))
