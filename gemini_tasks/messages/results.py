"""How a request comes back: a JSON result dict on success, :class:`TaskFailed` on an error.

A success is a dict with ``"ok": True``, the ``key_id`` and ``model`` of the call, ``latency_s``, ``task_id``,
``metadata`` and what the call produced (``text`` and ``usage``; ``response`` with ``return_response``; for
speech an ``audio_ref`` to a :mod:`blob <gemini_tasks.messages.blobs>` and its format).
"""

from __future__ import annotations

from typing import Any


class TaskFailed(Exception):
    """A request that ends in an error. ``info`` is JSON-safe: kind, key_id, metadata, and the classified error.

    The message's first words name the kind ("All keys exhausted", "Persistent API error", ...), as the
    original library's users test with ``"exhausted" in error.lower()``.
    """

    def __init__(self, message: str, info: dict[str, Any] | None = None) -> None:
        super().__init__(message, info or {})
        self.message = message
        self.info = info or {}

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        # what Celery's log line shows: the kind and the message, never the metadata the info carries
        return f"TaskFailed({self.info.get('kind')!r}, {self.message[:300]!r})"
