"""Several hosts on one machine: Linux network namespaces joined by a bridge, each with its own address.

``with NetLab() as lab:`` makes a bridge ``gtb<suffix>`` in the root namespace holding ``10.A.B.1/24`` (the
root namespace is itself a host: the test process, the "client", and the emulator standing in for Google
live there), and :meth:`NetLab.host` adds a namespace ``gt<suffix>-<name>`` with a veth pair into the bridge
and the next address. A process started with :meth:`Host.command` runs inside the namespace and, with
``unshare --uts``, under the host's own hostname (so ``spacing_scope="host"`` sees distinct hosts).

:meth:`Host.partition` takes the host's link down on the bridge side: packets are dropped silently, no
connection is reset, as when a cable is pulled or a switch fails; :meth:`Host.heal` brings it back.
Everything is removed on exit (namespaces, veths, the bridge), also after a failure. Names carry a random
suffix so concurrent runs on one machine do not collide. :func:`why_unavailable` tells why namespaces
cannot be made here (not root, no ``ip``, no permission), for a skip message.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemini_tasks.testing.lifecycle import StartStop
from gemini_tasks.testing.local_fleet import WorkerProcess
from gemini_tasks.testing.local_redis import RedisServer


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {out.stderr.strip()}")
    return out


def why_unavailable() -> str | None:
    """None when network namespaces can be made here, else the reason."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if shutil.which("unshare") is None:
        return "the `unshare` command (util-linux) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    name = f"gtprobe{uuid.uuid4().hex[:6]}"
    out = _ip("netns", "add", name, check=False)
    if out.returncode != 0:
        return f"ip netns add failed: {out.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


@dataclass
class Host:
    """One namespace host: its name, namespace, address and link."""

    lab: NetLab
    name: str
    netns: str
    addr: str
    veth_root: str
    hostname: str
    processes: list[Any] = field(default_factory=list)

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside this host (its network namespace and its own hostname)."""
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c",
                f'hostname {self.hostname} && exec "$@"', "sh", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.netns, *args], capture_output=True, text=True,
                              timeout=30, check=False)

    def partition(self) -> None:
        """Cut this host off (its link down on the bridge side): silent drops, no reset."""
        _ip("link", "set", self.veth_root, "down")

    def heal(self) -> None:
        _ip("link", "set", self.veth_root, "up")

    def redis(self, **kw: Any) -> RedisServer:
        """A redis-server inside this host, on its address."""
        server = _NetnsRedis(self, **kw)
        self.processes.append(server)
        return server.start()

    def rabbitmq(self, timeout: float = 90.0) -> PrivateRabbit:
        """A private RabbitMQ node inside this host (its own Erlang cookie, data and port 5672 on its address)."""
        node = PrivateRabbit(self)
        self.processes.append(node)
        return node.start(timeout)

    def kill_all(self) -> None:
        """SIGKILL every process still running inside this host's namespace (ours: brokers, epmd, workers)."""
        out = _ip("netns", "pids", self.netns, check=False)
        for pid in out.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def worker(self, env: dict[str, str], **kw: Any) -> WorkerProcess:
        """A celery worker inside this host (its node name carries the hostname)."""
        w = _NetnsWorker(self, env, **kw)
        self.processes.append(w)
        return w


