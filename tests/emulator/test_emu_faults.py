"""Scripted faults through the real SDK: what each one looks like to the caller."""

from __future__ import annotations

import json
import time

import httpx2
import pytest
from emu_helpers import MODEL, detail
from google.genai import errors, types


def _ask(client, text: str = "hello", model: str = MODEL):
    return client.models.generate_content(model=model, contents=text)


@pytest.mark.parametrize(
    "status,name,exc_type",
    [
        (500, "INTERNAL", errors.ServerError),
        (503, "UNAVAILABLE", errors.ServerError),
        (504, "DEADLINE_EXCEEDED", errors.ServerError),
        (400, "INVALID_ARGUMENT", errors.ClientError),
        (403, "PERMISSION_DENIED", errors.ClientError),
        (404, "NOT_FOUND", errors.ClientError),
    ],
)
def test_status_faults(client, ctl, status, name, exc_type):
    ctl.add_fault(action="status", status=status, times=1)
    with pytest.raises(exc_type) as ei:
        _ask(client)
    assert (ei.value.code, ei.value.status) == (status, name)
    assert ei.value.message
    assert ei.value.response.headers["content-type"].startswith("application/json")
    assert _ask(client).text  # times=1: the next request is normal
    entry = ctl.log()[-2]
    assert entry["status"] == status and entry["fault"] == "status"


def test_502_is_an_html_page(client, ctl):
    ctl.add_fault(action="status", status=502, times=1)
    with pytest.raises(errors.ServerError) as ei:
        _ask(client)
    assert ei.value.code == 502 and ei.value.status == "Bad Gateway"  # the SDK's non-JSON path
    assert "502." in ei.value.message


def test_429_fault_with_quota_kind_and_delay(client, ctl):
    ctl.add_fault(action="status", status=429, quota_kind="day", times=1)
    ctl.add_fault(action="status", status=429, retry_delay="2.5s", times=1)
    with pytest.raises(errors.ClientError) as ei:
        _ask(client)
    assert detail(ei.value, "QuotaFailure")["violations"][0]["quotaId"].startswith("GenerateRequestsPerDay")
    assert detail(ei.value, "RetryInfo")["retryDelay"] == "36s"
    with pytest.raises(errors.ClientError) as ei:
        _ask(client)
    assert detail(ei.value, "QuotaFailure")["violations"][0]["quotaId"].startswith("GenerateRequestsPerMinute")
    assert detail(ei.value, "RetryInfo")["retryDelay"] == "2.5s"
    assert "Please retry in 2.5s." in ei.value.message


def test_hang_past_client_timeout(make_client, ctl):
    client = make_client(timeout_ms=300)
    ctl.add_fault(action="hang", seconds=1.0, times=1)
    t0 = time.perf_counter()
    with pytest.raises(httpx2.ReadTimeout):
        _ask(client)
    assert 0.25 < time.perf_counter() - t0 < 0.9
    assert isinstance(httpx2.ReadTimeout("x"), httpx2.TimeoutException)


def test_hang_then_close(client, ctl):
    ctl.add_fault(action="hang", seconds=0.1, then="close", times=1)
    with pytest.raises(httpx2.TransportError) as ei:
        _ask(client)
    assert isinstance(ei.value, httpx2.RemoteProtocolError)


def test_reset_is_a_transport_error(client, ctl):
    ctl.add_fault(action="reset", times=1)
    with pytest.raises(httpx2.TransportError) as ei:
        _ask(client)
    assert isinstance(ei.value, (httpx2.ReadError, httpx2.RemoteProtocolError))
    assert _ask(client).text  # the client recovers on a new connection
    assert ctl.log()[-2]["status"] == 0 and ctl.log()[-2]["fault"] == "reset"


def test_malformed_json(client, ctl):
    ctl.add_fault(action="malformed", times=1)
    with pytest.raises(json.JSONDecodeError):  # the SDK does not wrap it; it is a ValueError
        _ask(client)


def test_latency_rule_and_global_latency(client, ctl):
    _ask(client)  # warm connection
    ctl.add_fault(action="latency", seconds=0.2, times=1)
    t0 = time.perf_counter()
    assert _ask(client).text
    assert 0.2 <= time.perf_counter() - t0 < 0.5
    ctl.configure(latency_seconds=0.1, latency_jitter_seconds=0.05)
    t0 = time.perf_counter()
    _ask(client)
    assert 0.1 <= time.perf_counter() - t0 < 0.4
    assert ctl.log()[-1]["duration"] >= 0.1


