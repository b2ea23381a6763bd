"""Section 2: what the fleet costs on top of a direct SDK call (emulator latency 0, no quota).

* Streaming round trip: ``GeminiStreamingProcessor.process_single`` (enqueue on ``interactive``, a worker admits,
  calls, reports, the result comes back through the result backend) against the same SDK call made directly from
  this process (``make_client``, the client the workers use), one request at a time.
* Batch: 1,000 prompts through ``GeminiParallelProcessor.process_prompts``: time to submit, submit-to-last-result
  time and requests per second, against the same 1,000 calls made directly by as many threads as the fleet has
  slots.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import MODEL, CpuMeter, Section, fmt, gt_stack, md_table, pct  # noqa: E402


def _direct_client(fleet: Any) -> Any:
    from gemini_tasks.gemini.client import make_client

    secret = next(iter(fleet.secrets.values()))
    return make_client(secret, timeout_s=30)


def streaming(fleet: Any, n: int) -> dict[str, Any]:
    from gemini_tasks import GeminiStreamingProcessor

    proc = GeminiStreamingProcessor(fleet.manager, MODEL, worker_cooldown_seconds=0, api_call_interval=0,
                                    max_workers=8)
    proc.start()
    client = _direct_client(fleet)
    fleet_lat: list[float] = []
    direct_lat: list[float] = []
    errors = 0
    try:
        for i in range(20):  # warm both paths: connections, scripts, clients
            proc.process_single({"prompt": f"warm {i}"}, timeout=30)
            client.models.generate_content(model=MODEL, contents=f"warm {i}")
        for i in range(n):  # interleaved, so both see the same machine state
            t = time.perf_counter()
            _, text, err = proc.process_single({"prompt": f"stream {i}"}, timeout=30)
            fleet_lat.append(time.perf_counter() - t)
            errors += err is not None
            t = time.perf_counter()
            client.models.generate_content(model=MODEL, contents=f"direct {i}")
            direct_lat.append(time.perf_counter() - t)
    finally:
        proc.stop()
        client.close()
    return {"n": n, "errors": errors,
            "fleet_p50": pct(fleet_lat, 50), "fleet_p99": pct(fleet_lat, 99),
            "direct_p50": pct(direct_lat, 50), "direct_p99": pct(direct_lat, 99)}


def batch(fleet: Any, n: int, slots: int) -> dict[str, Any]:
    from gemini_tasks import GeminiParallelProcessor

    proc = GeminiParallelProcessor(fleet.manager, MODEL, worker_cooldown_seconds=0, api_call_interval=0,
                                   max_workers=slots)
    proc.process_prompts([{"prompt": f"warm {i}"} for i in range(2 * slots)], progress=False)
    pids = {f"worker{i}": pid for i, pid in enumerate(fleet.worker_pids())}
    pids.update(redis=fleet.redis.proc.pid, emulator=fleet.emulator.pid)
    cpu = CpuMeter(pids, {"client": os.getpid()}).start()
    t0 = time.perf_counter()
    handle = proc.submit([{"prompt": f"batch {i}"} for i in range(n)])
    submitted = time.perf_counter() - t0
    results = proc.collect(handle, timeout=600, progress=False)
    total = time.perf_counter() - t0
    used = cpu.stop()
    errors = sum(1 for _, _, e in results if e)

    client = _direct_client(fleet)
    client.models.generate_content(model=MODEL, contents="warm")
    direct_cpu = CpuMeter({"emulator": fleet.emulator.pid}, {"client": os.getpid()}).start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(slots) as ex:
        list(ex.map(lambda i: client.models.generate_content(model=MODEL, contents=f"direct {i}"), range(n)))
    direct = time.perf_counter() - t0
    direct_used = direct_cpu.stop()
    client.close()
    worker_cpu = sum(v for k, v in used.items() if k.startswith("worker"))
    return {"n": n, "slots": slots, "errors": errors, "submit_s": submitted, "total_s": total,
            "rps": n / total, "direct_s": direct, "direct_rps": n / direct,
            "cpu_ms_per_request": {k: 1000 * v / n for k, v in used.items()},
            "direct_sdk_cpu_ms_per_request": 1000 * direct_used["client"] / n,
            "worker_cpu_ms_per_request": 1000 * worker_cpu / n,
            "total_cpu_ms_per_request": 1000 * sum(used.values()) / n}


def main(quick: bool = False) -> Section:
    t_start = time.time()
    n_stream = 50 if quick else 300
    n_batch = 300 if quick else 1000
    slots = 16
    with gt_stack({"latency_seconds": 0.0}, n_keys=4) as st:
        with st.fleet(procs=1, concurrency=4, queues="interactive") as fleet:
            s = streaming(fleet, n_stream)
        with st.fleet(procs=2, concurrency=slots // 2, queues="batch") as fleet:
            b = batch(fleet, n_batch, slots)

    md = [
        f"Emulator latency 0, no quota. Streaming: {s['n']} sequential requests each way, interleaved "
        "(fleet: one worker process, threads pool, 4 slots, consuming `interactive`). "
        f"Batch: {b['n']:,} prompts, 2 worker processes x {slots // 2} threads; the direct baseline runs the same "
        f"calls from {slots} threads of one process.",
        "",
        md_table(["path", "p50 ms", "p99 ms"], [
            ["direct SDK call", fmt(1000 * s["direct_p50"], 2), fmt(1000 * s["direct_p99"], 2)],
            ["process_single through the fleet", fmt(1000 * s["fleet_p50"], 2), fmt(1000 * s["fleet_p99"], 2)],
            ["overhead of the fleet", fmt(1000 * (s["fleet_p50"] - s["direct_p50"]), 2),
             fmt(1000 * (s["fleet_p99"] - s["direct_p99"]), 2)],
        ]),
        "",
        md_table([f"batch of {b['n']:,}", "submit s", "published/s", "submit-to-last-result s", "req/s", "errors"], [
            ["direct SDK, 16 threads", "–", "–", fmt(b["direct_s"], 2), fmt(b["direct_rps"], 0), "0"],
            ["GeminiParallelProcessor on the fleet", fmt(b["submit_s"], 2), fmt(b["n"] / b["submit_s"], 0),
             fmt(b["total_s"], 2), fmt(b["rps"], 0), fmt(b["errors"])],
        ]),
        "",
        "CPU per request during the fleet batch (ms): " + ", ".join(
            f"{k} {v:.2f}" for k, v in b["cpu_ms_per_request"].items()) +
        f"; all processes {b['total_cpu_ms_per_request']:.2f}. For comparison, the direct SDK calls cost "
        f"{b['direct_sdk_cpu_ms_per_request']:.2f} ms of CPU each in the calling process: the rest of a worker's "
        "CPU per request is Celery (message, ack, events, result backend) and the key manager's admission and "
        "report with the metrics write (`python bench/profile_cpu.py` splits it by step).",
    ]
    return Section("overhead", "\n".join(md), {"streaming": s, "batch": b}, time.time() - t_start)


if __name__ == "__main__":
    from bench.common import section_cli

    section_cli(main)
