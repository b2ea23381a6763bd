"""Realistic Gemini error bodies (wire doc §6.1) and the SDK exceptions they produce, for the gemini tests."""

from __future__ import annotations

import httpx2
from google.genai import errors as genai_errors

FAKE_KEY = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"  # 39 chars, the shape of a real key
assert len(FAKE_KEY) == 39

QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, "
    "head to: https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded for metric: "
    "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10, model: "
    "gemini-2.5-flash\nPlease retry in 7.5s."
)


def quota_failure(quota_id: str, metric: str = "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                  value: str | None = "10") -> dict:
    violation = {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
    }
    if value is not None:
        violation["quotaValue"] = value
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}


HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}],
}


def retry_info(delay: str) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def error_info(reason: str) -> dict:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }


def body(code: int, status: str, message: str, details: list | None = None) -> dict:
    error = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def sdk_error(code: int, payload: dict | str) -> genai_errors.APIError:
    """The exception the real SDK raises for this HTTP response (through its own raise_for_response)."""
    request = httpx2.Request("POST", "http://127.0.0.1:1/v1beta/models/gemini-2.5-flash:generateContent")
    if isinstance(payload, str):
        response = httpx2.Response(code, text=payload, request=request)
    else:
        response = httpx2.Response(code, json=payload, request=request)
    try:
        genai_errors.APIError.raise_for_response(response)
    except genai_errors.APIError as exc:
        return exc
    raise AssertionError("the SDK did not raise")
