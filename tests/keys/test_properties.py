"""Random interleavings of admit/report from many threads in several processes, on a real redis-server.

Each worker records what the scripts told it (admissions with their Redis-time issue and expiry, reports
with the Redis time the lease ended). The invariants of admit.lua/report.lua are then checked over the
whole history, independently of the scripts:

* any two admissions are at least ``api_call_interval`` apart (fleet-wide spacing gate);
* a free key is never admitted twice within its cooldown;
* a key never has two leases at once (max_concurrent_leases = 1);
* the project's admissions in any window never exceed its rpm;
* exhaustion counts equal the number of distinct 429 events;
* every lease ends: reported, or expired and reaped.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import random
import threading
import time
from bisect import bisect_right

import pytest
import redis

from gemini_tasks.keys import AdmitPolicy, KeyPool, Lease

FREE_KEYS = ["K1", "K2", "K3"]
PAID_KEYS = ["K4", "K5"]
PROJECT_KEYS = ["K6", "K7"]  # paid keys sharing project "pp" with an rpm limit
ALL = FREE_KEYS + PAID_KEYS + PROJECT_KEYS
INTERVAL_MS = 8
COOLDOWN_MS = 120
LEASE_TTL = 0.4
WINDOW = 1.0
RPM = 12
TPM = 40  # input tokens per window of project "pp"; requests carry 1-8 tokens


def _setup(client: redis.Redis, pool: str) -> KeyPool:
    kp = KeyPool(client, pool)
    for k in ALL:
        free = k in FREE_KEYS
        kp.register_key(k, category="free" if free else "paid", cooldown=COOLDOWN_MS / 1000 if free else 0,
                        exhausted_wait=0.15, fully_exhausted_wait=0.4, max_exhausted_retries=3,
                        project="pp" if k in PROJECT_KEYS else "")
    kp.set_project_limits("pp", {"rpm": RPM, "tpm": TPM})
    return kp


def _worker(url: str, pool: str, seed: int, seconds: float, threads: int, out) -> None:
    events: list[tuple] = []
    lock = threading.Lock()
    kp = KeyPool(redis.Redis.from_url(url), pool)

    def loop(tseed: int) -> None:
        rnd = random.Random(tseed)
        base = AdmitPolicy(model="m", owner=f"w{tseed}", api_call_interval=INTERVAL_MS / 1000, lease_ttl=LEASE_TTL,
                           rate_window=WINDOW, window_margin=0)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            candidates = rnd.sample(ALL, rnd.randint(2, len(ALL)))
            tokens = rnd.randint(1, 8)
            policy = dataclasses.replace(base, tokens=tokens)
            got = kp.admit(candidates, policy)
            if not isinstance(got, Lease):
                time.sleep(min(got.seconds, 0.03) * rnd.random())
                continue
            with lock:
                events.append(("admit", got.key_id, got.lease_id, got.issued_ms, got.expires_ms, tokens))
            time.sleep(rnd.random() * 0.015)
            roll = rnd.random()
            if roll < 0.08:
                with lock:
                    events.append(("abandon", got.key_id, got.lease_id))
                continue
            outcome = ("rate_limited" if roll < 0.23 else "transient" if roll < 0.33 else
                       "persistent" if roll < 0.38 else "success")
            r = kp.report(got, outcome, retry_after=0.05, quota_kind="minute", prompt_tokens=tokens)
            with lock:
                events.append(("report", got.key_id, got.lease_id, outcome, r.counted, r.ended_ms))

    ts = [threading.Thread(target=loop, args=(seed * 100 + i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(events)


def _run(url: str, pool: str, processes: int, threads: int, seconds: float) -> list[tuple]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, pool, i + 1, seconds, threads, q)) for i in range(processes)]
    for p in procs:
        p.start()
    events = []
    for _ in procs:
        events.extend(q.get(timeout=seconds + 60))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return events


@pytest.mark.parametrize("processes,threads", [(1, 8), (3, 4)])
def test_invariants_hold_under_random_interleavings(redis_url, pool_name, processes, threads):
    client = redis.Redis.from_url(redis_url)
    kp = _setup(client, pool_name)
    events = _run(redis_url, pool_name, processes, threads, seconds=2.5)

    admits = {e[2]: e for e in events if e[0] == "admit"}
    reports = {e[2]: e for e in events if e[0] == "report"}
    abandoned = {e[2] for e in events if e[0] == "abandon"}
    assert len(admits) > 50, "the run made too few admissions to test anything"
    assert set(reports) | abandoned == set(admits)

    # spacing gate: fleet-wide, between ANY two admissions
    issued = sorted(e[3] for e in admits.values())
    gaps = [b - a for a, b in zip(issued, issued[1:])]
    assert min(gaps) >= INTERVAL_MS, f"two admissions {min(gaps)} ms apart"

    by_key: dict[str, list[tuple]] = {}
    for e in admits.values():
        by_key.setdefault(e[1], []).append(e)
    for key, leases in by_key.items():
        leases.sort(key=lambda e: e[3])
        # free keys: never admitted twice within the cooldown
        if key in FREE_KEYS:
            for a, b in zip(leases, leases[1:]):
                assert b[3] - a[3] >= COOLDOWN_MS, f"{key} admitted {b[3] - a[3]} ms after its last admission"
        # one lease at a time: a lease ends when reported or when it expires, whichever is first
        for a, b in zip(leases, leases[1:]):
            end = min(reports[a[2]][5], a[4]) if a[2] in reports else a[4]
            assert b[3] >= end, f"{key}: lease {b[2]} issued while lease {a[2]} was active"

    # the project's rpm window, checked over every admission of its keys
    proj = sorted(e[3] for e in admits.values() if e[1] in PROJECT_KEYS)
    for i, t in enumerate(proj):
        in_window = bisect_right(proj, t + WINDOW * 1000) - i
        assert in_window <= RPM + 0, f"{in_window} admissions of project pp within one window"
    # ... and its input tokens in any window
    proj_tok = sorted((e[3], e[5]) for e in admits.values() if e[1] in PROJECT_KEYS)
    times = [t for t, _ in proj_tok]
    for i, (t, _) in enumerate(proj_tok):
        used = sum(n for _, n in proj_tok[i:bisect_right(times, t + WINDOW * 1000)])
        assert used <= TPM, f"{used} tokens of project pp within one window (limit {TPM})"

    time.sleep(LEASE_TTL + 0.1)
    snap = kp.status()  # reaps every expired lease
    # every lease ended: nothing active, expiries account for the abandoned leases
    assert client.zcard(kp.prefix + "leases") == 0
    assert all(int(f.get("leases", 0)) == 0 for f in snap.keys.values())
    late = {lid for lid, r in reports.items() if r[5] > admits[lid][4]}
    assert len(abandoned) <= snap.stats.get("leases_expired", 0) <= len(abandoned) + len(late)

    # structure: with no lease left, every key is in exactly one of ready/waiting, and only in ready once its
    # state allows a call (so admission can trust the ranked set instead of reading every key)
    now = kp.status().now_ms
    for key, f in snap.keys.items():
        in_ready = client.zscore(kp.prefix + "ready", key) is not None
        wait_at = client.zscore(kp.prefix + "waiting", key)
        assert in_ready != (wait_at is not None), f"{key} in ready={in_ready} waiting={wait_at}"
        ready_at = max(int(f.get("nb", 0) or 0),
                       int(f.get("until", 0) or 0) if f.get("st") != "AVAILABLE" else 0)
        assert (ready_at <= now) == in_ready or (wait_at is not None and wait_at <= now), (key, f, now)

    # exhaustion counts: one per distinct 429 event. With one lease per key, every 429 reported while its
    # lease was live is a new event; a report after expiry may belong to an event already counted.
    for key in FREE_KEYS + PAID_KEYS:
        counted = sum(1 for r in reports.values() if r[1] == key and r[3] == "rate_limited" and r[4])
        live_429 = sum(1 for lid, r in reports.items()
                       if r[1] == key and r[3] == "rate_limited" and lid not in late)
        assert counted >= live_429
        assert int(snap.keys[key].get("texh", 0)) == counted
    # project keys: a counted 429 on either key benches both, once each
    proj_events = sum(1 for r in reports.values() if r[1] in PROJECT_KEYS and r[3] == "rate_limited" and r[4])
    total = sum(int(snap.keys[k].get("texh", 0)) for k in PROJECT_KEYS)
    assert proj_events <= total <= 2 * proj_events
    client.close()


# -- Redis restarts that lose recent writes, and re-sent script calls (issue 11) ---------------------------
RS_KEYS = ["R1", "R2", "R3", "R4"]
RS_INTERVAL_MS = 5


def _rs_loop(url: str, pool: str, seed: int, stop: threading.Event, events: list, lock: threading.Lock) -> None:
    from gemini_tasks.keys.redis_conn import RideOutRetry

    rnd = random.Random(seed)
    client = redis.Redis.from_url(url, retry=RideOutRetry(), retry_on_error=[redis.ConnectionError],
                                  socket_timeout=5)
    kp = KeyPool(client, pool)
    pol = AdmitPolicy(model="m", owner=f"t{seed}", api_call_interval=RS_INTERVAL_MS / 1000, lease_ttl=LEASE_TTL)
    n = 0
    while not stop.is_set():
        n += 1
        aid = f"{seed}-{n}"
        try:
            got = kp.admit(RS_KEYS, pol, admission_id=aid)
            if isinstance(got, Lease) and rnd.random() < 0.2:  # the reply was "lost": the same call again
                again = kp.admit(RS_KEYS, pol, admission_id=aid)
                with lock:
                    events.append(("resent", aid, got, again))
        except redis.RedisError:
            continue
        if not isinstance(got, Lease):
            time.sleep(min(got.seconds, 0.01) * rnd.random())
            continue
        with lock:
            events.append(("admit", got.key_id, got.lease_id, got.issued_ms, got.expires_ms))
        time.sleep(rnd.random() * 0.01)
        if rnd.random() < 0.1:
            continue  # abandoned: expires
        try:
            r = kp.report(got, rnd.choice(["success", "transient", "rate_limited"]), retry_after=0.02,
                          quota_kind="minute")
            if rnd.random() < 0.2:
                kp.report(got, "success")  # a re-sent report
            with lock:
                events.append(("report", got.key_id, got.lease_id, r.ended_ms))
        except redis.RedisError:
            pass
    client.close()


def test_invariants_hold_across_redis_restarts_that_lose_recent_writes_and_resent_calls(pool_name):
    from gemini_tasks.testing.local_redis import RedisServer

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        kp = KeyPool(client, pool_name)
        for k in RS_KEYS:
            kp.register_key(k, category="paid", cooldown=0, exhausted_wait=0.05, fully_exhausted_wait=0.2,
                            max_exhausted_retries=3)
        events: list = []
        lock = threading.Lock()
        stop = threading.Event()
        threads = [threading.Thread(target=_rs_loop, args=(server.url, pool_name, i + 1, stop, events, lock))
                   for i in range(5)]
        for t in threads:
            t.start()
        restarts: list[int] = []  # Redis time (ms) at which each restarted server came up
        kills: list[int] = []  # ... and just before each crash
        rnd = random.Random(7)
        try:
            for _ in range(3):
                time.sleep(0.3 + rnd.random() * 0.3)
                client.save()  # the state the crash will come back to
                time.sleep(0.2 + rnd.random() * 0.3)  # writes made now are lost
                sec, usec = client.time()
                kills.append(sec * 1000 + usec // 1000)
                server.restart()
                client = redis.Redis.from_url(server.url)
                sec, usec = client.time()
                restarts.append(sec * 1000 + usec // 1000)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(30)

        admits = [e for e in events if e[0] == "admit"]
        assert len(admits) > 50 and len(restarts) == 3
        # lease ids never repeat, even though the server lost writes three times
        assert len({e[2] for e in admits}) == len(admits)
        # a re-sent admission returns the very same lease (unless a restart lost it in between)
        resent = [(first, again) for _, _, first, again in (e for e in events if e[0] == "resent")]
        assert len(resent) > 5
        differing = [(f, a) for f, a in resent if a != f]
        assert len(differing) <= len(restarts), differing
        # between two restarts Redis's knowledge is consistent: one lease per key at a time and the spacing gate
        # hold among the leases issued there, whatever stale reports of lost leases arrive meanwhile
        reports = {e[2]: e for e in events if e[0] == "report"}
        for lo, hi in zip([0, *restarts], [*kills, 2**62]):
            seg = sorted((e for e in admits if lo < e[3] < hi), key=lambda e: e[3])
            issued = [e[3] for e in seg]
            assert all(b - a >= RS_INTERVAL_MS for a, b in zip(issued, issued[1:])), "spacing broken"
            for key in RS_KEYS:
                leases = [e for e in seg if e[1] == key]
                for a, b in zip(leases, leases[1:]):
                    end = min(reports[a[2]][3], a[4]) if a[2] in reports else a[4]
                    assert b[3] >= end, f"{key}: lease {b[2]} issued while {a[2]} was active"
        # everything ends, and the ready/waiting structure is whole again
        time.sleep(LEASE_TTL + 0.1)
        snap = kp.__class__(client, pool_name).status()
        assert client.zcard(kp.prefix + "leases") == 0
        assert all(int(f.get("leases", 0)) == 0 for f in snap.keys.values())
        for key in RS_KEYS:
            in_ready = client.zscore(kp.prefix + "ready", key) is not None
            in_waiting = client.zscore(kp.prefix + "waiting", key) is not None
            assert in_ready != in_waiting, key
        client.close()
