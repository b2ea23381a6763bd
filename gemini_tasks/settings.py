"""Every setting gemini-tasks reads from the environment, in one place.

Values come from the process environment, then from a ``.env`` file (python-dotenv) that never overrides a
variable already set. Nothing here is read at import time except by :func:`load_settings`, so tests and
embedding applications can change the environment before the first use.

The SDK's own variables are honoured rather than duplicated: the endpoint is ``GOOGLE_GEMINI_BASE_URL``
(read by google-genai itself; we never pass a ``base_url``), which lets the emulator or a proxy stand in
for Google.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

from dotenv import find_dotenv, load_dotenv

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
#: Seconds between two refreshes of the broker messages a live worker holds (Redis broker;
#: :mod:`gemini_tasks.worker.holding` does it). A constant, not a setting: workers configured with different
#: visibility timeouts must agree on it, or they would restore each other's live messages.
REFRESH_SECONDS = 2.0
#: The shortest visibility timeout accepted: a live worker's entries are never older than one refresh plus
#: a stall of a few seconds (a slow Redis, a busy host) before a sweep would take them.
MIN_VISIBILITY_TIMEOUT = 5 * REFRESH_SECONDS
#: Seconds after its last refresh that a message held by a dead worker is redelivered (Redis broker). Live
#: workers refresh what they hold every :data:`REFRESH_SECONDS`, so this no longer has to exceed the longest
#: call: it is the time to notice a dead worker.
DEFAULT_VISIBILITY_TIMEOUT = 25.0
KEY_ENV_PREFIX = "GEMINI_API_KEY"
_KEY_NAME_RE = re.compile(r"^GEMINI_API_KEY(?:_[A-Za-z0-9_]+)?$")


def load_env_file() -> None:
    """Load ``.env`` from the working directory upwards, never overriding what is already set."""
    path = find_dotenv(usecwd=True)
    if path:
        load_dotenv(path, override=False)


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    return value


def _port(name: str, default: int) -> int:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ValueError(f"{name} must be a port number (0-65535), got {raw!r}")
    return int(raw)


def _switch(name: str) -> str:
    """``off`` (unset or empty), ``auto`` or ``on`` from the usual spellings; anything else is refused."""
    raw = (os.environ.get(name) or "").strip().lower()
    if raw == "auto":
        return "auto"
    if raw in ("1", "on", "true", "yes"):
        return "on"
    if raw in ("", "0", "off", "false", "no"):
        return "off"
    raise ValueError(f"{name} must be auto, 1 or 0, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """A snapshot of the configuration contract (see DESIGN.md, "Configuration contract")."""

    redis_url: str = DEFAULT_REDIS_URL
    #: whether ``REDIS_URL`` was set at all (``gemini-tasks demo`` starts a private Redis when it was not)
    redis_configured: bool = False
    broker_url: str = DEFAULT_REDIS_URL
    result_backend: str = DEFAULT_REDIS_URL
    #: Redis used for key-manager state; defaults to ``REDIS_URL``.
    keys_redis_url: str = DEFAULT_REDIS_URL
    #: Prefix under which one key pool lives in Redis (hash-tagged for Redis Cluster).
    pool: str = "default"
    #: SDK request timeout in seconds. The SDK's default is no timeout at all; we always set one.
    request_timeout: float = 120.0
    #: The SDK's endpoint override, as google-genai reads it (None: Google's own endpoint).
    gemini_base_url: str | None = None
    #: API version the SDK speaks; pinned so an SDK upgrade does not silently change URLs.
    api_version: str = "v1beta"
    #: Broker visibility timeout: how long a message held by a worker that died stays invisible (Redis).
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    #: Master name for ``sentinel://`` URLs (``REDIS_SENTINEL_MASTER``).
    sentinel_master: str = "mymaster"
    #: Password of the Sentinels themselves, when they demand one (``REDIS_SENTINEL_PASSWORD``).
    sentinel_password: str | None = None
    #: Per-call timeout of Flex-tier calls in seconds (``GEMINI_TASKS_FLEX_TIMEOUT``; Google quotes 1-15 min).
    flex_timeout: float = 900.0
    #: A JSON price table replacing the default one (``GEMINI_TASKS_PRICES``, a file path).
    prices_path: str | None = None
    #: Module of operator overrides for the Celery settings (``GEMINI_TASKS_CELERY_CONFIG``).
    celery_config_module: str = "celeryconfig"
    #: The metrics exporter: port, bind address, and pools (comma-separated, ``all`` = every pool in Redis;
    #: unset: ``GEMINI_TASKS_POOL``).
    metrics_port: int = 9808
    metrics_addr: str = "0.0.0.0"
    metrics_pools: str | None = None
    #: ``gemini-tasks`` shows tracebacks of unexpected errors (``GEMINI_TASKS_DEBUG=1``).
    debug: bool = False
    #: worker call lines include the start of the prompt and of the answer (``GEMINI_TASKS_LOG_CONTENT=1``)
    log_content: bool = False
    #: Seconds a key lease lives unless its holder renews it (every quarter of it, while the call runs): a dead
    #: worker's keys and max_workers slots come back within this, whatever the call timeout.
    lease_ttl: float = 15.0
    #: where a worker's Gemini calls wait on the network (``GEMINI_TASKS_ASYNC_CALLS``): ``off`` (the default: each
    #: call blocks its own thread), ``auto`` (an event loop per process in a threads worker of more than one slot,
    #: :mod:`gemini_tasks.worker.async_calls`) or ``on``
    async_calls: str = "off"
    key_names: tuple[str, ...] = field(default_factory=tuple)


def key_name_order(name: str) -> tuple[int, int, str]:
    """Sort key for key names: ``GEMINI_API_KEY``, then ``_2`` before ``_10`` (numbers compare as numbers)."""
    suffix = name[len(KEY_ENV_PREFIX) :].lstrip("_")
    if suffix == "":
        return (0, 0, "")
    if suffix.isdigit():
        return (1, int(suffix), "")
    return (2, 0, suffix)


def key_env_names(environ: dict[str, str] | None = None) -> list[str]:
    """Names of the ``GEMINI_API_KEY*`` variables that hold a plausible secret, in :func:`key_name_order`."""
    env = os.environ if environ is None else environ
    names = [n for n, v in env.items() if _KEY_NAME_RE.match(n) and v and len(v.strip()) > 10]
    return sorted(names, key=key_name_order)


def load_settings() -> Settings:
    """Read the configuration contract from the environment (after loading ``.env``)."""
    load_env_file()
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    return Settings(
        redis_url=redis_url,
        redis_configured=bool(os.environ.get("REDIS_URL")),
        broker_url=os.environ.get("CELERY_BROKER_URL") or redis_url,
        result_backend=os.environ.get("CELERY_RESULT_BACKEND") or redis_url,
        keys_redis_url=os.environ.get("GEMINI_TASKS_KEYS_REDIS_URL") or redis_url,
        pool=os.environ.get("GEMINI_TASKS_POOL") or "default",
        request_timeout=_float("GEMINI_TASKS_REQUEST_TIMEOUT", 120.0),
        gemini_base_url=os.environ.get("GOOGLE_GEMINI_BASE_URL") or None,
        api_version=os.environ.get("GEMINI_TASKS_API_VERSION") or "v1beta",
        visibility_timeout=_float("GEMINI_TASKS_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT),
        sentinel_master=os.environ.get("REDIS_SENTINEL_MASTER") or "mymaster",
        sentinel_password=os.environ.get("REDIS_SENTINEL_PASSWORD") or None,
        flex_timeout=_float("GEMINI_TASKS_FLEX_TIMEOUT", 900.0),
        prices_path=os.environ.get("GEMINI_TASKS_PRICES") or None,
        celery_config_module=os.environ.get("GEMINI_TASKS_CELERY_CONFIG") or "celeryconfig",
        metrics_port=_port("GEMINI_TASKS_METRICS_PORT", 9808),
        metrics_addr=os.environ.get("GEMINI_TASKS_METRICS_ADDR") or "0.0.0.0",
        metrics_pools=os.environ.get("GEMINI_TASKS_METRICS_POOLS") or None,
        debug=(os.environ.get("GEMINI_TASKS_DEBUG") or "").strip().lower() not in ("", "0", "false", "no"),
        log_content=(os.environ.get("GEMINI_TASKS_LOG_CONTENT") or "").strip().lower() not in ("", "0", "false", "no"),
        lease_ttl=_float("GEMINI_TASKS_LEASE_TTL", 15.0),
        async_calls=_switch("GEMINI_TASKS_ASYNC_CALLS"),
        key_names=tuple(key_env_names()),
    )


class DeliverySettingsError(ValueError):
    """A combination of settings that would deliver (and pay for) one call twice; refused at start."""


def check_delivery_settings(settings: Settings) -> None:
    """Refuse settings under which a live worker's message could be handed to a second worker.

    A Redis broker redelivers a message whose holder has not refreshed it for ``visibility_timeout`` seconds;
    live workers refresh every :data:`REFRESH_SECONDS`. A timeout that is not several refreshes long would take
    messages from live, merely busy workers (their calls paid twice). The call timeout no longer matters here:
    a call of any length stays with the worker that runs it.
    """
    if settings.visibility_timeout < MIN_VISIBILITY_TIMEOUT:
        raise DeliverySettingsError(
            f"GEMINI_TASKS_VISIBILITY_TIMEOUT={settings.visibility_timeout:g} is too short: live workers refresh "
            f"the messages they hold every {REFRESH_SECONDS:g}s, and a timeout under {MIN_VISIBILITY_TIMEOUT:g}s "
            f"would hand a busy worker's calls (GEMINI_TASKS_REQUEST_TIMEOUT={settings.request_timeout:g}) to a "
            f"second worker and pay for them twice. Use at least {MIN_VISIBILITY_TIMEOUT:g} (default "
            f"{DEFAULT_VISIBILITY_TIMEOUT:g}).")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Call ``get_settings.cache_clear()`` after changing the env."""
    return load_settings()
