"""service_tier="batch" through the real stack: Gemini Batch API jobs created, polled and read by the fleet
with keys of each job's own project, answers in input order with inner errors in place, FAILED/EXPIRED jobs
re-submitted or ended with clear errors, JSONL file input beyond the inline limit, media through the Files API
in the job's project, collect from another process, cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

KEY_SECRETS = {f"GEMINI_API_KEY_{i}": f"emu-secret-{i:02d}-abcdefghijklmnop" for i in range(1, 5)}  # conftest's

PROJECTS = {"GEMINI_API_KEY_1": "proj-1", "GEMINI_API_KEY_2": "proj-1", "GEMINI_API_KEY_3": "proj-2",
            "GEMINI_API_KEY_4": "proj-2"}
FAST = {"poll_interval": 0.1}


@pytest.fixture
def emu_projects(emu):
    emu.configure(keys={KEY_SECRETS[k]: {"label": k, "project": p} for k, p in PROJECTS.items()},
                  batch_pending_seconds=0.1, batch_run_seconds=0.3)
    return emu


@pytest.fixture
def make(worker, manager_factory):
    from gemini_tasks import GeminiParallelProcessor

    def build(**kw):
        m = manager_factory(4, paid_keys="all", projects=PROJECTS)
        kw.setdefault("batch_options", FAST)
        kw.setdefault("service_tier", "batch")
        return GeminiParallelProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0, **kw)

    return build


def _jobs_by_project(emu):
    return {b["project"]: b for b in emu.batches()}


def test_batch_tier_answers_in_order_one_job_per_project(make, emu_projects):
    emu = emu_projects
    proc = make()
    prompts = [{"prompt": f"B1 prompt {i}", "metadata": {"i": i}} for i in range(10)]
    results = proc.process_prompts(prompts, timeout=60)
    assert [m["i"] for m, _, _ in results] == list(range(10))
    assert all(err is None and f"B1 prompt {i}" in text for i, (_, text, err) in enumerate(results))
    jobs = emu.batches()
    assert sorted((b["project"], b["requests"], b["state"]) for b in jobs) == [
        ("proj-1", 5, "SUCCEEDED"), ("proj-2", 5, "SUCCEEDED")]
    # every create/get of a job was made with a key of the job's own project
    owner = {b["name"]: b["project"] for b in jobs}
    calls = [e for e in emu.log() if str(e.get("endpoint", "")).startswith("batches.")]
    assert calls and all(e["project"] == owner[e["batch"]] for e in calls if e.get("batch") in owner)
    assert not [e for e in emu.log() if e.get("endpoint") == "generateContent"]  # no synchronous calls
    s = proc.last_summary
    assert s.requests == {"batch": 10} and s.tokens["batch"]["prompt"] > 0
    assert s.cost_usd == pytest.approx(s.standard_cost() * 0.5)


def test_inner_errors_in_place_and_mixed_tiers(make, emu_projects):
    emu = emu_projects
    emu.add_fault(action="status", status=400, endpoint="batch_request", prompt_contains="B2 bad",
                  message="Invalid argument in this request")
    proc = make()
    prompts = [{"prompt": "B2 ok 0"}, {"prompt": "B2 bad 1"}, {"prompt": "B2 sync 2", "service_tier": "standard"},
               {"prompt": "B2 ok 3"}]
    results = proc.process_prompts(prompts, timeout=60)
    assert "B2 ok 0" in results[0][1] and results[0][2] is None
    assert results[1][1] is None and results[1][2].startswith("Persistent API error (400")
    assert "Invalid argument" in results[1][2] and "persistent" in results[1][2].lower()
    assert "B2 sync 2" in results[2][1]
    assert "B2 ok 3" in results[3][1]
    sync = [e for e in emu.log() if e.get("endpoint") == "generateContent"]
    assert len(sync) == 1 and sync[0]["service_tier"] == "standard"
    assert proc.last_summary.requests == {"batch": 2, "standard": 1}


def test_failed_job_is_resubmitted_and_expired_ends_with_a_clear_error(make, emu_projects):
    emu = emu_projects
    emu.configure(batch_end_states=["FAILED"])  # the first job fails, its re-submission succeeds
    proc = make()
    m = proc.key_manager
    results = proc.process_prompts([{"prompt": f"B3 {i}"} for i in range(2)], timeout=60)
    assert all(err is None for _, _, err in results)
    states = sorted(b["state"] for b in emu.batches())
    assert states.count("FAILED") == 1 and states.count("SUCCEEDED") == 2
    emu.configure(batch_end_states=["EXPIRED"] * 6)
    proc2 = make(batch_options={"poll_interval": 0.1, "max_resubmits": 1})
    results = proc2.process_prompts([{"prompt": "B3 expire 0"}, {"prompt": "B3 expire 1"}], timeout=60)
    for _, text, err in results:
        assert text is None and "ended EXPIRED" in err and "2 job(s) tried" in err
    assert m is not None


def test_jsonl_file_input_beyond_the_inline_limit_and_media_upload_in_the_job_project(make, emu_projects, tmp_path):
    emu = emu_projects
    audio = tmp_path / "clip.mp3"
    audio.write_bytes(b"ID3" + b"\x00" * 2000)
    proc = make(batch_options={"poll_interval": 0.1, "inline_limit": 500})
    prompts = [{"prompt": f"B4 long prompt {i} " + "x" * 300} for i in range(4)]
    prompts.append({"prompt": "B4 with audio <audio>", "audio_path": str(audio)})
    results = proc.process_prompts(prompts, timeout=60)
    assert all(err is None for _, _, err in results), results
    assert "B4 long prompt 2" in results[2][1] and "[+file audio/" in results[4][1]
    jobs = emu.batches()
    assert {b["inline"] for b in jobs} == {False}
    files = emu.files()
    uploads = [f for f in files if f["mime_type"].startswith("audio/")]
    job_of_audio = [b for b in jobs if b["project"] == uploads[0]["project"]]
    assert len(uploads) == 1 and job_of_audio  # uploaded in the project of the job that used it
    assert not any(f["mime_type"] == "jsonl" for f in files)  # the JSONL inputs were deleted once read
    assert len([e for e in emu.log() if e.get("endpoint") == "files.delete"]) == len(jobs)


def test_submit_then_collect_from_another_process(make, emu_projects, fleet_env, pool_name):
    proc = make()
    handle = proc.submit([{"prompt": f"B5 {i}", "metadata": {"n": i}} for i in range(3)])
    assert handle.group_id.startswith("tb-")
    env = dict(os.environ, GEMINI_TASKS_POOL=pool_name)
    r = subprocess.run([sys.executable, "-m", "gemini_tasks.ops.cli", "collect", handle.group_id, "--timeout", "60"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [row["metadata"]["n"] for row in rows] == [0, 1, 2]
    assert all("B5" in row["response"] and row["error"] is None for row in rows)
    assert handle.progress() == (3, 3)


def test_cancel_stops_the_remote_jobs(make, emu_projects):
    emu = emu_projects
    emu.configure(batch_pending_seconds=60)
    proc = make()
    handle = proc.submit([{"prompt": f"B6 {i}"} for i in range(4)])
    import time

    deadline = time.monotonic() + 20
    while len(emu.batches()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.cancel(handle)
    results = proc.collect(handle, timeout=30)
    assert all(text is None and err.startswith("Cancelled") for _, text, err in results)
    assert {b["state"] for b in emu.batches()} == {"CANCELLED"}


def test_cli_submit_tier_batch(worker, emu_projects, fleet_env, pool_name, tmp_path):
    emu = emu_projects
    env = dict(os.environ, GEMINI_TASKS_POOL=pool_name)
    src, out = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"B7 cli {i}"}) + "\n" for i in range(4)))
    r = subprocess.run([sys.executable, "-m", "gemini_tasks.ops.cli", "submit", str(src), "-o", str(out),
                        "--paid", "all", "--no-progress", "--tier", "batch", "--batch-poll-interval", "0.1"],
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3, 4]
    assert all(f"B7 cli {i}" in row["response"] for i, row in enumerate(rows))
    assert "batch: 4 req" in r.stdout + r.stderr and "0.50x standard" in r.stdout + r.stderr
    assert emu.batches() and not [e for e in emu.log() if e.get("endpoint") == "generateContent"]


def test_cli_submit_collects_the_batch_an_interrupted_run_submitted(make, emu_projects, fleet_env, pool_name,
                                                                   tmp_path):
    """A run interrupted after its Batch API submission left ``<output>.tierbatch.json``: the next run collects
    that batch and sends nothing again."""
    emu = emu_projects
    prompts = [{"prompt": f"B8 resumed {i}"} for i in range(3)]
    src, out = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    handle = make().submit(prompts)  # what the interrupted run had sent
    out.with_name(out.name + ".tierbatch.json").write_text(json.dumps({"group": handle.group_id, "lines": [1, 2, 3]}))
    env = dict(os.environ, GEMINI_TASKS_POOL=pool_name)
    r = subprocess.run([sys.executable, "-m", "gemini_tasks.ops.cli", "submit", str(src), "-o", str(out),
                        "--paid", "all", "--no-progress", "--tier", "batch", "--batch-poll-interval", "0.1"],
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert f"collecting batch {handle.group_id} of an earlier run" in r.stdout + r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3]
    assert all(f"B8 resumed {i}" in row["response"] for i, row in enumerate(rows))
    jobs = emu.batches()
    assert len(jobs) == len({j["project"] for j in jobs}) == 2  # the earlier run's job per project, none sent again
    assert not out.with_name(out.name + ".tierbatch.json").exists()


def test_metrics_count_tokens_and_cost_by_tier(make, emu_projects, pool_name, fleet_env):
    from gemini_tasks.keys.redis_conn import get_redis
    from gemini_tasks.ops.metrics import make_registry
    from gemini_tasks.settings import get_settings

    def value(reg, name, **labels):
        return reg.get_sample_value(name, {"pool": pool_name, "model": "gemini-2.5-flash", **labels}) or 0.0

    reg = make_registry([pool_name], client=get_redis(get_settings().keys_redis_url))
    before = {t: value(reg, "gemini_tasks_estimated_cost_usd_total", tier=t) for t in ("batch", "flex")}
    make().process_prompts([{"prompt": f"B8 {i}"} for i in range(3)], timeout=60)
    emu_projects.add_fault(action="shed", service_tier="flex", prompt_contains="B8 flex", times=2)
    make(service_tier="flex", flex_retry_backoff=0.05).process_prompts([{"prompt": f"B8 flex {i}"} for i in range(3)],
                                                                      timeout=60)
    reg = make_registry([pool_name], client=get_redis(get_settings().keys_redis_url))
    for tier in ("batch", "flex"):
        assert value(reg, "gemini_tasks_tier_requests_total", tier=tier) >= 3
        assert value(reg, "gemini_tasks_tier_tokens_total", tier=tier, kind="prompt") > 0
        assert value(reg, "gemini_tasks_tier_tokens_total", tier=tier, kind="output") > 0
        assert value(reg, "gemini_tasks_estimated_cost_usd_total", tier=tier) > before[tier]
    assert value(reg, "gemini_tasks_calls_total", outcome="shed") >= 2


def test_async_batch_tier_and_single_requests_refuse_it(make, emu_projects, manager_factory):
    import asyncio

    from gemini_tasks import GeminiStreamingProcessor

    proc = make()
    results = asyncio.run(proc.aprocess_prompts([{"prompt": f"B9 {i}"} for i in range(3)], timeout=60))
    assert [("B9 %d" % i) in text for i, (_, text, _) in enumerate(results)] == [True] * 3
    with pytest.raises(ValueError, match="asynchronous"):
        GeminiStreamingProcessor(manager_factory(4), "gemini-2.5-flash", service_tier="batch")
    sp = GeminiStreamingProcessor(manager_factory(4), "gemini-2.5-flash")
    sp.start()
    try:
        with pytest.raises(ValueError, match="asynchronous"):
            sp.process_single({"prompt": "B9 single", "service_tier": "batch"}, timeout=5)
    finally:
        sp.stop()


def test_a_redelivered_step_never_creates_a_second_job(emu_projects, fleet_env, manager_factory):
    """The step is at-least-once (acks_late): a second copy while the first creates waits, and a copy after the
    job exists only polls it."""
    import time
    import uuid

    from celery.exceptions import Retry

    from gemini_tasks.client.jobs import CallPolicy, generate_job
    from gemini_tasks.keys.redis_conn import get_redis
    from gemini_tasks.keys.tier_batches import TierBatchRecord
    from gemini_tasks.settings import get_settings
    from gemini_tasks.worker.batch_jobs import DONE, step

    emu = emu_projects
    m = manager_factory(4, paid_keys="all", projects=PROJECTS)
    policy = CallPolicy(service_tier="batch")
    jobs = [generate_job({"prompt": f"B10 {i}"}, model="gemini-2.5-flash", manager=m, policy=policy) for i in range(2)]
    gid = f"tb-{uuid.uuid4().hex}"
    record = TierBatchRecord(get_redis(get_settings().keys_redis_url), gid)
    record.create({"model": "gemini-2.5-flash", "pool": m.spec(), "total": 2, "jobs": {"0": jobs[0], "1": jobs[1]},
                   "batch_indices": [0, 1], "sync_indices": [], "poll_interval": 0.1, "max_resubmits": 2},
                  [{"project": "proj-1", "keys": ["GEMINI_API_KEY_1", "GEMINI_API_KEY_2"], "indices": [0, 1],
                    "attempts": 0}])
    countdowns = []

    def requeue(countdown):
        countdowns.append(countdown)
        raise Retry()

    assert record.claim_create(0, 60)  # another copy is creating the job right now
    with pytest.raises(Retry):
        step(gid, 0, requeue)
    assert emu.batches() == []
    record.release_create(0)
    with pytest.raises(Retry):
        step(gid, 0, requeue)  # creates the job
    with pytest.raises(Retry):
        step(gid, 0, requeue)  # a redelivered copy: polls the same job
    assert len(emu.batches()) == 1 and record.part(0)["attempts"] == 1
    deadline = time.monotonic() + 10
    while True:
        try:
            out = step(gid, 0, requeue)
            break
        except Retry:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert out["state"] == DONE and len(emu.batches()) == 1
    assert [r["ok"] for _, r in sorted(record.results().items())] == [True, True]
    assert step(gid, 0, requeue) == {"state": DONE}  # a late copy after the end does nothing


def test_tts_through_the_batch_api_gives_the_sync_paths_audio_in_input_order(worker, emu_projects, manager_factory,
                                                                           tmp_path):
    """Google lists the Batch API for its TTS models (model pages' capabilities; pricing page Batch tab for
    gemini-2.5-flash-preview-tts): speech at service_tier="batch" goes through batches, inline audio comes
    back as the same PCM and WAV files as the synchronous path."""
    import wave

    from gemini_tasks import GeminiTTSProcessor
    from gemini_tasks.gemini import tts as tts_lib

    emu = emu_projects
    m = manager_factory(4, paid_keys="all", projects=PROJECTS)
    sync = GeminiTTSProcessor(m, model="flash", api_call_interval=0)
    ref = sync.generate_speech("B9 reference line", voice="Puck")
    tts = GeminiTTSProcessor(m, model="flash", api_call_interval=0, service_tier="batch", batch_options=FAST)
    texts = [{"text": f"B9 line {i} " + "word " * (i * 5), "voice": "Puck", "metadata": {"i": i},
              "output_file": str(tmp_path / f"b9-{i}.wav")} for i in range(5)]
    out = tts.batch_generate_speech(texts)
    assert [meta["i"] for meta, _, _ in out] == list(range(5))
    assert all(err is None and pcm for _, pcm, err in out), [e for _, _, e in out]
    sizes = [len(pcm) for _, pcm, _ in out]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # each prompt got its own answer, in order
    for i, (_, pcm, _) in enumerate(out):
        with wave.open(str(tmp_path / f"b9-{i}.wav"), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
            assert w.readframes(w.getnframes()) == pcm
    assert ref and tts_lib.wav_duration(str(tmp_path / "b9-0.wav")) > 0
    gen = [e for e in emu.log() if e.get("endpoint") == "generateContent"]
    assert len(gen) == 1  # only the synchronous reference; the five went through batches
    jobs = emu.batches()
    assert sum(b["requests"] for b in jobs) == 5 and {b["state"] for b in jobs} == {"SUCCEEDED"}
    assert all(b["model"] == "gemini-2.5-flash-preview-tts" for b in jobs)
    single = tts.generate_speech("B9 single line", voice="Kore", output_file=str(tmp_path / "b9-one.wav"))
    assert single and len(emu.batches()) > len(jobs)
    import asyncio

    again = asyncio.run(tts.agenerate_speech("B9 async line", voice="Kore"))
    assert again and len(emu.batches()) > len(jobs) + 1
    assert len([e for e in emu.log() if e.get("endpoint") == "generateContent"]) == 1


def test_a_large_batch_is_split_under_the_enqueued_token_budget_answers_in_order(make, emu_projects):
    """Each project may hold only so many input tokens in unfinished jobs of a model (the rate-limits page's
    "Batch enqueued tokens"); the emulator refuses a create over it. The parts are cut by estimated tokens and
    a project's next job is created when its earlier ones have ended: several jobs, none refused."""
    emu = emu_projects
    emu.configure(batch_enqueued_tokens={"gemini-2.5-flash": 300})
    proc = make(batch_options={**FAST, "enqueued_tokens": 300})
    prompts = [{"prompt": f"B10 prompt {i:02d} " + "x" * 180, "metadata": {"i": i}} for i in range(24)]  # 50 tokens
    results = proc.process_prompts(prompts, timeout=120)
    assert [m["i"] for m, _, _ in results] == list(range(24))
    assert all(err is None and f"B10 prompt {i:02d}" in text for i, (_, text, err) in enumerate(results))
    jobs = emu.batches()
    assert len(jobs) >= 4 and {b["state"] for b in jobs} == {"SUCCEEDED"}
    assert all(b["tokens"] <= 300 for b in jobs) and sum(b["requests"] for b in jobs) == 24
    creates = [e for e in emu.log() if e.get("endpoint") == "batches.create"]
    assert len(creates) == len(jobs) and all(e["status"] == 200 for e in creates)  # gated, never refused
    for project in ("proj-1", "proj-2"):  # a project's jobs ran one after another within its budget
        enq = [e.get("enqueued_tokens", 0) + e["batch_tokens"] for e in creates if e["project"] == project]
        assert enq and max(enq) <= 300


def test_a_prompt_over_the_enqueued_token_budget_ends_with_a_clear_error(make, emu_projects):
    proc = make(batch_options={**FAST, "enqueued_tokens": 100})
    results = proc.process_prompts([{"prompt": "B11 small"}, {"prompt": "B11 " + "y" * 800}], timeout=60)
    assert results[0][2] is None and "B11 small" in results[0][1]
    assert results[1][1] is None and "enqueued-token budget of 100" in results[1][2]
