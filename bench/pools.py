"""Which Celery pool should a gemini-tasks worker run?  prefork vs threads vs gevent, measured.

Every slot of a worker spends almost all of a Gemini call waiting on the network, so the question is how many
calls one machine can keep in flight, and what each in-flight call costs in memory and CPU. This starts:

* a private ``redis-server`` (broker, results, key state),
* the Gemini emulator in its own process (``EmulatorProcess``) answering every call after a fixed latency
  (0.2 s by default) with no quota, so only the worker side limits throughput,
* for each configuration, one real ``celery -A gemini_tasks worker -P <pool> -c <n>`` process (``WorkerProcess``),

then submits N prompts through ``GeminiParallelProcessor`` (paid keys, no cooldown, no spacing, many leases per
key) and prints one row per configuration:

* ``req/s`` (all N answers, submit to last result), ``ideal`` (concurrency / latency), ``req/s/slot``;
* worker memory after the run, summed over the worker's process tree from ``/proc``: RSS, and PSS (the fair share
  of pages a prefork parent shares with its children, from ``smaps_rollup``);
* worker CPU milliseconds per request (utime + stime of the tree, over the measured batch only);
* the longest pause between two consecutive calls arriving at the emulator during the batch (a worker that
  leaves its slots idle shows up here: gevent with prefetch 1 refills them only every 2 s).

    python bench/pools.py                                  # the table in workers/README.md
    python bench/pools.py --requests 400 --configs threads:32,gevent:32
    python bench/pools.py --json results.json
    python bench/pools.py --configs threads:2000:sync,threads:2000:aio,gevent:2000 --keys 2 --latency 10 \
        --requests 6000 --warmup 2000 --spy /tmp/spy     # the in-flight table of bench/RESULTS.md section 6

A config's ``aio`` / ``sync`` token sets ``GEMINI_TASKS_ASYNC_CALLS`` for that worker (1 / 0: the calls wait on
one event loop per process, or each in its own thread; without it the worker's default, ``auto``). ``--spy DIR``
records each worker with py-spy (GIL holder samples) during the measured batch and prints where its CPU went.

gevent must be installed (``pip install gevent``); without it its rows say so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
MODEL = "gemini-2.5-flash"
KEYS = 4
#: py-spy sampling: the GIL holder by default; GEMINI_BENCH_SPY=threads samples every thread on a CPU, by thread
SPY_MODE = ["--threads"] if os.environ.get("GEMINI_BENCH_SPY") == "threads" else ["--gil"]
DEFAULT_CONFIGS = ("prefork:8,prefork:32,threads:8,threads:32,threads:128,gevent:8,gevent:32,gevent:128,"
                   "gevent:32:pf4,gevent:128:pf4")


# ------------------------------------------------------------------------------------------------ /proc


def tree(root: int) -> list[int]:
    """The worker and everything in its process group (WorkerProcess starts it in its own session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == root:  # field 5 of stat(5): pgrp
            pids.append(int(entry))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
        except OSError:
            pass
    return total / CLK_TCK


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` (utime + stime from /proc/PID/task/TID/stat)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except OSError:
            pass
    return out


def thread_split(pid: int, before: dict[int, float], after: dict[int, float], n: int) -> dict[str, float]:
    """CPU ms per request of the main thread (Celery's consumer), the busiest other thread (the call loop when
    there is one), and all the others (the pool's task threads)."""
    used = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    main = used.pop(pid, 0.0)
    busiest = max(used.values(), default=0.0)
    rest = sum(used.values()) - busiest
    return {"main_ms": round(main * 1000 / n, 2), "busiest_ms": round(busiest * 1000 / n, 2),
            "others_ms": round(rest * 1000 / n, 2), "threads": len(after)}


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over ``pids``."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


# ------------------------------------------------------------------------------------------------ run


def max_in_flight(entries: list[dict]) -> int:
    """The most generateContent calls the emulator was serving at one moment (log start + duration)."""
    edges = []
    for e in entries:
        if e.get("endpoint") == "generateContent" and e.get("duration") is not None:
            edges += [(e["t"], 1), (e["t"] + e["duration"], -1)]
    best = now = 0
    for _, step in sorted(edges):
        now += step
        best = max(best, now)
    return best


def longest_gap(emulator, since: int) -> float:
    """The longest pause between two consecutive call arrivals at the emulator (a worker that stalls shows here)."""
    arrivals = sorted(e["t"] for e in emulator.control.log(since=since) if e.get("endpoint") == "generateContent")
    return max((b - a for a, b in zip(arrivals, arrivals[1:])), default=0.0)


def start_spy(pid: int, path: Path) -> subprocess.Popen | None:
    """py-spy sampling the GIL holder of ``pid`` into ``path`` (collapsed stacks), or None without py-spy."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("   py-spy not found: pip install py-spy", file=sys.stderr)
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", *SPY_MODE,
                             "--nonblocking", "-o", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_spy(spy: subprocess.Popen | None) -> None:
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
    try:
        spy.wait(60)
    except subprocess.TimeoutExpired:
        spy.kill()


def spy_table(path: Path, cpu_ms: float) -> str:
    """Where the worker's CPU went, by the categories of bench/profile_cpu.py, scaled to ``cpu_ms`` per request."""
    from collections import Counter

    from bench.profile_cpu import categorize, read_collapsed

    samples: Counter[str] = Counter()
    for stack, count in read_collapsed(path).items():
        samples[categorize(stack)] += count
    total = sum(samples.values()) or 1
    lines = [f"| category ({total} samples) | share | ms/request |", "|---|---:|---:|"]
    lines += [f"| {k} | {100 * v / total:.1f}% | {cpu_ms * v / total:.2f} |" for k, v in samples.most_common(14)]
    return "\n".join(lines)


def run_config(pool: str, concurrency: int, n: int, latency: float, env: dict[str, str], emulator,
               prefetch: int = 1, keys: int = KEYS, warmup: int | None = None, calls: str = "",
               spy_dir: Path | None = None) -> dict:
    from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor
    from gemini_tasks.testing.local_fleet import WorkerProcess, WorkerStartError

    row = {"pool": pool, "concurrency": concurrency, "prefetch": prefetch, "requests": n,
           "ideal_rps": concurrency / latency, "calls": calls or "default"}
    if calls:
        env = {**env, "GEMINI_TASKS_ASYNC_CALLS": "1" if calls == "aio" else "0"}
    worker = WorkerProcess(env, queues="batch", pool=pool, concurrency=concurrency, loglevel="WARNING",
                           name=f"bench-{pool}-{concurrency}-{prefetch}{calls}@%h",
                           extra_args=["--prefetch-multiplier", str(prefetch)] if prefetch != 1 else [])
    try:
        worker.start(timeout=120)
    except WorkerStartError as exc:
        row["error"] = str(exc).splitlines()[0][:200]
        row["log"] = worker.log_tail(3000)
        return row
    try:
        pool_name = f"bench{pool}{concurrency}p{prefetch}x{os.getpid()}"
        manager = AdvancedApiKeyManager(keys, paid_keys="all", pool=pool_name,
                                        key_settings={"paid": {"max_concurrent_leases": max(1000, concurrency)}})
        proc = GeminiParallelProcessor(manager, MODEL, worker_cooldown_seconds=0, api_call_interval=0,
                                       max_workers=4096)
        # warm-up: every slot (thread, greenlet or child process) builds its SDK clients and connections
        warm_n = concurrency * 2 if warmup is None else warmup
        warm = proc.process_prompts([{"prompt": f"warm {i}"} for i in range(warm_n)], timeout=600,
                                    progress=False)
        warm_errors = [e for _, _, e in warm if e]
        row["warmup_errors"] = len(warm_errors)
        if warm_errors:
            row["first_warmup_error"] = warm_errors[0][:300]
        pids = tree(worker.pid)
        spy_path = spy_dir / f"{pool}-{concurrency}-pf{prefetch}-{calls or 'default'}.txt" if spy_dir else None
        spy = start_spy(worker.pid, spy_path) if spy_path else None
        cpu0 = cpu_seconds(pids)
        threads0 = thread_cpu(worker.pid)
        log_from = emulator.control.clear_log()
        t0 = time.perf_counter()
        results = proc.process_prompts([{"prompt": f"bench {pool} {concurrency} #{i}"} for i in range(n)],
                                       timeout=600, progress=False)
        wall = time.perf_counter() - t0
        row["thread_cpu"] = thread_split(worker.pid, threads0, thread_cpu(worker.pid), n)
        stop_spy(spy)
        pids = tree(worker.pid)
        cpu = cpu_seconds(pids) - cpu0
        rss, pss = memory_mb(pids)
        errors = [e for _, _, e in results if e]
        row["max_gap_s"] = round(longest_gap(emulator, log_from), 2)
        row["max_in_flight"] = max_in_flight(emulator.control.log(since=log_from))
        row["of_ideal"] = round(n / wall / (concurrency / latency), 3)
        row.update({
            "wall_s": round(wall, 2), "rps": round(n / wall, 1), "rps_per_slot": round(n / wall / concurrency, 2),
            "rss_mb": round(rss, 1), "pss_mb": round(pss, 1), "processes": len(pids),
            "cpu_ms_per_req": round(cpu * 1000 / n, 2), "errors": len(errors),
            "first_error": errors[0][:200] if errors else None,
        })
        if spy_path is not None:
            row["spy"] = str(spy_path)
        return row
    finally:
        worker.stop()


def fmt_table(rows: list[dict], latency: float) -> str:
    head = (f"| pool | calls | -c | prefetch | requests | req/s | ideal (c/{latency:g}s) | of ideal | most in flight "
            "| req/s per slot | worker RSS MiB | worker PSS MiB | processes | worker CPU ms/req "
            "| longest pause between calls, s | errors |")
    lines = [head, "|" + "---|" * 16]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['pool']} | {r.get('calls', '')} | {r['concurrency']} | {r['prefetch']} | - | "
                         f"did not start: {r['error']} |||||||||")
            continue
        lines.append(f"| {r['pool']} | {r.get('calls', '')} | {r['concurrency']} | {r['prefetch']} | {r['requests']} | "
                     f"{r['rps']:.1f} | {r['ideal_rps']:.0f} | "
                     f"{r['of_ideal']:.2f} | {r['max_in_flight']} | "
                     f"{r['rps_per_slot']:.2f} | {r['rss_mb']:.0f} | {r['pss_mb']:.0f} | {r['processes']} | "
                     f"{r['cpu_ms_per_req']:.2f} | {r['max_gap_s']:.2f} | {r['errors']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=0,
                    help="prompts per configuration, after a warm-up (default: max(400, 15 x concurrency))")
    ap.add_argument("--latency", type=float, default=0.2, help="emulator latency per call, seconds")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS,
                    help="pool:concurrency[:pfN],... where pfN sets --prefetch-multiplier (default: %(default)s)")
    ap.add_argument("--keys", type=int, default=KEYS, help="paid keys in the pool (default: %(default)s)")
    ap.add_argument("--warmup", type=int, help="warm-up prompts per configuration (default: 2 x concurrency)")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--spy", help="record each worker with py-spy during the measured batch, into this directory")
    args = ap.parse_args()

    from gemini_tasks.emulator.runner import EmulatorProcess
    from gemini_tasks.testing.local_redis import RedisServer

    # a SIGTERM (timeout, Ctrl-C in another terminal) still runs the finally blocks: no orphaned worker,
    # emulator or redis-server is left behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    secrets = {f"GEMINI_API_KEY_{i}": f"bench-secret-{i:02d}-abcdefghijklmnop" for i in range(1, args.keys + 1)}
    redis_server = RedisServer().start()
    emulator = EmulatorProcess(config={"latency_seconds": args.latency, "log_max": 200000}).start()
    try:
        for name in [k for k in os.environ if k.startswith("GEMINI_API_KEY")]:
            del os.environ[name]
        os.environ.update(secrets)
        os.environ.update({"REDIS_URL": redis_server.url, "GOOGLE_GEMINI_BASE_URL": emulator.url,
                           "GEMINI_TASKS_REQUEST_TIMEOUT": "60", "NO_PROXY": "127.0.0.1,localhost"})
        env = dict(os.environ)  # set before gemini_tasks is imported: this process's app uses the same broker
        rows = []
        for item in args.configs.split(","):
            pool, conc, *rest = item.strip().split(":")
            prefetch = next((int(r.removeprefix("pf")) for r in rest if r.startswith("pf")), 1)
            calls = next((r for r in rest if r in ("aio", "sync")), "")
            n = args.requests or max(400, 15 * int(conc))
            print(f"-- {pool} -c {conc} prefetch {prefetch}: {n} requests ...", file=sys.stderr, flush=True)
            spy_dir = Path(args.spy) if args.spy else None
            if spy_dir:
                spy_dir.mkdir(parents=True, exist_ok=True)
            row = run_config(pool, int(conc), n, args.latency, env, emulator, prefetch, args.keys, args.warmup,
                             calls, spy_dir)
            print(f"   {json.dumps({k: v for k, v in row.items() if k != 'log'})}", file=sys.stderr, flush=True)
            rows.append(row)
        print(f"\nEmulator latency {args.latency:g} s, {args.keys} paid keys, "
              f"{os.cpu_count()} cores (client, Redis, emulator and worker share them)\n")
        print(fmt_table(rows, args.latency))
        print("\nWorker CPU ms/request by thread: main (Celery's consumer) / busiest other thread (the call loop, "
              "when there is one) / all other threads (the pool's)\n")
        for r in rows:
            if "thread_cpu" in r:
                t = r["thread_cpu"]
                print(f"- {r['pool']} -c {r['concurrency']} calls {r['calls']}: {t['main_ms']:.2f} / "
                      f"{t['busiest_ms']:.2f} / {t['others_ms']:.2f} ({t['threads']} threads)")
        for r in rows:
            if r.get("spy"):
                print(f"\nWhere the worker's CPU went: {r['pool']} -c {r['concurrency']} calls {r['calls']} "
                      f"(py-spy, GIL holder)\n")
                print(spy_table(Path(r["spy"]), r["cpu_ms_per_req"]))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    finally:
        emulator.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
