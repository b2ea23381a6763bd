"""Who sets a shared pool's settings, config changes, and pools that come back after Redis lost its data
(issue 11 item 6, issue 12 items 6 and 7), on a real redis-server."""

from __future__ import annotations

import os
import socket

import pytest
import redis

from gemini_tasks.keys import AdmitPolicy, AdvancedApiKeyManager, KeyPool, Lease, Wait
from gemini_tasks.testing.environment import held_keys
from gemini_tasks.testing.local_redis import RedisServer

SECRETS = {f"GEMINI_API_KEY_{i}": f"settings-secret-{i:04d}-xyz" for i in range(1, 4)}
IDS = sorted(SECRETS)


@pytest.fixture
def env(monkeypatch, redis_url):
    with held_keys(monkeypatch, SECRETS, REDIS_URL=redis_url):
        yield


def _policy() -> AdmitPolicy:
    return AdmitPolicy(model="m", owner="t", rate_window=60)


def test_a_manager_that_only_names_keys_uses_the_pool_as_it_is(env, pool_name):
    batch = AdvancedApiKeyManager("all", paid_keys="all", pool=pool_name)
    # another shell: `gemini-tasks tts ...`, a web app with defaults, text_to_speech() without api_key
    other = AdvancedApiKeyManager("all", pool=pool_name)
    summary = batch.get_keys_status_summary()
    assert {s["category"] for s in summary.values()} == {"paid"}, "a manager naming keys turned them free"
    assert other.paid == set(IDS)
    lease = batch.pool.admit(IDS, _policy())
    batch.pool.report(lease, "success")
    assert summary[lease.key_id]["status"] == "AVAILABLE"
    assert batch.get_keys_status_summary()[lease.key_id]["status"] == "AVAILABLE"  # no 30 s free cooldown


def test_different_explicit_settings_raise_naming_the_difference_and_change_nothing(env, pool_name):
    from gemini_tasks.keys.pool import SettingsConflict

    AdvancedApiKeyManager("all", paid_keys="all", pool=pool_name)
    with pytest.raises(SettingsConflict) as info:
        AdvancedApiKeyManager("all", paid_keys=["GEMINI_API_KEY_1"], pool=pool_name,
                              key_settings={"free": {"key_cooldown_seconds": 5}})
    text = str(info.value)
    assert "GEMINI_API_KEY_2 category: pool has 'paid'" in text and "this manager has 'free'" in text
    assert f"{socket.gethostname()}:{os.getpid()}" in text  # who set it
    assert "replace_settings=True" in text
    summary = AdvancedApiKeyManager("all", pool=pool_name).get_keys_status_summary()
    assert {s["category"] for s in summary.values()} == {"paid"}
    # the same explicit settings again are fine (a second process of the same application)
    AdvancedApiKeyManager("all", paid_keys="all", pool=pool_name)


def test_the_key_table_shows_who_set_what(env, pool_name):
    AdvancedApiKeyManager(["GEMINI_API_KEY_1"], paid_keys="all", pool=pool_name)
    AdvancedApiKeyManager(["GEMINI_API_KEY_2"], pool=pool_name)
    summary = AdvancedApiKeyManager("all", pool=pool_name).get_keys_status_summary()
    assert summary["GEMINI_API_KEY_1"]["settings_source"] == "explicit"
    assert summary["GEMINI_API_KEY_2"]["settings_source"] == "default"
    assert summary["GEMINI_API_KEY_1"]["configured_by"].startswith(f"{socket.gethostname()}:{os.getpid()}")


def test_config_changes_take_effect_with_replace(env, pool_name):
    m = AdvancedApiKeyManager("all", paid_keys="all", pool=pool_name,
                              key_settings={"paid": {"rpm": 1}}, projects={"GEMINI_API_KEY_3": "p3"},
                              project_limits={"p3": {"rpm": 1}})
    pol = _policy()
    for _ in range(3):
        m.pool.report(m.pool.admit(IDS, pol), "success")
    assert isinstance(m.pool.admit(IDS, pol), Wait)  # every key at its rpm
    # the limits are removed and key 3 leaves the list: Redis must match
    m2 = AdvancedApiKeyManager(["GEMINI_API_KEY_1", "GEMINI_API_KEY_2"], paid_keys="all", pool=pool_name,
                               replace_settings=True)
    assert m2.pool.registered_ids() == ["GEMINI_API_KEY_1", "GEMINI_API_KEY_2"], "stale ids were not pruned"
    got = m2.pool.admit(["GEMINI_API_KEY_1", "GEMINI_API_KEY_2"], pol)
    assert isinstance(got, Lease), f"old limits still throttle: {got}"
    assert m2.pool.client.smembers(m2.pool.prefix + "limited") == set()


def test_pools_register_again_after_redis_lost_its_data(monkeypatch, pool_name):
    from gemini_tasks.worker.worker_keys import PoolWatcher

    # no persistence: a restart loses everything
    with RedisServer() as server, held_keys(monkeypatch, SECRETS, REDIS_URL=server.url):
        m = AdvancedApiKeyManager("all", paid_keys="all", pool=pool_name)
        watcher = PoolWatcher(interval=3600)  # a worker's watcher, driven by hand here
        watcher.add(KeyPool(m.pool.client, pool_name))
        server.restart()
        assert m.pool.registered_ids() == []
        # a worker notices first: its keys are known again (with defaults) ...
        assert watcher.check_now() == 1
        assert m.pool.held_ids() == IDS
        # ... and the application's manager re-registers its explicit settings on its next job
        m._epoch_checked = 0.0
        m.spec()
        summary = m.get_keys_status_summary()
        assert {s["category"] for s in summary.values()} == {"paid"}
        assert isinstance(m.pool.admit(IDS, _policy()), Lease)
        m.pool.client.close()


def test_a_key_replaced_as_paid_does_not_keep_its_free_cooldown(env, pool_name):
    m = AdvancedApiKeyManager(["GEMINI_API_KEY_1"], pool=pool_name, key_settings={"free": {"key_cooldown_seconds": 30}})
    m.pool.report(m.pool.admit(m.key_ids, _policy()), "success")
    assert m.get_keys_status_summary()["GEMINI_API_KEY_1"]["status"] == "COOLDOWN"
    paid = AdvancedApiKeyManager(["GEMINI_API_KEY_1"], paid_keys="all", pool=pool_name, replace_settings=True)
    assert paid.get_keys_status_summary()["GEMINI_API_KEY_1"]["status"] == "AVAILABLE"
    assert isinstance(paid.pool.admit(paid.key_ids, _policy()), Lease)


def test_a_worker_that_finds_no_usable_keys_announces_again_at_once(monkeypatch, pool_name):
    from gemini_tasks.keys import NoUsableKeys
    from gemini_tasks.worker.worker_keys import PoolWatcher

    with held_keys(monkeypatch, SECRETS), RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        kp = KeyPool(client, pool_name)
        watcher = PoolWatcher(interval=3600)
        watcher.add(kp)
        assert not watcher.recover(kp)  # nothing lost: nothing to do
        server.restart()
        with pytest.raises(NoUsableKeys):
            kp.admit(IDS, _policy())
        assert watcher.recover(kp)
        assert isinstance(kp.admit(IDS, _policy()), Lease)
        client.close()
