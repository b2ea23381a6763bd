"""``classify``: whatever a Gemini call raised -> one :class:`~.errors.CallError` (kind, quota, retry delay).

The google-genai SDK raises its own ``APIError`` family for HTTP errors and lets transport errors (httpx2)
escape unwrapped. Neither survives a process boundary intact, and neither says what the *key manager* needs
to know: was this a rate limit (and which quota, and for how long), is the key itself bad, or will retrying
help? :func:`classify` answers that once, here, so that tasks, the key manager and the result strings agree.
The kinds are described in :mod:`.errors`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import httpx2  # the SDK's HTTP client and models: loaded with google.genai in any case
import pydantic
from google.genai import errors as genai_errors

from .errors import (
    INVALID_KEY,
    PERSISTENT,
    QUOTA_DAY,
    QUOTA_LIMIT_ZERO,
    QUOTA_MINUTE,
    QUOTA_TOKENS,
    QUOTA_UNKNOWN,
    RATE_LIMITED,
    STATUS_TIMEOUT,
    STATUS_UNAVAILABLE,
    TRANSIENT,
    CallError,
    GeminiCallFailed,
    InvalidPromptError,
)
from .redaction import clean_message, redact

logger = logging.getLogger("gemini_tasks")

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


def _error_details(exc: genai_errors.APIError) -> list[Mapping[str, Any]]:
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


_HTML_RE = re.compile(r"^\s*<(!doctype\s+html|html|head|body)\b", re.IGNORECASE)


def _looks_like_html(text: str) -> bool:
    return bool(_HTML_RE.match(text or ""))


def _rpc_status(exc: genai_errors.APIError, code: int | None) -> str | None:
    """The RPC status name (``RESOURCE_EXHAUSTED``); from the HTTP code when the body was not the API's JSON."""
    raw_status = exc.status if isinstance(exc.status, str) else None
    # A non-JSON body makes the SDK put the reason phrase ("Bad Gateway") in status; prefer the rpc name.
    status = raw_status if raw_status and raw_status.isupper() and " " not in raw_status else None
    if status is None and code is not None:
        status = _HTTP_TO_RPC_STATUS.get(code, raw_status)
    return status


def _shown_message(raw_message: str, secrets: Iterable[str]) -> str:
    """The message as it may be shown: secrets out, and a front end's HTML error page named, not quoted."""
    message = clean_message(raw_message, secrets)
    if _looks_like_html(message):
        # a front end's error page (a 502 from Google's edge, a proxy): its markup says nothing more
        message = "the server answered with an HTML error page instead of the API's JSON"
    return message


def _read_details(details: list[Mapping[str, Any]]) -> tuple[str | None, list[Mapping[str, Any]], float | None]:
    """(the first ErrorInfo reason, every QuotaFailure violation, the first RetryInfo delay) of ``details``."""
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
    return reason, violations, retry_after


def _kind_of_refusal(code: int | None, reason: str | None, text: str) -> str:
    """The kind of an error that is not a 429: a bad key, a request that fails the same way again, or one to
    retry (5xx, timeouts, and the odd non-error code the SDK raises a bare APIError for: 201, 3xx)."""
    if code == 401:
        return INVALID_KEY
    if code == 400 and (reason in INVALID_KEY_REASONS or _INVALID_KEY_PATTERNS.search(text)):
        return INVALID_KEY
    if code == 403:
        if reason in INVALID_KEY_REASONS:
            return INVALID_KEY
        about_file = bool(_FILE_PERMISSION_PATTERN.search(text))
        return INVALID_KEY if not about_file and _INVALID_KEY_PATTERNS.search(text) else PERSISTENT
    if code in (408, 499):
        return TRANSIENT
    if code is not None and 400 <= code < 500:
        return PERSISTENT
    return TRANSIENT


def _classify_api_error(exc: genai_errors.APIError, secrets: Iterable[str]) -> CallError:
    code = exc.code if isinstance(exc.code, int) else None
    status = _rpc_status(exc, code)
    raw_message = exc.message if exc.message is not None else str(exc)
    message = _shown_message(raw_message, secrets)
    reason, violations, retry_after = _read_details(_error_details(exc))
    text_for_match = raw_message if isinstance(raw_message, str) else message
    if code == 429:
        if retry_after is None:
            retry_after = _retry_in_from_message(text_for_match)
        quota_kind, quota_id = _quota_kind(violations, text_for_match)
        return CallError(kind=RATE_LIMITED, code=code, status=status, message=message, reason=reason,
                         retry_after=retry_after, quota_kind=quota_kind, quota_id=quota_id)
    kind = _kind_of_refusal(code, reason, text_for_match or "")
    return CallError(kind=kind, code=code, status=status, message=message, reason=reason)


def _transport_verdict(exc: BaseException) -> tuple[str, str] | None:
    """(kind, status) for a transport-level exception, or None if it is not one."""
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
        pydantic.ValidationError,
    )
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
    text = clean_message(str(exc) or name, secrets)
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

