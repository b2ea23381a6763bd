"""What a failed Gemini call is: its kinds, :class:`CallError`, the exceptions that carry it, and its wording.

Kinds (``CallError.kind``):

``rate_limited``
    HTTP 429. ``quota_kind`` says which quota ran out (``day``, ``tokens``, ``minute``, ``limit_zero``,
    ``unknown``); ``retry_after`` is the server's ``RetryInfo.retryDelay`` (or the "Please retry in Xs" of
    the message) *as sent* -- for a daily quota it is often short and misleading, which is why
    ``quota_kind`` is reported separately and the key manager decides the bench time.
``invalid_key``
    The key itself is unusable: 400 ``API_KEY_INVALID``, any 401, a 403 whose ``ErrorInfo.reason`` (or
    wording) says the key or its consumer is blocked, suspended, unregistered or the API is disabled for
    its project. A 403 about a *file* (someone else's upload, or one that expired) is not a key problem.
``persistent``
    The request is wrong and will fail again the same way (other 4xx, local programming errors).
``transient``
    Worth retrying: 408, 499, 5xx, transport errors, timeouts, malformed (non-JSON) bodies, anything
    unknown. Unknown exceptions are transient on purpose: the error-retry budget bounds the cost, and
    the original library's intent was to retry them (its NameError turned them into lost tasks).
``blocked``
    The call succeeded but produced nothing usable: the prompt or candidate was stopped by a safety /
    recitation / blocklist filter, or the response was empty. Not retried; the key is fine.

No message produced here ever contains an API key: anything shaped like a Google API key
(``AIza`` + 35 characters), the ``api_key:...`` consumer ids Google quotes, and any string passed in
``secrets`` are replaced by ``[REDACTED]``.

The pieces around it, one module each: :mod:`.classification` (``classify``: an exception -> ``CallError``),
:mod:`.redaction` (keys out of every message), :mod:`.api_core_errors` (``to_api_core``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .redaction import redact

RATE_LIMITED = "rate_limited"
INVALID_KEY = "invalid_key"
PERSISTENT = "persistent"
TRANSIENT = "transient"
BLOCKED = "blocked"
KINDS = frozenset({RATE_LIMITED, INVALID_KEY, PERSISTENT, TRANSIENT, BLOCKED})

QUOTA_DAY = "day"
QUOTA_TOKENS = "tokens"
QUOTA_MINUTE = "minute"
QUOTA_LIMIT_ZERO = "limit_zero"
QUOTA_UNKNOWN = "unknown"

#: ``CallError.status`` of a ``blocked`` error: the prompt/candidate was filtered, or nothing came back.
STATUS_BLOCKED = "BLOCKED"
STATUS_EMPTY = "EMPTY"
#: ``CallError.status`` of transport errors (they have no HTTP status of their own).
STATUS_TIMEOUT = "DEADLINE_EXCEEDED"
STATUS_UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class CallError:
    """What went wrong with one Gemini call, in a form that crosses process boundaries.

    ``code`` is the HTTP status (None when no HTTP error was answered); ``status`` the google.rpc status
    name (``RESOURCE_EXHAUSTED``; the reason phrase for a non-JSON body), or ``BLOCKED``/``EMPTY`` for
    blocked responses, ``DEADLINE_EXCEEDED``/``UNAVAILABLE`` for transport errors, ``MALFORMED_RESPONSE``
    for an unparseable body, ``LOCAL_ERROR`` for our own persistent failures, ``UNKNOWN`` otherwise;
    ``reason`` the ``ErrorInfo.reason``, the block/finish reason of a blocked response, or the exception
    class name when no HTTP error was answered. ``message`` is already redacted.
    """

    kind: str
    code: int | None = None
    status: str | None = None
    message: str = ""
    retry_after: float | None = None
    quota_kind: str | None = None
    quota_id: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown CallError kind {self.kind!r}; expected one of {sorted(KINDS)}")

    @property
    def retryable(self) -> bool:
        """Whether trying again (after ``retry_after``, maybe with another key) can succeed."""
        return self.kind in (RATE_LIMITED, TRANSIENT)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (for task results and Celery messages)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallError:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so newer senders do not break readers."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if values.get("retry_after") is not None:
            values["retry_after"] = float(values["retry_after"])
        if values.get("code") is not None:
            values["code"] = int(values["code"])
        return cls(**values)

    def __str__(self) -> str:
        return error_message(self)


class GeminiCallFailed(Exception):
    """Raised by this layer when a call must be treated as failed; carries the classified :class:`CallError`.

    Picklable (its only argument is the frozen ``CallError``), unlike the SDK's exceptions.
    """

    def __init__(self, error: CallError) -> None:
        super().__init__(error)
        self.error = error

    def __str__(self) -> str:
        return error_message(self.error)


class InvalidPromptError(ValueError):
    """A prompt_data dict that must not be enqueued (or cannot be built); the message names the field.

    Raised by validation before anything is enqueued, and by content building for the same defects.
    """

    def __init__(
        self, message: str, *, field: str | None = None, problems: list[tuple[str, str]] | None = None
    ) -> None:
        self.field = field
        #: every ``(field, message)`` found, when validation collected several
        self.problems: list[tuple[str, str]] = list(problems) if problems else ([(field, message)] if field else [])
        super().__init__(f"{field}: {message}" if field else message)

    def __reduce__(self):  # keep field and problems across pickling
        return (_rebuild_invalid_prompt, (str(self), self.field, self.problems))


def _rebuild_invalid_prompt(text: str, field: str | None, problems: list[tuple[str, str]]) -> InvalidPromptError:
    error = InvalidPromptError(text, problems=problems)
    error.field = field
    return error


# ------------------------------------------------------------------------------------------------ messages


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 100 else f"{round(seconds)}s"


def error_message(err: CallError, *, secrets: Iterable[str] = ()) -> str:
    """The error string of a result tuple; its first words say the kind.

    The original README's users test ``"exhausted" in error.lower()`` (rate limits) and
    ``"persistent" in error.lower()`` (non-retryable API errors); both keep working.
    """
    head_parts = [str(p) for p in (err.code, err.status) if p is not None]
    head = " ".join(head_parts)
    detail = f": {err.message}" if err.message else ""
    if err.kind == RATE_LIMITED:
        extras = [head or "429 RESOURCE_EXHAUSTED"]
        if err.quota_kind and err.quota_kind != QUOTA_UNKNOWN:
            label = {
                QUOTA_DAY: "daily quota",
                QUOTA_MINUTE: "per-minute quota",
                QUOTA_TOKENS: "input-token quota",
                QUOTA_LIMIT_ZERO: "quota limit is 0",
            }.get(err.quota_kind, f"{err.quota_kind} quota")
            extras.append(f"{label} {err.quota_id}" if err.quota_id else label)
        if err.retry_after is not None:
            extras.append(f"retry after {_fmt_seconds(err.retry_after)}")
        text = f"Resource exhausted ({', '.join(extras)}){detail}"
    elif err.kind == INVALID_KEY:
        inner = ", ".join(p for p in (head, err.reason) if p)
        text = f"Invalid API key ({inner}){detail}" if inner else f"Invalid API key{detail}"
    elif err.kind == PERSISTENT:
        if err.code is None:  # failed on our side (bad input, a bug), not answered by the API
            inner = ", ".join(p for p in (err.status, err.reason) if p) or "request error"
            text = f"Persistent error ({inner}){detail}"
        else:
            text = f"Persistent API error ({head}){detail}"
    elif err.kind == TRANSIENT:
        if err.code is None and err.reason:
            inner = ", ".join(p for p in (err.status, err.reason) if p)
        else:
            inner = head or "unknown"
        text = f"Transient error ({inner}){detail}"
    else:  # BLOCKED
        reason = err.reason or "UNKNOWN"
        if err.status == STATUS_EMPTY:
            text = f"Empty response (finish reason {reason}){detail}"
        else:
            text = f"Response blocked by safety filters ({reason}){detail}"
    return redact(text, secrets)

