"""Broker-specific Celery settings: Redis (the embedded default), Redis Sentinel, RabbitMQ.

Results and the key manager always live on Redis (``REDIS_URL``, which may itself be ``sentinel://``); the
broker is ``CELERY_BROKER_URL`` or, by default, the same Redis. Everything here is a plain function of the URL
so :mod:`gemini_tasks.celeryconfig` stays a list of settings and tests can check each choice.

RabbitMQ (``amqp://`` / ``pyamqp://``):

- queues are **quorum** queues (replicated, durable, messages persistent); Celery detects them, turns off the
  global QoS they do not support and sends countdowns through RabbitMQ's native delayed delivery;
- publishes are confirmed by the broker (``confirm_publish``) so an enqueue that returned is on disk;
- workers send AMQP **heartbeats** every :data:`AMQP_HEARTBEAT` seconds: a host that vanishes without closing
  its TCP connection is declared dead after about two intervals and its messages are requeued (a killed
  process closes its connection, and they come back at once);
- a delivery is cut off by the server's ``consumer_timeout`` (RabbitMQ's default: 30 minutes) if it stays
  unacknowledged longer: that is above every call timeout (Flex: 15 minutes) and countdown (60 s) used here;
  a server configured lower must stay above the longest call (docs/reliability.md).
"""

from __future__ import annotations

import time
from typing import Any

from kombu import Queue

QUEUE_NAMES = ("interactive", "batch")
#: seconds between AMQP heartbeats of a worker (RabbitMQ declares a peer dead after ~2 missed)
AMQP_HEARTBEAT = 5


#: header carrying a message's enqueue time (the oldest-waiting-message metric, ops/queue_metrics.py)
SENT_AT_HEADER = "gt_sent_at"


def stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``before_task_publish`` receiver: record when the message was enqueued (wall clock, seconds)."""
    if headers is not None and SENT_AT_HEADER not in headers:
        headers[SENT_AT_HEADER] = round(time.time(), 3)


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_amqp(url: str) -> bool:
    return scheme(url) in ("amqp", "amqps", "pyamqp", "librabbitmq")


def is_sentinel(url: str) -> bool:
    return scheme(url) in ("sentinel", "sentinels")


def is_redis_broker(url: str) -> bool:
    return scheme(url) in ("redis", "rediss", "redis+socket", "sentinel", "sentinels")


def task_queues(broker_url: str) -> tuple[Queue, ...]:
    if is_amqp(broker_url):
        return tuple(Queue(name, durable=True, queue_arguments={"x-queue-type": "quorum"}) for name in QUEUE_NAMES)
    return tuple(Queue(name) for name in QUEUE_NAMES)


def sentinel_options(master: str, password: str | None = None) -> dict[str, Any]:
    """What kombu's Sentinel transport and Celery's Sentinel result backend need beside the URL."""
    opts: dict[str, Any] = {"master_name": master}
    if password:
        opts["sentinel_kwargs"] = {"password": password}
    return opts


def broker_transport_options(broker_url: str, redis_options: dict[str, Any], sentinel_master: str) -> dict[str, Any]:
    if is_amqp(broker_url):
        return {"confirm_publish": True}
    if is_sentinel(broker_url):
        return {**redis_options, **sentinel_options(sentinel_master)}
    return dict(redis_options)


def amqp_settings(broker_url: str) -> dict[str, Any]:
    """Celery settings that only apply to RabbitMQ (empty for a Redis broker)."""
    if not is_amqp(broker_url):
        return {}
    return {
        "broker_heartbeat": AMQP_HEARTBEAT,
        "task_default_queue_type": "quorum",
        "task_default_exchange_type": "direct",
        "worker_detect_quorum_queues": True,
        # events and remote control (Flower, ping, inspect) use transient classic queues: that is right for
        # them, and their messages expire so a stopped Flower does not leave a growing queue
        "event_queue_ttl": 60.0,
        "event_queue_expires": 600.0,
    }


def broker_settings(broker_url: str, result_backend: str, redis_options: dict[str, Any],
                    sentinel_master: str) -> dict[str, Any]:
    """Every Celery setting that depends on the broker (and on a Sentinel result backend)."""
    backend_options: dict[str, Any] = {"visibility_timeout": redis_options.get("visibility_timeout", 3600)}
    if is_sentinel(result_backend):
        backend_options.update(sentinel_options(sentinel_master))
    return {
        "broker_url": broker_url,
        "result_backend": result_backend,
        "task_queues": task_queues(broker_url),
        "broker_transport_options": broker_transport_options(broker_url, redis_options, sentinel_master),
        "result_backend_transport_options": backend_options,
        "broker_heartbeat": None,
        **amqp_settings(broker_url),
    }
