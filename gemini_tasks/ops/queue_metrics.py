"""Broker queue metrics: messages waiting per queue and the age of the oldest one (autoscalers, alerts).

- ``gemini_tasks_queue_messages{queue}``: messages waiting (not yet taken by a worker), on Redis and RabbitMQ
  alike (a passive ``queue_declare``: the broker's own count).
- ``gemini_tasks_queue_oldest_age_seconds{queue}``: seconds the oldest waiting message has waited (0 when the
  queue is empty). Every message that gemini-tasks publishes carries its enqueue time in a header
  (:data:`SENT_AT_HEADER`, added by :func:`gemini_tasks.transport.brokers.stamp_sent_at` on Celery's
  ``before_task_publish``). On a Redis broker the oldest message is the list's tail, read with one ``LINDEX``;
  RabbitMQ offers no way to look at a queue's head without taking the message, so there the family is absent
  (use RabbitMQ's own Prometheus plugin, or the depth).
- ``gemini_tasks_queue_held_messages``: Redis broker only, messages delivered to workers and not yet
  acknowledged (running, prefetched, waiting on a countdown), fleet-wide.
- ``gemini_tasks_queue_up``: 1 when the broker answered this scrape.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gemini_tasks.transport import brokers

log = logging.getLogger("gemini_tasks.ops.queue_metrics")

SENT_AT_HEADER = brokers.SENT_AT_HEADER


def sent_at_of(raw: bytes | str | None) -> float | None:
    """The enqueue time stamped on a raw kombu message (as a Redis broker stores it), if any."""
    if not raw:
        return None
    try:
        body = json.loads(raw)
        value = (body.get("headers") or {}).get(SENT_AT_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


class QueueCollector(Collector):
    """Reads the broker's queues on each scrape through kombu (any transport Celery supports)."""

    def __init__(self, broker_url: str, queues: Iterable[str] = brokers.QUEUE_NAMES,
                 transport_options: dict[str, Any] | None = None) -> None:
        self.broker_url = broker_url
        self.queues = list(queues)
        self.transport_options = transport_options or {}

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from kombu import Connection

        up = GaugeMetricFamily("gemini_tasks_queue_up", "1 when the broker answered this scrape")
        depth = GaugeMetricFamily("gemini_tasks_queue_messages", "Messages waiting in a broker queue", labels=["queue"])
        age = GaugeMetricFamily("gemini_tasks_queue_oldest_age_seconds",
                                "Seconds the oldest waiting message has waited (0: queue empty)", labels=["queue"])
        held = GaugeMetricFamily("gemini_tasks_queue_held_messages",
                                 "Messages held by workers, not yet acknowledged (Redis broker)")
        redis_broker = brokers.is_redis_broker(self.broker_url)
        try:
            with Connection(self.broker_url, transport_options=self.transport_options, connect_timeout=5) as conn:
                channel = conn.default_channel
                now = time.time()
                for queue in self.queues:
                    count = _depth(channel, queue)
                    depth.add_metric([queue], count)
                    if redis_broker:
                        stamp = sent_at_of(channel.client.lindex(queue, -1)) if count else None
                        age.add_metric([queue], max(0.0, now - stamp) if stamp is not None else 0.0)
                if redis_broker:
                    held.add_metric([], int(channel.client.hlen(channel.unacked_key)))
            up.add_metric([], 1)
        except Exception as exc:  # noqa: BLE001 - an unreachable broker shows as up=0, not a failed scrape
            log.debug("queue metrics: broker unreadable: %r", exc)
            up.add_metric([], 0)
            yield up
            return
        yield up
        yield depth
        if redis_broker:
            yield age
            yield held


def _depth(channel: Any, queue: str) -> int:
    from amqp.exceptions import ChannelError

    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except ChannelError:  # RabbitMQ: the queue does not exist yet (no worker declared it)
        return 0
