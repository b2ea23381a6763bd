"""Tiers and prices as plain functions: tier names, the call config, shed backoff and fallback, cost by kind."""

from __future__ import annotations

import pytest
from google.genai import types

from gemini_tasks.gemini.errors import QUOTA_MINUTE, QUOTA_UNKNOWN, RATE_LIMITED, TRANSIENT, CallError
from gemini_tasks.gemini.pricing import UsageSummary, check_table, estimate_cost, tokens_by_kind
from gemini_tasks.gemini.tiers import check_tier
from gemini_tasks.messages import Job
from gemini_tasks.worker import tier_calls


def _flex_job(policy: dict, state: dict | None = None) -> Job:
    """A flex generation job as a worker decodes it (``state``: what it carried when re-queued)."""
    wire = {"kind": "generate", "model": "m", "pool": {"pool": "p", "keys": ["K1"]}, "policy": policy,
            "request": {"prompt": "x"}, "tier": "flex"}
    return Job.from_wire({**wire, "state": state} if state else wire)


def test_check_tier():
    assert check_tier(" Flex ") == "flex"
    with pytest.raises(ValueError, match="one of standard, flex, priority, batch"):
        check_tier("gold")


def test_call_config_sets_tier_and_flex_timeout(monkeypatch, request):
    from gemini_tasks.settings import get_settings

    monkeypatch.setenv("GEMINI_TASKS_FLEX_TIMEOUT", "600")
    get_settings.cache_clear()  # settings are read once per process; read them again, and again after the test
    request.addfinalizer(get_settings.cache_clear)
    base = types.GenerateContentConfig(temperature=0.2)
    assert tier_calls.call_config(base, "standard", 120) is base
    flex = tier_calls.call_config(base, "flex", 120)
    assert flex.service_tier == "flex" and flex.temperature == 0.2 and flex.http_options.timeout == 600_000
    pri = tier_calls.call_config(None, "priority", 120)
    assert pri.service_tier == "priority" and pri.http_options is None
    assert tier_calls.lease_seconds(_flex_job({}), 120) == 660


def test_shed_backoff_grows_and_fallback_switches_to_standard():
    job = _flex_job({"shed_backoff": 1.0, "flex_fallback_after": 10.0}, {"first_seen": 100.0})
    waits = [tier_calls.on_shed(job, now=101.0) for _ in range(3)]
    assert all(0 <= w <= 9.0 for w in waits) and job.state.shed == 3
    assert tier_calls.current_tier(job) == "flex"
    # the state survives a re-queue: the next worker reads the same sheds and first Flex try
    job = Job.from_wire(job.to_wire())
    assert job.state.shed == 3 and job.state.flex_since == 100.0
    assert tier_calls.on_shed(job, now=110.0) == 0.0
    assert tier_calls.current_tier(job) == "standard" and job.state.fallback is True
    assert Job.from_wire(job.to_wire()).state.tier_now == "standard"
    assert not tier_calls.shed_error(job, CallError(kind=TRANSIENT, code=503))  # at standard: transient


def test_a_shed_is_503_or_a_429_naming_no_quota_on_a_flex_call_only():
    """Google's Flex docs do not say what a shed request returns: both answers of an overloaded API count."""
    flex = _flex_job({})
    unavailable = CallError(kind=TRANSIENT, code=503, status="UNAVAILABLE")
    capacity = CallError(kind=RATE_LIMITED, code=429, status="RESOURCE_EXHAUSTED", quota_kind=QUOTA_UNKNOWN)
    quota = CallError(kind=RATE_LIMITED, code=429, status="RESOURCE_EXHAUSTED", quota_kind=QUOTA_MINUTE,
                      quota_id="GenerateRequestsPerMinutePerProjectPerModel")
    assert tier_calls.shed_error(flex, unavailable) and tier_calls.shed_error(flex, capacity)
    assert not tier_calls.shed_error(flex, quota)  # a quota the key ran out of: the key pool's 429 path
    for tier in ("standard", "priority"):
        other = Job.from_wire({**flex.to_wire(), "tier": tier})
        assert not tier_calls.shed_error(other, unavailable)
        assert not tier_calls.shed_error(other, capacity)
    assert not tier_calls.shed_error(flex, CallError(kind=TRANSIENT, code=500))


def test_shed_backoff_is_capped():
    job = _flex_job({"shed_backoff": 100.0}, {"first_seen": 100.0})
    waits = [tier_calls.on_shed(job, now=101.0) for _ in range(40)]
    assert max(waits) <= tier_calls.SHED_BACKOFF_MAX_SECONDS and job.state.shed == 40


