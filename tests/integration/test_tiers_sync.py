"""Flex and Priority through the real stack: the tier on the wire, per-prompt override, shed Flex requests
retried outside the error budget, fallback to standard, bad tiers refused before enqueueing, usage summary."""

from __future__ import annotations

import pytest


def gen_calls(emu, marker):
    return [e for e in emu.log() if e.get("endpoint") == "generateContent"
            and any(marker in (p.get("text") or "") for p in (e.get("parts") or []))]


@pytest.fixture
def batch(worker, manager_factory):
    from gemini_tasks import GeminiParallelProcessor

    def make(**kw):
        m = manager_factory(4, paid_keys="all")
        return GeminiParallelProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                       max_workers=8, **kw)

    return make


def test_flex_and_priority_on_the_wire_with_per_prompt_override(batch, emu):
    proc = batch(service_tier="flex")
    prompts = [{"prompt": "T1 a"}, {"prompt": "T1 b", "service_tier": "priority"},
               {"prompt": "T1 c", "service_tier": "standard"}]
    results = proc.process_prompts(prompts, timeout=60)
    assert [r[2] for r in results] == [None, None, None]
    tiers = {e["parts"][0]["text"]: e["service_tier"] for e in gen_calls(emu, "T1")}
    assert tiers == {"T1 a": "flex", "T1 b": "priority", "T1 c": "standard"}
    s = proc.last_summary
    assert s.requests == {"flex": 1, "priority": 1, "standard": 1}
    assert s.tokens["flex"]["prompt"] > 0 and s.tokens["flex"]["output"] > 0
    assert s.cost_usd > 0


def test_shed_flex_is_retried_on_flex_outside_the_error_budget(batch, emu):
    proc = batch(service_tier="flex", flex_retry_backoff=0.05, api_call_retries=1)
    emu.add_fault(action="shed", service_tier="flex", prompt_contains="T2", times=3)
    [(meta, text, error)] = proc.process_prompts([{"prompt": "T2 shed me"}], timeout=60)
    assert error is None and "T2 shed me" in text
    calls = gen_calls(emu, "T2")
    assert [c["status"] for c in calls] == [503, 503, 503, 200]
    assert {c["service_tier"] for c in calls} == {"flex"}
    assert proc.last_summary.shed == 3 and proc.last_summary.fallbacks == 0


def test_shed_as_429_without_quota_is_retried_on_flex_and_benches_no_key(batch, emu):
    proc = batch(service_tier="flex", flex_retry_backoff=0.05, api_call_retries=1)
    emu.add_fault(action="shed", service_tier="flex", prompt_contains="T8", status=429, times=3)
    [(meta, text, error)] = proc.process_prompts([{"prompt": "T8 shed me"}], timeout=60)
    assert error is None and "T8 shed me" in text
    calls = gen_calls(emu, "T8")
    assert [c["status"] for c in calls] == [429, 429, 429, 200]
    assert {c["service_tier"] for c in calls} == {"flex"}
    assert proc.last_summary.shed == 3
    stats = proc.key_manager.pool.status().stats  # a shed is the API's capacity, not the key's quota
    assert stats.get("report_rate_limited", 0) == 0 and stats.get("report_transient", 0) == 3


def test_priority_downgraded_by_the_api_is_recorded_and_priced_as_the_reported_standard(batch, emu, pool_name):
    """Google downgrades Priority requests over the project's dynamic limits to standard (docs/optimization);
    the result, summary and metrics follow the tier usageMetadata.serviceTier reports, not the one asked for."""
    from gemini_tasks.keys.redis_conn import get_redis
    from gemini_tasks.ops.metrics import make_registry
    from gemini_tasks.settings import get_settings

    def reported(requested, served):
        reg = make_registry([pool_name], client=get_redis(get_settings().keys_redis_url))
        return reg.get_sample_value("gemini_tasks_tier_reported_total", {
            "pool": pool_name, "model": "gemini-2.5-flash", "requested": requested, "reported": served}) or 0.0

    before = {pair: reported(*pair) for pair in [("priority", "standard"), ("priority", "priority"),
                                                 ("standard", "none")]}
    proc = batch(service_tier="priority")
    emu.add_fault(action="downgrade", service_tier="priority", prompt_contains="T9 busy")
    prompts = [{"prompt": "T9 busy"}, {"prompt": "T9 served"}, {"prompt": "T9 std", "service_tier": "standard"}]
    results = proc.process_prompts(prompts, timeout=60)
    assert [r[2] for r in results] == [None, None, None]
    assert sorted(e["service_tier"] for e in gen_calls(emu, "T9")) == ["priority", "priority", "standard"]
    assert proc.last_summary.requests == {"standard": 2, "priority": 1}  # the downgraded one priced standard
    assert reported("priority", "standard") == before[("priority", "standard")] + 1
    assert reported("priority", "priority") == before[("priority", "priority")] + 1
    # a standard call is not asked for its raw body: its tier is the requested one, and metrics say so
    assert reported("standard", "none") == before[("standard", "none")] + 1


