"""Celery settings for gemini-tasks (loaded by :mod:`gemini_tasks.celery_app`).

The reliability choices follow Celery practice for an at-least-once Redis broker: JSON only, late acks,
requeue when a worker dies, prefetch 1, and a visibility timeout larger than any time limit or countdown
we use, so a running task is never delivered twice just because it is slow.

A top-level ``celeryconfig`` module (Celery's convention; this repository ships one at its root) is loaded
after this one when it is importable, so an operator overrides a setting there without editing the package.
"""

from __future__ import annotations

from gemini_tasks.transport import brokers
from gemini_tasks.settings import get_settings

_s = get_settings()

broker_url = _s.broker_url
result_backend = _s.result_backend

# --- serialization / security: pickle is refused everywhere (a pickled message is rejected by workers).
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
event_serializer = "json"

# --- delivery guarantees (at-least-once; tasks are idempotent per task id)
task_acks_late = True
task_reject_on_worker_lost = True
worker_deduplicate_successful_tasks = True
worker_prefetch_multiplier = 1

#: How long a message held by a worker that vanished stays invisible before Redis redelivers it, counted from
#: the holder's last refresh: live workers re-mark what they hold every 2 s (gemini_tasks.worker.holding), so
#: a call or a countdown of any length stays with its worker, and only a dead (or cut-off) worker's messages
#: age past this. The bound on recovery after a worker is killed is about this + one sweep + one call.
VISIBILITY_TIMEOUT = int(_s.visibility_timeout)
from gemini_tasks.gemini.tiers import flex_timeout as _flex_timeout  # noqa: E402
#: Hard time limit (prefork pool only; the threads pool relies on the SDK timeout instead): a request makes at
#: most a few attempts of one call timeout each, plus uploads; unrelated to the visibility timeout now.
#: Flex calls (service_tier="flex") may take GEMINI_TASKS_FLEX_TIMEOUT (default 900 s) each, so the limit counts
#: with the longer of the two timeouts.
task_time_limit = int(4 * max(_s.request_timeout, _flex_timeout()) + 660)
task_soft_time_limit = task_time_limit - 30
#: Longest countdown a task re-queues itself with (rate-limit waits): the worker holds such a message until it
#: is due and keeps it refreshed, so this only bounds how stale a wait may get before admission is asked again.
MAX_COUNTDOWN = 60

#: Every consuming worker scans for abandoned messages every 2 s (kombu's default is 10 s, and only every
#: 10th tick: 100 s); one ZRANGE per worker per scan.
UNACKED_RESTORE_INTERVAL = 2

_redis_broker_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "unacked_restore_interval": UNACKED_RESTORE_INTERVAL,
    "unacked_restore_throttle": 1,
    # a worker killed during a sweep leaves the sweep's lock behind: let it lapse in 10 s, not kombu's 300 s
    # (each restore is its own WATCH transaction, so two sweeps at once never restore a message twice)
    "unacked_mutex_expire": 10,
    "socket_timeout": 30,
    "socket_connect_timeout": 10,
    "socket_keepalive": True,
    "retry_on_timeout": True,
    "health_check_interval": 25,
}
#: per broker (gemini_tasks.transport.brokers): the queues (quorum on RabbitMQ), transport options (Redis as above,
#: Sentinel adds the master's name, RabbitMQ confirms publishes), heartbeats (RabbitMQ)
globals().update(brokers.broker_settings(broker_url, result_backend, _redis_broker_options, _s.sentinel_master))
broker_connection_retry_on_startup = True
broker_connection_max_retries = None

# --- results
result_expires = 24 * 3600
#: not extended: an extended result stores the task's arguments, i.e. the whole job with its inline media
#: (an 8 MB audio prompt left an 11 MB result record for a day); callers need only the answer
result_extended = False
#: off: a STARTED state in the result backend cost every task one more read and write of its result record
#: (and a PUBLISH), and nothing reads it; Flower shows a task as started from the worker's task-started event
task_track_started = False
redis_socket_timeout = 120
redis_socket_connect_timeout = 10
redis_retry_on_timeout = True
redis_socket_keepalive = True
redis_backend_health_check_interval = 25
result_backend_always_retry = True
result_backend_max_retries = 10

# --- events for Flower
worker_send_task_events = True
task_send_sent_event = True

# --- worker hygiene
worker_max_memory_per_child = 400_000  # KiB, prefork only
worker_soft_shutdown_timeout = 30.0
worker_enable_soft_shutdown_on_idle = True
worker_eta_task_limit = 200
worker_hijack_root_logger = False

# --- routing: interactive callers never queue behind a batch flood
task_default_queue = "batch"
task_routes = {
    "gemini_tasks.generate_interactive": {"queue": "interactive"},
    "gemini_tasks.speech_interactive": {"queue": "interactive"},
    "gemini_tasks.generate_stream": {"queue": "interactive"},
    "gemini_tasks.image_interactive": {"queue": "interactive"},
    "gemini_tasks.keys_probe": {"queue": "interactive"},
}
