"""Wire-format helpers: request normalisation and Google-style response/error bodies.

The google-genai SDK sends camelCase for the fields it maps itself but dumps nested pydantic
objects in snake_case, and Google's proto-JSON parser accepts both.  The emulator therefore
normalises every request body to snake_case once, so the rest of the code reads one spelling.
Responses are written in camelCase, as the real API sends them.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from typing import Any

JSON_CT = "application/json; charset=UTF-8"
VERSION_RE = re.compile(r"/(v1\w*)/")

# ---------------------------------------------------------------------------------------------
# request normalisation

_CAMEL_RE = re.compile(r"(?<=[a-z0-9])([A-Z])")
_SNAKE_CACHE: dict[str, str] = {}

# Keys whose whole subtree is user data (JSON schemas, labels): keep it verbatim.
_RAW_SUBTREE = frozenset({"response_json_schema", "parameters_json_schema", "labels"})
# Keys whose dict keys are user-chosen names but whose values are still API objects.
_USER_KEYED = frozenset({"properties"})


def snake(key: str) -> str:
    """camelCase -> snake_case, memoised because the same few dozen field names repeat forever."""
    out = _SNAKE_CACHE.get(key)
    if out is None:
        out = _CAMEL_RE.sub(r"_\1", key).lower() if not key.islower() else key
        if len(_SNAKE_CACHE) < 4096:
            _SNAKE_CACHE[key] = out
    return out


def normalize(obj: Any) -> Any:
    """Recursively convert every dict key to snake_case (values untouched)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            sk = snake(k)
            if sk in _RAW_SUBTREE:
                out[sk] = v
            elif sk in _USER_KEYED and isinstance(v, dict):
                out[sk] = {uk: normalize(uv) for uk, uv in v.items()}
            else:
                out[sk] = normalize(v) if isinstance(v, (dict, list)) else v
        return out
    if isinstance(obj, list):
        return [normalize(x) if isinstance(x, (dict, list)) else x for x in obj]
    return obj


_URLSAFE_TO_STD = str.maketrans("-_", "+/")


def b64decode_any(data: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (the SDK sends URL-safe, padded).

    Strict: characters outside both alphabets raise binascii.Error, as the real API refuses them.
    """
    s = data.strip().translate(_URLSAFE_TO_STD)
    pad = (-len(s)) % 4
    if pad:
        s += "=" * pad
    return base64.b64decode(s, validate=True)


# ---------------------------------------------------------------------------------------------
# encoding helpers


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (what goes on the wire)."""
    return _dumps(obj).encode("utf-8")


def fmt_duration(seconds: float) -> str:
    """Proto Duration string, rounded UP to 0.1 s: 7 -> "7s", 0.42 -> "0.5s"."""
    tenths = max(1, math.ceil(seconds * 10 - 1e-9))
    if tenths % 10 == 0:
        return f"{tenths // 10}s"
    return f"{tenths // 10}.{tenths % 10}s"


def parse_duration(value: Any) -> float:
    """Accept 36, 36.0, "36s", "0.5s" and return seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    s = str(value).strip()
    if s.endswith("s"):
        s = s[:-1]
    return float(s)


def rfc3339(epoch: float) -> str:
    """Timestamp the way Google formats them: 2026-11-23T21:25:32.123456Z."""
    whole = int(epoch)
    micros = int(round((epoch - whole) * 1_000_000))
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


def bare_model(model_path: str) -> str:
    """ "models/gemini-2.5-flash" -> "gemini-2.5-flash" ("tunedModels/x" stays as it is)."""
    return model_path[7:] if model_path.startswith("models/") else model_path


# ---------------------------------------------------------------------------------------------
# errors

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    409: "Requested entity already exists.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    ),
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}

RATE_LIMITS_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"
SERVICE = "generativelanguage.googleapis.com"


class ApiError(Exception):
    """Raised by handlers; the dispatcher turns it into a Google error envelope response."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        status: str | None = None,
        details: list[dict] | None = None,
        *,
        quota: str | None = None,
        headers: dict[str, str] | None = None,
        html: bytes | None = None,
    ) -> None:
        super().__init__(message or DEFAULT_MESSAGES.get(code, "error"))
        self.code = code
        self.message = message or DEFAULT_MESSAGES.get(code, "error")
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.details = details
        self.quota = quota
        self.headers = headers
        self.html = html  # non-JSON body (a front-end 502 page), sent as text/html

    def body(self) -> dict:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            err["details"] = self.details
        return {"error": err}


