"""Classification of real SDK exception objects, the api_core mapping, the result strings and redaction."""

from __future__ import annotations

import json
import pickle

import httpx2
import pydantic
import pytest
from gemini_wire_bodies import FAKE_KEY, HELP, QUOTA_MESSAGE, body, error_info, quota_failure, retry_info, sdk_error
from google.api_core import exceptions as core
from google.genai import errors as genai_errors
from google.genai import types

from gemini_tasks.gemini.api_core_errors import to_api_core
from gemini_tasks.gemini.classification import classify, parse_duration
from gemini_tasks.gemini.errors import CallError, GeminiCallFailed, InvalidPromptError, error_message
from gemini_tasks.gemini.redaction import redact

PER_MINUTE = body(
    429,
    "RESOURCE_EXHAUSTED",
    QUOTA_MESSAGE,
    [quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), HELP, retry_info("7s")],
)
PER_DAY_SHORT_DELAY = body(
    429,
    "RESOURCE_EXHAUSTED",
    QUOTA_MESSAGE.replace("limit: 10", "limit: 250").replace("7.5s", "12.2s"),
    [retry_info("12s"), quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier", value="250")],
)
TOKENS = body(
    429,
    "RESOURCE_EXHAUSTED",
    QUOTA_MESSAGE.replace("generate_content_free_tier_requests", "generate_content_free_tier_input_token_count"),
    [
        quota_failure(
            "GenerateContentInputTokensPerModelPerMinute-FreeTier",
            metric="generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
            value="250000",
        ),
        retry_info("0.5s"),
    ],
)
LIMIT_ZERO = body(
    429,
    "RESOURCE_EXHAUSTED",
    QUOTA_MESSAGE.replace("limit: 10", "limit: 0").replace("gemini-2.5-flash", "gemini-2.5-pro").replace(
        "Please retry in 7.5s.", "Please retry in 30.5s."
    ),
    [quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier", value=None), HELP],
)
BARE_429 = body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
MS_429 = body(429, "RESOURCE_EXHAUSTED", "Quota exceeded. Please retry in 569.614373ms.")

KEY_INVALID = body(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    [
        error_info("API_KEY_INVALID"),
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": "API key not valid. Please pass a valid API key."},
    ],
)
KEY_INVALID_NO_DETAILS = body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
BAD_ARGUMENT = body(
    400,
    "INVALID_ARGUMENT",
    "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': Cannot find field.",
    [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "generation_config", "description": "Cannot find field."}]}],
)
NOT_ACTIVE = body(400, "FAILED_PRECONDITION", "The File abc123 is not in an ACTIVE state and usage is not allowed.")
UNREGISTERED = body(
    403,
    "PERMISSION_DENIED",
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or "
    "other form of API consumer identity to call this API.",
)
SERVICE_BLOCKED = body(
    403,
    "PERMISSION_DENIED",
    "Requests to this API generativelanguage.googleapis.com method "
    "google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent are blocked.",
    [error_info("API_KEY_SERVICE_BLOCKED")],
)
SUSPENDED = body(
    403,
    "PERMISSION_DENIED",
    f"Permission denied: Consumer 'api_key:{FAKE_KEY}' has been suspended.",
    [error_info("CONSUMER_SUSPENDED")],
)
SUSPENDED_NO_DETAILS = body(403, "PERMISSION_DENIED", f"Permission denied: Consumer 'api_key:{FAKE_KEY}' has been suspended.")
FILE_PERMISSION = body(
    403, "PERMISSION_DENIED", "You do not have permission to access the File abc123 or it may not exist."
)
CALLER_NO_PERMISSION = body(403, "PERMISSION_DENIED", "The caller does not have permission")
NOT_FOUND = body(
    404,
    "NOT_FOUND",
    "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent. Call "
    "ListModels to see the list of available models and their supported methods.",
)
INTERNAL = body(
    500,
    "INTERNAL",
    "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
)
OVERLOADED = body(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
DEADLINE = body(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")


# (name, code, payload, kind, status, quota_kind, retry_after, api_core class)
API_CASES = [
    ("429 per minute", 429, PER_MINUTE, "rate_limited", "RESOURCE_EXHAUSTED", "minute", 7.0, core.ResourceExhausted),
    ("429 per day, short retryDelay", 429, PER_DAY_SHORT_DELAY, "rate_limited", "RESOURCE_EXHAUSTED", "day", 12.0, core.ResourceExhausted),
    ("429 input tokens", 429, TOKENS, "rate_limited", "RESOURCE_EXHAUSTED", "tokens", 0.5, core.ResourceExhausted),
    ("429 limit 0", 429, LIMIT_ZERO, "rate_limited", "RESOURCE_EXHAUSTED", "limit_zero", 30.5, core.ResourceExhausted),
    ("429 bare", 429, BARE_429, "rate_limited", "RESOURCE_EXHAUSTED", "unknown", None, core.ResourceExhausted),
    ("429 retry in ms", 429, MS_429, "rate_limited", "RESOURCE_EXHAUSTED", "unknown", 0.569614373, core.ResourceExhausted),
    ("400 API_KEY_INVALID", 400, KEY_INVALID, "invalid_key", "INVALID_ARGUMENT", None, None, core.InvalidArgument),
    ("400 key not valid, no details", 400, KEY_INVALID_NO_DETAILS, "invalid_key", "INVALID_ARGUMENT", None, None, core.InvalidArgument),
    ("400 bad argument", 400, BAD_ARGUMENT, "persistent", "INVALID_ARGUMENT", None, None, core.InvalidArgument),
    ("400 file not active", 400, NOT_ACTIVE, "persistent", "FAILED_PRECONDITION", None, None, core.FailedPrecondition),
    ("401", 401, body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), "invalid_key", "UNAUTHENTICATED", None, None, core.Unauthenticated),
    ("403 unregistered caller", 403, UNREGISTERED, "invalid_key", "PERMISSION_DENIED", None, None, core.PermissionDenied),
    ("403 service blocked", 403, SERVICE_BLOCKED, "invalid_key", "PERMISSION_DENIED", None, None, core.PermissionDenied),
    ("403 consumer suspended", 403, SUSPENDED, "invalid_key", "PERMISSION_DENIED", None, None, core.PermissionDenied),
    ("403 suspended, no details", 403, SUSPENDED_NO_DETAILS, "invalid_key", "PERMISSION_DENIED", None, None, core.PermissionDenied),
    ("403 file permission", 403, FILE_PERMISSION, "persistent", "PERMISSION_DENIED", None, None, core.PermissionDenied),
    ("403 caller lacks permission", 403, CALLER_NO_PERMISSION, "persistent", "PERMISSION_DENIED", None, None, core.PermissionDenied),
    ("404", 404, NOT_FOUND, "persistent", "NOT_FOUND", None, None, core.NotFound),
    ("409", 409, body(409, "ABORTED", "The operation was aborted."), "persistent", "ABORTED", None, None, core.Aborted),
    ("413", 413, body(413, "INVALID_ARGUMENT", "Request payload size exceeds the limit: 20971520 bytes."), "persistent", "INVALID_ARGUMENT", None, None, core.InvalidArgument),
    ("408", 408, body(408, "DEADLINE_EXCEEDED", "Request timed out."), "transient", "DEADLINE_EXCEEDED", None, None, core.DeadlineExceeded),
    ("500", 500, INTERNAL, "transient", "INTERNAL", None, None, core.InternalServerError),
    ("502 html", 502, "<html><body>502 Bad Gateway</body></html>", "transient", "Bad Gateway", None, None, core.BadGateway),
    ("503", 503, OVERLOADED, "transient", "UNAVAILABLE", None, None, core.ServiceUnavailable),
    ("504", 504, DEADLINE, "transient", "DEADLINE_EXCEEDED", None, None, core.DeadlineExceeded),
]


@pytest.mark.parametrize(
    "code,payload,kind,status,quota_kind,retry_after,core_cls",
    [case[1:] for case in API_CASES],
    ids=[case[0] for case in API_CASES],
)
def test_classify_sdk_errors(code, payload, kind, status, quota_kind, retry_after, core_cls):
    exc = sdk_error(code, payload)
    assert isinstance(exc, genai_errors.ClientError if code < 500 else genai_errors.ServerError)
    err = classify(exc)
    assert err.kind == kind
    assert err.code == code
    assert err.status == status
    assert err.quota_kind == quota_kind
    if retry_after is None:
        assert err.retry_after is None
    else:
        assert err.retry_after == pytest.approx(retry_after)
    mapped = to_api_core(err)
    assert type(mapped) is core_cls
    assert mapped.code == code
    assert mapped.call_error == err
    assert str(mapped).startswith(str(code))  # api_core prefixes the HTTP code


def test_quota_ids_and_reasons_are_kept():
    assert classify(sdk_error(429, PER_MINUTE)).quota_id == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    assert classify(sdk_error(429, PER_DAY_SHORT_DELAY)).quota_id == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert classify(sdk_error(429, TOKENS)).quota_id == "GenerateContentInputTokensPerModelPerMinute-FreeTier"
    assert classify(sdk_error(400, KEY_INVALID)).reason == "API_KEY_INVALID"
    assert classify(sdk_error(403, SERVICE_BLOCKED)).reason == "API_KEY_SERVICE_BLOCKED"
    assert classify(sdk_error(403, SUSPENDED)).reason == "CONSUMER_SUSPENDED"


def test_day_quota_wins_over_minute_when_both_are_violated():
    payload = body(
        429,
        "RESOURCE_EXHAUSTED",
        QUOTA_MESSAGE,
        [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"},
                    {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"},
                ],
            }
        ],
    )
    err = classify(sdk_error(429, payload))
    assert (err.quota_kind, err.quota_id) == ("day", "GenerateRequestsPerDayPerProjectPerModel-FreeTier")
    assert err.retry_after == pytest.approx(7.5)  # from "Please retry in 7.5s." in the message


