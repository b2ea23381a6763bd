"""The environment of a stack's processes: which Redis, broker, emulator and keys they use, and nothing else.

:func:`stack_environ` builds the whole environment of a worker, Flower or client subprocess: this process's
environment without anything that could point it elsewhere (keys, broker, pool and Celery settings), plus the
stack's.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

#: Variables a stack's processes never inherit from the process that starts the stack: keys, where Redis, the
#: broker and the endpoint are, and every setting of gemini-tasks, Celery and Flower.
STACK_PREFIXES = ("GEMINI_API_KEY", "CELERY_", "GEMINI_TASKS_", "FLOWER_")
STACK_NAMES = ("REDIS_URL", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_API_KEY", "REDIS_SENTINEL_MASTER")
#: The ones that point a process somewhere (or hold a key): replaced when this process becomes a stack's
#: client; its other settings (``GEMINI_TASKS_HEAVY``, ...) stay.
POINTERS = ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "GEMINI_TASKS_KEYS_REDIS_URL",
            "GOOGLE_GEMINI_BASE_URL", "GOOGLE_API_KEY", "REDIS_SENTINEL_MASTER")
LOCAL = "127.0.0.1,localhost"
#: the checkout (or site-packages) that holds ``gemini_tasks``: on a subprocess's PYTHONPATH
ROOT = Path(__file__).resolve().parents[2]


def is_stack_variable(name: str) -> bool:
    return name.startswith(STACK_PREFIXES) or name in STACK_NAMES


def clean_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without any stack variable."""
    return {k: v for k, v in (os.environ if base is None else base).items() if not is_stack_variable(k)}


def stack_environ(redis_url: str, emulator_url: str, secrets: Mapping[str, str], *, broker_url: str | None = None,
                  request_timeout: float = 10.0, visibility_timeout: float = 120.0,
                  base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The complete environment of a stack's subprocess.

    ``redis_url``: results and key state (``redis://``, ``rediss://`` or ``sentinel://``); ``broker_url``: the
    broker when it is not that Redis (a RabbitMQ vhost); ``secrets``: ``{GEMINI_API_KEY_…: secret}``, the only
    keys the process holds; ``extra``: more variables, applied last (``GEMINI_TASKS_…`` settings of a test).
    """
    env = clean_environ(base)
    env.update(secrets)
    env.update({
        "REDIS_URL": redis_url,
        "GOOGLE_GEMINI_BASE_URL": emulator_url,
        "GEMINI_TASKS_REQUEST_TIMEOUT": f"{request_timeout:g}",
        "GEMINI_TASKS_VISIBILITY_TIMEOUT": f"{visibility_timeout:g}",
        "NO_PROXY": LOCAL,
        "no_proxy": LOCAL,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    })
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    env.update(extra)
    return env


def entrypoint_environ(tmp_dir: str | os.PathLike[str], **extra: str) -> dict[str, str]:
    """The environment to run the worker image's scripts (``workers/entrypoint.sh``, ``healthcheck.sh``) on this
    host: this process's without keys, Celery or ``WORKER_`` settings, this interpreter's directory first on
    ``PATH`` (its ``celery`` and ``gemini-tasks``), temporary files in ``tmp_dir``, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "GEMINI_API_KEY", "CELERY_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TMPDIR"] = os.fspath(tmp_dir)
    env.update(extra)
    return env


class EnvPatch(Protocol):
    """What :func:`held_keys` needs of pytest's ``monkeypatch``: it sets and deletes, and puts back afterwards."""

    def setenv(self, name: str, value: str, prepend: str | None = None) -> None: ...

    def delenv(self, name: str, raising: bool = True) -> None: ...


@contextlib.contextmanager
def held_keys(patch: EnvPatch, secrets: Mapping[str, str], **variables: str) -> Iterator[None]:
    """Through ``patch`` (pytest's ``monkeypatch``, which restores the environment when the test ends): this
    process holds exactly ``secrets`` as its keys, with ``variables`` set (``REDIS_URL=...``); the settings are
    re-read on entry and on exit."""
    from gemini_tasks.settings import get_settings

    for name in [n for n in os.environ if n.startswith("GEMINI_API_KEY")]:
        patch.delenv(name)
    for name, value in {**secrets, **variables}.items():
        patch.setenv(name, value)
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()


@contextlib.contextmanager
def client_environ(redis_url: str, emulator_url: str, secrets: Mapping[str, str], *, request_timeout: float = 10.0,
                   visibility_timeout: float = 120.0) -> Iterator[os._Environ[str]]:
    """This process as the client (and in-process worker) of a stack: only ``secrets`` as keys, the stack's
    Redis and emulator and timeouts in ``os.environ``, the settings re-read; all put back afterwards."""
    from gemini_tasks.settings import get_settings

    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("GEMINI_API_KEY")]:
        del os.environ[name]
    os.environ.update(secrets)
    os.environ.update({"REDIS_URL": redis_url, "GOOGLE_GEMINI_BASE_URL": emulator_url,
                       "GEMINI_TASKS_REQUEST_TIMEOUT": f"{request_timeout:g}",
                       "GEMINI_TASKS_VISIBILITY_TIMEOUT": f"{visibility_timeout:g}"})
    get_settings.cache_clear()
    try:
        yield os.environ
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
