"""Bad prompt_data is refused before enqueueing with a message naming the field; the JSON wire format."""

from __future__ import annotations

import json
import os
import pathlib

import pytest
from google.genai import types

from gemini_tasks.gemini.config import build_generate_config
from gemini_tasks.gemini.content import build_contents
from gemini_tasks.gemini.validation import ALLOWED_FIELDS, InvalidPromptError, from_wire, to_wire, validate_prompt

MB = 1024 * 1024
AUDIO, VIDEO, TMP = "@audio", "@video", "@tmp/"

# (id, prompt_data, substrings the message must contain); AUDIO/VIDEO/TMP are filled in per test.
BAD_CASES = [
    ("not a dict", ["prompt"], ["prompt_data must be a dict", "list"]),
    ("string instead of dict", "hello", ["prompt_data must be a dict", "str"]),
    ("prompt not a string", {"prompt": ["a", "b"]}, ["prompt: must be a string", "list"]),
    ("no prompt no media", {"metadata": {"task_id": "t"}}, ["prompt: no content provided"]),
    ("blank prompt no media", {"prompt": "  \n"}, ["prompt: no content provided"]),
    ("unknown top-level field", {"prompt": "hi", "temprature": 0.2}, ["unknown field(s) temprature", "allowed fields", "generation_config"]),
    ("metadata not a dict", {"prompt": "hi", "metadata": "task-1"}, ["metadata: must be a dict"]),
    ("metadata not JSON", {"prompt": "hi", "metadata": {"when": object()}}, ["metadata: must be JSON-serialisable"]),
    ("metadata with NaN", {"prompt": "hi", "metadata": {"score": float("nan")}}, ["metadata: must be JSON-serialisable"]),
    ("too many audio tokens", {"prompt": "<audio> vs <audio>", "audio_path": AUDIO}, ["prompt: more <audio> tokens (2) than audio files (1"]),
    ("video token without video", {"prompt": "watch <video>"}, ["prompt: more <video> tokens (1) than video files (0"]),
    ("missing path", {"prompt": "hi", "audio_path": TMP + "nope.mp3"}, ["audio_path: file not found", "nope.mp3"]),
    ("missing path in list", {"prompt": "hi", "video_path": [VIDEO, TMP + "gone.mp4"]}, ["video_path[1]: file not found", "gone.mp4"]),
    ("directory as path", {"prompt": "hi", "audio_path": TMP}, ["audio_path: not a regular file"]),
    ("empty file", {"prompt": "hi", "audio_path": TMP + "empty.mp3"}, ["audio_path: file is empty"]),
    ("path not a string", {"prompt": "hi", "audio_path": 12}, ["audio_path: must be a file path string", "int"]),
    ("bytes given as str", {"prompt": "hi", "audio_bytes": "not bytes"}, ["audio_bytes: must be bytes", "str"]),
    ("bytes list with an int", {"prompt": "hi", "video_bytes": [b"ok", 5]}, ["video_bytes[1]: must be bytes", "int"]),
    ("empty bytes", {"prompt": "hi", "audio_bytes": b""}, ["audio_bytes: is empty"]),
    ("url bad scheme", {"prompt": "hi", "video_url": "ftp://example.com/v.mp4"}, ["video_url: URL scheme must be one of gs, http, https", "ftp://"]),
    ("url without host", {"prompt": "hi", "video_url": ["https:///v.mp4"]}, ["video_url[0]: malformed URL"]),
    ("url with spaces", {"prompt": "hi", "audio_url": "https://example.com/a b.mp3"}, ["audio_url: malformed URL"]),
    ("url not a string", {"prompt": "hi", "audio_url": b"https://x"}, ["audio_url: must be a URL string", "bytes"]),
    ("audio mime of wrong family", {"prompt": "hi", "audio_bytes": b"a", "audio_mime_type": "video/mp4"}, ["audio_mime_type: mime type 'video/mp4' is not a audio type"]),
    ("octet-stream rejected", {"prompt": "hi", "video_bytes": b"v", "video_mime_type": "application/octet-stream"}, ["video_mime_type", "not a video type"]),
    ("malformed mime", {"prompt": "hi", "audio_bytes": b"a", "audio_mime_type": "mp3"}, ["audio_mime_type: malformed mime type 'mp3'"]),
    ("mime list length mismatch", {"prompt": "hi", "audio_path": AUDIO, "audio_bytes": b"a", "audio_mime_type": ["audio/wav"]},
     ["audio_mime_type: has 1 entries but there are 2 audio files", "audio_path, audio_bytes, audio_url"]),
    ("mime wrong type", {"prompt": "hi", "audio_bytes": b"a", "audio_mime_type": 3}, ["audio_mime_type: must be a string or a list"]),
    ("mime list entry wrong family", {"prompt": "hi", "video_bytes": [b"a", b"b"], "video_mime_type": ["video/mp4", "audio/mp3"]}, ["video_mime_type[1]", "not a video type"]),
    ("video_metadata not a dict", {"prompt": "hi", "video_path": VIDEO, "video_metadata": "1250s"}, ["video_metadata: must be a dict or a list"]),
    ("video_metadata entry not a dict", {"prompt": "hi", "video_path": VIDEO, "video_metadata": [5]}, ["video_metadata[0]: must be a dict"]),
    ("video_metadata unknown field", {"prompt": "hi", "video_path": VIDEO, "video_metadata": {"start": "1s"}}, ["video_metadata: unknown field(s) start", "start_offset"]),
    ("video_metadata integer offset", {"prompt": "hi", "video_path": VIDEO, "video_metadata": {"start_offset": 1250}}, ["video_metadata: start_offset must be a duration string like '12s'"]),
    ("video_metadata bad offset text", {"prompt": "hi", "video_path": VIDEO, "video_metadata": {"end_offset": "1:30"}}, ["end_offset must be a duration string", "'1:30'"]),
    ("video_metadata end before start", {"prompt": "hi", "video_path": VIDEO, "video_metadata": {"start_offset": "20s", "end_offset": "10s"}}, ["end_offset (10s) must be after start_offset (20s)"]),
    ("video_metadata fps zero", {"prompt": "hi", "video_path": VIDEO, "video_metadata": {"fps": 0}}, ["fps must be > 0"]),
    ("video_metadata fps too high", {"prompt": "hi", "video_path": VIDEO, "video_metadata": {"fps": 60}}, ["fps must be > 0 and <= 24"]),
    ("video_metadata fps text", {"prompt": "hi", "video_path": VIDEO, "video_metadata": {"fps": "5"}}, ["fps must be a number"]),
    ("more metadata than videos", {"prompt": "hi", "video_path": VIDEO, "video_metadata": [{"fps": 1}, {"fps": 2}]}, ["video_metadata: has 2 entries but there are only 1 videos"]),
    ("metadata without any video", {"prompt": "hi", "video_metadata": {"fps": 1}}, ["video_metadata: has 1 entries but there are only 0 videos"]),
    ("inline bytes over the limit", {"prompt": "hi", "audio_bytes": [b"\0" * (8 * MB), b"\0" * (8 * MB)]},
     ["audio_bytes/video_bytes", "over the 20.0 MB request limit", "audio_path/video_path", "URL"]),
    ("generation_config not a dict", {"prompt": "hi", "generation_config": [("temperature", 1)]}, ["generation_config: generation_config must be a dict"]),
    ("generation_config unknown field", {"prompt": "hi", "generation_config": {"temprature": 0.5}}, ["generation_config: unknown field 'temprature'", "did you mean 'temperature'"]),
    ("generation_config nested unknown", {"prompt": "hi", "generation_config": {"thinkingConfig": {"budget": 0}}}, ["unknown field 'thinkingConfig.budget'"]),
    ("generation_config bad value", {"prompt": "hi", "generation_config": {"max_output_tokens": "many"}}, ["invalid value for 'max_output_tokens'"]),
    ("generation_config http_options", {"prompt": "hi", "generation_config": {"http_options": {"base_url": "http://evil"}}}, ["generation_config may not set http_options"]),
    ("list field given as a set", {"prompt": "hi", "audio_bytes": {b"a"}}, ["audio_bytes: must be a single value or a list"]),
]


