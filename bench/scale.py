"""Section 3: throughput as worker slots grow, emulator latency 200 ms, no quota.

For each slot count the workers are started and warmed, their consumer is paused (``cancel_consumer``), the
batch is enqueued, and the consumer is resumed: so the measurement is the fleet draining a full queue, not the
client's submission speed (section 2 measures that). Throughput is the emulator's rate of answered requests
between the 5th and 95th percentile of answers; CPU seconds come from /proc for the worker process trees, Redis,
the emulator and this client over the same drain.

Threads pool: two worker processes with slots/2 threads each. Prefork (small counts only; ``bench/pools.py``
compares pools in depth): one worker process with ``-c slots`` children.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import MODEL, CpuMeter, Section, emulator_log, fmt, gt_stack, md_table  # noqa: E402

LATENCY = 0.2


def _pause(app: Any, queue: str, nodes: list[str], resume: bool) -> None:
    if resume:
        app.control.add_consumer(queue, destination=nodes, reply=True, timeout=5)
    else:
        app.control.cancel_consumer(queue, destination=nodes, reply=True, timeout=5)


def step(st: Any, pool: str, slots: int, n: int) -> dict[str, Any]:
    from gemini_tasks import GeminiParallelProcessor
    from gemini_tasks.celery_app import app

    procs, conc = (2, slots // 2) if pool == "threads" else (1, slots)
    with st.fleet(procs=procs, concurrency=conc, queues="batch", pool=pool, max_leases=4 * slots) as fleet:
        proc = GeminiParallelProcessor(fleet.manager, MODEL, worker_cooldown_seconds=0, api_call_interval=0,
                                       max_workers=slots)
        proc.process_prompts([{"prompt": f"warm {i}"} for i in range(2 * slots)], progress=False)
        nodes = [w.name.replace("%h", os.uname().nodename) for w in fleet.workers]
        _pause(app, "batch", nodes, resume=False)
        handle = proc.submit([{"prompt": f"scale {slots} {i}"} for i in range(n)])
        seq = fleet.emulator.control.stats()["last_seq"]
        pids = {f"worker{i}": pid for i, pid in enumerate(fleet.worker_pids())}
        pids.update(redis=fleet.redis.proc.pid, emulator=fleet.emulator.pid)
        cpu = CpuMeter(pids, {"client": os.getpid()}).start()
        t0 = time.time()
        _pause(app, "batch", nodes, resume=True)
        results = proc.collect(handle, timeout=600, progress=False)
        wall = time.time() - t0
        used = cpu.stop()
    ok = sorted(e["t"] + (e.get("duration") or 0) for e in emulator_log(fleet.emulator.control, since=seq)
                if e.get("endpoint") == "generateContent" and e["status"] == 200)
    lo, hi = int(0.05 * len(ok)), int(0.95 * len(ok)) - 1
    rate = (hi - lo) / (ok[hi] - ok[lo]) if hi > lo and ok[hi] > ok[lo] else float("nan")
    worker_cpu = sum(v for k, v in used.items() if k.startswith("worker"))
    return {
        "pool": pool, "slots": slots, "procs": procs, "n": n, "errors": sum(1 for _, _, e in results if e),
        "rps": rate, "ideal_rps": slots / LATENCY, "rps_per_slot": rate / slots, "wall": wall,
        "worker_cpu_ms": 1000 * worker_cpu / n, "total_cpu_ms": 1000 * sum(used.values()) / n,
        "cpu_ms": {k: 1000 * v / n for k, v in used.items()},
        "cores_busy": sum(used.values()) / wall,
    }


def main(quick: bool = False) -> Section:
    t_start = time.time()
    thread_slots = [8, 32] if quick else [8, 16, 32, 64, 128, 256]
    prefork_slots = [] if quick else [8, 16]
    seconds = 3 if quick else 6
    rows: list[dict[str, Any]] = []
    with gt_stack({"latency_seconds": LATENCY}, n_keys=8) as st:
        for pool, counts in (("threads", thread_slots), ("prefork", prefork_slots)):
            for slots in counts:
                n = int(min(max(slots / LATENCY * seconds, 200), 1000 if quick else 2000))
                print(f"  {pool} {slots} slots, {n} prompts", flush=True)
                rows.append(step(st, pool, slots, n))
    table = md_table(
        ["pool", "slots", "worker procs", "prompts", "req/s", "ideal req/s (slots / 0.2 s)", "req/s per slot",
         "worker CPU ms/req", "all CPU ms/req", "cores busy", "errors"],
        [[r["pool"], r["slots"], r["procs"], f"{r['n']:,}", fmt(r["rps"], 0), fmt(r["ideal_rps"], 0),
          fmt(r["rps_per_slot"], 2), fmt(r["worker_cpu_ms"], 2), fmt(r["total_cpu_ms"], 2),
          fmt(r["cores_busy"], 2), r["errors"]] for r in rows],
        align="lrrrrrrrrrr")
    md = (f"Emulator latency {int(LATENCY * 1000)} ms, no quota, a full queue drained by the fleet. "
          "`all CPU` adds Redis, the emulator and this client (collecting results) to the workers; `cores busy` "
          "is all CPU seconds over the drain's wall time (the machine has 2).\n\n" + table)
    return Section("scale", md, {"rows": rows, "latency": LATENCY}, time.time() - t_start)


if __name__ == "__main__":
    from bench.common import section_cli

    section_cli(main)
