"""What a worker writes to its log: one line per call (see ``execution._log_call``), never the user's content.

At INFO a worker would otherwise write, per call, the SDK's ``AFC is enabled ...``, the HTTP client's
``HTTP Request: POST ...`` and Celery's ``succeeded in ...: {result}``, whose result is the model's answer and
the request's metadata. Those are quieted here once the worker's logging is set up; a worker started with
``-l DEBUG`` keeps them all.
"""

from __future__ import annotations

import logging
from typing import Any

import celery.app.trace as celery_trace
from celery import signals

#: Celery's success line without ``: %(return_value)s`` (the answer and the metadata)
SUCCESS_LINE = "Task %(name)s[%(id)s] succeeded in %(runtime).3fs"
#: third-party loggers that write one INFO line per request
PER_REQUEST_LOGGERS = ("google_genai.models", "httpx", "httpx2", "httpcore")


def quiet_success_line() -> None:
    """Celery's success line without the task's result."""
    celery_trace.LOG_SUCCESS = SUCCESS_LINE


def quiet(loglevel: int | str | None = None) -> None:
    """Drop the per-request INFO lines of the SDK and the HTTP client, and the result from Celery's line."""
    quiet_success_line()
    if loglevel is None:
        loglevel = logging.getLogger().getEffectiveLevel()
    level = logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel
    if isinstance(level, int) and level <= logging.DEBUG:
        return  # asked for everything
    for name in PER_REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


@signals.after_setup_logger.connect
def _after_setup_logger(*args: Any, loglevel: int | str | None = None, **kwargs: Any) -> None:
    quiet(loglevel)


@signals.worker_init.connect
def _worker_init(*args: Any, **kwargs: Any) -> None:
    quiet()
