"""Turning whatever a Gemini call raised into one small, picklable, JSON-safe verdict.

Why this exists: the google-genai SDK raises its own ``APIError`` family for HTTP errors and lets transport
errors (httpx2) escape unwrapped. Neither survives a process boundary intact (``APIError`` pickles back as a
bare ``APIError`` holding an ``httpx2.Response``), and neither says what the *key manager* needs to know:
was this a rate limit (and which quota, and for how long), is the key itself bad, or will retrying help?
:func:`classify` answers that once, here, so that tasks, the key manager and the result strings agree.

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
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from google.api_core import exceptions as core_exceptions
from google.genai import errors as genai_errors

logger = logging.getLogger("gemini_tasks")

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

#: ``ErrorInfo.reason`` values that condemn the key (or its project), not the request.
INVALID_KEY_REASONS = frozenset(
    {
        "API_KEY_INVALID",
        "API_KEY_EXPIRED",
        "API_KEY_SERVICE_BLOCKED",
        "API_KEY_HTTP_REFERRER_BLOCKED",
        "API_KEY_IP_ADDRESS_BLOCKED",
        "API_KEY_ANDROID_APP_BLOCKED",
        "API_KEY_IOS_APP_BLOCKED",
        "CONSUMER_SUSPENDED",
        "CONSUMER_INVALID",
        "SERVICE_DISABLED",
        "BILLING_DISABLED",
    }
)
# Wordings seen when ErrorInfo is missing (403 for a missing/blocked/suspended key; 400 for a bad one).
_INVALID_KEY_PATTERNS = re.compile(
    r"API key not valid|API key expired|unregistered callers|has been suspended"
    r"|API_KEY_INVALID|API_KEY_SERVICE_BLOCKED|CONSUMER_SUSPENDED"
    r"|Requests to this API .* are blocked",
    re.IGNORECASE | re.DOTALL,
)
# A 403 about a file means "not yours / gone", never "your key is bad".
_FILE_PERMISSION_PATTERN = re.compile(r"\bfiles?\b", re.IGNORECASE)

_MAX_MESSAGE_CHARS = 2000
_REDACTED = "[REDACTED]"
_GOOGLE_KEY_RE = re.compile(r"AIza[0-9A-Za-z_\-]{35}")
_CONSUMER_KEY_RE = re.compile(r"(api_key:)[^\s'\"\],}]+")
_LIMIT_ZERO_RE = re.compile(r"\blimit:\s*0(?![\d.])")
_RETRY_IN_RE = re.compile(r"retry in\s+((?:\d+(?:\.\d+)?\s*(?:ms|h|m|s)\s*)+)", re.IGNORECASE)
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# HTTP status -> the google.rpc status name, for errors whose body did not carry one.
_HTTP_TO_RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


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


# --------------------------------------------------------------------------------------------- redaction


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove API keys from ``text``: Google-shaped keys, ``api_key:...`` consumer ids, and ``secrets``."""
    if not text:
        return text
    for secret in sorted({s for s in secrets if s and len(s.strip()) >= 4}, key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
        stripped = secret.strip()
        if stripped != secret:
            text = text.replace(stripped, _REDACTED)
    text = _GOOGLE_KEY_RE.sub(_REDACTED, text)
    text = _CONSUMER_KEY_RE.sub(r"\1" + _REDACTED, text)
    return text


def _clean_message(text: Any, secrets: Iterable[str]) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        try:
            text = json.dumps(text, default=str)
        except (TypeError, ValueError):
            text = str(text)
    text = redact(text.strip(), secrets)
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[:_MAX_MESSAGE_CHARS] + "...[truncated]"
    return text


# ----------------------------------------------------------------------------------------- parsing helpers


def parse_duration(value: Any) -> float | None:
    """Seconds from a proto Duration (``"7s"``, ``"0.5s"``, ``{"seconds": 7, "nanos": 5e8}``) or a number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART_RE.findall(text)
        if parts and _DURATION_PART_RE.sub("", text).strip() == "":
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
        else:
            try:
                seconds = float(text)
            except ValueError:
                return None
    elif isinstance(value, Mapping):
        try:
            seconds = float(value.get("seconds", 0) or 0) + float(value.get("nanos", 0) or 0) / 1e9
        except (TypeError, ValueError):
            return None
    else:
        return None
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return None
    return seconds


def _retry_in_from_message(message: str) -> float | None:
    match = _RETRY_IN_RE.search(message or "")
    return parse_duration(match.group(1)) if match else None


def _error_details(exc: genai_errors.APIError) -> list[dict[str, Any]]:
    """The ``error.details`` list of the body (``e.details`` is the whole body, not this list)."""
    body = getattr(exc, "details", None)
    if not isinstance(body, Mapping):
        return []
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, Mapping) else None
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, Mapping)]


def _detail_type(detail: Mapping[str, Any]) -> str:
    return str(detail.get("@type", "")).rsplit(".", 1)[-1]


def _quota_kind(violations: list[Mapping[str, Any]], message: str) -> tuple[str, str | None]:
    """Pick the most constraining quota among the violations: a zero limit, then daily, tokens, minute."""
    ids = [str(v.get("quotaId") or v.get("quota_id") or "") for v in violations]
    metrics = [str(v.get("quotaMetric") or v.get("quota_metric") or "") for v in violations]
    values = [str(v.get("quotaValue") or v.get("quota_value") or "") for v in violations]

    def first(predicate) -> str | None:
        for qid, metric, value in zip(ids, metrics, values):
            if predicate(qid, metric, value):
                return qid or metric or None
        return None

    if _LIMIT_ZERO_RE.search(message or "") or any(v.strip() == "0" for v in values):
        return QUOTA_LIMIT_ZERO, first(lambda q, m, v: v.strip() == "0") or (ids[0] if ids and ids[0] else None)

    def is_day(q: str, m: str, _v: str) -> bool:
        text = f"{q} {m}".lower()
        return "perday" in text or "daily" in text or "per_day" in text

    def is_tokens(q: str, m: str, _v: str) -> bool:
        return "token" in f"{q} {m}".lower()

    def is_minute(q: str, m: str, _v: str) -> bool:
        text = f"{q} {m}".lower()
        return "perminute" in text or "per_minute" in text

    if violations:
        for kind, predicate in ((QUOTA_DAY, is_day), (QUOTA_TOKENS, is_tokens), (QUOTA_MINUTE, is_minute)):
            hit = first(predicate)
            if hit is not None:
                return kind, hit
        return QUOTA_UNKNOWN, (ids[0] or None)
    # No QuotaFailure detail: fall back to the wording of the message.
    for kind, predicate in ((QUOTA_DAY, is_day), (QUOTA_TOKENS, is_tokens), (QUOTA_MINUTE, is_minute)):
        if predicate(message or "", "", ""):
            return kind, None
    return QUOTA_UNKNOWN, None


# ------------------------------------------------------------------------------------------ classification


def _classify_api_error(exc: genai_errors.APIError, secrets: Iterable[str]) -> CallError:
    code = exc.code if isinstance(exc.code, int) else None
    raw_status = exc.status if isinstance(exc.status, str) else None
    # A non-JSON body makes the SDK put the reason phrase ("Bad Gateway") in status; prefer the rpc name.
    status = raw_status if raw_status and raw_status.isupper() and " " not in raw_status else None
    if status is None and code is not None:
        status = _HTTP_TO_RPC_STATUS.get(code, raw_status)
    raw_message = exc.message if exc.message is not None else str(exc)
    message = _clean_message(raw_message, secrets)
    details = _error_details(exc)

    reason: str | None = None
    violations: list[Mapping[str, Any]] = []
    retry_after: float | None = None
    for detail in details:
        dtype = _detail_type(detail)
        if dtype == "ErrorInfo" and reason is None:
            reason = str(detail.get("reason")) if detail.get("reason") else None
        elif dtype == "QuotaFailure":
            violations.extend(v for v in detail.get("violations", []) or [] if isinstance(v, Mapping))
        elif dtype == "RetryInfo" and retry_after is None:
            retry_after = parse_duration(detail.get("retryDelay", detail.get("retry_delay")))

    def make(kind: str, **extra: Any) -> CallError:
        return CallError(kind=kind, code=code, status=status, message=message, reason=reason, **extra)

    text_for_match = raw_message if isinstance(raw_message, str) else message
    if code == 429:
        if retry_after is None:
            retry_after = _retry_in_from_message(text_for_match)
        quota_kind, quota_id = _quota_kind(violations, text_for_match)
        return make(RATE_LIMITED, retry_after=retry_after, quota_kind=quota_kind, quota_id=quota_id)
    if code == 401:
        return make(INVALID_KEY)
    if code == 400 and (reason in INVALID_KEY_REASONS or _INVALID_KEY_PATTERNS.search(text_for_match or "")):
        return make(INVALID_KEY)
    if code == 403:
        if reason in INVALID_KEY_REASONS:
            return make(INVALID_KEY)
        about_file = bool(_FILE_PERMISSION_PATTERN.search(text_for_match or ""))
        if not about_file and _INVALID_KEY_PATTERNS.search(text_for_match or ""):
            return make(INVALID_KEY)
        return make(PERSISTENT)
    if code in (408, 499):
        return make(TRANSIENT)
    if code is not None and 400 <= code < 500:
        return make(PERSISTENT)
    # 5xx, and the odd non-error code the SDK raises a bare APIError for (201, 3xx): retry.
    return make(TRANSIENT)


def _transport_verdict(exc: BaseException) -> tuple[str, str] | None:
    """(kind, status) for a transport-level exception, or None if it is not one."""
    try:
        import httpx2
    except ImportError:  # pragma: no cover - httpx2 is a required SDK dependency
        httpx2 = None  # type: ignore[assignment]
    if httpx2 is not None:
        if isinstance(exc, httpx2.TimeoutException):
            return TRANSIENT, STATUS_TIMEOUT
        if isinstance(exc, httpx2.UnsupportedProtocol):
            # A malformed endpoint (GOOGLE_GEMINI_BASE_URL) fails every time.
            return PERSISTENT, STATUS_UNAVAILABLE
        if isinstance(exc, (httpx2.TransportError, httpx2.DecodingError, httpx2.TooManyRedirects)):
            return TRANSIENT, STATUS_UNAVAILABLE
    module = type(exc).__module__ or ""
    if module.startswith(("httpx", "httpcore", "aiohttp", "h11", "ssl", "urllib3")):
        if "timeout" in type(exc).__name__.lower():
            return TRANSIENT, STATUS_TIMEOUT
        return TRANSIENT, STATUS_UNAVAILABLE
    if isinstance(exc, TimeoutError):
        return TRANSIENT, STATUS_TIMEOUT
    if isinstance(exc, ConnectionError):
        return TRANSIENT, STATUS_UNAVAILABLE
    return None


def _local_failure_is_persistent(exc: BaseException) -> bool:
    """Errors made on our side before or while building the request: retrying repeats them."""
    try:
        import pydantic
    except ImportError:  # pragma: no cover - pydantic is an SDK dependency
        pydantic = None  # type: ignore[assignment]
    if isinstance(exc, json.JSONDecodeError):
        return False
    if isinstance(exc, genai_errors.UnknownApiResponseError):
        return False
    persistent: tuple[type[BaseException], ...] = (
        InvalidPromptError,
        TypeError,
        AttributeError,
        NameError,
        NotImplementedError,
        FileNotFoundError,
        IsADirectoryError,
        PermissionError,
    )
    if pydantic is not None:
        persistent = persistent + (pydantic.ValidationError,)
    return isinstance(exc, persistent)


def classify(exc: BaseException, *, secrets: Iterable[str] = ()) -> CallError:
    """Classify one exception raised around a Gemini call (see the module docstring for the kinds).

    ``secrets``: strings (the leased API key) that must never appear in the resulting message.
    """
    secrets = tuple(secrets)
    if isinstance(exc, GeminiCallFailed):
        err = exc.error
        if secrets and err.message:
            return CallError(**{**err.to_dict(), "message": redact(err.message, secrets)})
        return err
    if isinstance(exc, genai_errors.APIError):
        return _classify_api_error(exc, secrets)

    name = type(exc).__name__
    text = _clean_message(str(exc) or name, secrets)
    verdict = _transport_verdict(exc)
    if verdict is not None:
        kind, status = verdict
        return CallError(kind=kind, code=None, status=status, message=text, reason=name)
    if isinstance(exc, (json.JSONDecodeError, genai_errors.UnknownApiResponseError)):
        # A malformed (truncated, HTML) body from the server or a proxy: worth another try.
        return CallError(kind=TRANSIENT, status="MALFORMED_RESPONSE", message=text, reason=name)
    if _local_failure_is_persistent(exc):
        return CallError(kind=PERSISTENT, status="LOCAL_ERROR", message=text, reason=name)
    logger.debug("classifying unexpected %s as transient", name)
    return CallError(kind=TRANSIENT, status="UNKNOWN", message=text, reason=name)


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


# ------------------------------------------------------------------------------------- api_core mapping

_RPC_STATUS_TO_CLASS: dict[str, type[core_exceptions.GoogleAPICallError]] = {
    "INVALID_ARGUMENT": core_exceptions.InvalidArgument,
    "FAILED_PRECONDITION": core_exceptions.FailedPrecondition,
    "OUT_OF_RANGE": core_exceptions.OutOfRange,
    "UNAUTHENTICATED": core_exceptions.Unauthenticated,
    "PERMISSION_DENIED": core_exceptions.PermissionDenied,
    "NOT_FOUND": core_exceptions.NotFound,
    "ALREADY_EXISTS": core_exceptions.AlreadyExists,
    "ABORTED": core_exceptions.Aborted,
    "RESOURCE_EXHAUSTED": core_exceptions.ResourceExhausted,
    "CANCELLED": core_exceptions.Cancelled,
    "INTERNAL": core_exceptions.InternalServerError,
    "UNKNOWN": core_exceptions.Unknown,
    "DATA_LOSS": core_exceptions.DataLoss,
    "UNIMPLEMENTED": core_exceptions.MethodNotImplemented,
    "UNAVAILABLE": core_exceptions.ServiceUnavailable,
    "DEADLINE_EXCEEDED": core_exceptions.DeadlineExceeded,
}


def to_api_core(err: CallError) -> core_exceptions.GoogleAPICallError:
    """The typed ``google.api_core.exceptions`` error users catch (``ResourceExhausted``, ...).

    ``from_http_status`` alone maps 429 to ``TooManyRequests`` and 400 to ``BadRequest``; the gRPC-named
    subclasses users expect (``ResourceExhausted``, ``InvalidArgument``, ``PermissionDenied``,
    ``DeadlineExceeded``) are picked from the google.rpc status the API sent, when it fits the HTTP code.
    The ``CallError`` rides along as ``exc.call_error`` and in ``exc.details``.
    """
    message = error_message(err)
    if err.kind == RATE_LIMITED:
        cls: type[core_exceptions.GoogleAPICallError] = core_exceptions.ResourceExhausted
        code = 429
    elif err.code is None:
        if err.kind == BLOCKED:
            cls, code = core_exceptions.FailedPrecondition, 400
        elif err.status == STATUS_TIMEOUT:
            cls, code = core_exceptions.DeadlineExceeded, 504
        elif err.kind == TRANSIENT:
            cls, code = core_exceptions.ServiceUnavailable, 503
        else:
            cls, code = core_exceptions.InvalidArgument, 400
    else:
        code = err.code
        base = core_exceptions.exception_class_for_http_status(code)
        cls = base
        candidate = _RPC_STATUS_TO_CLASS.get(err.status or "")
        if candidate is not None and (base is core_exceptions.GoogleAPICallError or issubclass(candidate, base)):
            cls = candidate
        elif err.kind == INVALID_KEY and code == 400:
            cls = core_exceptions.InvalidArgument
    if cls is core_exceptions.exception_class_for_http_status(code):
        exc = core_exceptions.from_http_status(code, message, details=[err.to_dict()])
    else:
        exc = cls(message, details=[err.to_dict()])
        exc.code = code
    exc.call_error = err  # type: ignore[attr-defined]
    return exc
