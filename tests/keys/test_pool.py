"""Key-manager behaviour against a real redis-server: one test per rule of DESIGN.md's key manager."""

from __future__ import annotations

import datetime as dt

import pytest

from gemini_tasks.keys import (
    AVAILABLE,
    COOLDOWN,
    FAILED_INIT,
    FULLY_EXHAUSTED,
    TEMPORARILY_EXHAUSTED,
    AdmitPolicy,
    AdvancedApiKeyManager,
    Cancelled,
    FingerprintConflict,
    Lease,
    NoUsableKeys,
    Wait,
)
from gemini_tasks.keys.admission import WaitTooLong, acquire
from gemini_tasks.keys.timeutil import PACIFIC
from gemini_tasks.testing.environment import held_keys

SECRETS = {f"GEMINI_API_KEY_{i}": f"test-secret-value-{i:04d}-xyz" for i in range(1, 7)}


@pytest.fixture
def env(monkeypatch, redis_url):
    with held_keys(monkeypatch, SECRETS, REDIS_URL=redis_url):
        yield


def make(pool_name, keys=3, **kw) -> AdvancedApiKeyManager:
    return AdvancedApiKeyManager(keys, pool=pool_name, **kw)


def policy(**kw) -> AdmitPolicy:
    kw.setdefault("model", "gemini-test")
    kw.setdefault("owner", "test")
    return AdmitPolicy(**kw)


def test_paid_first_then_least_recently_used(env, pool_name):
    m = make(pool_name, 3, paid_keys=["GEMINI_API_KEY_3"], key_settings={"free": {"key_cooldown_seconds": 0}})
    p = policy()
    first = m.pool.admit(m.key_ids, p)
    assert isinstance(first, Lease) and first.key_id == "GEMINI_API_KEY_3"
    # the paid key is leased (one lease per key): next come the free keys, least recently used first
    second = m.pool.admit(m.key_ids, p)
    third = m.pool.admit(m.key_ids, p)
    assert {second.key_id, third.key_id} == {"GEMINI_API_KEY_1", "GEMINI_API_KEY_2"}
    assert isinstance(m.pool.admit(m.key_ids, p), Wait)
    for lease in (first, second, third):
        m.pool.report(lease, "success")
    # all free again: paid first, again
    assert m.pool.admit(m.key_ids, p).key_id == "GEMINI_API_KEY_3"


def test_free_key_cooldown_and_exact_wait(env, pool_name):
    m = make(pool_name, 1)
    p = policy()
    lease = m.pool.admit(m.key_ids, p)
    assert isinstance(lease, Lease)
    r = m.pool.report(lease, "success")
    assert r.status == COOLDOWN
    w = m.pool.admit(m.key_ids, p)
    assert isinstance(w, Wait) and w.reason == "cooldown"
    assert 29.0 < w.seconds <= 30.0
    m.pool.advance_clock(30.01)
    assert isinstance(m.pool.admit(m.key_ids, p), Lease)


def test_fleet_spacing_gate_and_per_host_scope(env, pool_name):
    m = make(pool_name, 3, paid_keys="all")
    p = policy(api_call_interval=10)
    assert isinstance(m.pool.admit(m.key_ids, p), Lease)
    w = m.pool.admit(m.key_ids, p)
    assert w.reason == "spacing" and 9.9 < w.seconds <= 10
    # a different host scope has its own gate
    assert isinstance(m.pool.admit(m.key_ids, policy(api_call_interval=10, spacing_scope="host-b")), Lease)
    m.pool.advance_clock(10)
    assert isinstance(m.pool.admit(m.key_ids, p), Lease)


