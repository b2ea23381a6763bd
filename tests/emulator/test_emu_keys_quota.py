"""Keys and quotas through the real SDK: the error bodies it parses and the windows it hits."""

from __future__ import annotations

import json
import time

import httpx2
import pytest
from emu_helpers import MODEL, detail
from google.genai import errors

KEYS = {
    "secret-a1-XYZ": {"label": "GEMINI_API_KEY_1", "project": "proj-a"},
    "secret-a2-XYZ": {"label": "GEMINI_API_KEY_2", "project": "proj-a"},
    "secret-b1-XYZ": {"label": "GEMINI_API_KEY_3", "project": "proj-b"},
    "secret-blocked": {"label": "GEMINI_API_KEY_4", "project": "proj-c", "blocked": True},
}


def _ask(client, text: str = "hello", model: str = MODEL):
    return client.models.generate_content(model=model, contents=text)


def test_invalid_key_is_400_api_key_invalid(make_client, ctl):
    ctl.configure(keys=KEYS)
    with pytest.raises(errors.ClientError) as ei:
        _ask(make_client("wrong-key"))
    e = ei.value
    assert (e.code, e.status) == (400, "INVALID_ARGUMENT")
    assert e.message == "API key not valid. Please pass a valid API key."
    info = detail(e, "google.rpc.ErrorInfo")
    assert info["reason"] == "API_KEY_INVALID" and info["domain"] == "googleapis.com"
    assert info["metadata"]["service"] == "generativelanguage.googleapis.com"
    assert detail(e, "google.rpc.LocalizedMessage")["message"] == e.message
    assert ctl.log()[-1]["key_label"] == "<invalid>"


def test_blocked_key_is_403(make_client, ctl):
    ctl.configure(keys=KEYS)
    with pytest.raises(errors.ClientError) as ei:
        _ask(make_client("secret-blocked"))
    assert (ei.value.code, ei.value.status) == (403, "PERMISSION_DENIED")
    assert detail(ei.value, "google.rpc.ErrorInfo")["reason"] == "API_KEY_SERVICE_BLOCKED"
    assert ctl.log()[-1]["key_label"] == "GEMINI_API_KEY_4"


def test_missing_key_is_403(emu):
    r = httpx2.post(f"{emu.url}/v1beta/models/{MODEL}:generateContent", json={"contents": "x"})
    assert r.status_code == 403 and "unregistered callers" in r.json()["error"]["message"]


def test_secrets_never_leave_the_emulator(make_client, ctl):
    ctl.configure(keys=KEYS)
    _ask(make_client("secret-a1-XYZ"))
    with pytest.raises(errors.ClientError):
        _ask(make_client("secret-blocked"))
    with pytest.raises(errors.ClientError):
        _ask(make_client("secret-unknown"))
    exposed = json.dumps([ctl.config(), ctl.log(), ctl.stats(), ctl.faults()])
    for secret in list(KEYS) + ["secret-unknown"]:
        assert secret not in exposed
    assert {"label": "GEMINI_API_KEY_1", "project": "proj-a", "blocked": False} in ctl.config()["keys"]
    assert ctl.stats()["by_key_label"]["GEMINI_API_KEY_1"] == 1


def test_open_mode_labels_each_key_its_own_project(make_client, ctl):
    import hashlib

    _ask(make_client("anything-goes"))
    label = "key-" + hashlib.sha256(b"anything-goes").hexdigest()[:6]
    entry = ctl.log()[-1]
    assert entry["key_label"] == label and entry["project"] == label


