"""The key manager under Redis faults, lost replies and time edges, on real redis-servers (issue 11).

Each test names the defect it pins down: lease ids that collide after Redis loses recent writes, a slow
upload's call missing from the rate window, an admission whose reply was lost leaving an orphan lease, leases
that outlive (or are outlived by) their call, Pacific midnight on DST change days, per-day 429s and benches,
the Redis version, and waiters that poll instead of waking.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time

import pytest
import redis

from gemini_tasks.keys import AdmitPolicy, KeyPool, Lease, Wait
from gemini_tasks.keys.admission import acquire
from gemini_tasks.keys.redis_conn import RideOutRetry
from gemini_tasks.keys.timeutil import PACIFIC
from gemini_tasks.testing.local_redis import RedisServer


def _pool(client: redis.Redis, name: str, keys=("K1",), *, project: str = "", cooldown: float = 0.0,
          maxl: int = 1, ewait: float = 120.0) -> KeyPool:
    kp = KeyPool(client, name)
    for k in keys:
        kp.register_key(k, category="paid", cooldown=cooldown, exhausted_wait=ewait, fully_exhausted_wait=43200,
                        max_exhausted_retries=3, max_concurrent_leases=maxl, project=project)
    return kp


def _policy(**kw) -> AdmitPolicy:
    kw.setdefault("model", "m")
    kw.setdefault("owner", "test")
    return AdmitPolicy(**kw)


# -- item 2: lease ids never collide, even after Redis loses recent writes ----------------------------------
def test_stale_report_after_redis_lost_recent_writes_never_frees_a_newer_lease(pool_name):
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        kp = _pool(client, pool_name)
        client.save()  # the snapshot Redis will come back from
        lost = kp.admit(["K1"], _policy(owner="w1"))  # written after the snapshot: lost in the crash
        assert isinstance(lost, Lease)
        server.restart()  # SIGKILL, then load the snapshot (an AOF everysec crash, a lagging replica)
        client = redis.Redis.from_url(server.url)
        kp = KeyPool(client, pool_name)
        newer = kp.admit(["K1"], _policy(owner="w2"))
        assert isinstance(newer, Lease)
        assert newer.lease_id != lost.lease_id
        # the first holder's call ends and reports late: it must not free w2's lease
        kp.report(lost, "success")
        assert isinstance(kp.admit(["K1"], _policy(owner="w3")), Wait), "the stale report freed w2's lease"
        assert kp.status().keys["K1"]["leases"] == "1"
        client.close()


# -- item 3: a call sent after a slow upload is counted in the window -------------------------------------
def test_mark_sent_counts_the_send_even_after_the_admission_entry_was_trimmed(redis_client, pool_name):
    kp = _pool(redis_client, pool_name, keys=("K1", "K2", "K3"), project="p")
    kp.set_project_limits("p", {"rpm": 2})
    pol = _policy(rate_window=1.0, window_margin=0.0, lease_ttl=600)
    slow = kp.admit(["K1", "K2", "K3"], pol)  # then uploads for longer than the window
    assert isinstance(slow, Lease)
    kp.advance_clock(2.0)
    other = kp.admit(["K1", "K2", "K3"], pol)  # trims the slow lease's entry (older than the window)
    assert isinstance(other, Lease)
    assert kp.mark_sent(slow)  # the slow call is sent now: it counts from now
    third = kp.admit(["K1", "K2", "K3"], pol)
    assert isinstance(third, Wait) and third.reason == "quota", "the window let a third call into rpm=2"
    assert 0.9 < third.seconds <= 1.001, third  # the quota frees one window after `other`'s admission


def test_a_busy_key_of_a_project_at_quota_waits_for_the_quota_not_for_its_lease(redis_client, pool_name):
    """A leased key whose project's window is full is usable only when both its lease ended and the window has
    room: the wait is the later of the two, with the reason of the later. (It was the lease's 1 s poll, reason
    `leased`, so a caller blocked by the quota for most of a minute slept in its slot, asking again every
    second and at every freed lease, instead of re-queueing for the quota's wait.)"""
    kp = _pool(redis_client, pool_name, keys=("K1", "K2"), project="p")
    kp.set_project_limits("p", {"rpm": 1})
    pol = _policy(rate_window=60.0, window_margin=0.0, lease_ttl=600, busy_poll=1.0)
    assert isinstance(kp.admit(["K1", "K2"], pol), Lease)  # K1 leased; the window is full for 60 s
    w = kp.admit(["K1", "K2"], pol)  # K2 is free but at quota, K1 is busy and at quota too
    assert isinstance(w, Wait) and w.reason == "quota" and 59.0 < w.seconds <= 60.001, w
    w = kp.admit(["K1"], pol)  # only the busy key: still the quota that decides
    assert isinstance(w, Wait) and w.reason == "quota" and 59.0 < w.seconds <= 60.001, w


def test_a_cooling_key_of_a_project_at_quota_waits_for_the_quota_not_for_its_cooldown(redis_client, pool_name):
    kp = _pool(redis_client, pool_name, keys=("K1",), project="p", cooldown=5.0)
    kp.set_project_limits("p", {"rpm": 1})
    pol = _policy(rate_window=60.0, window_margin=0.0)
    kp.report(kp.admit(["K1"], pol), "success")  # K1 rests 5 s; the window is full for 60 s
    w = kp.admit(["K1"], pol)
    assert isinstance(w, Wait) and w.reason == "quota" and 59.0 < w.seconds <= 60.001, w


def test_a_busy_key_whose_lease_ends_after_the_quota_frees_still_waits_for_its_lease(redis_client, pool_name):
    kp = _pool(redis_client, pool_name, keys=("K1",), project="p")
    kp.set_project_limits("p", {"rpm": 5})
    pol = _policy(rate_window=60.0, window_margin=0.0, lease_ttl=600, busy_poll=1.0)
    assert isinstance(kp.admit(["K1"], pol), Lease)  # the window has room: only the lease blocks
    w = kp.admit(["K1"], pol)
    assert isinstance(w, Wait) and w.reason == "leased" and w.seconds == 1.0, w


# -- item 4: admission is safe to retry ----------------------------------------------------------------
class ReplyDroppingProxy:
    """A TCP proxy in front of Redis that can drop the reply to the next command and reset the connection,
    as a network fault does: redis-py then re-sends the command on a new connection."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.drop_next = threading.Event()
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(conn, up, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, conn, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if replies and self.drop_next.is_set():
                    self.drop_next.clear()
                    self.dropped += 1
                    break  # the command ran on the server; its reply never reaches the client
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.sock.close()


def test_admission_whose_reply_was_lost_is_not_an_orphan_lease(redis_url, redis_client, pool_name):
    kp0 = _pool(redis_client, pool_name, keys=("K1", "K2"))
    proxy = ReplyDroppingProxy(redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"])
    client = redis.Redis(host="127.0.0.1", port=proxy.port, retry=RideOutRetry(),
                         retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    try:
        kp = KeyPool(client, pool_name)
        kp.report(kp.admit(["K1"], _policy(model="warm")), "transient")  # loads the script
        proxy.drop_next.set()
        lease = kp.admit(["K1", "K2"], _policy())  # the first reply is lost; redis-py sends it again
        assert proxy.dropped == 1
        assert isinstance(lease, Lease)
        assert redis_client.zcard(kp0.prefix + "leases") == 1, "the lost reply left an orphan lease"
        # the other key is still free for someone else
        other = kp0.admit(["K1", "K2"], _policy(owner="other"))
        assert isinstance(other, Lease) and other.key_id != lease.key_id
    finally:
        client.close()
        proxy.close()


def test_same_admission_id_returns_the_same_lease(redis_client, pool_name):
    kp = _pool(redis_client, pool_name, keys=("K1", "K2"))
    a = kp.admit(["K1", "K2"], _policy(), admission_id="adm-1")
    b = kp.admit(["K1", "K2"], _policy(), admission_id="adm-1")
    assert isinstance(a, Lease) and a == b
    assert redis_client.zcard(kp.prefix + "leases") == 1


# -- item 5 / issue 13: short leases, renewed while the call runs, fenced when lost ------------------------
def test_renewal_keeps_a_long_call_and_a_dead_holder_frees_within_one_ttl(redis_client, pool_name):
    kp = _pool(redis_client, pool_name, keys=("K1",))
    pol = _policy(lease_ttl=1.0, processor_id="proc", max_workers=1)
    lease = kp.admit(["K1"], pol)
    for _ in range(5):  # a call running 4 s on a 1 s lease, renewed every 0.8 s
        kp.advance_clock(0.8)
        assert kp.renew([lease.lease_id], 1.0)[lease.lease_id] > 0
        w = kp.admit(["K1"], pol)
        assert isinstance(w, Wait) and w.reason in ("max_workers", "leased")
    # the holder dies: no renewal; one TTL later key and slot are free again
    kp.advance_clock(1.01)
    newer = kp.admit(["K1"], pol)
    assert isinstance(newer, Lease)
    # the dead holder's lease is never revived, and its late report does not free the newer lease
    assert kp.renew([lease.lease_id], 1.0) == {lease.lease_id: 0}
    kp.report(lease, "success")
    assert isinstance(kp.admit(["K1"], pol), Wait)


def test_lease_keeper_thread_renews_while_held(redis_client, pool_name):
    from gemini_tasks.keys.keeper import LeaseKeeper

    kp = _pool(redis_client, pool_name, keys=("K1",))
    keeper = LeaseKeeper(ttl=0.6)
    try:
        lease = kp.admit(["K1"], _policy(lease_ttl=0.6))
        with keeper.hold(kp, lease) as held:
            time.sleep(1.8)  # three TTLs
            assert isinstance(kp.admit(["K1"], _policy()), Wait)
        assert held.renewals >= 3 and not held.lost
        time.sleep(0.9)  # not renewed any more, not reported: expires within one TTL
        assert isinstance(kp.admit(["K1"], _policy()), Lease)
    finally:
        keeper.stop()


# -- item 8: Pacific midnight on the DST change days -------------------------------------------------------
def _at(kp: KeyPool, when: dt.datetime) -> None:
    sec, usec = kp.client.time()
    offset = int(kp.client.get(kp.prefix + "clock_offset") or 0)
    now_ms = sec * 1000 + usec // 1000 + offset
    kp.advance_clock((int(when.timestamp() * 1000) - now_ms) / 1000)


@pytest.mark.parametrize("local_now,expected_end", [
    # 00:30 on the March change Sunday (PST): the day ends at midnight PDT, 07:00 UTC
    (dt.datetime(2026, 3, 8, 0, 30, tzinfo=PACIFIC), dt.datetime(2026, 3, 9, 7, 0, tzinfo=dt.UTC)),
    # 00:30 on the November change Sunday (PDT): the day ends at midnight PST, 08:00 UTC the next day
    (dt.datetime(2026, 11, 1, 0, 30, tzinfo=PACIFIC), dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)),
    (dt.datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=PACIFIC), dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)),
])
def test_per_day_bench_ends_at_the_real_pacific_midnight_on_dst_days(redis_client, pool_name, local_now,
                                                                     expected_end):
    kp = _pool(redis_client, pool_name)
    _at(kp, local_now)
    lease = kp.admit(["K1"], _policy())
    r = kp.report(lease, "rate_limited", quota_kind="day")
    assert r.status == "FULLY_EXHAUSTED"
    assert r.until_ms == int(expected_end.timestamp() * 1000), (
        dt.datetime.fromtimestamp(r.until_ms / 1000, dt.UTC), expected_end)


# -- item 9: per-day 429s and benches ---------------------------------------------------------------------
def test_per_day_429_on_an_older_lease_still_benches_until_midnight(redis_client, pool_name):
    kp = _pool(redis_client, pool_name, maxl=2)
    a = kp.admit(["K1"], _policy())
    b = kp.admit(["K1"], _policy())
    kp.report(b, "rate_limited", quota_kind="minute", retry_after=30)
    r = kp.report(a, "rate_limited", quota_kind="day")  # issued before the per-minute bench
    assert not r.counted
    snap = kp.status()
    assert snap.keys["K1"]["st"] == "FULLY_EXHAUSTED", "the per-day 429 was dropped as a duplicate"
    assert _is_day_end(int(snap.keys["K1"]["until"]))
    assert int(snap.keys["K1"]["texh"]) == 1  # still one event


def _is_day_end(ms: int) -> bool:
    local = dt.datetime.fromtimestamp(ms / 1000, PACIFIC)
    return (local.hour, local.minute, local.second) == (0, 0, 0)


def test_a_bench_is_never_shortened_by_a_later_shorter_one(redis_client, pool_name):
    kp = _pool(redis_client, pool_name, keys=("K1", "K2"), project="p")
    r = kp.report(kp.admit(["K1"], _policy()), "rate_limited", quota_kind="day")  # benches K1 and K2
    assert _is_day_end(r.until_ms)
    kp.reset_key("K2")  # an operator puts K2 back
    kp.report(kp.admit(["K2"], _policy()), "rate_limited", quota_kind="minute", retry_after=5)
    snap = kp.status()
    assert snap.keys["K1"]["st"] == "FULLY_EXHAUSTED"
    assert int(snap.keys["K1"]["until"]) == r.until_ms, "a 5 s bench replaced K1's bench until midnight"


# -- item 10: Redis >= 6.2 ---------------------------------------------------------------------------------
def test_old_redis_is_refused_with_the_version_found(redis_url, monkeypatch):
    from gemini_tasks.keys.pool import RedisVersionError, check_redis_version

    client = redis.Redis.from_url(redis_url)
    check_redis_version(client)  # the real server (7.x) passes
    old = redis.Redis.from_url(redis_url)
    monkeypatch.setattr(old, "info", lambda section=None: {"redis_version": "6.0.9"})
    with pytest.raises(RedisVersionError, match=r"Redis 6\.0\.9 .*>= 6\.2"):
        KeyPool(old, "anything")
    client.close()
    old.close()


# -- item 12: waiters wake when a lease ends instead of polling ------------------------------------------
def test_waiter_for_a_busy_key_wakes_on_release_without_polling(redis_url, redis_client, pool_name):
    kp = _pool(redis_client, pool_name)
    held = kp.admit(["K1"], _policy(lease_ttl=60))
    waiter_pool = KeyPool(redis.Redis.from_url(redis_url), pool_name)
    got: list[tuple[Lease, float]] = []

    def wait_for_key() -> None:
        lease = acquire(waiter_pool, ["K1"], _policy(lease_ttl=60), max_sleep=10)
        got.append((lease, time.monotonic()))

    t = threading.Thread(target=wait_for_key)
    t.start()
    time.sleep(1.5)
    released_at = time.monotonic()
    kp.report(held, "success")
    t.join(10)
    assert got, "the waiter never got the key"
    assert got[0][1] - released_at < 0.5, "the waiter woke late"
    attempts = int(redis_client.hget(kp.prefix + "stats", "wait_leased") or 0)
    print(f"\nFIGURES waiter: {attempts} admission attempts while waiting 1.5 s, got the key {got[0][1] - released_at:.3f}s after release")
    assert attempts <= 6, f"the waiter asked Redis {attempts} times while waiting 1.5 s"
    waiter_pool.client.close()


# -- item 7: spacing per interval --------------------------------------------------------------------------
def test_each_processor_keeps_its_own_interval_and_never_slows_another(redis_client, pool_name):
    kp = _pool(redis_client, pool_name, keys=("K1", "K2", "K3", "K4"), maxl=4)
    slow = _policy(processor_id="slow", api_call_interval=2.0)
    fast = _policy(processor_id="fast", api_call_interval=0.0)
    other_slow = _policy(processor_id="other", api_call_interval=2.0)
    ids = ["K1", "K2", "K3", "K4"]
    assert isinstance(kp.admit(ids, slow), Lease)
    assert isinstance(kp.admit(ids, fast), Lease), "a 0 s processor waited behind a 2 s one"
    assert isinstance(kp.admit(ids, fast), Lease)
    assert isinstance(kp.admit(ids, other_slow), Lease), "another processor's gate slowed this one"
    w = kp.admit(ids, slow)  # calls of the fast processor in between do not open the slow one's gate
    assert isinstance(w, Wait) and w.reason == "spacing" and 1.9 < w.seconds <= 2.0
    kp.advance_clock(2.0)
    assert isinstance(kp.admit(ids, slow), Lease)


def test_status_shows_the_latest_processor_gate(redis_client, pool_name):
    kp = _pool(redis_client, pool_name)
    assert kp.status().gate_ms == 0
    lease = kp.admit(["K1"], _policy(processor_id="p", api_call_interval=5.0))
    assert kp.status().gate_ms == lease.issued_ms + 5000
