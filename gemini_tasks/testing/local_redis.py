"""Start a private ``redis-server`` on a free loopback port, and always stop it by PID.

Used by the test suite (tests never touch a Redis they did not start) and by ``gemini-tasks demo``
(the embedded default: with nothing configured, the demo starts what it needs on this machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


class RedisServerError(RuntimeError):
    """redis-server could not be found or did not come up."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_redis_server() -> str | None:
    """Path of a ``redis-server`` binary: on PATH, or shipped by the ``redis-server`` PyPI package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:  # optional embedded binary (pip install redis-server)
        import redis_server  # type: ignore[import-not-found]

        path = getattr(redis_server, "REDIS_SERVER_PATH", None)
        if path and os.path.exists(path):
            return str(path)
    except ImportError:
        pass
    return None


class RedisServer:
    """A ``redis-server`` child process owned by this object.

    ``persistence=True`` turns on the append-only file in the server's private directory, so a restart of
    the same object (``restart()``) keeps its data, as a production Redis with AOF would.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        persistence: bool = False,
        password: str | None = None,
        data_dir: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RedisServerError(
                "redis-server was not found on PATH; install it (Debian: apt-get install redis-server) "
                "or set REDIS_URL to a running Redis"
            )
        self.binary = binary
        #: a port of our own choosing may be taken by another process before the server binds it: start() then
        #: picks another one; a port the caller named is an error if taken
        self._chosen_port = port is None
        self._started = False
        self.port = port or free_port()
        self.persistence = persistence
        self.password = password
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="gemini-tasks-redis-")
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.data_dir,
            "--save", "",
            "--appendonly", "yes" if self.persistence else "no",
            "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", str(Path(self.data_dir) / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra_args

    def start(self, timeout: float = 10.0) -> "RedisServer":
        """Start the server and wait until it answers. The server that answers must be this process (INFO's
        ``process_id``): a port free a moment ago can be taken by another test's server first (parallel test
        processes pick ports at the same time), and that server answers PING while ours exits."""
        deadline = time.monotonic() + timeout
        for _ in range(5):
            if self._start_once(deadline):
                self._started = True
                return self
            if not self._chosen_port or self._started:  # a named port, or a restart: its clients know this port
                raise RedisServerError(f"port {self.port} is taken by another process: {self.log_tail(3)}")
            self.port = free_port()  # lost the race for a port of our own choosing: another one
        self.stop()
        raise RedisServerError(f"redis-server found every port it tried taken (last {self.port})")

    def _start_once(self, deadline: float) -> bool:
        """One start on ``self.port``: True once this process answers, False if the port was taken."""
        with open(Path(self.data_dir) / "redis.log", "w"):
            pass  # this start's lines only: "Address already in use" must be this start's
        self.proc = subprocess.Popen(
            self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    if "Address already in use" in self.log_tail(5):
                        return False
                    raise RedisServerError(f"redis-server exited with {self.proc.returncode}: {self.log_tail()}")
                try:
                    if int(client.info("server")["process_id"]) == self.proc.pid:
                        return True
                    # another server answers on our port: ours is about to exit with "Address already in use"
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RedisServerError(f"redis-server did not answer on port {self.port} within the start timeout")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (Path(self.data_dir) / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the server (a crash, for chaos tests); data on disk stays."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, timeout: float = 10.0) -> "RedisServer":
        self.kill()
        return self.start(timeout)

    def stop(self) -> None:
        """Terminate the server by PID and remove its private directory."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