def test_flex_fallback_after_sends_standard(batch, emu):
    proc = batch(service_tier="flex", flex_retry_backoff=0.2, flex_fallback_after=0.5)
    emu.add_fault(action="shed", service_tier="flex", prompt_contains="T3")  # Flex never serves it
    [(meta, text, error)] = proc.process_prompts([{"prompt": "T3 fallback"}], timeout=60)
    assert error is None
    calls = gen_calls(emu, "T3")
    assert calls[-1]["status"] == 200 and calls[-1]["service_tier"] == "standard"
    assert all(c["service_tier"] == "flex" and c["status"] == 503 for c in calls[:-1]) and len(calls) >= 2
    assert proc.last_summary.fallbacks == 1 and proc.last_summary.requests == {"standard": 1}


def test_unknown_tier_is_refused_before_anything_is_enqueued(batch, emu, manager_factory):
    from gemini_tasks import GeminiParallelProcessor

    with pytest.raises(ValueError, match="service_tier"):
        GeminiParallelProcessor(manager_factory(4), "gemini-2.5-flash", service_tier="gold")
    proc = batch()
    with pytest.raises(ValueError, match=r"prompts_data\[1\]: service_tier"):
        proc.submit([{"prompt": "T4 ok"}, {"prompt": "T4 bad", "service_tier": "cheap"}])
    assert gen_calls(emu, "T4") == []


def test_cli_submit_tier_flex_prints_usage_and_refuses_bad_tiers(worker, emu, fleet_env, pool_name, tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, GEMINI_TASKS_POOL=pool_name, PYTHONUNBUFFERED="1")
    src, out = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"T5 cli {i}"}) + "\n" for i in range(3)))
    cmd = [sys.executable, "-m", "gemini_tasks.ops.cli", "submit", str(src), "-o", str(out), "--paid", "all",
           "--no-progress"]
    r = subprocess.run(cmd + ["--tier", "flex"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert {e["service_tier"] for e in gen_calls(emu, "T5 cli")} == {"flex"}
    assert "usage this run: flex: 3 req" in r.stdout + r.stderr and "0.50x standard" in r.stdout + r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "T5 bad", "service_tier": "gold"}) + "\n")
    r = subprocess.run(cmd[:4] + [str(bad), "-o", str(tmp_path / "b.jsonl"), "--paid", "all", "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "service_tier" in r.stderr
    assert gen_calls(emu, "T5 bad") == []


def test_tts_at_flex_tier_with_a_shed_retried_and_bad_tiers_refused(worker, emu, manager_factory, tmp_path):
    from gemini_tasks import GeminiTTSProcessor

    emu.add_fault(action="shed", service_tier="flex", prompt_contains="T6", times=1)
    tts = GeminiTTSProcessor(manager_factory(4, paid_keys="all"), model="flash", api_call_interval=0,
                             service_tier="flex")
    tts.policy = type(tts.policy)(**{**tts.policy.__dict__, "flex_retry_backoff": 0.05})
    pcm = tts.generate_speech("T6 hello there", output_file=str(tmp_path / "t6.wav"))
    assert pcm and (tmp_path / "t6.wav").stat().st_size > 44
    calls = [e for e in emu.log() if e.get("endpoint") == "generateContent"]
    assert [(c["service_tier"], c["status"]) for c in calls] == [("flex", 503), ("flex", 200)]
    with pytest.raises(ValueError, match="service_tier"):
        GeminiTTSProcessor(manager_factory(4), model="flash", service_tier="gold")


def test_flex_shed_without_fallback_ends_with_a_clear_error_within_max_wait(batch, emu):
    proc = batch(service_tier="flex", flex_retry_backoff=0.3, max_wait_seconds=1.0)
    emu.add_fault(action="shed", service_tier="flex", prompt_contains="T7")  # Flex never serves it
    [(meta, text, error)] = proc.process_prompts([{"prompt": "T7 never served"}], timeout=60)
    assert text is None and error.startswith("Flex request shed") and "flex_fallback_after" in error
    calls = gen_calls(emu, "T7")
    assert calls and all(c["status"] == 503 and c["service_tier"] == "flex" for c in calls)


def test_batch_generate_speech_keeps_the_processors_flex_tier_and_fallback(worker, emu, manager_factory):
    """batch_generate_speech sends every text at the processor's tier with its Flex settings (it built a
    policy of its own at standard tier, so a Flex TTS processor's batches were billed at the full price)."""
    from gemini_tasks import GeminiTTSProcessor

    tts = GeminiTTSProcessor(manager_factory(4, paid_keys="all"), model="flash", api_call_interval=0,
                             service_tier="flex", flex_fallback_after=600.0)
    out = tts.batch_generate_speech([{"text": "T7 one"}, {"text": "T7 two", "voice": "Puck"}], max_workers=2)
    assert [err for _, _, err in out] == [None, None] and all(pcm for _, pcm, _ in out)
    calls = gen_calls(emu, "T7")
    assert len(calls) == 2 and {c["service_tier"] for c in calls} == {"flex"}, calls
