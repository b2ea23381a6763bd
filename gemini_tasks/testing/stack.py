"""A whole stack of real processes on this machine: a private redis-server, the emulator, worker subprocesses,
and this process as their client.

While the stack lives, this process holds the stack's key secrets (and only adds them: nothing else of its
environment changes) and its process-wide Celery app publishes to and reads results from the stack's Redis
(:func:`~gemini_tasks.testing.app_config.celery_app_on`); both are put back when it stops. Workers get exactly
the stack's environment (:func:`~gemini_tasks.testing.environment.stack_environ`), nothing inherited that could
point them elsewhere. Everything is stopped by PID, also when starting failed half-way::

    with Stack(SECRETS, request_timeout=3, visibility_timeout=10) as stack:
        stack.worker(concurrency=4)
        manager = stack.manager()
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from gemini_tasks.emulator.control_client import EmulatorControl
from gemini_tasks.emulator.runner import EmulatorProcess, EmulatorThread
from gemini_tasks.testing.app_config import celery_app_on
from gemini_tasks.testing.environment import stack_environ
from gemini_tasks.testing.lifecycle import StartStop
from gemini_tasks.testing.local_fleet import WorkerProcess
from gemini_tasks.testing.local_redis import RedisServer


@dataclass(eq=False)
class Stack(StartStop):
    """redis-server + emulator + the workers started with :meth:`worker`, and the client app pointed at them.

    ``secrets``: ``{GEMINI_API_KEY_…: secret}``, the keys of the workers and of this process; ``request_timeout``
    and ``visibility_timeout``: the workers' settings; ``persistence`` and ``password``: the redis-server's;
    ``emulator_config``: the emulator's start-up configuration, which runs in a subprocess unless
    ``emulator_in_process``; ``kill_workers``: stop the workers with SIGKILL (after chaos a warm shutdown can wait
    on a broker that went away) instead of a warm shutdown; ``extra_env``: more variables for every worker.
    """

    secrets: Mapping[str, str]
    request_timeout: float = 5.0
    visibility_timeout: float = 30.0
    persistence: bool = False
    password: str | None = None
    emulator_config: dict[str, Any] | None = None
    emulator_in_process: bool = False
    kill_workers: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)
    redis_server: RedisServer | None = field(default=None, init=False)
    emulator: EmulatorProcess | EmulatorThread | None = field(default=None, init=False)
    workers: list[WorkerProcess] = field(default_factory=list, init=False)
    app: Any = field(default=None, init=False)
    _app_ctx: contextlib.AbstractContextManager[Any] | None = field(default=None, init=False)
    _saved_keys: dict[str, str | None] | None = field(default=None, init=False)
    _redis: redis.Redis | None = field(default=None, init=False)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Stack:
        self.redis_server = RedisServer(persistence=self.persistence, password=self.password).start()
        if self.emulator_in_process:
            self.emulator = EmulatorThread(self.emulator_config).start()
        else:
            self.emulator = EmulatorProcess(config=self.emulator_config).start()
        self._hold_keys()
        self._app_ctx = celery_app_on(self.url)
        self.app = self._app_ctx.__enter__()
        return self

    def stop(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.kill() if self.kill_workers else w.stop()
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        if self._app_ctx is not None:
            self._app_ctx.__exit__(None, None, None)
            self._app_ctx = None
        self._release_keys()
        if self.emulator is not None:
            self.emulator.stop()
        if self.redis_server is not None:
            self.redis_server.stop()

    def _hold_keys(self) -> None:
        """This process holds the stack's secrets as well (the client checks them against the workers')."""
        self._saved_keys = {name: os.environ.get(name) for name in self.secrets}
        os.environ.update(self.secrets)

    def _release_keys(self) -> None:
        for name, value in (self._saved_keys or {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_keys = None

    # -- parts ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The stack's Redis: broker, results and key state."""
        if self.redis_server is None:
            raise RuntimeError("stack not started")
        return self.redis_server.url

    @property
    def emulator_url(self) -> str:
        if self.emulator is None or self.emulator.url is None:
            raise RuntimeError("stack not started")
        return self.emulator.url

    @property
    def control(self) -> EmulatorControl:
        return EmulatorControl(self.emulator_url)

    def client(self) -> redis.Redis:
        """A new Redis client of the stack's Redis (the caller closes it)."""
        return redis.Redis.from_url(self.url, socket_timeout=10)

    @property
    def redis(self) -> redis.Redis:
        """The stack's own Redis client (one, made on first use, closed with the stack)."""
        if self._redis is None:
            self._redis = self.client()
        return self._redis

    def env(self, **extra: str) -> dict[str, str]:
        """The whole environment of a worker (or any other process) of this stack, with ``extra`` on top."""
        env = stack_environ(self.url, self.emulator_url, self.secrets, request_timeout=self.request_timeout,
                            visibility_timeout=self.visibility_timeout)
        env.update(self.extra_env)
        env.update(extra)
        return env

    def worker(self, *, queues: str = "interactive,batch", pool: str = "threads", concurrency: int = 4,
               loglevel: str = "INFO", **extra_env: str) -> WorkerProcess:
        """A worker subprocess with exactly :meth:`env`, started (it answered a ping); stopped with the stack."""
        w = WorkerProcess(self.env(**extra_env), inherit_env=False, queues=queues, pool=pool,
                          concurrency=concurrency, loglevel=loglevel)
        self.workers.append(w)
        w.start(timeout=60)
        return w

    def stop_workers(self, since: int = 0) -> None:
        """Stop the workers started after the first ``since`` (as :meth:`stop` would) and forget them: a test's
        workers end with the test, passed or failed, while the ones started before it keep running."""
        started, self.workers = self.workers[since:], self.workers[:since]
        for w in started:
            with contextlib.suppress(Exception):
                if self.kill_workers:
                    w.kill()
                w.stop(timeout=10)  # reaps it and removes its log

    def manager(self, keys: list[str] | None = None, **kw: Any) -> Any:
        """A key manager of this stack's keys (all paid, by default) in a fresh pool on its Redis."""
        from gemini_tasks.keys import AdvancedApiKeyManager

        kw.setdefault("pool", "s" + uuid.uuid4().hex[:10])
        kw.setdefault("paid_keys", "all")
        return AdvancedApiKeyManager(keys or list(self.secrets), redis_url=self.url, **kw)

    def worker_logs(self) -> str:
        """Every worker's log so far, one after the other."""
        return "\n".join(w.log_path.read_text(errors="replace") for w in self.workers if w.log_path.exists())
