"""Where a request's CPU goes: py-spy on every worker process and on the client, Redis's own command statistics,
cProfile on the client's submission.

Emulator latency 0, no quota, 2 worker processes x 8 threads (the overhead section's batch), N prompts.
py-spy (``pip install py-spy``; needs ptrace rights) samples each worker's GIL holder while the batch runs; samples are
grouped by the first recognisable frame of their stack (see ``CATEGORIES``), so the table says how much of a
worker's on-CPU time is the Gemini call, the key manager, Celery's message/events/result handling, and so on.

    python bench/profile_cpu.py --requests 2000
    python bench/profile_cpu.py --raw /tmp/stacks     # also keep py-spy's collapsed stacks
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import MODEL, CpuMeter, gt_stack, md_table

#: What a frame called directly by ``run_with_key`` (the admit -> call -> report loop) is doing.
IN_RUN_WITH_KEY: list[tuple[str, tuple[str, ...]]] = [
    ("Gemini SDK call (request build, httpx, response parse)", ("execute_generate.<locals>.call",)),
    ("key manager: admit (EVALSHA)", ("acquire (gemini_tasks/keys/admission.py",)),
    ("key manager: report (EVALSHA)", ("KeyPool.report",)),
    ("report + metrics + done marker (one pipeline)", ("best_effort", "_finish")),
    ("metrics write (pipelined HINCRBY)", ("record_call",)),
    ("SDK client cache lookup", ("get_client",)),
    ("key pool / secrets lookup", ("worker_pool", "held_secrets", "admit_policy")),
    ("done marker (GET before, SET after)", ("Redis.", "RideOutRetry", "redis/")),
]
#: Stacks outside ``run_with_key``: the first category with a marker anywhere in the stack wins, in order.
OUTSIDE: list[tuple[str, tuple[str, ...]]] = [
    ("Gemini SDK call on the call loop (request build, aiohttp, response parse)",
     ("serve (gemini_tasks/worker/async_calls.py",)),
    ("waiting for the call loop's answer (task thread)", ("CallLoop.run (gemini_tasks/worker/async_calls.py",)),
    ("job decode / request build", ("read_job (gemini_tasks/worker/execution.py", "execute_generate (gemini_tasks/worker/execution.py")),
    ("Celery: result backend (result writes)", ("store_result", "mark_as_done", "mark_as_started",
                                                   "_store_result")),
    ("Celery: task events (received, started, succeeded)", ("send_event", "EventDispatcher",
                                                             "events/dispatcher.py")),
    ("Celery: task trace (argsrepr, logging, signals)", ("celery/app/trace.py",)),
    ("Celery: consume / ack / message / QoS", ("kombu/", "celery/worker/")),
    ("logging", ("logging/",)),
]


def categorize(stack: str) -> str:
    frames = stack.split(";")
    for i, frame in enumerate(frames):
        if frame.startswith("run_with_key (gemini_tasks/worker/execution.py"):
            child = frames[i + 1] if i + 1 < len(frames) else ""
            for name, markers in IN_RUN_WITH_KEY:
                if any(m in child for m in markers):
                    return name
            return "run_with_key itself" if not child else f"run_with_key: {child.split(' (')[0]}"
    for name, markers in OUTSIDE:
        if any(m in stack for m in markers):
            return name
    return "other"


def read_collapsed(path: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out[stack] += int(count)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--raw", help="keep py-spy's collapsed stacks in this directory")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    n = args.requests
    outdir = Path(args.raw or tempfile.mkdtemp(prefix="gt-profile-"))
    outdir.mkdir(parents=True, exist_ok=True)

    with gt_stack({"latency_seconds": 0.0}, n_keys=4) as st, st.fleet(procs=2, concurrency=8, queues="batch") as fleet:
        from gemini_tasks import GeminiParallelProcessor

        proc = GeminiParallelProcessor(fleet.manager, MODEL, worker_cooldown_seconds=0, api_call_interval=0,
                                       max_workers=16)
        proc.process_prompts([{"prompt": f"warm {i}"} for i in range(64)], progress=False)
        pids = fleet.worker_pids()
        spies = [subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(args.rate), "--format", "raw",
                                   "--gil", "--nonblocking", "-o", str(outdir / f"worker{i}.txt")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i, pid in enumerate(pids)]
        spies.append(subprocess.Popen([spy, "record", "--pid", str(os.getpid()), "--rate", str(args.rate), "--format",
                                       "raw", "--gil", "--nonblocking", "-o", str(outdir / "client.txt")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import redis as redis_lib

        rclient = redis_lib.Redis.from_url(fleet.redis.url)
        time.sleep(1.0)
        rclient.config_resetstat()
        meter = {f"worker{i}": pid for i, pid in enumerate(pids)}
        meter.update(redis=fleet.redis.proc.pid, emulator=fleet.emulator.pid)
        cpu = CpuMeter(meter, {"client": os.getpid()}).start()
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        handle = proc.submit([{"prompt": f"profile {i}"} for i in range(n)])
        prof.disable()
        submit_s = time.perf_counter() - t0
        results = proc.collect(handle, timeout=600, progress=False)
        wall = time.perf_counter() - t0
        used = cpu.stop()
        commands = rclient.info("commandstats")
        rclient.close()
        for s in spies:
            s.send_signal(2)  # SIGINT: py-spy writes its file and exits
        for s in spies:
            try:
                s.wait(30)
            except subprocess.TimeoutExpired:
                s.kill()
    errors = sum(1 for _, _, e in results if e)
    print(f"\n{n} prompts, 2 workers x 8 threads, emulator latency 0: submit {submit_s:.2f} s, "
          f"end to end {wall:.2f} s ({n / wall:.0f} req/s), {errors} errors\n")
    print(md_table(["process", "CPU ms/request"], [[k, f"{1000 * v / n:.2f}"] for k, v in used.items()]
                   + [["all", f"{1000 * sum(used.values()) / n:.2f}"]]))
    worker_ms = 1000 * sum(v for k, v in used.items() if k.startswith("worker")) / n
    samples: Counter[str] = Counter()
    for i in range(len(pids)):
        for stack, count in read_collapsed(outdir / f"worker{i}.txt").items():
            samples[categorize(stack)] += count
    total = sum(samples.values()) or 1
    print(f"\nWorker CPU by category (py-spy, {total} samples over both workers; ms scaled to the measured "
          f"{worker_ms:.2f} ms/request of worker CPU):\n")
    print(md_table(["category", "share", "ms/request"],
                   [[k, f"{100 * v / total:.1f}%", f"{worker_ms * v / total:.2f}"] for k, v in samples.most_common()]))
    redis_us = sum(v["usec"] for v in commands.values()) or 1
    print(f"\nRedis commands during the batch (INFO commandstats; {redis_us / n:.0f} us of command time per request of "
          f"{1000 * used['redis'] / n:.2f} ms Redis CPU):\n")
    print(md_table(["command", "calls/request", "us/request", "share"],
                   [[k.removeprefix("cmdstat_"), f"{v['calls'] / n:.2f}", f"{v['usec'] / n:.1f}",
                     f"{100 * v['usec'] / redis_us:.1f}%"]
                    for k, v in sorted(commands.items(), key=lambda kv: -kv[1]["usec"])[:15]]))
    client_samples = read_collapsed(outdir / "client.txt")
    client_total = sum(client_samples.values()) or 1
    leaf: Counter[str] = Counter()
    for stack, count in client_samples.items():
        frames = [f for f in stack.split(";") if "site-packages" not in f or "celery/" in f or "kombu/" in f]
        leaf[next((f for f in reversed(frames) if "gemini_tasks/" in f or "bench/" in f), frames[-1])] += count
    print(f"\nClient (this process) on-CPU by innermost gemini_tasks frame (py-spy, {client_total} samples, submit "
          f"and collect):\n")
    print(md_table(["frame", "share"], [[k, f"{100 * v / client_total:.1f}%"] for k, v in leaf.most_common(12)]))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
    print(f"\nClient submission ({1000 * submit_s / n:.2f} ms/prompt wall), cProfile, top cumulative:\n")
    print(buf.getvalue())
    if not args.raw:
        shutil.rmtree(outdir, ignore_errors=True)


if __name__ == "__main__":
    main()
