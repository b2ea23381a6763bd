"""A Redis Sentinel group on loopback for tests: a master, a replica and three sentinels, stopped by PID.

``with SentinelGroup() as g: g.url`` gives ``sentinel://127.0.0.1:p1;sentinel://127.0.0.1:p2;sentinel://…/0``
(Celery's form; the master is named :attr:`SentinelGroup.master_name`). :meth:`SentinelGroup.kill_master`
SIGKILLs the current master and :meth:`SentinelGroup.wait_failover` returns when the sentinels name the
replica as the new master. Sentinels decide fast here (``down-after-milliseconds`` 1000, failover timeout
5 s) so tests see a whole failover in a few seconds; production keeps Redis's own defaults or its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import redis

from gemini_tasks.testing.local_redis import RedisServer, find_redis_server, free_port
from gemini_tasks.testing.lifecycle import StartStop


class SentinelGroup(StartStop):
    """Master + replica (:class:`RedisServer`, AOF on) + three ``redis-server --sentinel`` processes."""

    def __init__(self, master_name: str | None = None, *, down_after_ms: int = 1000, quorum: int = 2) -> None:
        self.master_name = master_name or f"gt{uuid.uuid4().hex[:8]}"
        self.down_after_ms = down_after_ms
        self.quorum = quorum
        self.dir = tempfile.mkdtemp(prefix="gemini-tasks-sentinel-")
        self.master: RedisServer | None = None
        self.replica: RedisServer | None = None
        self.sentinel_ports: list[int] = []
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{p}" for p in self.sentinel_ports) + "/0"

    def start(self, timeout: float = 20.0) -> SentinelGroup:
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError("redis-server was not found on PATH (Debian: apt-get install redis-server)")
        self.master = RedisServer(persistence=True).start()
        self.replica = RedisServer(persistence=True,
                                   extra_args=["--replicaof", "127.0.0.1", str(self.master.port)]).start()
        for i in range(3):
            port = free_port()
            conf = Path(self.dir) / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {self.dir}\n"
                f"logfile {self.dir}/sentinel-{i}.log\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master_name} 5000\n"
                f"sentinel parallel-syncs {self.master_name} 1\n")
            proc = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            self.sentinel_ports.append(port)
            self.sentinels.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # every sentinel sees the master and its replica
            if all(self._sees_replica(p) for p in self.sentinel_ports):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the sentinels did not see the master and its replica within {timeout}s")

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)

    def _sees_replica(self, port: int) -> bool:
        try:
            client = self._sentinel(port)
            try:
                replicas = client.sentinel_slaves(self.master_name)
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False
        return any(r.get("flags") == "slave" and r.get("master-link-status") == "ok" for r in replicas)

    def master_port(self) -> int | None:
        """The port the sentinels currently name as master (None when none answers)."""
        for port in self.sentinel_ports:
            try:
                client = self._sentinel(port)
                try:
                    _host, mport = client.sentinel_get_master_addr_by_name(self.master_name)  # type: ignore[misc]
                finally:
                    client.close()
                return int(mport)
            except (redis.RedisError, OSError, TypeError):
                continue
        return None

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master (as a crash would); returns it."""
        port = self.master_port()
        victim = self.master if self.master is not None and self.master.port == port else self.replica
        assert victim is not None
        victim.kill()
        return victim

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> float:
        """Seconds until the sentinels name a master other than ``old_port``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            port = self.master_port()
            if port is not None and port != old_port:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise TimeoutError(f"no failover within {timeout}s")

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        self.sentinels.clear()
        for server in (self.replica, self.master):
            if server is not None:
                server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

