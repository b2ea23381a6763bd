"""A real Flower process (``celery -A gemini_tasks flower``, basic auth) for tests, asked over its HTTP API."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any

from gemini_tasks.testing.environment import ROOT
from gemini_tasks.testing.lifecycle import StartStop
from gemini_tasks.testing.local_redis import free_port

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # Flower is always local


class Flower(StartStop):
    """Flower on a free loopback port with basic auth, started with exactly ``env`` (a stack's environment).

    ``with Flower(env) as fl: fl.get_json("/api/workers")``; without ``password`` a random one is made.
    """

    def __init__(self, env: Mapping[str, str], *, user: str = "operator", password: str | None = None,
                 inspect_timeout_ms: int = 2000) -> None:
        self.user = user
        self.password = password or "flower-" + uuid.uuid4().hex[:12]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        # credentials as docker-compose.yml passes them: FLOWER_BASIC_AUTH in the environment, which Flower reads
        # as its --basic-auth option, so the password never shows on a command line (ps, /proc/<pid>/cmdline)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "gemini_tasks", "flower", f"--port={self.port}",
             "--address=127.0.0.1", f"--inspect_timeout={inspect_timeout_ms}"],
            env={**env, "FLOWER_BASIC_AUTH": f"{self.user}:{self.password}"}, stdout=self.log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=str(ROOT))

    @property
    def auth(self) -> tuple[str, str]:
        return self.user, self.password

    def get(self, path: str, auth: tuple[str, str] | None | bool = True) -> tuple[int, str]:
        """``(status, body)`` of a GET; ``auth``: True for this Flower's credentials, None for none, or a pair."""
        req = urllib.request.Request(self.url + path)
        credentials = self.auth if auth is True else auth or None
        if credentials:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with _OPENER.open(req, timeout=10) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)

    def start(self) -> Flower:
        """The process runs from construction on; starting is waiting until it answers."""
        return self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> Flower:
        """Block until ``/healthcheck`` answers; raises AssertionError with Flower's log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"flower exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.get("/healthcheck", auth=None)[0] == 200:
                    return self
            time.sleep(0.3)
        raise AssertionError(f"flower did not start:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM its process group, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if not self.log.closed:
            self.log.close()