def test_cost_by_kind_and_tier():
    usage = {"prompt_token_count": 1_000_000, "cached_content_token_count": 200_000,
             "candidates_token_count": 100_000, "thoughts_token_count": 50_000}
    kinds = tokens_by_kind(usage)
    assert kinds == {"prompt": 800_000, "cached": 200_000, "output": 100_000, "thinking": 50_000}
    std = estimate_cost("gemini-2.5-flash", kinds, "standard")
    # ai.google.dev/gemini-api/docs/pricing (read 2026-11-29): 2.5 Flash $0.30 in, $2.50 out, $0.03 cached
    assert std == pytest.approx(0.8 * 0.30 + 0.2 * 0.03 + 0.15 * 2.50)
    assert estimate_cost("models/gemini-2.5-flash", kinds, "flex") == pytest.approx(std * 0.5)
    # the page's Batch tab halves input and output but lists the same context caching price
    assert estimate_cost("gemini-2.5-flash", kinds, "batch") == pytest.approx(
        (0.8 * 0.30 + 0.15 * 2.50) * 0.5 + 0.2 * 0.03)
    assert estimate_cost("gemini-2.5-flash", {"prompt": 1_000_000}, "batch") == pytest.approx(0.15)
    assert estimate_cost("gemini-2.5-pro", {"cached": 1_000_000}, "standard") == pytest.approx(0.125)
    assert estimate_cost("gemini-2.5-flash-lite", {"cached": 1_000_000}, "standard") == pytest.approx(0.01)
    assert estimate_cost("gemini-2.5-flash-preview-tts", {"prompt": 1_000_000, "output": 1_000_000},
                         "batch") == pytest.approx(0.25 + 5.00)
    assert estimate_cost("gemini-2.5-flash-lite", kinds, "standard") < std  # longest prefix wins
    assert estimate_cost("unknown-model", kinds, "standard") is None
    table = check_table({"my-model": {"input": 1, "output": 2}})
    assert estimate_cost("my-model-001", {"prompt": 1_000_000}, "standard", table) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        check_table({"m": {"input": 1}})


def test_usage_summary():
    s = UsageSummary("gemini-2.5-flash")
    s.add({"prompt_token_count": 100, "candidates_token_count": 10}, "flex", shed=2)
    s.add({"prompt_token_count": 100, "candidates_token_count": 10}, "standard", fallback=True)
    assert s.requests == {"flex": 1, "standard": 1} and s.shed == 2 and s.fallbacks == 1
    assert s.cost_usd == pytest.approx(s.standard_cost() * 0.75)
    assert "0.75x standard" in s.line()


def test_plan_parts_one_slice_per_project_cut_to_the_job_limit():
    from gemini_tasks.client.batch_api import check_options, plan_parts

    projects = {"p2": ["K3"], "p1": ["K1", "K2"]}
    parts = plan_parts(list(range(7)), projects, max_per_job=3)
    assert [(p["project"], p["indices"]) for p in parts] == [
        ("p1", [0, 1, 2]), ("p1", [3]), ("p2", [4, 5, 6])]
    assert parts[0]["keys"] == ["K1", "K2"]
    assert plan_parts([], projects, 3) == []
    assert check_options({"poll_interval": 1})["max_resubmits"] == 2
    with pytest.raises(ValueError, match="unknown option"):
        check_options({"pol_interval": 1})


def test_plan_parts_cuts_by_estimated_enqueued_tokens_and_defaults_follow_the_rate_limits_page():
    from gemini_tasks.client.batch_api import check_options, plan_parts
    from gemini_tasks.gemini.tiers import batch_enqueued_tokens
    from gemini_tasks.gemini.tokens import estimate_job_tokens

    tokens = {0: 40, 1: 40, 2: 40, 3: 90, 4: 10, 5: 200}
    parts = plan_parts(list(range(6)), {"p": ["K"]}, max_per_job=100, tokens=tokens, max_tokens=100)
    assert [p["indices"] for p in parts] == [[0, 1], [2], [3, 4], [5]]  # contiguous, input order kept
    assert [p["tokens"] for p in parts] == [80, 40, 100, 200]  # a prompt over the budget alone in its part
    # Tier 1 "Batch enqueued tokens" of ai.google.dev/gemini-api/docs/rate-limits (read 2026-11-29)
    assert batch_enqueued_tokens("gemini-2.5-flash") == 3_000_000
    assert batch_enqueued_tokens("models/gemini-2.5-flash-lite") == 10_000_000
    assert batch_enqueued_tokens("gemini-2.5-pro") == 5_000_000
    assert batch_enqueued_tokens("gemini-2.5-flash-preview-tts") == 3_000_000  # no figure published
    assert check_options({})["enqueued_tokens"] is None and check_options({"enqueued_tokens": 5})["enqueued_tokens"] == 5
    with pytest.raises(ValueError, match="enqueued_tokens"):
        check_options({"enqueued_tokens": 0})
    assert estimate_job_tokens({"request": {"prompt": "x" * 400}}) == 100
    assert estimate_job_tokens({"request": {"prompt": "hi", "image_bytes": {"__b64__": "AAAA"}}}) == 1 + 258
    assert estimate_job_tokens({"kind": "speech", "speech": {"prompt": "y" * 41}}) == 11
