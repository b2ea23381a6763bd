"""A private RabbitMQ virtual host for tests and demos, made and removed with ``rabbitmqctl``.

Tests never use the default vhost ``/``: each :class:`RabbitVhost` is ``gt-<random>``, gets the guest user's
permissions, and is deleted (with every queue and message in it) when the context ends. The server is the
machine's RabbitMQ (``127.0.0.1:5672``, guest/guest, as Debian's package starts it); ``GEMINI_TASKS_TEST_AMQP``
names another host:port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from typing import Any, Self
from urllib.parse import quote

from gemini_tasks.testing.lifecycle import StartStop

DEFAULT_ADDR = "127.0.0.1:5672"


class RabbitUnavailable(RuntimeError):
    """No RabbitMQ to make a vhost on (the message says why)."""


def server_addr() -> tuple[str, int]:
    host, _, port = (os.environ.get("GEMINI_TASKS_TEST_AMQP") or DEFAULT_ADDR).rpartition(":")
    return host or "127.0.0.1", int(port or 5672)


def why_unavailable() -> str | None:
    """None when a vhost can be made here, else the reason (for a skip message)."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed (Debian: apt-get install rabbitmq-server)"
    host, port = server_addr()
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        return f"no RabbitMQ listening on {host}:{port} ({exc})"
    return None


def _ctl(*args: str, timeout: float = 60) -> str:
    out = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout,
                         check=False)
    if out.returncode != 0:
        raise RabbitUnavailable(f"rabbitmqctl {' '.join(args)} failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


class RabbitVhost(StartStop):
    """``with RabbitVhost() as vh: vh.url`` -> ``amqp://guest:guest@127.0.0.1:5672/gt-…``."""

    def __init__(self, name: str | None = None, user: str = "guest", password: str = "guest") -> None:
        self.name = name or f"gt-{uuid.uuid4().hex[:12]}"
        if self.name == "/":
            raise ValueError("tests never use the default vhost '/'")
        self.user = user
        self.password = password
        self.created = False

    @property
    def url(self) -> str:
        host, port = server_addr()
        return f"amqp://{self.user}:{self.password}@{host}:{port}/{quote(self.name, safe='')}"

    def start(self) -> Self:
        reason = why_unavailable()
        if reason:
            raise RabbitUnavailable(reason)
        _ctl("add_vhost", self.name)
        self.created = True
        _ctl("set_permissions", "-p", self.name, self.user, ".*", ".*", ".*")
        return self

    def stop(self) -> None:
        if self.created:
            _ctl("delete_vhost", self.name)
            self.created = False

    def queues(self) -> dict[str, dict[str, Any]]:
        """``{queue: {messages_ready, messages_unacknowledged, consumers, type, durable}}`` in this vhost."""
        out = _ctl("list_queues", "-p", self.name, "--no-table-headers", "name", "messages_ready",
                   "messages_unacknowledged", "consumers", "type", "durable")
        rows: dict[str, dict[str, Any]] = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) < 6:
                continue
            name, ready, unacked, consumers, kind, durable = parts[:6]
            rows[name] = {"messages_ready": int(ready or 0), "messages_unacknowledged": int(unacked or 0),
                          "consumers": int(consumers or 0), "type": kind, "durable": durable == "true"}
        return rows


def point_app_at(app: Any, broker_url: str, result_backend: str) -> dict[str, Any]:
    """Point a Celery app (a test's client) at ``broker_url``/``result_backend`` with every broker-dependent
    setting recomputed (quorum queues for RabbitMQ, ...); returns the settings it replaced, for
    :func:`restore_app`. Cached producers, queues and result backends are dropped so the next use rebuilds."""
    from gemini_tasks.transport import brokers
    from gemini_tasks.celeryconfig import _redis_broker_options
    from gemini_tasks.settings import get_settings

    new = brokers.broker_settings(broker_url, result_backend, _redis_broker_options, get_settings().sentinel_master)
    saved = {name: app.conf.get(name) for name in new}
    app.conf.update(new)
    forget_app_connections(app)
    return saved


def restore_app(app: Any, saved: dict[str, Any]) -> None:
    app.conf.update(saved)
    forget_app_connections(app)


def forget_app_connections(app: Any) -> None:
    import contextlib

    from gemini_tasks.testing.app_config import forget_backend

    pool = app._pool
    app._pool = None
    if pool is not None:
        with contextlib.suppress(Exception):
            pool.force_close_all()
    app.__dict__.pop("amqp", None)  # queues, routes and producer pool are cached there
    forget_backend(app)
