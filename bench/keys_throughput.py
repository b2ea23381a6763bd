"""Key-manager throughput: admit+report pairs per second and Redis round trips per call.

Starts a private redis-server, registers a pool of paid keys (no cooldown, many leases allowed, no spacing:
the key manager itself is what is measured), then runs 1, 8 and 32 concurrent clients (spread over
processes, each client a thread with its own connection) doing admit -> report pairs for a fixed time.

Round trips are counted by Redis itself (INFO commandstats: calls of EVALSHA/EVAL and everything else),
divided by the number of admissions.

    python bench/keys_throughput.py [--seconds 5] [--keys 8] [--clients 1,8,32]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import threading
import time

import redis

from gemini_tasks.keys import AdmitPolicy, KeyPool, Lease
from gemini_tasks.testing.local_redis import RedisServer


def _register(kp: KeyPool, n: int) -> list[str]:
    ids = [f"BENCH_KEY_{i}" for i in range(1, n + 1)]
    for k in ids:
        kp.register_key(k, category="paid", cooldown=0, exhausted_wait=1, fully_exhausted_wait=1,
                        max_exhausted_retries=3, max_concurrent_leases=10_000)
    return ids


class CountingConnection(redis.Connection):
    """A redis-py connection that counts replies read: one per network round trip."""

    counter = threading.local()

    def read_response(self, *args, **kwargs):
        CountingConnection.counter.n = getattr(CountingConnection.counter, "n", 0) + 1
        return super().read_response(*args, **kwargs)


def _client_proc(url: str, pool: str, ids: list[str], threads: int, seconds: float, start_at: float, out) -> None:
    counts = [0] * threads
    waits = [0] * threads
    lat: list[float] = []
    lock = threading.Lock()
    trips = [0]

    def run(i: int) -> None:
        conn = redis.Redis(connection_pool=redis.ConnectionPool.from_url(url, connection_class=CountingConnection))
        kp = KeyPool(conn, pool)
        policy = AdmitPolicy(model="bench", owner=f"c{os.getpid()}-{i}", lease_ttl=30)
        kp.admit(ids, policy)  # warm-up: loads the script (EVALSHA miss -> SCRIPT LOAD) outside the count
        while time.time() < start_at:
            time.sleep(0.001)
        replies_before = getattr(CountingConnection.counter, "n", 0)
        end = start_at + seconds
        mine: list[float] = []
        while time.time() < end:
            t0 = time.perf_counter()
            got = kp.admit(ids, policy)
            if isinstance(got, Lease):
                kp.report(got, "success")
                counts[i] += 1
                mine.append(time.perf_counter() - t0)
            else:
                waits[i] += 1
        with lock:
            lat.extend(mine[:: max(1, len(mine) // 2000)])
            trips[0] += CountingConnection.counter.n - replies_before

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((sum(counts), sum(waits), lat, trips[0]))


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_case(url: str, clients: int, seconds: float, n_keys: int) -> dict[str, float]:
    client = redis.Redis.from_url(url)
    pool = f"bench{clients}-{n_keys}"
    kp = KeyPool(client, pool)
    kp.clear()
    ids = _register(kp, n_keys)
    procs_n = min(clients, max(1, (os.cpu_count() or 2)))
    per = [clients // procs_n + (1 if i < clients % procs_n else 0) for i in range(procs_n)]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 1.0
    procs = [ctx.Process(target=_client_proc, args=(url, pool, ids, t, seconds, start_at, q)) for t in per if t]
    cpu_before = _redis_cpu(client)
    for p in procs:
        p.start()
    pairs = waits = trips = 0
    lat: list[float] = []
    for _ in procs:
        c, w, l, t = q.get()
        pairs += c
        waits += w
        lat.extend(l)
        trips += t
    for p in procs:
        p.join()
    redis_cpu = _redis_cpu(client) - cpu_before
    lat.sort()
    admissions = pairs + waits
    return {
        "clients": clients,
        "pairs_per_s": pairs / seconds,
        # admissions that waited are round trips too; a pair is one admit + one report
        "round_trips_per_admission": (trips - pairs) / max(1, pairs + waits),
        "round_trips_per_report": pairs / max(1, pairs),
        "redis_cpu_us_per_pair": 1e6 * redis_cpu / max(1, pairs),
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else float("nan"),
        "waits": waits,
        "admissions": admissions,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--keys", default="8", help="candidate keys per admission; a list like 8,64,256 adds rows")
    ap.add_argument("--clients", default="1,8,32")
    args = ap.parse_args()
    key_counts = [int(x) for x in str(args.keys).split(",")]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{args.seconds:.0f} s per row; clients and redis-server share the machine's cores")
    rows = []
    with RedisServer() as server:
        for n_keys in key_counts:
            for c in (int(x) for x in args.clients.split(",")):
                row = run_case(server.url, c, args.seconds, n_keys)
                row["keys"] = n_keys
                rows.append(row)
    print(f"{'keys':>5} {'clients':>7} {'pairs/s':>9} {'RTT/admit':>9} {'RTT/report':>10} {'redis us/pair':>13} "
          f"{'pair p50 ms':>11} {'pair p99 ms':>11}")
    for r in rows:
        print(f"{r['keys']:>5} {r['clients']:>7} {r['pairs_per_s']:>9.0f} {r['round_trips_per_admission']:>9.2f} "
              f"{r['round_trips_per_report']:>10.2f} {r['redis_cpu_us_per_pair']:>13.1f} "
              f"{r['p50_ms']:>11.2f} {r['p99_ms']:>11.2f}")


if __name__ == "__main__":
    main()