def test_latency_combines_with_a_terminal_fault(client, ctl):
    ctl.add_faults(
        [{"action": "latency", "seconds": 0.15, "times": 1}, {"action": "status", "status": 503, "times": 1}]
    )
    t0 = time.perf_counter()
    with pytest.raises(errors.ServerError):
        _ask(client)
    assert time.perf_counter() - t0 >= 0.15
    assert ctl.log()[-1]["fault"] == "latency+status"


def test_blocked_safety_and_empty(client, ctl):
    ctl.add_fault(action="blocked", reason="PROHIBITED_CONTENT", times=1)
    r = _ask(client)
    assert r.text is None and r.candidates is None
    assert r.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT

    ctl.add_fault(action="safety_finish", times=1)
    r = _ask(client)
    assert r.text is None and r.candidates[0].finish_reason == types.FinishReason.SAFETY

    ctl.add_fault(action="empty", times=1)
    r = _ask(client)
    assert r.text is None and r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_times_counts_down(client, ctl):
    rule_id = ctl.add_fault(action="status", status=503, times=2)
    assert ctl.faults()[0]["id"] == rule_id and ctl.faults()[0]["remaining"] == 2
    for _ in range(2):
        with pytest.raises(errors.ServerError):
            _ask(client)
    assert ctl.faults() == []
    assert _ask(client).text


def test_until_cleared_and_remove(client, ctl):
    rule_id = ctl.add_fault(action="status", status=500)
    for _ in range(3):
        with pytest.raises(errors.ServerError):
            _ask(client)
    assert ctl.faults()[0]["applied"] == 3
    assert ctl.remove_fault(rule_id)
    assert _ask(client).text
    ctl.add_fault(action="status", status=500)
    assert ctl.clear_faults() == 1
    assert _ask(client).text


def test_matchers(make_client, ctl):
    ctl.configure(keys={"s1": {"label": "K1", "project": "p1"}, "s2": {"label": "K2", "project": "p2"}})
    k1, k2 = make_client("s1"), make_client("s2")
    ctl.add_faults(
        [
            {"action": "status", "status": 503, "model": "models/gemini-2.5-pro"},
            {"action": "status", "status": 500, "key_label": "K2", "prompt_contains": "boom"},
            {"action": "status", "status": 504, "project": "p1", "path_contains": "v1alpha"},
        ]
    )
    assert _ask(k1).text
    with pytest.raises(errors.ServerError) as ei:
        _ask(k1, model="gemini-2.5-pro")
    assert ei.value.code == 503
    assert _ask(k1, "boom").text  # K1, not K2
    with pytest.raises(errors.ServerError) as ei:
        _ask(k2, "this goes boom")
    assert ei.value.code == 500
    assert _ask(k2, "quiet").text
    r = httpx2.post(
        f"{ctl.base_url}/v1alpha/models/{MODEL}:generateContent",
        headers={"x-goog-api-key": "s1"},
        json={"contents": [{"parts": [{"text": "x"}]}]},
    )
    assert r.status_code == 504


def test_probability_is_seeded_and_reproducible(client, ctl):
    def run() -> list[int]:
        ctl.add_fault(action="status", status=503, probability=0.5)
        out = []
        for _ in range(30):
            try:
                _ask(client)
                out.append(200)
            except errors.ServerError:
                out.append(503)
        return out

    ctl.configure(seed=7)
    first = run()
    assert 5 < first.count(503) < 25
    ctl.reset(seed=7)
    assert run() == first


def test_stream_error_mid_stream(client, ctl):
    ctl.add_fault(action="stream_error", status=503, after_chunks=2, times=1)
    seen = []
    with pytest.raises(errors.ServerError) as ei:
        for chunk in client.models.generate_content_stream(model=MODEL, contents="stream then fail"):
            seen.append(chunk.text)
    assert len(seen) == 2 and ei.value.code == 503


def test_fault_applies_to_files_get(client, ctl):
    import io

    f = client.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "text/plain"})
    ctl.add_fault(action="status", status=503, endpoint="files.get", times=1)
    with pytest.raises(errors.ServerError):
        client.files.get(name=f.name)
    assert client.files.get(name=f.name).state == types.FileState.ACTIVE


def test_bad_rules_are_refused(ctl):
    from gemini_tasks.emulator.control_client import EmulatorControlError

    for rule in ({"action": "explode"}, {"action": "status", "status": 418}, {"action": "status", "colour": 1}):
        with pytest.raises(EmulatorControlError) as ei:
            ctl.add_fault(**rule)
        assert ei.value.status == 400
    assert ctl.faults() == []