def test_per_minute_429_honours_retry_delay_and_escalates(env, pool_name):
    m = make(pool_name, 1, key_settings={"free": {"key_cooldown_seconds": 0, "exhausted_wait_seconds": 5}})
    p = policy()
    lease = m.pool.admit(m.key_ids, p)
    r = m.pool.report(lease, "rate_limited", retry_after=47, quota_kind="minute")
    assert r.status == TEMPORARILY_EXHAUSTED and r.counted
    w = m.pool.admit(m.key_ids, p)
    assert w.reason == "exhausted" and 46.5 < w.seconds <= 47  # retryDelay beats the 5 s setting
    for expected in (TEMPORARILY_EXHAUSTED, FULLY_EXHAUSTED):
        m.pool.advance_clock(48)
        lease = m.pool.admit(m.key_ids, p)
        assert isinstance(lease, Lease)
        assert m.pool.report(lease, "rate_limited", retry_after=1, quota_kind="minute").status == expected
    summary = m.get_keys_status_summary()["GEMINI_API_KEY_1"]
    assert summary["exhausted_count"] == 3 and summary["total_exhausted_count"] == 3
    assert 43199 < summary["available_in_seconds"] <= 43200
    m.pool.advance_clock(43200)
    summary = m.get_keys_status_summary()["GEMINI_API_KEY_1"]
    assert summary["status"] == AVAILABLE and summary["exhausted_count"] == 0  # full recovery resets


def test_success_resets_consecutive_count(env, pool_name):
    m = make(pool_name, 1, key_settings={"free": {"key_cooldown_seconds": 0}})
    p = policy()
    m.pool.report(m.pool.admit(m.key_ids, p), "rate_limited", quota_kind="minute")
    m.pool.advance_clock(121)
    m.pool.report(m.pool.admit(m.key_ids, p), "success")
    s = m.get_keys_status_summary()["GEMINI_API_KEY_1"]
    assert s["exhausted_count"] == 0 and s["total_exhausted_count"] == 1


def test_per_day_429_benches_until_pacific_midnight(env, pool_name):
    m = make(pool_name, 1)
    lease = m.pool.admit(m.key_ids, policy())
    r = m.pool.report(lease, "rate_limited", retry_after=36, quota_kind="day")  # misleading short delay
    assert r.status == FULLY_EXHAUSTED
    until = dt.datetime.fromtimestamp(r.until_ms / 1000, dt.timezone.utc).astimezone(PACIFIC)
    assert (until.hour, until.minute, until.second) == (0, 0, 0)
    assert r.until_ms - r.ended_ms <= 86400_000 and r.until_ms - r.ended_ms > 36_000


def test_one_429_event_counts_once_across_workers(env, pool_name):
    m = make(pool_name, 1, key_settings={"free": {"max_concurrent_leases": 5, "key_cooldown_seconds": 0}})
    p = policy()
    leases = [m.pool.admit(m.key_ids, p) for _ in range(5)]
    assert all(isinstance(x, Lease) for x in leases)
    results = [m.pool.report(x, "rate_limited", retry_after=1, quota_kind="minute") for x in leases]
    assert [r.counted for r in results] == [True, False, False, False, False]
    s = m.get_keys_status_summary()["GEMINI_API_KEY_1"]
    assert s["exhausted_count"] == 1 and s["total_exhausted_count"] == 1
    assert m.pool.status().stats["r429_duplicate"] == 4


def test_late_success_does_not_unbench(env, pool_name):
    m = make(pool_name, 1, key_settings={"free": {"max_concurrent_leases": 2, "key_cooldown_seconds": 0}})
    p = policy()
    a, b = m.pool.admit(m.key_ids, p), m.pool.admit(m.key_ids, p)
    m.pool.report(a, "rate_limited", quota_kind="minute")
    assert m.pool.report(b, "success").status == TEMPORARILY_EXHAUSTED
    assert m.get_keys_status_summary()["GEMINI_API_KEY_1"]["exhausted_count"] == 1