BAD_GATEWAY_HTML = (
    b"<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 502 (Server Error)!!1</title>"
    b"<p><b>502.</b> <ins>That\xe2\x80\x99s an error.</ins><p>The server encountered a temporary error and "
    b"could not complete your request.<p>Please try again in 30 seconds. <ins>That\xe2\x80\x99s all we know.</ins>"
)


def bad_gateway() -> ApiError:
    """A Google front-end 502: an HTML page, not the JSON envelope (the SDK's non-JSON path)."""
    return ApiError(502, "Bad Gateway", "BAD_GATEWAY", html=BAD_GATEWAY_HTML)


def api_key_invalid() -> ApiError:
    msg = "API key not valid. Please pass a valid API key."
    return ApiError(
        400,
        msg,
        "INVALID_ARGUMENT",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": SERVICE},
            },
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": msg},
        ],
    )


def api_key_blocked(project: str) -> ApiError:
    msg = (
        "Requests to this API generativelanguage.googleapis.com method "
        "google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent are blocked."
    )
    return ApiError(
        403,
        msg,
        "PERMISSION_DENIED",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_SERVICE_BLOCKED",
                "domain": "googleapis.com",
                "metadata": {"service": SERVICE, "consumer": f"projects/{project}"},
            },
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": msg},
        ],
    )


def no_key() -> ApiError:
    return ApiError(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
        "PERMISSION_DENIED",
    )


def file_denied(file_id: str) -> ApiError:
    return ApiError(
        403, f"You do not have permission to access the File {file_id} or it may not exist.", "PERMISSION_DENIED"
    )


def file_not_active(file_id: str) -> ApiError:
    return ApiError(
        400, f"The File {file_id} is not in an ACTIVE state and usage is not allowed.", "FAILED_PRECONDITION"
    )


def model_not_found(model: str, version: str) -> ApiError:
    return ApiError(
        404,
        f"models/{model} is not found for API version {version}, or is not supported for generateContent. "
        "Call ListModels to see the list of available models and their supported methods.",
        "NOT_FOUND",
    )


# Quota identities, as the real free tier names them.
QUOTA_KINDS = {
    "rpm": (
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    ),
    "rpd": (
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    ),
    "tpm": (
        "GenerateContentInputTokensPerModelPerMinute-FreeTier",
        "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
    ),
}


def quota_exhausted(violations: list[tuple[str, int | None]], model: str, retry_seconds: float) -> ApiError:
    """429 RESOURCE_EXHAUSTED with QuotaFailure, Help and RetryInfo, like the real free tier.

    `violations` is a list of (kind, limit) with kind in rpm/rpd/tpm, most important first.
    """
    delay = fmt_duration(retry_seconds)
    lines = []
    quota_violations = []
    for kind, limit in violations:
        quota_id, metric = QUOTA_KINDS[kind]
        lines.append(
            f"* Quota exceeded for metric: {metric}, limit: {limit if limit is not None else 0}, model: {model}"
        )
        v: dict[str, Any] = {
            "quotaMetric": metric,
            "quotaId": quota_id,
            "quotaDimensions": {"location": "global", "model": model},
        }
        if limit is not None:
            v["quotaValue"] = str(limit)
        quota_violations.append(v)
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        f"information on this error, head to: {RATE_LIMITS_URL}. To monitor your current usage, "
        "head to: https://ai.dev/rate-limit. \n" + "\n".join(lines) + f"\nPlease retry in {delay}."
    )
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": quota_violations},
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "Learn more about Gemini API quotas", "url": RATE_LIMITS_URL}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    return ApiError(429, message, "RESOURCE_EXHAUSTED", details, quota=violations[0][0])