def _fill(value, paths):
    if isinstance(value, str):
        for marker, real in paths.items():
            if value.startswith(marker):
                return real + value[len(marker):]
        return value
    if isinstance(value, dict):
        return {k: _fill(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, paths) for v in value]
    return value


def test_at_least_25_bad_cases():
    assert len(BAD_CASES) >= 25


@pytest.mark.parametrize("name,prompt_data,needles", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_prompt_data_is_rejected_with_a_clear_message(name, prompt_data, needles, media_files, tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    prompt_data = _fill(prompt_data, {AUDIO: media_files["audio1.mp3"], VIDEO: media_files["video1.mp4"],
                                      TMP: str(tmp_path) + "/"})
    with pytest.raises(InvalidPromptError) as info:
        validate_prompt(prompt_data)
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{name}: {needle!r} not in {message!r}"
    assert isinstance(info.value, ValueError)
    assert info.value.field  # the first offending field is machine-readable too


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_path(tmp_path):
    secret = tmp_path / "secret.mp3"
    secret.write_bytes(b"x")
    os.chmod(secret, 0)
    with pytest.raises(InvalidPromptError, match="audio_path: file is not readable"):
        validate_prompt({"prompt": "hi", "audio_path": str(secret)})


def test_all_problems_are_reported_at_once(tmp_path):
    with pytest.raises(InvalidPromptError) as info:
        validate_prompt({"prompt": 3, "audio_bytes": "x", "video_url": "ftp://a", "colour": "red"})
    fields = [f for f, _ in info.value.problems]
    assert fields == ["prompt_data", "prompt", "audio_bytes", "video_url"]
    assert info.value.field == "prompt_data"


def test_check_paths_false_skips_the_filesystem(tmp_path):
    pd = {"prompt": "<audio>", "audio_path": "/shared/only/on/workers.mp3"}
    with pytest.raises(InvalidPromptError, match="file not found"):
        validate_prompt(pd)
    validate_prompt(pd, check_paths=False)
    with pytest.raises(InvalidPromptError, match="must be a file path string"):
        validate_prompt({"prompt": "hi", "audio_path": 5}, check_paths=False)


GOOD = [
    {"prompt": "What is the capital of France?", "metadata": {"task_id": "task_1", "category": "geography"}},
    {"prompt": "Write a creative story:", "generation_config": {"temperature": 0.9, "top_p": 0.8, "top_k": 40,
                                                               "max_output_tokens": 1000, "candidate_count": 1}},
    {"prompt": "", "audio_bytes": b"abc"},
    {"video_url": "https://www.youtube.com/watch?v=xyz", "video_metadata": {"start_offset": "1.5s", "end_offset": "10s", "fps": 2}},
    {"prompt": "x", "audio_url": "gs://bucket/a.mp3", "audio_mime_type": "audio/L16;codec=pcm;rate=24000"},
    {"prompt": "x", "video_bytes": [b"a", b"b"], "video_mime_type": ["video/mp4", None], "video_metadata": [None, {}]},
    {"prompt": "x", "generation_config": types.GenerateContentConfig(temperature=0.1)},
    {"prompt": "x", "generation_config": {"thinkingConfig": {"thinkingBudget": 0}, "maxOutputTokens": 64}},
    {"prompt": "x", "audio_bytes": b"\0" * (14 * MB)},  # 18.7 MB as base64: fits
]


@pytest.mark.parametrize("prompt_data", GOOD, ids=range(len(GOOD)))
def test_good_prompt_data_passes(prompt_data):
    validate_prompt(prompt_data)
    assert set(prompt_data) <= ALLOWED_FIELDS


def test_readme_examples_pass(media_files):
    validate_prompt({
        "prompt": "Analyze this audio file: <audio> and this video: <video> then this audio data: <audio>",
        "audio_path": [media_files["audio1.mp3"]],
        "audio_bytes": [b"RIFF"],
        "video_url": ["https://example.com/video.mp4"],
        "audio_mime_type": ["audio/mp3", "audio/wav"],
        "video_mime_type": ["video/mp4"],
        "metadata": {"task_id": "mixed_input_task"},
    })
    validate_prompt({
        "prompt": "Analyze this video segment: <video> What are the key points?",
        "video_path": [pathlib.Path(media_files["video1.mp4"])],
        "video_metadata": [{"start_offset": "1250s", "end_offset": "1570s", "fps": 5}],
        "metadata": {"task_id": "video_segment_analysis"},
    })


# ------------------------------------------------------------------------------------------------ wire


def test_wire_round_trip_through_json(media_files):
    original = {
        "prompt": "Analyze <audio> then <video>",
        "audio_bytes": [b"\x00\xffbinary", b"second"],
        "video_bytes": b"\x01\x02",
        "audio_path": pathlib.Path(media_files["audio1.mp3"]),
        "video_path": [media_files["video1.mp4"]],
        "video_metadata": [{"fps": 1}],
        "audio_mime_type": ("audio/wav", "audio/mp3", "audio/mp3"),
        "generation_config": types.GenerateContentConfig(
            temperature=0.2, max_output_tokens=64, thinking_config=types.ThinkingConfig(thinking_budget=0)),
        "metadata": {"task_id": "t1", "nested": {"__b64__": "not touched"}},
    }
    validate_prompt(original)
    wire = to_wire(original)
    text = json.dumps(wire)
    back = from_wire(json.loads(text))
    assert back["audio_bytes"] == [b"\x00\xffbinary", b"second"]
    assert back["video_bytes"] == b"\x01\x02"
    assert back["audio_path"] == media_files["audio1.mp3"]
    assert back["audio_mime_type"] == ["audio/wav", "audio/mp3", "audio/mp3"]
    assert back["metadata"] == {"task_id": "t1", "nested": {"__b64__": "not touched"}}
    assert build_generate_config(back["generation_config"]) == original["generation_config"]
    validate_prompt(back)
    assert build_contents(back, lambda p, m, k: types.FileData(file_uri="up://" + os.path.basename(p))) == build_contents(
        original, lambda p, m, k: types.FileData(file_uri="up://" + os.path.basename(p)))
    # and it is stable: a second trip changes nothing
    assert to_wire(back) == json.loads(text)


def test_wire_keeps_plain_dict_config_as_written_and_normalises_objects_inside():
    assert to_wire({"prompt": "x", "generation_config": {"maxOutputTokens": 5}})["generation_config"] == {"maxOutputTokens": 5}
    wire = to_wire({"prompt": "x", "generation_config": {"thinking_config": types.ThinkingConfig(thinking_budget=0)}})
    assert wire["generation_config"] == {"thinking_config": {"thinking_budget": 0}}
    json.dumps(wire)


def test_wire_bytes_encoding_shape():
    assert to_wire({"audio_bytes": b"hi"}) == {"audio_bytes": {"__b64__": "aGk="}}
    assert from_wire({"audio_bytes": {"__b64__": "aGk="}}) == {"audio_bytes": b"hi"}
