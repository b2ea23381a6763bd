"""The job message: its wire form is the one queued messages already have, and its defaults live in one place."""

from __future__ import annotations

import json

import pytest

from gemini_tasks.messages import CallPolicy, ImageSpec, Job, JobState, PoolSpec, SpeechSpec, TaskFailed, task_name

#: a generation job exactly as the client sent it before the message was typed (a message still queued)
QUEUED_GENERATE = {
    "v": 1, "kind": "generate", "model": "gemini-2.5-flash",
    "pool": {"pool": "default", "keys": ["GEMINI_API_KEY_1", "GEMINI_API_KEY_2"], "rate_window": 60.0},
    "policy": {"processor_id": "abc123def456", "max_workers": 8, "worker_cooldown": 0.0, "api_call_interval": 0.5,
               "spacing_scope": "host", "retries": 5, "max_wait": 120.0, "return_response": True, "strip": False,
               "flex_fallback_after": 30.0, "shed_backoff": 1.5},
    "request": {"prompt": "hello <audio>", "audio_url": "https://example.com/a.mp3"}, "tier": "flex",
    "metadata": {"task_id": "q1", "n": [1, 2]}, "deadline": None,
}
QUEUED_SPEECH = {
    "v": 1, "kind": "speech", "model": "gemini-2.5-flash-preview-tts",
    "pool": {"pool": "p", "keys": ["GEMINI_API_KEY_1"], "rate_window": 10.0},
    "policy": {"processor_id": "x", "max_workers": 4, "worker_cooldown": 0, "api_call_interval": 2.0,
               "spacing_scope": "fleet", "retries": 3, "max_wait": 300.0, "return_response": False, "strip": True,
               "flex_fallback_after": None, "shed_backoff": 2.0},
    "speech": {"prompt": "Read: hi", "speakers": [["Ann", "Kore"], ["Bob", "Puck"]]},
    "metadata": {}, "deadline": 1700000000.5, "tier": "standard",
}
#: an image edit exactly as GeminiImageGenerator wrote it before the image job was typed (no "tier")
QUEUED_IMAGE = {
    "v": 1, "kind": "image", "model": "gemini-3-pro-image-preview",
    "pool": {"pool": "p", "keys": ["GEMINI_API_KEY_1"], "rate_window": 60.0},
    "policy": {"processor_id": "i1", "max_workers": 4, "worker_cooldown": 0, "api_call_interval": 0.0,
               "spacing_scope": "fleet", "retries": 3, "max_wait": 300.0, "return_response": False, "strip": True,
               "flex_fallback_after": None, "shed_backoff": 2.0},
    "image": {"prompt": "make it blue", "aspect_ratio": "16:9", "image_size": None, "input_ref": "abc",
              "input_mime": "image/png"},
    "metadata": {}, "deadline": 1700000300.0,
}


@pytest.mark.parametrize("wire", [QUEUED_GENERATE, QUEUED_SPEECH, {**QUEUED_IMAGE, "tier": "standard"}],
                         ids=["generate", "speech", "image"])
def test_a_queued_message_reads_and_writes_back_unchanged(wire):
    job = Job.from_wire(json.loads(json.dumps(wire)))
    assert job.to_wire() == wire
    assert json.loads(json.dumps(job.to_wire())) == wire  # JSON only, nothing else


def test_fields_read_as_typed_values():
    job = Job.from_wire(QUEUED_GENERATE)
    assert job.policy == CallPolicy(worker_cooldown_seconds=0.0, api_call_interval=0.5, max_workers=8,
                                    api_call_retries=5, max_wait_seconds=120.0, spacing_scope="host",
                                    return_response=True, strip=False, processor_id="abc123def456",
                                    flex_fallback_after=30.0, flex_retry_backoff=1.5)
    assert job.tier == "flex"
    assert job.pool == PoolSpec("default", ["GEMINI_API_KEY_1", "GEMINI_API_KEY_2"], 60.0)
    assert job.state == JobState() and job.deadline is None and job.metadata["task_id"] == "q1"
    speech = Job.from_wire(QUEUED_SPEECH).speech
    assert speech == SpeechSpec("Read: hi", speakers=[["Ann", "Kore"], ["Bob", "Puck"]])
    assert speech.describe() == "Ann=Kore,Bob=Puck"


