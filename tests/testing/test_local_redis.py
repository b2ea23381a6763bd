"""The private redis-server of the test stack is the one this object started, even when its port was taken.

Three xdist processes (and other suites on the machine) pick free ports at the same moment: a port free a
moment ago can be taken by another test's redis-server before ours binds it. Ours then exits ("Address already
in use") while the other answers PING on that port, and a test ran against a server that another test stopped
under it (seen as a MONITOR connection "closed by server" with nothing recorded).
"""

from __future__ import annotations

import redis

from gemini_tasks.testing import local_redis
from gemini_tasks.testing.local_redis import RedisServer


def _pid_on(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def test_a_server_whose_port_was_taken_starts_on_another_port(monkeypatch):
    with RedisServer() as other:
        ports = iter([other.port])
        real_free_port = local_redis.free_port
        monkeypatch.setattr(local_redis, "free_port", lambda: next(ports, None) or real_free_port())
        with RedisServer() as ours:
            assert ours.proc is not None and _pid_on(ours.url) == ours.proc.pid
            assert ours.port != other.port
        assert _pid_on(other.url) == other.proc.pid  # the other server was left alone


def test_an_explicit_port_that_is_taken_is_an_error_naming_it():
    import pytest

    with RedisServer() as other:
        with pytest.raises(local_redis.RedisServerError, match=str(other.port)):
            RedisServer(port=other.port).start()
        assert _pid_on(other.url) == other.proc.pid


def test_a_restart_keeps_its_port(monkeypatch):
    with RedisServer() as ours:
        port, first = ours.port, ours.proc.pid
        ours.restart()
        assert ours.port == port and _pid_on(ours.url) == ours.proc.pid != first