def test_project_shares_quota_and_bench(env, pool_name):
    m = make(pool_name, 3, projects={"GEMINI_API_KEY_1": "proj-a", "GEMINI_API_KEY_2": "proj-a"},
             key_settings={"free": {"key_cooldown_seconds": 0}})
    lease = m.pool.admit(["GEMINI_API_KEY_1"], policy())
    m.pool.report(lease, "rate_limited", retry_after=3, quota_kind="minute")
    s = m.get_keys_status_summary()
    assert s["GEMINI_API_KEY_1"]["status"] == TEMPORARILY_EXHAUSTED
    assert s["GEMINI_API_KEY_2"]["status"] == TEMPORARILY_EXHAUSTED  # same project, same quota
    assert s["GEMINI_API_KEY_3"]["status"] == AVAILABLE
    assert m.pool.admit(m.key_ids, policy()).key_id == "GEMINI_API_KEY_3"


def test_project_rpm_limit_paces_without_429(env, pool_name):
    m = make(pool_name, 2, projects={"GEMINI_API_KEY_1": "p", "GEMINI_API_KEY_2": "p"},
             project_limits={"p": {"rpm": 3}}, paid_keys="all", rate_window_seconds=10,
             key_settings={"paid": {"max_concurrent_leases": 10}})
    p = policy(rate_window=10, window_margin=0)
    for _ in range(3):
        m.pool.report(m.pool.admit(m.key_ids, p), "success")
    w = m.pool.admit(m.key_ids, p)
    assert w.reason == "quota" and 9.9 < w.seconds <= 10.01
    # per-model limits override the project-wide one
    m.pool.set_project_limits("p", {"rpm": 3, "models": {"other-model": {"rpm": 1}}})
    q = policy(model="other-model", rate_window=10, window_margin=0)
    assert isinstance(m.pool.admit(m.key_ids, q), Lease)
    assert m.pool.admit(m.key_ids, q).reason == "quota"
    m.pool.advance_clock(10.01)
    assert isinstance(m.pool.admit(m.key_ids, p), Lease)


def test_project_rpd_limit_waits_until_pacific_midnight(env, pool_name):
    m = make(pool_name, 1, paid_keys="all", key_settings={"paid": {"rpd": 2}})
    p = policy()
    for _ in range(2):
        m.pool.report(m.pool.admit(m.key_ids, p), "success")
    w = m.pool.admit(m.key_ids, p)
    assert w.reason == "quota" and 0 < w.seconds <= 86400


def test_invalid_key_is_quarantined_and_all_invalid_fails_at_once(env, pool_name):
    m = make(pool_name, 2, key_settings={"free": {"key_cooldown_seconds": 0}})
    p = policy()
    a = m.pool.admit(m.key_ids, p)
    assert m.pool.report(a, "invalid_key").status == FAILED_INIT
    b = m.pool.admit(m.key_ids, p)
    assert b.key_id != a.key_id
    m.pool.report(b, "invalid_key")
    with pytest.raises(NoUsableKeys, match="No usable API keys"):
        m.pool.admit(m.key_ids, p)
    m.reset_key(a.key_id)
    assert m.pool.admit(m.key_ids, p).key_id == a.key_id


def test_transient_error_does_not_bench_but_keeps_admission_cooldown(env, pool_name):
    m = make(pool_name, 1, key_settings={"free": {"key_cooldown_seconds": 5}})
    lease = m.pool.admit(m.key_ids, policy())
    assert m.pool.report(lease, "transient").status == AVAILABLE
    w = m.pool.admit(m.key_ids, policy())
    assert w.reason == "cooldown" and w.seconds <= 5  # measured from the admission


def test_unreported_lease_expires_and_key_returns(env, pool_name):
    m = make(pool_name, 1, paid_keys="all")
    p = policy(lease_ttl=5)
    lease = m.pool.admit(m.key_ids, p)
    assert isinstance(lease, Lease)
    assert m.pool.admit(m.key_ids, p).reason == "leased"
    assert m.get_keys_status_summary()["GEMINI_API_KEY_1"]["assigned_worker"] == "test"
    m.pool.advance_clock(5.01)
    again = m.pool.admit(m.key_ids, p)
    assert isinstance(again, Lease)
    assert m.pool.status().stats["leases_expired"] == 1
    # a late report of the expired lease is harmless
    assert m.pool.report(lease, "success").status == AVAILABLE