def test_rpm_window(make_client, ctl):
    ctl.configure(minute_seconds=1.0, quotas={"*": {MODEL: {"rpm": 3}}})
    client = make_client()
    t_first = time.monotonic()
    for i in range(3):
        _ask(client, f"q{i}")
    with pytest.raises(errors.ClientError) as ei:
        _ask(client, "q3")
    e = ei.value
    assert (e.code, e.status) == (429, "RESOURCE_EXHAUSTED")
    violation = detail(e, "google.rpc.QuotaFailure")["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    assert violation["quotaMetric"] == "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    assert violation["quotaDimensions"] == {"location": "global", "model": MODEL}
    assert violation["quotaValue"] == "3"
    delay = detail(e, "google.rpc.RetryInfo")["retryDelay"]
    assert delay.endswith("s")
    seconds = float(delay[:-1])
    assert 0 < seconds <= 1.0
    assert f"Please retry in {delay}." in e.message
    assert detail(e, "google.rpc.Help")["links"][0]["url"].startswith("https://ai.google.dev/")
    assert ctl.log()[-1]["quota"] == "rpm"

    # rejected requests do not count: hammering does not push recovery out
    for _ in range(3):
        with pytest.raises(errors.ClientError):
            _ask(client, "again")
    time.sleep(max(0.0, t_first + 1.0 - time.monotonic()) + 0.05)
    for i in range(3):
        _ask(client, f"after {i}")
    with pytest.raises(errors.ClientError):
        _ask(client, "over again")


def test_retry_delay_is_true_time_until_window_frees(make_client, ctl):
    ctl.configure(minute_seconds=2.0, quotas={"*": {"*": {"rpm": 1}}})
    client = make_client()
    _ask(client)
    time.sleep(0.5)
    with pytest.raises(errors.ClientError) as ei:
        _ask(client)
    seconds = float(detail(ei.value, "google.rpc.RetryInfo")["retryDelay"][:-1])
    assert 1.3 <= seconds <= 1.6  # 2.0 - 0.5, rounded up to 0.1 s


def test_rpd_window_has_misleading_short_delay(make_client, ctl):
    ctl.configure(day_seconds=1000, quotas={"*": {"*": {"rpd": 2}}})
    client = make_client()
    _ask(client)
    _ask(client)
    with pytest.raises(errors.ClientError) as ei:
        _ask(client)
    violation = detail(ei.value, "google.rpc.QuotaFailure")["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert detail(ei.value, "google.rpc.RetryInfo")["retryDelay"] == "36s"
    ctl.configure(day_retry_delay="12.5s")
    with pytest.raises(errors.ClientError) as ei:
        _ask(client)
    assert detail(ei.value, "google.rpc.RetryInfo")["retryDelay"] == "12.5s"
    assert ctl.log()[-1]["quota"] == "rpd"


def test_tpm_window(make_client, ctl):
    ctl.configure(minute_seconds=1.0, quotas={"*": {"*": {"tpm": 50}}})
    client = make_client()
    _ask(client, "x" * 120)  # 30 tokens
    with pytest.raises(errors.ClientError) as ei:
        _ask(client, "y" * 120)  # would make 60 > 50
    violation = detail(ei.value, "google.rpc.QuotaFailure")["violations"][0]
    assert violation["quotaId"] == "GenerateContentInputTokensPerModelPerMinute-FreeTier"
    assert violation["quotaMetric"].endswith("generate_content_free_tier_input_token_count")
    _ask(client, "z" * 80)  # 20 tokens: 30 + 20 = 50 fits
    assert ctl.log()[-1]["prompt_tokens"] == 20


def test_quota_is_per_project_and_model(make_client, ctl):
    ctl.configure(
        keys=KEYS,
        minute_seconds=5.0,
        quotas={"*": {"*": {"rpm": 2}}, "proj-b": {MODEL: {"rpm": 1}}},
    )
    a1, a2, b1 = make_client("secret-a1-XYZ"), make_client("secret-a2-XYZ"), make_client("secret-b1-XYZ")
    _ask(a1)
    _ask(a2)  # same project: shares the window
    with pytest.raises(errors.ClientError) as ei:
        _ask(a1)
    assert ei.value.code == 429
    with pytest.raises(errors.ClientError):
        _ask(a2)
    _ask(a1, model="gemini-2.5-pro")  # another model: its own window
    _ask(b1)  # another project: its own window, and its own (stricter) limit
    with pytest.raises(errors.ClientError) as ei:
        _ask(b1)
    assert detail(ei.value, "google.rpc.QuotaFailure")["violations"][0]["quotaValue"] == "1"
    stats = ctl.stats()
    assert stats["by_key_label_status"]["GEMINI_API_KEY_1"] == {"200": 2, "429": 1}
    assert stats["by_project"] == {"proj-a": 5, "proj-b": 2}
    assert stats["by_quota"] == {"rpm": 3}