def test_retry_info_preferred_over_message():
    err = classify(sdk_error(429, PER_MINUTE))  # message says 7.5s, RetryInfo says 7s
    assert err.retry_after == 7.0


def test_classify_direct_constructed_client_error():
    exc = genai_errors.ClientError(429, PER_MINUTE)
    err = classify(exc)
    assert (err.kind, err.quota_kind, err.retry_after) == ("rate_limited", "minute", 7.0)


def test_bare_api_error_with_odd_code_is_transient():
    exc = genai_errors.APIError(201, {})
    err = classify(exc)
    assert err.kind == "transient"
    assert err.code == 201


def test_pickled_client_error_still_classifies():
    # APIError.__reduce__ rebuilds subclasses as a bare APIError; classification must not depend on the class.
    exc = pickle.loads(pickle.dumps(sdk_error(429, PER_DAY_SHORT_DELAY)))
    assert type(exc) is genai_errors.APIError
    assert classify(exc).quota_kind == "day"


REQUEST = httpx2.Request("POST", "http://127.0.0.1:1/v1beta/models/m:generateContent")

# (name, exception, kind, status, api_core class)
TRANSPORT_CASES = [
    ("httpx2 ReadTimeout", httpx2.ReadTimeout("timed out", request=REQUEST), "transient", "DEADLINE_EXCEEDED", core.DeadlineExceeded),
    ("httpx2 ConnectTimeout", httpx2.ConnectTimeout("timed out", request=REQUEST), "transient", "DEADLINE_EXCEEDED", core.DeadlineExceeded),
    ("httpx2 ConnectError", httpx2.ConnectError("[Errno 111] Connection refused", request=REQUEST), "transient", "UNAVAILABLE", core.ServiceUnavailable),
    ("httpx2 RemoteProtocolError", httpx2.RemoteProtocolError("Server disconnected without sending a response.", request=REQUEST), "transient", "UNAVAILABLE", core.ServiceUnavailable),
    ("httpx2 ReadError", httpx2.ReadError("connection reset", request=REQUEST), "transient", "UNAVAILABLE", core.ServiceUnavailable),
    ("httpx2 TransportError", httpx2.TransportError("boom"), "transient", "UNAVAILABLE", core.ServiceUnavailable),
    ("httpx2 UnsupportedProtocol", httpx2.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://' protocol."), "persistent", "UNAVAILABLE", core.InvalidArgument),
    ("builtin TimeoutError", TimeoutError("timed out"), "transient", "DEADLINE_EXCEEDED", core.DeadlineExceeded),
    ("builtin ConnectionResetError", ConnectionResetError(104, "Connection reset by peer"), "transient", "UNAVAILABLE", core.ServiceUnavailable),
    ("JSON decode error", json.JSONDecodeError("Expecting value", "<html>", 0), "transient", "MALFORMED_RESPONSE", core.ServiceUnavailable),
    ("SDK unparseable response", genai_errors.UnknownApiResponseError("bad json"), "transient", "MALFORMED_RESPONSE", core.ServiceUnavailable),
    ("unknown RuntimeError", RuntimeError("something odd"), "transient", "UNKNOWN", core.ServiceUnavailable),
    ("upload URL missing (SDK KeyError)", KeyError("Failed to create file. Upload URL was not returned."), "transient", "UNKNOWN", core.ServiceUnavailable),
    ("TypeError (our bug)", TypeError("unexpected keyword"), "persistent", "LOCAL_ERROR", core.InvalidArgument),
    ("missing local file", FileNotFoundError(2, "No such file", "/x.mp3"), "persistent", "LOCAL_ERROR", core.InvalidArgument),
    ("invalid prompt", InvalidPromptError("bad", field="prompt"), "persistent", "LOCAL_ERROR", core.InvalidArgument),
]


@pytest.mark.parametrize(
    "exc,kind,status,core_cls", [c[1:] for c in TRANSPORT_CASES], ids=[c[0] for c in TRANSPORT_CASES]
)
def test_classify_transport_and_other_errors(exc, kind, status, core_cls):
    err = classify(exc)
    assert (err.kind, err.status, err.code) == (kind, status, None)
    assert err.reason == type(exc).__name__
    assert type(to_api_core(err)) is core_cls


def test_pydantic_validation_error_is_persistent():
    with pytest.raises(pydantic.ValidationError) as info:
        types.FileData(file_url="https://example.com/x.mp4")  # the original's bug
    assert classify(info.value).kind == "persistent"


def test_gemini_call_failed_passes_its_error_through():
    inner = CallError(kind="blocked", status="BLOCKED", reason="SAFETY", message="prompt blocked")
    assert classify(GeminiCallFailed(inner)) is inner


def test_retryable():
    assert classify(sdk_error(429, PER_MINUTE)).retryable
    assert classify(sdk_error(503, OVERLOADED)).retryable
    assert not classify(sdk_error(400, BAD_ARGUMENT)).retryable
    assert not classify(sdk_error(400, KEY_INVALID)).retryable


# ------------------------------------------------------------------------------------------------ messages

MESSAGE_CASES = [
    (sdk_error(429, PER_MINUTE), "Resource exhausted (429 RESOURCE_EXHAUSTED, per-minute quota GenerateRequestsPerMinutePerProjectPerModel-FreeTier, retry after 7s): You exceeded"),
    (sdk_error(429, PER_DAY_SHORT_DELAY), "Resource exhausted (429 RESOURCE_EXHAUSTED, daily quota GenerateRequestsPerDayPerProjectPerModel-FreeTier, retry after 12s)"),
    (sdk_error(429, BARE_429), "Resource exhausted (429 RESOURCE_EXHAUSTED): Resource has been exhausted"),
    (sdk_error(400, BAD_ARGUMENT), "Persistent API error (400 INVALID_ARGUMENT): Invalid JSON payload received."),
    (sdk_error(404, NOT_FOUND), "Persistent API error (404 NOT_FOUND): models/gemini-9 is not found"),
    (sdk_error(400, KEY_INVALID), "Invalid API key (400 INVALID_ARGUMENT, API_KEY_INVALID): API key not valid."),
    (sdk_error(503, OVERLOADED), "Transient error (503 UNAVAILABLE): The model is overloaded."),
    (httpx2.ReadTimeout("timed out", request=REQUEST), "Transient error (DEADLINE_EXCEEDED, ReadTimeout): timed out"),
]


@pytest.mark.parametrize("exc,prefix", MESSAGE_CASES, ids=[m[1][:40] for m in MESSAGE_CASES])
def test_error_message_wording(exc, prefix):
    assert error_message(classify(exc)).startswith(prefix)


def test_readme_checks_work():
    """The README's users test these substrings; they must keep working."""
    assert "exhausted" in error_message(classify(sdk_error(429, PER_MINUTE))).lower()
    assert "exhausted" in error_message(classify(sdk_error(429, LIMIT_ZERO))).lower()
    for payload, code in ((BAD_ARGUMENT, 400), (NOT_FOUND, 404), (FILE_PERMISSION, 403)):
        assert "persistent" in error_message(classify(sdk_error(code, payload))).lower()
    assert "exhausted" not in error_message(classify(sdk_error(503, OVERLOADED))).lower()
    assert "persistent" not in error_message(classify(sdk_error(503, OVERLOADED))).lower()


def test_blocked_messages():
    blocked = CallError(kind="blocked", status="BLOCKED", reason="SAFETY")
    empty = CallError(kind="blocked", status="EMPTY", reason="MAX_TOKENS")
    assert error_message(blocked) == "Response blocked by safety filters (SAFETY)"
    assert error_message(empty) == "Empty response (finish reason MAX_TOKENS)"
    assert str(GeminiCallFailed(blocked)) == "Response blocked by safety filters (SAFETY)"


def test_local_persistent_errors_say_so_without_claiming_an_api_answer():
    msg = error_message(classify(TypeError("bad arg")))
    assert msg == "Persistent error (LOCAL_ERROR, TypeError): bad arg"
    assert "persistent" in msg.lower()


def test_invalid_prompt_error_pickles_with_its_fields():
    err = InvalidPromptError("more <audio> tokens (2) than audio files (1)", field="prompt")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) == "prompt: more <audio> tokens (2) than audio files (1)"
    assert again.field == "prompt" and again.problems == err.problems
    assert isinstance(again, ValueError)