def test_max_workers_caps_calls_in_flight_and_worker_cooldown(env, pool_name):
    m = make(pool_name, 6, paid_keys="all")
    p = policy(processor_id="proc-1", max_workers=2, worker_cooldown=3)
    a, b = m.pool.admit(m.key_ids, p), m.pool.admit(m.key_ids, p)
    assert isinstance(a, Lease) and isinstance(b, Lease) and {a.slot, b.slot} == {"1", "2"}
    assert m.pool.admit(m.key_ids, p).reason == "max_workers"
    # another processor is not capped by this one
    assert isinstance(m.pool.admit(m.key_ids, policy(processor_id="proc-2", max_workers=1)), Lease)
    m.pool.report(a, "success", worker_cooldown=3)
    w = m.pool.admit(m.key_ids, p)
    assert w.reason == "worker_cooldown" and 2.9 < w.seconds <= 3
    m.pool.advance_clock(3)
    assert m.pool.admit(m.key_ids, p).slot == a.slot


def test_cancelled_task_is_never_admitted(env, pool_name):
    m = make(pool_name, 1)
    m.pool.cancel("task-123")
    with pytest.raises(Cancelled):
        m.pool.admit(m.key_ids, policy(cancel_id="task-123"))
    assert isinstance(m.pool.admit(m.key_ids, policy(cancel_id="task-456")), Lease)


def test_secrets_never_enter_redis_and_fingerprint_conflict(env, pool_name, redis_client, monkeypatch):
    m = make(pool_name, 3)
    m.pool.report(m.pool.admit(m.key_ids, policy()), "success")
    for name in redis_client.scan_iter(match=f"gt:{{{pool_name}}}:*"):
        dump = redis_client.dump(name) or b""
        for secret in SECRETS.values():
            assert secret.encode() not in dump and secret.encode() not in name
    monkeypatch.setenv("GEMINI_API_KEY_2", "a-different-secret-on-another-host")
    with pytest.raises(FingerprintConflict, match="GEMINI_API_KEY_2 holds a different secret"):
        make(pool_name, 3)
    make(pool_name, 3, replace_fingerprints=True)  # rotation is explicit


def test_acquire_sleeps_short_waits_and_hands_back_long_ones(env, pool_name):
    m = make(pool_name, 1)
    slept: list[float] = []
    p = policy()
    lease = acquire(m.pool, m.key_ids, p, sleep=slept.append)
    m.pool.report(lease, "success")
    with pytest.raises(WaitTooLong) as info:
        acquire(m.pool, m.key_ids, p, max_sleep=5, sleep=slept.append)
    assert info.value.wait.reason == "cooldown"
    fast = make(pool_name + "b", 1, paid_keys="all")
    q = policy(api_call_interval=0.2)
    fast.pool.report(acquire(fast.pool, fast.key_ids, q), "success")
    slept.clear()
    acquire(fast.pool, fast.key_ids, q, sleep=lambda s: (slept.append(s), fast.pool.advance_clock(s)))
    assert len(slept) == 1 and 0.15 < slept[0] < 0.25  # one sleep, the spacing gate's exact wait


def test_status_summary_has_original_fields(env, pool_name):
    m = make(pool_name, 2, paid_keys=["GEMINI_API_KEY_1"])
    s = m.get_keys_status_summary()
    assert list(s) == ["GEMINI_API_KEY_1", "GEMINI_API_KEY_2"]
    for info in s.values():
        for field in ("status", "category", "exhausted_count", "total_exhausted_count", "assigned_worker"):
            assert field in info
    assert s["GEMINI_API_KEY_1"]["category"] == "paid"
    assert m.check_key_status("GEMINI_API_KEY_2") == AVAILABLE
    assert m.check_key_status("NOPE") == FAILED_INIT


