"""The job messages the client publishes, field by field, as they leave it (Celery's ``before_task_publish``).

Expected values are written out from the message contract (:mod:`gemini_tasks.messages.job`: ``CallPolicy``'s
defaults, the pool's ids, the per-prompt tier) and compared as JSON text, key order included, so a refactoring
of how the client builds its jobs cannot change one byte of what is queued. The session's worker answers them
(the single requests wait for their answer); a message a worker re-queues (it carries ``state``) is not captured.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import pytest

MODEL = "gemini-2.5-flash"
#: ``CallPolicy()``'s wire form but for the processor id (a fresh one per processor)
DEFAULT_POLICY = {"max_workers": 4, "worker_cooldown": 20.0, "api_call_interval": 2.0, "spacing_scope": "fleet",
                  "retries": 3, "max_wait": 3600.0, "return_response": False, "strip": True,
                  "flex_fallback_after": None, "shed_backoff": 2.0}

#: the processors' own default: ``worker_cooldown_seconds=20`` (an int, carried as given)
PROCESSOR_POLICY = {**DEFAULT_POLICY, "worker_cooldown": 20}


#: Flower's line (``argsrepr``) of each message captured by ``sent``, in the same order
ARGSREPR: list[str] = []


@pytest.fixture
def sent(celery_app, worker):
    """(task name, job) of every message published during the test, in publishing order."""
    from celery.signals import before_task_publish

    captured: list[tuple[str, dict]] = []

    def on_publish(sender=None, body=None, headers=None, **_kw):
        args = body[0]
        if args and isinstance(args[0], dict) and "state" not in args[0]:
            captured.append((sender, json.loads(json.dumps(args[0]))))  # as the broker carries it
            ARGSREPR.append(headers.get("argsrepr"))

    before_task_publish.connect(on_publish, weak=False)
    ARGSREPR.clear()
    try:
        yield captured
    finally:
        before_task_publish.disconnect(on_publish)
        celery_app.control.purge()


def envelope(kind, pool, policy, body, *, metadata=None, deadline=None, tier="standard", model=MODEL):
    out = {"v": 1, "kind": kind, "model": model, "pool": pool, "policy": policy, **body,
           "metadata": metadata or {}, "deadline": deadline, "tier": tier}
    return out


def same_text(actual, expected):
    assert json.dumps(actual) == json.dumps(expected)


def pool_of(manager):
    return {"pool": manager.pool_name, "keys": list(manager.key_ids), "rate_window": 60.0}


def with_policy_id(policy, actual):
    assert isinstance(actual["policy"]["processor_id"], str) and len(actual["policy"]["processor_id"]) == 12
    return {"processor_id": actual["policy"]["processor_id"], **policy}


def test_a_batch_of_text_media_and_per_prompt_overrides(sent, manager_factory, tmp_path):
    from gemini_tasks.client.processors import GeminiParallelProcessor

    manager = manager_factory(2, paid_keys="all")  # flex and priority are paid tiers
    audio = tmp_path / "a.mp3"
    audio.write_bytes(b"ID3" + bytes(range(200)))
    digest = hashlib.sha256(audio.read_bytes()).hexdigest()
    prompts = [
        {"prompt": "hello"},
        {"prompt": "describe <audio> and <image>", "audio_path": str(audio), "image_bytes": b"\x89PNG",
         "metadata": {"id": 7, "tags": ["a", "b"]}},
        {"prompt": "cold", "service_tier": "flex", "generation_config": {"temperature": 0.2},
         "metadata": {"id": 8}},
        {"prompt": "urgent", "service_tier": "priority"},
    ]
    processor = GeminiParallelProcessor(manager, MODEL)
    results = processor.process_prompts(prompts, timeout=60)
    assert [error for _, _, error in results] == [None] * 4
    assert [name for name, _ in sent] == ["gemini_tasks.generate_batch"] * 4
    jobs = [job for _, job in sent]
    policy = with_policy_id(PROCESSOR_POLICY, jobs[0])
    pool = pool_of(manager)
    expected = [
        envelope("generate", pool, policy, {"request": {"prompt": "hello"}}),
        envelope("generate", pool, policy, {"request": {
            "prompt": "describe <audio> and <image>", "audio_path": os.path.abspath(audio),
            "image_bytes": {"__b64__": base64.b64encode(b"\x89PNG").decode()},
            "file_checks": {os.path.abspath(audio): {"size": 203, "sha256": digest}}}},
            metadata={"id": 7, "tags": ["a", "b"]}),
        envelope("generate", pool, policy, {"request": {"prompt": "cold", "generation_config": {"temperature": 0.2}}},
                 metadata={"id": 8}, tier="flex"),
        envelope("generate", pool, policy, {"request": {"prompt": "urgent"}}, tier="priority"),
    ]
    for actual, want in zip(jobs, expected):
        same_text(actual, want)
    assert ARGSREPR[0] == "generate model=gemini-2.5-flash prompt='hello' metadata={}"
    assert ARGSREPR[1].startswith("generate model=gemini-2.5-flash prompt='describe <audio> and <image>' media=[")
    assert ARGSREPR[1].endswith(' metadata={"id": 7, "tags": ["a", "b"]}') and "PNG" not in ARGSREPR[1]


def test_processor_settings_travel_in_every_job(sent, manager_factory):
    from gemini_tasks.client.processors import GeminiParallelProcessor

    manager = manager_factory(1, paid_keys="all")
    processor = GeminiParallelProcessor(manager, MODEL, worker_cooldown_seconds=0, api_call_interval=0.5,
                                        max_workers=8, api_call_retries=5, max_wait_seconds=120,
                                        return_response=True, service_tier="flex", flex_fallback_after=30)
    results = processor.process_prompts([{"prompt": "a"}, {"prompt": "b", "service_tier": "standard"}], timeout=60)
    assert [error for _, _, error in results] == [None, None]
    (_, first), (_, second) = sent
    policy = with_policy_id({**DEFAULT_POLICY, "max_workers": 8, "worker_cooldown": 0, "api_call_interval": 0.5,
                             "retries": 5, "max_wait": 120, "return_response": True,
                             "flex_fallback_after": 30.0}, first)
    same_text(first, envelope("generate", pool_of(manager), policy, {"request": {"prompt": "a"}}, tier="flex"))
    same_text(second, envelope("generate", pool_of(manager), policy, {"request": {"prompt": "b"}}))


def test_batch_tier_jobs_are_stored_in_their_submission(sent, manager_factory):
    from gemini_tasks.client import batch_api
    from gemini_tasks.client.processors import GeminiParallelProcessor

    manager = manager_factory(2)
    processor = GeminiParallelProcessor(manager, MODEL, service_tier="batch")
    handle = processor.submit([{"prompt": "later", "metadata": {"k": 1}}])
    try:
        stored = batch_api._record(handle.group_id).meta()["jobs"]
        policy = with_policy_id(PROCESSOR_POLICY, stored["0"])
        same_text(stored, {"0": envelope("generate", pool_of(manager), policy, {"request": {"prompt": "later"}},
                                         metadata={"k": 1}, tier="batch")})
        assert not [job for _, job in sent]  # the job itself is not published: the fleet's steps send it
    finally:
        processor.cancel(handle)


def test_a_single_request_and_a_stream_carry_a_deadline(sent, manager_factory):
    from gemini_tasks.client.processors import GeminiStreamingProcessor

    manager = manager_factory(1)
    processor = GeminiStreamingProcessor(manager, MODEL, worker_cooldown_seconds=0, api_call_interval=0)
    processor.start()
    try:
        before = time.time()
        _, response, error = processor.process_single({"prompt": "now", "metadata": {"m": 1}}, timeout=60)
        assert error is None and response
        stream = processor.stream_single({"prompt": "flow", "service_tier": "flex"}, timeout=5)
        stream.close()  # published when made
        after = time.time()
    finally:
        processor.stop()
    (single_task, single), (stream_task, streamed) = sent
    assert (single_task, stream_task) == ("gemini_tasks.generate_interactive", "gemini_tasks.generate_stream")
    assert before + 60 + 2.0 <= single["deadline"] <= after + 60 + 2.0  # the caller's timeout + the grace
    assert before + 5 + 2.0 <= streamed["deadline"] <= after + 5 + 2.0
    assert ARGSREPR == ["generate model=gemini-2.5-flash prompt='now' metadata={\"m\": 1}",
                        "stream generate model=gemini-2.5-flash prompt='flow' metadata={}"]
    # the streaming processor does not strip (the original's streaming mode returned response.text as is)
    policy = with_policy_id({**DEFAULT_POLICY, "worker_cooldown": 0, "api_call_interval": 0, "strip": False}, single)
    same_text(single, envelope("generate", pool_of(manager), policy, {"request": {"prompt": "now"}},
                               metadata={"m": 1}, deadline=single["deadline"]))
    same_text(streamed, envelope("generate", pool_of(manager), policy, {"request": {"prompt": "flow"}},
                                 deadline=streamed["deadline"], tier="flex"))


def test_speech_jobs(sent, manager_factory):
    from gemini_tasks.client.tts_processor import GeminiTTSProcessor

    manager = manager_factory(1, paid_keys="all")  # speech models have no free tier
    tts = GeminiTTSProcessor(manager, timeout=60, api_call_interval=0, service_tier="priority")
    before = time.time()
    assert tts.generate_speech("Hi there", voice="Puck")
    assert tts.generate_multi_speaker_dialogue([("Ann", "Hello"), ("Bob", "Hey")], {"Ann": "Kore", "Bob": "Puck"},
                                               style_prompt="warmly")
    after = time.time()
    (one_task, one), (two_task, two) = sent
    assert one_task == two_task == "gemini_tasks.speech_interactive"
    assert ARGSREPR[0].startswith("speech voice=Puck text=") and "Hi there" in ARGSREPR[0]
    assert ARGSREPR[1].startswith("speech voice=[['Ann', 'Kore'], ['Bob', 'Puck']] text=")
    policy = with_policy_id({**DEFAULT_POLICY, "worker_cooldown": 0, "api_call_interval": 0, "max_wait": 60}, one)
    model = tts.model
    for job in (one, two):
        assert before + 60 + 2.0 <= job["deadline"] <= after + 60 + 2.0
    from gemini_tasks.gemini import tts as tts_lib

    same_text(one, envelope("speech", pool_of(manager), policy,
                            {"speech": {"prompt": tts_lib.speech_prompt("Hi there", None), "voice": "Puck"}},
                            deadline=one["deadline"], tier="priority", model=model))
    same_text(two, envelope("speech", pool_of(manager), policy,
                            {"speech": {"prompt": tts_lib.dialogue_prompt([("Ann", "Hello"), ("Bob", "Hey")],
                                                                          "warmly"),
                                        "speakers": [["Ann", "Kore"], ["Bob", "Puck"]]}},
                            deadline=two["deadline"], tier="priority", model=model))


def test_an_image_job(sent, manager_factory):
    from gemini_tasks.client.images import GeminiImageGenerator

    manager = manager_factory(1)
    images = GeminiImageGenerator(manager, timeout=60)
    before = time.time()
    assert images.generate_image("a red circle", aspect_ratio="16:9") is not None
    after = time.time()
    [(task, job)] = sent
    assert task == "gemini_tasks.image_interactive"
    assert before + 60 + 2.0 <= job["deadline"] <= after + 60 + 2.0
    policy = with_policy_id({**DEFAULT_POLICY, "worker_cooldown": 0, "api_call_interval": 0.0, "max_wait": 60}, job)
    same_text(job, envelope("image", pool_of(manager), policy,
                            {"image": {"prompt": "a red circle", "aspect_ratio": "16:9", "image_size": None}},
                            deadline=job["deadline"], model="gemini-3-pro-image-preview"))