def test_limit_zero_message():
    msg = error_message(classify(sdk_error(429, LIMIT_ZERO)))
    assert msg.startswith("Resource exhausted (429 RESOURCE_EXHAUSTED, quota limit is 0")
    assert "retry after 30.5s" in msg


# ----------------------------------------------------------------------------------------------- redaction


def test_google_shaped_key_is_redacted_from_sdk_message():
    err = classify(sdk_error(403, SUSPENDED))
    assert FAKE_KEY not in err.message
    assert "api_key:[REDACTED]" in err.message
    assert FAKE_KEY not in error_message(err)
    assert FAKE_KEY not in json.dumps(err.to_dict())
    assert FAKE_KEY not in str(to_api_core(err))


def test_secrets_argument_is_redacted():
    secret = "emulator-test-key-0001"
    exc = RuntimeError(f"request with key {secret} failed")
    err = classify(exc, secrets=[secret])
    assert secret not in err.message and "[REDACTED]" in err.message
    # error_message can redact again (e.g. a CallError built elsewhere)
    raw = CallError(kind="transient", message=f"x {secret} y")
    assert secret not in error_message(raw, secrets=[secret])


def test_redact_helper():
    assert redact(f"key={FAKE_KEY}.") == "key=[REDACTED]."
    assert redact("Consumer 'api_key:abc-def' suspended") == "Consumer 'api_key:[REDACTED]' suspended"
    assert redact("nothing here") == "nothing here"
    assert redact("secret s3cr3t!", ["s3cr3t!"]) == "secret [REDACTED]"