class PrivateRabbit:
    """``rabbitmq-server`` as a private node in a namespace host: guest may log in from other hosts (the node
    is reachable only on the lab's bridge); everything it writes lives in a temporary directory."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.dir = tempfile.mkdtemp(prefix="gemini-tasks-rabbit-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host.addr}:5672//"

    def start(self, timeout: float = 90.0) -> PrivateRabbit:
        from kombu import Connection

        d = Path(self.dir)
        (d / "rabbitmq.conf").write_text("loopback_users = none\nlisteners.tcp.default = 5672\n")
        (d / "enabled_plugins").write_text("[].\n")
        env = {**os.environ, "HOME": self.dir, "RABBITMQ_NODENAME": "rabbit@localhost",
               "RABBITMQ_MNESIA_BASE": str(d / "mnesia"), "RABBITMQ_LOG_BASE": str(d / "log"),
               "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"), "RABBITMQ_ENABLED_PLUGINS_FILE":
               str(d / "enabled_plugins"), "RABBITMQ_PID_FILE": str(d / "pid"),
               "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf")}
        server = shutil.which("rabbitmq-server", path="/usr/lib/rabbitmq/bin:" + os.environ.get("PATH", ""))
        if server is None:
            raise RuntimeError("rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server)")
        log = open(d / "out.log", "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.host.netns, server], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with Connection(self.url, connect_timeout=2) as conn:
                    conn.ensure_connection(max_retries=1)
                return self
            except Exception:  # noqa: BLE001 - still starting
                time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"the private RabbitMQ node did not start within {timeout}s: "
                           f"{(d / 'out.log').read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        self.host.kill_all()  # beam.smp and epmd run inside the namespace
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class _NetnsRedis(RedisServer):
    def __init__(self, host: Host, **kw: Any) -> None:
        super().__init__(**kw)
        self.host = host

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host.addr}:{self.port}/0"

    def _args(self) -> list[str]:
        args = super()._args()
        i = args.index("--bind")
        args[i + 1] = self.host.addr
        # reachable only on the lab's private bridge; protected mode would refuse every other host
        return self.host.command([*args, "--protected-mode", "no"])


class _NetnsWorker(WorkerProcess):
    def __init__(self, host: Host, env: dict[str, str], **kw: Any) -> None:
        kw.setdefault("name", f"{host.name}-{uuid.uuid4().hex[:6]}@{host.hostname}")
        super().__init__(env, **kw)
        self.host = host

    def args(self) -> list[str]:
        return self.host.command(super().args())

    def wait_ready(self, timeout: float = 30.0) -> None:
        # the node name already holds the namespace's hostname; WorkerProcess substitutes %h with ours
        super().wait_ready(timeout)


class NetLab(StartStop):
    """A bridge in the root namespace and namespace hosts on it (see the module docstring)."""

    def __init__(self) -> None:
        self.suffix = uuid.uuid4().hex[:6]
        self.subnet = f"10.{random.randint(64, 250)}.{random.randint(1, 250)}"
        self.bridge = f"gtb{self.suffix}"
        self.root_addr = f"{self.subnet}.1"
        self.hosts: list[Host] = []
        self._made_bridge = False

    def start(self) -> NetLab:
        reason = why_unavailable()
        if reason:
            raise RuntimeError(reason)
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made_bridge = True
        _ip("addr", "add", f"{self.root_addr}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def host(self, name: str) -> Host:
        i = len(self.hosts) + 1
        netns = f"gt{self.suffix}-{name}"
        root_end, ns_end = f"gtv{self.suffix}{i}a", f"gtv{self.suffix}{i}b"
        addr = f"{self.subnet}.{10 + i}"
        _ip("netns", "add", netns)
        host = Host(self, name, netns, addr, root_end, hostname=f"{name}-{self.suffix}")
        self.hosts.append(host)
        _ip("link", "add", root_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", netns)
        _ip("link", "set", root_end, "master", self.bridge)
        _ip("link", "set", root_end, "up")
        _ip("-n", netns, "addr", "add", f"{addr}/24", "dev", ns_end)
        _ip("-n", netns, "link", "set", ns_end, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        return host

    def stop(self) -> None:
        for host in self.hosts:
            for proc in reversed(host.processes):
                with contextlib.suppress(Exception):  # clean up everything else regardless
                    if isinstance(proc, WorkerProcess):
                        proc.kill()
                    else:
                        proc.stop()
            host.kill_all()
            _ip("netns", "del", host.netns, check=False)  # removes the veth pair with it
            _ip("link", "del", host.veth_root, check=False)
        self.hosts.clear()
        if self._made_bridge:
            _ip("link", "del", self.bridge, check=False)
            self._made_bridge = False

