"""The environment of a stack's processes: which Redis, broker, emulator and keys they use, and nothing else.

:func:`stack_environ` builds the whole environment of a worker, Flower or client subprocess: this process's
environment without anything that could point it elsewhere (keys, broker, pool and Celery settings), plus the
stack's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

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