def test_missing_fields_read_as_the_one_set_of_defaults():
    wire = {k: v for k, v in QUEUED_GENERATE.items() if k != "tier"}  # a job from before tiers existed
    job = Job.from_wire({**wire, "policy": {}, "pool": {"pool": "default"}})
    assert job.tier == "standard" and job.policy.flex_fallback_after is None
    defaults = CallPolicy(processor_id="")
    assert job.policy == defaults
    assert (defaults.worker_cooldown_seconds, defaults.api_call_interval, defaults.max_workers,
            defaults.api_call_retries, defaults.max_wait_seconds, defaults.strip) == (20.0, 2.0, 4, 3, 3600.0, True)
    assert job.pool.keys == [] and job.pool.rate_window == 60.0


def test_state_travels_only_once_a_worker_started_the_job():
    job = Job.from_wire(QUEUED_GENERATE)
    assert "state" not in job.to_wire()
    job.state.first_seen = 1700000000.0
    job.state.errors = 2
    again = Job.from_wire(job.to_wire())
    assert again.state == JobState(first_seen=1700000000.0, errors=2, rate_limited=0)


def test_bad_messages_and_policies_are_refused():
    with pytest.raises(ValueError, match="kind"):
        Job.from_wire({**QUEUED_GENERATE, "kind": "video"})
    with pytest.raises(ValueError, match="request"):
        Job(kind="generate", model="m", pool=PoolSpec("p", []), policy=CallPolicy())
    with pytest.raises(ValueError, match="image only"):
        Job.from_wire({**QUEUED_GENERATE, "kind": "image"})  # an image job carrying a generation request
    with pytest.raises(ValueError, match="max_workers"):
        CallPolicy(max_workers=0)
    with pytest.raises(ValueError, match="spacing_scope"):
        CallPolicy.from_wire({"spacing_scope": "planet"})


def test_describe_is_short_and_names_the_media():
    text = Job.from_wire(QUEUED_GENERATE).describe()
    assert text.startswith("generate model=gemini-2.5-flash prompt='hello <audio>'") and "audio" in text
    assert "metadata=" in text and len(text) < 600


def test_task_names_are_unchanged_and_task_failed_keeps_its_info():
    assert task_name("generate", "batch") == "gemini_tasks.generate_batch"
    assert task_name("speech", "interactive") == "gemini_tasks.speech_interactive"
    err = TaskFailed("All keys exhausted: x", {"kind": "exhausted"})
    assert str(err) == "All keys exhausted: x" and err.info == {"kind": "exhausted"}


def test_an_image_job_reads_typed_and_an_old_one_without_tier_reads_standard():
    job = Job.from_wire(QUEUED_IMAGE)
    assert job.image == ImageSpec("make it blue", aspect_ratio="16:9", input_ref="abc", input_mime="image/png")
    assert job.tier == "standard" and job.deadline == 1700000300.0
    assert job.describe().startswith("image model=gemini-3-pro-image-preview prompt='make it blue'")
    plain = ImageSpec("a cat").to_wire()
    assert plain == {"prompt": "a cat", "aspect_ratio": None, "image_size": None}  # no input keys when none
    assert task_name("image", "interactive") == "gemini_tasks.image_interactive"


def test_an_old_message_with_keys_no_client_writes_any_more_still_reads():
    """Messages queued by an older client: missing fields read as the defaults, unknown keys are ignored
    (``max_sleep``, ``backoff``, ``backoff_max``, ``window_margin`` were read by the worker, never written)."""
    old = {k: v for k, v in QUEUED_GENERATE.items() if k not in ("v", "tier", "deadline", "metadata")}
    old["policy"] = {"processor_id": "p1", "max_workers": 2, "max_sleep": 1.0, "backoff": 3.0, "backoff_max": 9.0,
                     "window_margin": 0.0, "shed_backoff_max": 7.0}
    old["state"] = {"first_seen": 1700000000.0, "errors": 1}
    old["something_new"] = [1, 2]
    job = Job.from_wire(json.loads(json.dumps(old)))
    assert job.policy == CallPolicy(processor_id="p1", max_workers=2)
    assert job.tier == "standard" and job.deadline is None and job.metadata == {}
    assert job.state == JobState(first_seen=1700000000.0, errors=1)
    wire = job.to_wire()
    assert "something_new" not in wire and "max_sleep" not in wire["policy"] and wire["v"] == 1
