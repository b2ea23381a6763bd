"""Starting the emulator from tests and benchmarks: in a subprocess or in a background thread.

`EmulatorProcess` is for anything that must not share the GIL or the process with the emulator
(Celery workers, benchmarks, chaos tests).  It runs in its own process group so `stop()` can kill
it and anything it spawned by PID, even when start-up failed half-way.  `EmulatorThread` is the
cheap one for unit tests: same server, own event loop, in-process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from .control_client import EmulatorControl

READY_PREFIX = "emulator listening on "
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class EmulatorStartError(RuntimeError):
    """The emulator did not report that it was listening in time."""


class EmulatorProcess:
    """`python -m gemini_tasks.emulator --port 0` as a subprocess; a context manager.

    >>> with EmulatorProcess(config={"minute_seconds": 2}) as emu:
    ...     client = genai.Client(api_key="k", http_options={"base_url": emu.url, ...})
    """

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 20.0,
        python: str | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.extra_args = list(extra_args or [])
        self.env = env
        self.start_timeout = start_timeout
        self.python = python or sys.executable
        self.proc: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self._config_path: str | None = None
        self._stderr_file: Any = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def control(self) -> EmulatorControl:
        if self.url is None:
            raise RuntimeError("emulator not started")
        return EmulatorControl(self.url)

    def start(self) -> EmulatorProcess:
        cmd = [self.python, "-m", "gemini_tasks.emulator", "--host", self.host, "--port", str(self.port)]
        if self.config is not None:
            fd, self._config_path = tempfile.mkstemp(prefix="emulator-", suffix=".json")
            with os.fdopen(fd, "w") as fh:
                json.dump(self.config, fh)
            cmd += ["--config", self._config_path]
        cmd += self.extra_args
        env = dict(os.environ)
        env.update(self.env or {})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._stderr_file = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,  # own process group: stop() kills the group by PID
        )
        try:
            self.url = self._await_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _await_ready(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        found: list[str] = []
        done = threading.Event()
        stdout = self.proc.stdout

        def reader() -> None:
            for line in stdout:  # keep draining after the banner so the child never blocks
                if not found and line.startswith(READY_PREFIX):
                    found.append(line[len(READY_PREFIX) :].strip())
                    done.set()
            done.set()

        threading.Thread(target=reader, name="emulator-stdout", daemon=True).start()
        if not done.wait(self.start_timeout) or not found:
            raise EmulatorStartError(
                f"emulator did not start within {self.start_timeout}s "
                f"(exit code {self.proc.poll()}): {self.stderr_tail()}"
            )
        return found[0]

    def stderr_tail(self, chars: int = 4000) -> str:
        if self._stderr_file is None:
            return ""
        try:
            self._stderr_file.flush()
            self._stderr_file.seek(0)
            return self._stderr_file.read()[-chars:]
        except (OSError, ValueError):
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL if it lingers; always reaps the child."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)  # pgid == pid: start_new_session=True
                except ProcessLookupError:
                    break
                except PermissionError:
                    proc.send_signal(sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None:
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
            if proc.stdout:
                proc.stdout.close()
        if self._config_path:
            try:
                os.unlink(self._config_path)
            except OSError:
                pass
            self._config_path = None
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class EmulatorThread:
    """The emulator on its own asyncio loop in a daemon thread of this process."""

    def __init__(self, config: dict[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.url: str | None = None
        self.app: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def control(self) -> EmulatorControl:
        if self.url is None:
            raise RuntimeError("emulator not started")
        return EmulatorControl(self.url)

    @property
    def emulator(self) -> Any:
        """The in-process Emulator state object (read it only; mutate through `control`)."""
        from .server import EMULATOR

        return self.app[EMULATOR] if self.app is not None else None

    def start(self, timeout: float = 10.0) -> EmulatorThread:
        self._thread = threading.Thread(target=self._main, name="gemini-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise EmulatorStartError(f"emulator thread did not start within {timeout}s")
        if self._error is not None:
            raise EmulatorStartError(f"emulator thread failed: {self._error!r}") from self._error
        return self

    def _main(self) -> None:
        from .server import create_app, start_site

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.app = create_app(self.config)
                runner, self.url = await start_site(self.app, self.host, self.port)
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        try:
            asyncio.run(main())
        except BaseException as exc:  # surface loop crashes to start()/stop() callers
            self._error = exc
            self._ready.set()

    def stop(self, timeout: float = 5.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
