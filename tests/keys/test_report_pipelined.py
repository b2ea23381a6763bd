"""A worker ends a successful call in one round trip: report, call metrics and done marker on one pipeline.

Real redis-server. The pipelined report must have exactly the effect of the plain one (lease ended, key free
again, paid key available) and the metrics and done marker land in the same ``execute``.
"""

from __future__ import annotations

import pytest

from gemini_tasks.keys import AdmitPolicy, AdvancedApiKeyManager, Lease
from gemini_tasks.keys.names import CALLS_HASH
from gemini_tasks.testing.environment import held_keys

SECRETS = {f"GEMINI_API_KEY_{i}": f"test-secret-pipelined-{i:04d}-xyz" for i in range(1, 3)}


@pytest.fixture
def env(monkeypatch, redis_url):
    with held_keys(monkeypatch, SECRETS, REDIS_URL=redis_url):
        yield


def _count_checkouts(pool):
    """Connections checked out of the pool's client while counting: one per round trip of a pipeline."""
    sent = []
    real = pool.client.connection_pool.get_connection

    def counting(*args, **kwargs):
        conn = real(*args, **kwargs)
        sent.append(conn)
        return conn

    pool.client.connection_pool.get_connection = counting
    return sent


def _finish_and_check(pool, manager, lease, task_id):
    from gemini_tasks.worker.execution import _finish

    report = {"lease": lease, "outcome": "success", "prompt_tokens": 12}
    metrics = {"call": {"model": "gemini-test", "latency_s": 0.25, "usage": {"prompt_token_count": 12},
                        "outcome": "success"},
               "usage": {"model": "gemini-test", "tier": "standard", "usage": {"prompt_token_count": 12}}}
    sent = _count_checkouts(pool)
    try:
        _finish(pool, report, metrics, (pool.prefix + "done:" + task_id, "{}", 60))
    finally:
        del pool.client.connection_pool.get_connection
    assert pool.client.get(pool.prefix + "done:" + task_id) == b"{}"
    again = pool.admit(manager.key_ids, AdmitPolicy(model="gemini-test", owner="test"))
    assert isinstance(again, Lease) and again.key_id == lease.key_id, "the report ended the lease"
    pool.report(again, "success")
    return sent


def test_success_reported_with_metrics_and_done_marker_in_one_round_trip(env, pool_name):
    manager = AdvancedApiKeyManager(1, pool=pool_name, paid_keys="all")
    pool = manager.pool
    policy = AdmitPolicy(model="gemini-test", owner="test")
    warm = pool.admit(manager.key_ids, policy)
    pool.report(warm, "success")  # Redis has the report script now, as in a running worker
    lease = pool.admit(manager.key_ids, policy)
    assert isinstance(lease, Lease)
    assert not isinstance(pool.admit(manager.key_ids, policy), Lease)  # one lease per key: busy until reported
    sent = _finish_and_check(pool, manager, lease, "t1")
    assert len(sent) == 1, f"{len(sent)} round trips"
    calls = pool.client.hgetall(pool.prefix + CALLS_HASH)
    assert calls[b"calls|success|gemini-test"] == b"1" and calls[b"tokens_prompt|gemini-test"] == b"12"


def test_success_reported_after_redis_lost_its_scripts(env, pool_name):
    manager = AdvancedApiKeyManager(1, pool=pool_name, paid_keys="all")
    pool = manager.pool
    lease = pool.admit(manager.key_ids, AdmitPolicy(model="gemini-test", owner="test"))
    pool.client.script_flush()  # a Redis restart without the scripts: the pipelined EVALSHA gets NOSCRIPT
    _finish_and_check(pool, manager, lease, "t2")
