"""Emulator throughput: can it keep up with a fleet of workers?  (It must not be the bottleneck.)

Starts the emulator as a subprocess (EmulatorProcess), drives it from several client processes,
and prints one row per scenario:

* raw:  aiohttp client, keep-alive connections, N concurrent requests per process;
* sdk:  the real google-genai sync client (httpx2, keep-alive), one thread per process.

Emulator CPU seconds per request come from /proc/<pid>/stat (utime + stime), so the
"capacity" column (1 / cpu-per-request) is what one core can serve no matter how much of the
machine the client processes took.

    python bench/emulator_throughput.py                 # default scenarios
    python bench/emulator_throughput.py --seconds 3 --clients 1,2,4
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from gemini_tasks.emulator.runner import EmulatorProcess  # noqa: E402

MODEL = "gemini-2.5-flash"
BODY = b'{"contents":[{"role":"user","parts":[{"text":"Say hello to the benchmark"}]}]}'
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (no psutil needed)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


# --------------------------------------------------------------------------- client processes


def _raw_worker(url: str, duration: float, concurrency: int, barrier, out) -> None:
    import aiohttp

    async def main() -> tuple[int, int]:
        path = f"{url}/v1beta/models/{MODEL}:generateContent"
        headers = {"Content-Type": "application/json", "x-goog-api-key": f"bench-{os.getpid()}"}
        ok = err = 0
        conn = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=conn) as session:
            # warm the connections before the clock starts
            async def one() -> bool:
                async with session.post(path, data=BODY, headers=headers) as r:
                    await r.read()
                    return r.status == 200

            await asyncio.gather(*(one() for _ in range(concurrency)))
            barrier.wait()
            deadline = time.perf_counter() + duration

            async def loop() -> None:
                nonlocal ok, err
                while time.perf_counter() < deadline:
                    if await one():
                        ok += 1
                    else:
                        err += 1

            await asyncio.gather(*(loop() for _ in range(concurrency)))
        return ok, err

    out.put(asyncio.run(main()))


def _sdk_worker(url: str, duration: float, concurrency: int, barrier, out) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=f"bench-{os.getpid()}",
        http_options=types.HttpOptions(base_url=url, api_version="v1beta", timeout=30_000),
    )
    client.models.generate_content(model=MODEL, contents="warm up")
    barrier.wait()
    ok = err = 0
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        try:
            r = client.models.generate_content(model=MODEL, contents="Say hello to the benchmark")
            ok += r.text is not None
        except Exception:  # noqa: BLE001 - a benchmark counts, it does not judge
            err += 1
    out.put((ok, err))


def run_scenario(emu: EmulatorProcess, mode: str, clients: int, concurrency: int, duration: float) -> dict:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    target = _raw_worker if mode == "raw" else _sdk_worker
    procs = [ctx.Process(target=target, args=(emu.url, duration, concurrency, barrier, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    barrier.wait(timeout=60)  # all clients connected and warmed up
    cpu0 = cpu_seconds(emu.pid)
    t0 = time.perf_counter()
    results = [out.get(timeout=duration + 60) for _ in procs]
    elapsed = time.perf_counter() - t0
    cpu1 = cpu_seconds(emu.pid)
    for p in procs:
        p.join()
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    cpu_per_req = (cpu1 - cpu0) / max(1, ok + errors)
    return {
        "mode": mode,
        "clients": clients,
        "conc": concurrency,
        "requests": ok + errors,
        "errors": errors,
        "seconds": elapsed,
        "rps": (ok + errors) / elapsed,
        "cpu_ms_per_req": cpu_per_req * 1000,
        "capacity": 1.0 / cpu_per_req if cpu_per_req > 0 else float("inf"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="measured duration per scenario")
    ap.add_argument("--clients", default="1,2,4", help="client process counts for the raw scenarios")
    ap.add_argument("--concurrency", type=int, default=8, help="in-flight requests per raw client process")
    ap.add_argument("--sdk-clients", default="1,4", help="client process counts for the SDK scenarios")
    args = ap.parse_args()

    rows = []
    with EmulatorProcess(config={"log_max": 100000}) as emu:
        print(f"emulator {emu.url} pid {emu.pid}; host has {os.cpu_count()} CPUs", flush=True)
        for n in [int(x) for x in args.clients.split(",") if x]:
            rows.append(run_scenario(emu, "raw", n, args.concurrency, args.seconds))
            print("  " + _fmt(rows[-1]), file=sys.stderr, flush=True)
        for n in [int(x) for x in args.sdk_clients.split(",") if x]:
            rows.append(run_scenario(emu, "sdk", n, 1, args.seconds))
            print("  " + _fmt(rows[-1]), file=sys.stderr, flush=True)
        stats = emu.control.stats()
        print(f"emulator served {stats['total']} requests, statuses {stats['by_status']}", flush=True)

    print()
    header = f"{'client':<6} {'procs':>5} {'conc':>4} {'requests':>9} {'errors':>6} {'seconds':>7} " \
             f"{'req/s':>8} {'emu CPU ms/req':>14} {'1-core capacity req/s':>21}"  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        print(_fmt(r))


def _fmt(r: dict) -> str:
    return (
        f"{r['mode']:<6} {r['clients']:>5} {r['conc']:>4} {r['requests']:>9} {r['errors']:>6} "
        f"{r['seconds']:>7.2f} {r['rps']:>8.0f} {r['cpu_ms_per_req']:>14.3f} {r['capacity']:>21.0f}"
    )


if __name__ == "__main__":
    main()
