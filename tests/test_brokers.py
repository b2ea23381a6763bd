"""Broker settings by URL (gemini_tasks/transport/brokers.py), Sentinel URLs (keys/redis_conn.py) and the held-message
refresh (worker/holding.py) against a real redis-server."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from gemini_tasks.transport import brokers
from gemini_tasks.keys.redis_conn import parse_sentinel_url
from gemini_tasks.worker.holding import held_tags, refresh_once


def test_queues_and_options_follow_the_broker():
    amqp = brokers.task_queues("amqp://guest:guest@h:5672/v")
    assert {q.name: q.queue_arguments for q in amqp} == {"interactive": {"x-queue-type": "quorum"},
                                                        "batch": {"x-queue-type": "quorum"}}
    assert all(q.durable for q in amqp)
    assert all(not q.queue_arguments for q in brokers.task_queues("redis://h:6379/0"))
    redis_opts = {"visibility_timeout": 25}
    assert brokers.broker_transport_options("amqp://h//", redis_opts, "m") == {"confirm_publish": True}
    assert brokers.broker_transport_options("redis://h/0", redis_opts, "m") == redis_opts
    assert brokers.broker_transport_options("sentinel://h:1;sentinel://h:2/0", redis_opts, "m")["master_name"] == "m"
    assert brokers.amqp_settings("redis://h/0") == {}
    assert brokers.amqp_settings("amqp://h//")["broker_heartbeat"] == brokers.AMQP_HEARTBEAT
    both = brokers.broker_settings("redis://h/0", "sentinel://s:1/0", redis_opts, "mm")
    assert both["result_backend_transport_options"]["master_name"] == "mm"


def test_sentinel_urls_in_celerys_form():
    spec = parse_sentinel_url("sentinel://h1:1;sentinel://h2:2;sentinel://h3:3/4")
    assert spec.sentinels == (("h1", 1), ("h2", 2), ("h3", 3)) and spec.db == 4 and spec.password is None
    spec = parse_sentinel_url("sentinel://:p%40ss@h1:26380/0;sentinel://:p%40ss@h2")
    assert spec.sentinels == (("h1", 26380), ("h2", 26379)) and spec.password == "p@ss"
    for bad in ("redis://h:1/0", "sentinel://h1:1/x", ";"):
        with pytest.raises(ValueError):
            parse_sentinel_url(bad)


def test_refresh_moves_only_entries_that_still_exist():
    import redis

    from gemini_tasks.testing.local_redis import RedisServer

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        client.zadd("unacked_index", {"held": 100.0, "other-worker": 100.0})
        channel = SimpleNamespace(unacked_index_key="unacked_index")
        now = time.time()
        # "acked" was acknowledged (or restored by a sweep) meanwhile: the refresh must not bring it back
        assert refresh_once(channel, client, ["held", "acked"], now=now) == 1
        assert client.zscore("unacked_index", "held") == pytest.approx(now)
        assert client.zscore("unacked_index", "acked") is None
        assert client.zscore("unacked_index", "other-worker") == 100.0  # another worker's entry is not touched
        assert refresh_once(channel, client, [], now=now) == 0
        client.close()


def test_held_tags_reads_the_consumers_delivered_messages():
    qos = SimpleNamespace(_delivered={"t1": object(), "t2": object()})
    consumer = SimpleNamespace(task_consumer=SimpleNamespace(channel=SimpleNamespace(qos=qos)))
    assert sorted(held_tags(consumer)) == ["t1", "t2"]
    assert held_tags(SimpleNamespace()) == []
