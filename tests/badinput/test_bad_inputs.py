"""Bad input through the public API, table-driven: each case raises an error that names the problem, before
anything is enqueued (no broker publish, no API call), and the requests around it are not affected."""

from __future__ import annotations

import math
import wave

import pytest

#: the key names tests/badinput/conftest.py gives secrets to (conftest modules are not importable by name)
KEY_NAMES = [f"GEMINI_API_KEY_B{i}" for i in range(1, 4)]
MODEL = "gemini-2.5-flash"
FAST = dict(worker_cooldown_seconds=0, api_call_interval=0, max_workers=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    wav = d / "tone.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 800)
    empty = d / "empty.wav"
    empty.write_bytes(b"")
    return {"wav": str(wav), "empty": str(empty), "dir": str(d), "missing": str(d / "nope.wav")}


def _batch(manager, prompts, **kw):
    from gemini_tasks import GeminiParallelProcessor

    return GeminiParallelProcessor(manager, MODEL, **{**FAST, **kw}).process_prompts(prompts, progress=False)


def _processor(manager, model):
    from gemini_tasks import GeminiParallelProcessor

    return GeminiParallelProcessor(manager, model)


def _one(manager, prompt_data):
    return _batch(manager, [prompt_data])


def _stream(manager, prompt_data, timeout=10.0, start=True):
    from gemini_tasks import GeminiStreamingProcessor

    sp = GeminiStreamingProcessor(manager, MODEL, **FAST)
    if start:
        sp.start()
    try:
        return sp.process_single(prompt_data, timeout=timeout)
    finally:
        sp.stop()


def _tts(manager, **kw):
    from gemini_tasks import GeminiTTSProcessor

    return GeminiTTSProcessor(manager, **kw)


def _manager(stack, keys, **kw):
    from gemini_tasks import AdvancedApiKeyManager

    kw.setdefault("pool", "bad-input-pool")
    return AdvancedApiKeyManager(keys, redis_url=stack.url, **kw)


class Unserialisable:
    pass


# (id, call(manager, files, stack), exception type, regex the message must match)
CASES = [
    # -- prompts ---------------------------------------------------------------------------------------------
    ("no-prompt-no-media", lambda m, f, s: _one(m, {}), ValueError, r"prompt"),
    ("empty-prompt-no-media", lambda m, f, s: _one(m, {"prompt": "   "}), ValueError, r"prompt"),
    ("prompt-not-a-string", lambda m, f, s: _one(m, {"prompt": 42}), ValueError, r"prompt: must be a string"),
    ("unknown-field", lambda m, f, s: _one(m, {"prompt": "hi", "promt": "typo"}), ValueError, r"promt"),
    ("prompts-not-a-list", lambda m, f, s: _batch(m, {"prompt": "hi"}), TypeError, r"list of prompt dicts"),
    ("metadata-not-json", lambda m, f, s: _one(m, {"prompt": "hi", "metadata": {"x": Unserialisable()}}),
     ValueError, r"metadata: must be JSON-serialisable"),
    ("metadata-nan", lambda m, f, s: _one(m, {"prompt": "hi", "metadata": {"x": math.nan}}), ValueError,
     r"metadata"),
    ("metadata-not-a-dict", lambda m, f, s: _one(m, {"prompt": "hi", "metadata": ["a"]}), ValueError,
     r"metadata: must be a dict"),
    # -- media -----------------------------------------------------------------------------------------------
    ("missing-file", lambda m, f, s: _one(m, {"prompt": "<audio>", "audio_path": f["missing"]}), ValueError,
     r"file not found: .*nope\.wav"),
    ("directory-not-file", lambda m, f, s: _one(m, {"prompt": "<video>", "video_path": f["dir"]}), ValueError,
     r"not a regular file"),
    ("empty-file", lambda m, f, s: _one(m, {"prompt": "<audio>", "audio_path": f["empty"]}), ValueError,
     r"file is empty"),
    ("more-audio-tokens-than-files",
     lambda m, f, s: _one(m, {"prompt": "<audio> and <audio>", "audio_path": f["wav"]}), ValueError, r"<audio>"),
    ("more-video-tokens-than-files",
     lambda m, f, s: _one(m, {"prompt": "<video>", "audio_path": f["wav"]}), ValueError, r"<video>"),
    ("wrong-mime-family",
     lambda m, f, s: _one(m, {"prompt": "<audio>", "audio_path": f["wav"], "audio_mime_type": "video/mp4"}),
     ValueError, r"audio_mime_type"),
    ("malformed-mime",
     lambda m, f, s: _one(m, {"prompt": "<audio>", "audio_path": f["wav"], "audio_mime_type": "wav"}),
     ValueError, r"audio_mime_type"),
    ("inline-media-over-request-limit",
     lambda m, f, s: _one(m, {"prompt": "<audio>", "audio_bytes": b"\x00" * (21 * 1024 * 1024),
                              "audio_mime_type": "audio/wav"}), ValueError, r"(?i)limit|MB"),
    ("empty-bytes", lambda m, f, s: _one(m, {"prompt": "<audio>", "audio_bytes": b"",
                                             "audio_mime_type": "audio/wav"}), ValueError, r"empty \(0 bytes\)"),
    ("invalid-url-scheme", lambda m, f, s: _one(m, {"prompt": "<video>", "video_url": "ftp://example.com/v.mp4",
                                                    "video_mime_type": "video/mp4"}), ValueError, r"URL scheme"),
    ("malformed-url", lambda m, f, s: _one(m, {"prompt": "<video>", "video_url": "https:// bad url",
                                               "video_mime_type": "video/mp4"}), ValueError, r"malformed URL"),
    ("bad-video-offset", lambda m, f, s: _one(m, {"prompt": "<video>", "video_url": "https://example.com/v.mp4",
                                                  "video_mime_type": "video/mp4",
                                                  "video_metadata": {"start_offset": "ten"}}),
     ValueError, r"start_offset"),
    ("nonsense-generation-config",
     lambda m, f, s: _one(m, {"prompt": "hi", "generation_config": {"temprature": 0.2}}), ValueError, r"temprature"),
    ("generation-config-wrong-type",
     lambda m, f, s: _one(m, {"prompt": "hi", "generation_config": {"temperature": "hot"}}), ValueError,
     r"temperature"),
    # -- processor settings ----------------------------------------------------------------------------------
    ("empty-model-name", lambda m, f, s: _processor(m, ""), ValueError, r"model_name"),
    ("model-name-injection", lambda m, f, s: _processor(m, "m?key=x"), ValueError, r"model_name"),
    ("negative-cooldown", lambda m, f, s: _batch(m, [{"prompt": "hi"}], worker_cooldown_seconds=-1), ValueError,
     r"worker_cooldown_seconds"),
    ("zero-max-workers", lambda m, f, s: _batch(m, [{"prompt": "hi"}], max_workers=0), ValueError, r"max_workers"),
    ("nan-interval", lambda m, f, s: _batch(m, [{"prompt": "hi"}], api_call_interval=math.nan), ValueError,
     r"api_call_interval"),
    ("zero-retries", lambda m, f, s: _batch(m, [{"prompt": "hi"}], api_call_retries=0), ValueError,
     r"api_call_retries"),
    ("unknown-spacing-scope", lambda m, f, s: _batch(m, [{"prompt": "hi"}], spacing_scope="galaxy"), ValueError,
     r"spacing_scope"),
    ("manager-not-a-manager", lambda m, f, s: _processor(KEY_NAMES, MODEL), TypeError, r"AdvancedApiKeyManager"),
    # -- streaming -------------------------------------------------------------------------------------------
    ("streaming-before-start", lambda m, f, s: _stream(m, {"prompt": "hi"}, start=False), RuntimeError,
     r"start\(\)"),
    ("streaming-zero-timeout", lambda m, f, s: _stream(m, {"prompt": "hi"}, timeout=0), ValueError, r"timeout"),
    ("streaming-bad-prompt", lambda m, f, s: _stream(m, {"prompt": "<audio>"}), ValueError, r"<audio>"),
    # -- TTS -------------------------------------------------------------------------------------------------
    ("tts-unknown-voice", lambda m, f, s: _tts(m).generate_speech("hello", voice="Darth"), ValueError, r"Darth"),
    ("tts-unknown-default-voice", lambda m, f, s: _tts(m, default_voice="Nobody"), ValueError, r"Nobody"),
    ("tts-three-speakers", lambda m, f, s: _tts(m).generate_multi_speaker_dialogue(
        [("A", "hi"), ("B", "hey"), ("C", "yo")], {"A": "Kore", "B": "Puck", "C": "Zephyr"}), ValueError,
     r"exactly 2 speakers"),
    ("tts-voice-missing-for-speaker", lambda m, f, s: _tts(m).generate_multi_speaker_dialogue(
        [("A", "hi"), ("B", "hey")], {"A": "Kore"}), ValueError, r"no voice given for speaker"),
    ("tts-empty-text", lambda m, f, s: _tts(m).generate_speech("  "), ValueError, r"non-empty"),
    ("tts-batch-unknown-field", lambda m, f, s: _tts(m).batch_generate_speech([{"text": "hi", "voic": "Kore"}]),
     ValueError, r"voic"),
    ("tts-batch-bad-voice-at-index", lambda m, f, s: _tts(m).batch_generate_speech(
        [{"text": "ok"}, {"text": "hi", "voice": "Darth"}]), ValueError, r"texts\[1\].*Darth"),
    ("tts-model-name-injection", lambda m, f, s: _tts(m, model="tts?key=x"), ValueError, r"model"),
    # -- key manager -----------------------------------------------------------------------------------------
    ("unknown-key-name", lambda m, f, s: _manager(s, ["GEMINI_API_KEY_NOPE"]), ValueError, r"GEMINI_API_KEY_NOPE"),
    ("key-name-not-an-env-name", lambda m, f, s: _manager(s, ["my key"]), ValueError, r"environment variable"),
    ("pool-with-no-keys", lambda m, f, s: _manager(s, []), ValueError, r"No valid API keys"),
    ("keylist-bool", lambda m, f, s: _manager(s, True), ValueError, r"keylist_names"),
    ("paid-key-not-in-pool", lambda m, f, s: _manager(s, KEY_NAMES, paid_keys=["GEMINI_API_KEY_ZZ"]),
     ValueError, r"GEMINI_API_KEY_ZZ"),
    ("unknown-key-setting", lambda m, f, s: _manager(s, KEY_NAMES, key_settings={"free": {"cooldown": 3}}),
     ValueError, r"cooldown"),
    ("negative-key-setting", lambda m, f, s: _manager(s, KEY_NAMES,
                                                     key_settings={"free": {"key_cooldown_seconds": -5}}),
     ValueError, r"key_cooldown_seconds"),
    ("unknown-key-category", lambda m, f, s: _manager(s, KEY_NAMES, key_settings={"gold": {}}), ValueError,
     r"gold"),
    ("project-for-unknown-key", lambda m, f, s: _manager(s, KEY_NAMES, projects={"GEMINI_API_KEY_X": "p"}),
     ValueError, r"GEMINI_API_KEY_X"),
    ("limits-for-unknown-project", lambda m, f, s: _manager(s, KEY_NAMES, project_limits={"ghost": {"rpm": 5}}),
     ValueError, r"ghost"),
    ("zero-rate-window", lambda m, f, s: _manager(s, KEY_NAMES, rate_window_seconds=0), ValueError,
     r"rate_window_seconds"),
    ("pool-name-with-braces", lambda m, f, s: _manager(s, KEY_NAMES, pool="a{b}"), ValueError, r"pool name"),
]


def _queued(client) -> int:
    """Messages waiting in the task queues (no worker consumes them while the table runs)."""
    return int(client.llen("batch")) + int(client.llen("interactive"))


@pytest.mark.parametrize("case_id,call,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_enqueueing(stack, manager, files, case_id, call, exc, pattern):
    assert not stack.workers, "the table must run before a worker consumes the queues"
    emu, client = stack.control, stack.redis
    calls = len(emu.log())
    with pytest.raises(exc, match=pattern):
        call(manager, files, stack)
    assert _queued(client) == 0, f"{case_id}: a message was enqueued"
    assert len(emu.log()) == calls, f"{case_id}: the API was called"


def test_at_least_25_bad_inputs():
    assert len(CASES) >= 25


def test_one_bad_entry_rejects_the_whole_batch_before_enqueueing(stack, manager, files, request):
    emu, client = stack.control, stack.redis
    prompts = [{"prompt": f"fine {i}", "metadata": {"i": i}} for i in range(5)]
    prompts[3] = {"prompt": "<audio>", "audio_path": files["missing"], "metadata": {"i": 3}}
    calls = len(emu.log())
    with pytest.raises(ValueError, match=r"prompts_data\[3\].*file not found"):
        _batch(manager, prompts)
    assert _queued(client) == 0 and len(emu.log()) == calls  # not even the 3 good ones before it
    request.getfixturevalue("worker")  # now a worker may consume: the fixed batch goes through
    # the rest of the batch, and everything after, still works
    prompts[3] = {"prompt": "<audio>", "audio_path": files["wav"], "metadata": {"i": 3}}
    results = _batch(manager, prompts)
    assert [m["i"] for m, _, _ in results] == list(range(5))
    assert all(e is None for _, _, e in results), results


def test_requests_after_bad_ones_are_unaffected(stack, manager, worker):
    from gemini_tasks import GeminiStreamingProcessor

    results = _batch(manager, [{"prompt": f"after {i}"} for i in range(4)])
    assert all(e is None and f"after {i}" in r for i, (_, r, e) in enumerate(results))
    sp = GeminiStreamingProcessor(manager, MODEL, **FAST)
    sp.start()
    try:
        _, response, error = sp.process_single({"prompt": "stream after"}, timeout=20)
    finally:
        sp.stop()
    assert error is None and "stream after" in response
    summary = manager.get_keys_status_summary()
    assert all(s["status"] == "AVAILABLE" for s in summary.values()), summary
