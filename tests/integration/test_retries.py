"""Retry semantics through the real stack: transient errors back off, 429s move to another key without
spending the error budget, rejected keys are quarantined, and a pool of dead keys fails at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from google.genai import types



def gen_calls(emu, marker):
    return [e for e in emu.log() if e.get("endpoint") == "generateContent"
            and any(marker in (p.get("text") or "") for p in (e.get("parts") or []))]


@pytest.fixture
def stream(worker, manager_factory):
    from gemini_tasks import GeminiStreamingProcessor

    def make(**kw):
        m = manager_factory(kw.pop("keys", 4), **kw)
        sp = GeminiStreamingProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)
        sp.start()
        made.append(sp)
        return sp, m

    made = []
    yield make
    for sp in made:
        sp.stop()


def test_transient_errors_retry_with_backoff_then_succeed(stream, emu):
    sp, m = stream(paid_keys="all")
    emu.add_fault(action="status", status=503, prompt_contains="R1", times=2)
    meta, response, error = sp.process_single({"prompt": "R1 flaky"}, timeout=30)
    assert error is None and "R1 flaky" in response
    assert [e["status"] for e in gen_calls(emu, "R1")] == [503, 503, 200]
    assert all(s["status"] == "AVAILABLE" for s in m.get_keys_status_summary().values())  # never benched


def test_transient_errors_exhaust_the_retry_budget(stream, emu):
    sp, m = stream(paid_keys="all")
    emu.add_fault(action="status", status=500, prompt_contains="R2")
    meta, response, error = sp.process_single({"prompt": "R2 broken"}, timeout=30)
    assert response is None and error.startswith("Transient error (500") and "after 3 attempts" in error
    assert len(gen_calls(emu, "R2")) == 3


def test_rate_limit_moves_to_another_key_without_spending_retries(stream, emu):
    sp, m = stream(paid_keys="all")
    # three 429s in a row (on whichever keys take them), then success: 4 calls, no error budget spent
    emu.add_fault(action="status", status=429, quota_kind="minute", retry_delay="7s", prompt_contains="R3", times=3)
    meta, response, error = sp.process_single({"prompt": "R3 busy"}, timeout=30)
    assert error is None, error
    calls = gen_calls(emu, "R3")
    assert [c["status"] for c in calls] == [429, 429, 429, 200]
    assert len({c["key_label"] for c in calls}) == 4  # each 429 benched its key; the next call used another
    benched = [k for k, s in m.get_keys_status_summary().items() if s["status"] == "TEMPORARILY_EXHAUSTED"]
    assert len(benched) == 3


def test_rejected_key_is_quarantined_and_another_key_answers(stream, emu, fleet_env):
    sp, m = stream(paid_keys="all")
    bad = fleet_env["GEMINI_API_KEY_1"]
    emu.configure(keys={**{v: {"label": k} for k, v in fleet_env.items() if k.startswith("GEMINI_API_KEY_")},
                        bad: {"label": "GEMINI_API_KEY_1", "blocked": True}})
    for i in range(4):
        assert sp.process_single({"prompt": f"R4 {i}"}, timeout=30)[2] is None
    summary = m.get_keys_status_summary()
    assert summary["GEMINI_API_KEY_1"]["status"] == "FAILED_INIT"
    blocked_calls = [e for e in emu.log() if e.get("key_label") == "GEMINI_API_KEY_1"]
    assert len(blocked_calls) <= 1  # at most the one call that revealed it


def test_all_keys_invalid_fails_at_once(stream, emu):
    sp, m = stream(keys=["GEMINI_API_KEY_2", "GEMINI_API_KEY_3"], paid_keys="all")
    emu.configure(keys={"someone-elses-key-1234567": {"label": "other"}})  # our keys are now unknown: 400
    meta, response, error = sp.process_single({"prompt": "R5"}, timeout=30)
    assert response is None and error.startswith("Fatal: No usable API keys")
    rejected = [e for e in emu.log() if e.get("endpoint") == "generateContent" and e.get("status") == 400]
    assert len(rejected) == 2  # one call per key revealed it; then the request failed without waiting


def test_generation_config_object_and_return_response(worker, emu, manager_factory):
    from gemini_tasks import GeminiParallelProcessor

    proc = GeminiParallelProcessor(manager_factory(4, paid_keys="all"), "gemini-2.5-flash",
                                   worker_cooldown_seconds=0, api_call_interval=0, return_response=True)
    cfg = types.GenerateContentConfig(temperature=0.2, max_output_tokens=64,
                                      thinking_config=types.ThinkingConfig(thinking_budget=0))
    results = proc.process_prompts([
        {"prompt": "R6 object", "generation_config": cfg},
        {"prompt": "R6 dict", "generation_config": {"maxOutputTokens": 32, "top_p": 0.8}},
    ], progress=False)
    for meta, response, error in results:
        assert error is None and isinstance(response, types.GenerateContentResponse) and response.text
    configs = [e["generation_config"] for e in gen_calls(emu, "R6")]
    flat = str(configs)
    assert "0.2" in flat and "64" in flat and "32" in flat and "0.8" in flat


def test_celery_inspect_ping_answers(worker, fleet_env):
    r = subprocess.run([sys.executable, "-m", "celery", "-A", "gemini_tasks", "inspect", "ping", "-t", "5"],
                       env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pong" in r.stdout