def test_long_messages_are_truncated():
    err = classify(sdk_error(502, "x" * 10000))
    assert len(err.message) < 2100
    assert err.message.endswith("[truncated]")


def test_an_html_error_page_is_reduced_to_a_short_reason():
    err = classify(sdk_error(502, "<!DOCTYPE html>\n<html><title>Error 502</title>" + "x" * 10000 + "</html>"))
    assert err.kind == "transient" and err.code == 502
    assert "<" not in err.message and len(err.message) < 100


# ---------------------------------------------------------------------------------------------- transport


def test_to_dict_from_dict_round_trip_through_json():
    for case in API_CASES:
        err = classify(sdk_error(case[1], case[2]))
        again = CallError.from_dict(json.loads(json.dumps(err.to_dict())))
        assert again == err


def test_from_dict_ignores_unknown_keys_and_rejects_unknown_kind():
    assert CallError.from_dict({"kind": "transient", "extra": 1}) == CallError(kind="transient")
    with pytest.raises(ValueError, match="unknown CallError kind"):
        CallError(kind="weird")


def test_call_error_and_failure_pickle():
    err = classify(sdk_error(429, PER_MINUTE))
    assert pickle.loads(pickle.dumps(err)) == err
    failed = pickle.loads(pickle.dumps(GeminiCallFailed(err)))
    assert isinstance(failed, GeminiCallFailed) and failed.error == err


def test_api_core_errors_pickle():
    mapped = to_api_core(classify(sdk_error(429, PER_MINUTE)))
    again = pickle.loads(pickle.dumps(mapped))
    assert isinstance(again, core.ResourceExhausted)


@pytest.mark.parametrize(
    "text,seconds",
    [("7s", 7.0), ("0.5s", 0.5), ("47.17s", 47.17), ("569.6ms", 0.5696), ("1m2s", 62.0), ("3", 3.0),
     ({"seconds": 7, "nanos": 500000000}, 7.5), ("nonsense", None), (None, None), ("-1s", None)],
)
def test_parse_duration(text, seconds):
    if seconds is None:
        assert parse_duration(text) is None
    else:
        assert parse_duration(text) == pytest.approx(seconds)
