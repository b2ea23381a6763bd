"""The Batch API through the real SDK: inline and file jobs, states, output order, inner errors,
ownership by project, cancel/delete/list, limits, scripted FAILED/EXPIRED ends."""

from __future__ import annotations

import io
import json
import time

import pytest
from emu_helpers import MODEL
from google.genai import errors, types

KEYS = {"key-a1": {"label": "A1", "project": "proj-a"}, "key-a2": {"label": "A2", "project": "proj-a"},
        "key-b": {"label": "B", "project": "proj-b"}}  # fmt: skip


def _wait_done(client, name: str, timeout: float = 5.0) -> types.BatchJob:
    deadline = time.monotonic() + timeout
    while True:
        job = client.batches.get(name=name)
        if job.done or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def _inline(texts):
    return [{"contents": [{"parts": [{"text": t}], "role": "user"}], "metadata": {"i": str(i)}}
            for i, t in enumerate(texts)]  # fmt: skip


def test_inline_job_states_and_answers_in_order(make_client, ctl):
    ctl.configure(keys=KEYS, batch_pending_seconds=0.3, batch_run_seconds=1.0)
    client = make_client("key-a1")
    texts = [f"prompt number {i}" for i in range(5)]
    job = client.batches.create(model=MODEL, src=_inline(texts), config={"display_name": "inline-1"})
    assert job.name.startswith("batches/") and job.state == types.JobState.JOB_STATE_PENDING
    assert job.display_name == "inline-1" and job.model == f"models/{MODEL}"
    seen = [job.state]
    while not (done := client.batches.get(name=job.name)).done:
        if done.state != seen[-1]:
            seen.append(done.state)
        time.sleep(0.05)
    assert seen == [types.JobState.JOB_STATE_PENDING, types.JobState.JOB_STATE_RUNNING]
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time is not None
    responses = done.dest.inlined_responses
    assert [r.metadata for r in responses] == [{"i": str(i)} for i in range(5)]
    for text, r in zip(texts, responses, strict=True):
        assert r.error is None and text in r.response.text
        assert r.response.usage_metadata.prompt_token_count > 0
    # same answer as generateContent for the same request
    direct = client.models.generate_content(model=MODEL, contents=texts[0])
    assert direct.text == responses[0].response.text


