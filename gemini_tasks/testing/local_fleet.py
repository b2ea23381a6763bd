"""Real worker processes on this machine: ``celery -A gemini_tasks worker`` as a child, stopped by PID.

Used by ``gemini-tasks demo`` (the embedded default), by chaos tests that SIGKILL a worker mid-call, and by
the benchmarks. Each worker gets a unique node name so several can run side by side.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from celery import Celery


class WorkerStartError(RuntimeError):
    """The worker process exited or did not answer a ping in time."""


class WorkerProcess:
    """One Celery worker process (its own process group) consuming the given queues."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        queues: str = "interactive,batch",
        pool: str = "threads",
        concurrency: int = 8,
        name: str | None = None,
        loglevel: str = "WARNING",
        extra_args: list[str] | None = None,
        inherit_env: bool = True,
    ) -> None:
        #: the worker's environment: this process's with ``env`` on top, or exactly ``env`` (a stack's, from
        #: :func:`gemini_tasks.testing.environment.stack_environ`) when ``inherit_env`` is False
        self.env = {**os.environ, **(env or {})} if inherit_env else dict(env or {})
        self.queues = queues
        self.pool = pool
        self.concurrency = concurrency
        self.name = name or f"gt-{uuid.uuid4().hex[:8]}@%h"
        self.loglevel = loglevel
        self.extra_args = extra_args or []
        fd, log_path = tempfile.mkstemp(prefix="gemini-tasks-worker-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_path)
        #: keep the log file after stop() (default: removed with the worker)
        self.keep_log = False
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def args(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "gemini_tasks", "worker", "-Q", self.queues, "-P", self.pool,
                "-c", str(self.concurrency), "-n", self.name, "-l", self.loglevel, "-E",
                "--without-gossip", "--without-mingle", *self.extra_args]

    def start(self, timeout: float = 30.0) -> "WorkerProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.wait_ready(timeout)
        return self

    def broker_url(self) -> str:
        """The broker this worker uses (from its own environment, as its settings would read it)."""
        from gemini_tasks.settings import DEFAULT_REDIS_URL

        return self.env.get("CELERY_BROKER_URL") or self.env.get("REDIS_URL") or DEFAULT_REDIS_URL

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the worker answers a ping sent through its own broker."""
        from celery import Celery

        app = Celery("gemini-tasks-ping", broker=self.broker_url())
        app.conf.update(accept_content=["json"], task_serializer="json", result_serializer="json")
        if self.broker_url().startswith("sentinel"):  # kombu needs the master's name beside the URL
            app.conf.broker_transport_options = {"master_name": self.env.get("REDIS_SENTINEL_MASTER") or "mymaster"}
        try:
            self.await_ping(app, timeout)
        finally:
            app.close()

    def await_ping(self, app: Celery, timeout: float) -> None:
        """Block until this worker answers a ping sent through ``app`` (a Celery app on its broker); stop it and
        raise :class:`WorkerStartError` when it exits first or does not answer within ``timeout`` seconds."""
        node = self.name.replace("%h", os.uname().nodename)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise WorkerStartError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                replies = app.control.ping(destination=[node], timeout=0.5) or []
            except Exception:  # noqa: BLE001 - the broker may still be starting
                replies = []
            if any(node in r for r in replies):
                return
            time.sleep(0.2)
        self.stop()
        raise WorkerStartError(f"worker {node} did not answer a ping within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it lingers; always reaps the process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if not self.keep_log:  # runs leave nothing in /tmp
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "WorkerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