def test_project_tpm_limit_counts_estimates_and_reconciles_with_actual_tokens(env, pool_name):
    m = make(pool_name, 2, paid_keys="all", projects={"GEMINI_API_KEY_1": "p", "GEMINI_API_KEY_2": "p"},
             project_limits={"p": {"tpm": 100}}, key_settings={"paid": {"max_concurrent_leases": 10}})
    p60 = policy(rate_window=10, window_margin=0, tokens=60)
    first = m.pool.admit(m.key_ids, p60)
    assert isinstance(first, Lease)
    w = m.pool.admit(m.key_ids, p60)  # 60 + 60 > 100: wait until the first leaves the window
    assert w.reason == "quota" and 9.9 < w.seconds <= 10.01
    m.pool.report(first, "success", prompt_tokens=20)  # the API counted 20: the window now holds 20
    second = m.pool.admit(m.key_ids, p60)
    assert isinstance(second, Lease)  # 20 + 60 <= 100
    assert m.pool.admit(m.key_ids, policy(rate_window=10, window_margin=0, tokens=30)).reason == "quota"
    assert isinstance(m.pool.admit(m.key_ids, policy(rate_window=10, window_margin=0, tokens=20)), Lease)
    # requests without an estimate are not held back by tpm; a single oversized request waits for an
    # empty window rather than forever
    assert isinstance(m.pool.admit(m.key_ids, policy(rate_window=10, window_margin=0)), Lease)
    m.pool.advance_clock(10.01)
    assert isinstance(m.pool.admit(m.key_ids, policy(rate_window=10, window_margin=0, tokens=500)), Lease)
    assert m.pool.admit(m.key_ids, policy(rate_window=10, window_margin=0, tokens=1)).reason == "quota"


def test_per_minute_429_on_a_paced_project_benches_only_for_retry_delay(env, pool_name):
    m = make(pool_name, 2, paid_keys="all", projects={"GEMINI_API_KEY_1": "p", "GEMINI_API_KEY_2": "q"},
             project_limits={"p": {"rpm": 100}})
    lease = m.pool.admit(["GEMINI_API_KEY_1"], policy())
    r = m.pool.report(lease, "rate_limited", retry_after=3, quota_kind="minute")
    assert r.status == TEMPORARILY_EXHAUSTED and 2.9 < (r.until_ms - r.ended_ms) / 1000 <= 3.0
    # a project whose quota is not configured keeps the cautious exhausted_wait (120 s)
    lease = m.pool.admit(["GEMINI_API_KEY_2"], policy())
    r = m.pool.report(lease, "rate_limited", retry_after=3, quota_kind="minute")
    assert 119.9 < (r.until_ms - r.ended_ms) / 1000 <= 120.0


@pytest.mark.parametrize("limit", [{"tpm": 100}, {"rpm": 1}])
def test_a_call_sent_late_stays_in_the_window_until_the_api_lets_it_go(env, pool_name, limit):
    """The API counts a request when it arrives, which can be long after its admission when the worker stalls
    between admission and send (a loaded host): the report moves the lease's window entries to report - margin,
    so our window never lets the request go before the API's does (it let it go one window after admission)."""
    m = make(pool_name, 2, paid_keys="all", projects={"GEMINI_API_KEY_1": "p", "GEMINI_API_KEY_2": "p"},
             project_limits={"p": limit}, key_settings={"paid": {"max_concurrent_leases": 10}})
    p60 = policy(rate_window=10, window_margin=0.1, tokens=60)
    first = m.pool.admit(m.key_ids, p60)
    assert isinstance(first, Lease)
    m.pool.advance_clock(5)  # stalled: sent (and counted by the API) up to 5 s after its admission
    m.pool.report(first, "success", prompt_tokens=60)
    m.pool.advance_clock(5.2)  # one window + margin after the admission, but only 5.2 s after the API counted it
    w = m.pool.admit(m.key_ids, p60)
    assert isinstance(w, Wait) and w.reason == "quota", w
    assert 4.7 < w.seconds <= 4.81, w  # free at report - margin + window + margin: 4.8 s from now
    m.pool.advance_clock(w.seconds)
    assert isinstance(m.pool.admit(m.key_ids, p60), Lease)