def test_batch_generation_config_and_tts(client, ctl):
    reqs = [
        {"contents": [{"parts": [{"text": "json please"}], "role": "user"}],
         "config": {"response_mime_type": "application/json", "system_instruction": "be brief"}},
        {"contents": [{"parts": [{"text": "Say hello"}], "role": "user"}],
         "config": {"response_modalities": ["AUDIO"], "speech_config": {
             "voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}}}}},
    ]  # fmt: skip
    job = client.batches.create(model=MODEL, src=reqs)
    done = _wait_done(client, job.name)
    first, second = done.dest.inlined_responses
    assert json.loads(first.response.text)["emulator"] is True
    blob = second.response.candidates[0].content.parts[0].inline_data
    assert blob.mime_type.startswith("audio/") and len(blob.data) > 1000


def test_inner_errors_in_place(client, ctl):
    f = client.files.upload(file=io.BytesIO(b"v" * 100), config={"mime_type": "video/mp4"})  # PROCESSING
    ctl.add_fault(action="status", status=500, endpoint="batch_request", prompt_contains="boom")
    reqs = _inline(["fine", "boom"]) + [
        {"contents": [{"role": "user", "parts": [{"file_data": {"file_uri": f.uri, "mime_type": "video/mp4"}},
                                                 {"text": "video"}]}]},
        {"contents": [{"role": "user", "parts": [{"file_data": {"file_uri": ctl.base_url + "/v1beta/files/nosuch",
                                                                "mime_type": "audio/mpeg"}}]}]},
        {"contents": [{"parts": [{"text": "also fine"}], "role": "user"}]},
    ]  # fmt: skip
    ctl.configure(file_active_after_gets=5)
    done = _wait_done(client, client.batches.create(model=MODEL, src=reqs).name)
    rs = done.dest.inlined_responses
    assert "fine" in rs[0].response.text and rs[0].error is None
    assert rs[1].response is None and rs[1].error.code == 500
    assert rs[2].error.code == 400 and "ACTIVE" in rs[2].error.message
    assert rs[3].error.code == 403
    assert "also fine" in rs[4].response.text


def test_file_input_and_output_via_files_api(make_client, ctl, tmp_path):
    ctl.configure(keys=KEYS)
    client = make_client("key-a1")
    path = tmp_path / "reqs.jsonl"
    lines = [{"key": f"k{i}", "request": {"contents": [{"parts": [{"text": f"file prompt {i}"}]}]}}
             for i in range(4)]  # fmt: skip
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    up = client.files.upload(file=str(path), config={"mime_type": "jsonl", "display_name": "reqs"})
    while client.files.get(name=up.name).state != types.FileState.ACTIVE:
        time.sleep(0.02)
    job = client.batches.create(model=MODEL, src=up.name, config={"display_name": "file-job"})
    done = _wait_done(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    out_name = done.dest.file_name
    assert out_name.startswith("files/")
    # another project's key cannot read the output; a key of the same project can
    with pytest.raises(errors.ClientError) as ei:
        make_client("key-b").files.download(file=out_name)
    assert ei.value.code == 403
    data = make_client("key-a2").files.download(file=out_name)
    out = [json.loads(x) for x in data.decode().splitlines()]
    assert [o.get("key") for o in out] == ["k0", "k1", "k2", "k3", None]
    assert "file prompt 2" in out[2]["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert out[4]["error"]["code"] == 400
    # uploaded files are not downloadable
    with pytest.raises(errors.ClientError):
        client.files.download(file=up.name)


def test_project_ownership_list_cancel_delete(make_client, ctl):
    ctl.configure(keys=KEYS, batch_pending_seconds=30)
    a1, a2, b = make_client("key-a1"), make_client("key-a2"), make_client("key-b")
    job = a1.batches.create(model=MODEL, src=_inline(["x"]))
    assert a2.batches.get(name=job.name).name == job.name  # same project, other key
    with pytest.raises(errors.ClientError) as ei:
        b.batches.get(name=job.name)
    assert ei.value.code == 403
    with pytest.raises(errors.ClientError):
        b.batches.cancel(name=job.name)
    assert [j.name for j in a2.batches.list()] == [job.name]
    assert list(b.batches.list()) == []
    a2.batches.cancel(name=job.name)
    assert a1.batches.get(name=job.name).state == types.JobState.JOB_STATE_CANCELLED
    a1.batches.delete(name=job.name)
    with pytest.raises(errors.ClientError):
        a1.batches.get(name=job.name)


def test_limits_jobs_per_project_inline_size_and_request_count(make_client, ctl):
    ctl.configure(keys=KEYS, batch_pending_seconds=30, batch_max_jobs=2, batch_max_inline_mb=1, batch_max_requests=3)
    a, b = make_client("key-a1"), make_client("key-b")
    a.batches.create(model=MODEL, src=_inline(["1"]))
    a.batches.create(model=MODEL, src=_inline(["2"]))
    with pytest.raises(errors.ClientError) as ei:
        a.batches.create(model=MODEL, src=_inline(["3"]))
    assert ei.value.code == 429 and ei.value.status == "RESOURCE_EXHAUSTED"
    b.batches.create(model=MODEL, src=_inline(["other project"]))  # per project
    with pytest.raises(errors.ClientError) as ei:
        b.batches.create(model=MODEL, src=_inline(["y" * (1100 * 1024)]))
    assert ei.value.code == 400 and "exceeds the limit" in ei.value.message
    with pytest.raises(errors.ClientError) as ei:
        b.batches.create(model=MODEL, src=_inline(["1", "2", "3", "4"]))
    assert ei.value.code == 400


def test_enqueued_token_limit_per_project_and_model(make_client, ctl):
    """Unfinished jobs of one model may hold at most batch_enqueued_tokens input tokens per project; a create
    over it is 429 RESOURCE_EXHAUSTED (no job made); once a job ends its tokens are free again."""
    ctl.configure(keys=KEYS, batch_pending_seconds=0.2, batch_run_seconds=0.3,
                  batch_enqueued_tokens={MODEL: 100})
    a, b = make_client("key-a1"), make_client("key-b")
    first = a.batches.create(model=MODEL, src=_inline(["x" * 200, "y" * 200]))  # 50 + 50 tokens
    assert ctl.batches()[-1]["tokens"] == 100
    with pytest.raises(errors.ClientError) as ei:
        a.batches.create(model=MODEL, src=_inline(["z" * 8]))
    assert ei.value.code == 429 and ei.value.status == "RESOURCE_EXHAUSTED" and "quota" in ei.value.message
    assert len(ctl.batches()) == 1
    b.batches.create(model=MODEL, src=_inline(["z" * 8]))  # another project has its own budget
    with pytest.raises(errors.ClientError):
        b.batches.create(model=MODEL, src=_inline(["w" * 400]))  # a job alone over the limit
    assert _wait_done(a, first.name).state.name == "JOB_STATE_SUCCEEDED"
    a.batches.create(model=MODEL, src=_inline(["z" * 8]))  # the ended job's tokens are free again


def test_scripted_failed_and_expired_ends(client, ctl):
    ctl.configure(batch_end_states=["FAILED", "EXPIRED"])
    j1 = client.batches.create(model=MODEL, src=_inline(["a"]))
    j2 = client.batches.create(model=MODEL, src=_inline(["b"]))
    j3 = client.batches.create(model=MODEL, src=_inline(["c"]))
    assert _wait_done(client, j1.name).state == types.JobState.JOB_STATE_FAILED
    assert _wait_done(client, j2.name).state == types.JobState.JOB_STATE_EXPIRED
    d3 = _wait_done(client, j3.name)
    assert d3.state == types.JobState.JOB_STATE_SUCCEEDED and d3.dest.inlined_responses[0].response.text
    assert ctl.config()["batch_end_states"] == []
    assert {b["state"] for b in ctl.batches()} == {"FAILED", "EXPIRED", "SUCCEEDED"}


def test_batch_does_not_use_generate_quota(client, ctl):
    ctl.configure(quotas={"*": {"*": {"rpm": 1}}}, minute_seconds=60)
    done = _wait_done(client, client.batches.create(model=MODEL, src=_inline(["a", "b", "c"])).name)
    assert all(r.response is not None for r in done.dest.inlined_responses)
    assert client.models.generate_content(model=MODEL, contents="still have my one request").text
