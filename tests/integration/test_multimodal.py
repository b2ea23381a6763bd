"""Every media example of the original README, checked part by part in the emulator's request log."""

from __future__ import annotations

import os

import pytest

FAST = dict(worker_cooldown_seconds=0, api_call_interval=0, max_workers=4)


@pytest.fixture
def files(tmp_path):
    def make(name: str, size: int = 1000) -> str:
        path = tmp_path / name
        path.write_bytes(os.urandom(size))
        return str(path)

    return make


@pytest.fixture
def stream(worker, manager_factory):
    from gemini_tasks import GeminiStreamingProcessor

    sp = GeminiStreamingProcessor(manager_factory(4, paid_keys="all"), "gemini-2.5-flash", **FAST)
    sp.start()
    yield sp
    sp.stop()


def parts_of(emu, marker: str) -> list[dict]:
    entries = [e for e in emu.log() if e.get("endpoint") == "generateContent"
               and any(marker in (p.get("text") or "") for p in e.get("parts", []))]
    assert len(entries) == 1, f"expected one request with {marker!r}, got {len(entries)}"
    return entries[0]["parts"]


def shape(parts: list[dict]) -> list[tuple]:
    out = []
    for p in parts:
        if p["kind"] == "text":
            out.append(("text", p["text"]))
        else:
            out.append((p["kind"], p.get("mime_type"), p.get("size") or p.get("file_uri")))
    return out


def test_audio_without_tokens_goes_before_the_text(stream, emu, files):
    a = files("clip.mp3", 1234)
    meta, resp, err = stream.process_single({"prompt": "Transcribe and summarize this audio: M1",
                                             "audio_path": a, "audio_mime_type": "audio/mp3"}, timeout=30)
    assert err is None
    assert shape(parts_of(emu, "M1")) == [("inline", "audio/mp3", 1234), ("text", "Transcribe and summarize this audio: M1")]


def test_tokens_place_each_file(stream, emu, files):
    a1, a2, v1 = files("audio1.mp3", 100), files("audio2.wav", 200), files("video1.mp4", 300)
    err = stream.process_single({
        "prompt": "M2 First, analyze this audio: <audio> Now compare it with this video: <video> "
                  "Finally, what do you think about this second audio: <audio>",
        "audio_path": [a1, a2], "video_path": [v1], "metadata": {"task_id": "multimedia_analysis"}}, timeout=30)[2]
    assert err is None
    assert shape(parts_of(emu, "M2")) == [
        ("text", "M2 First, analyze this audio:"), ("inline", "audio/mp3", 100),
        ("text", "Now compare it with this video:"), ("inline", "video/mp4", 300),
        ("text", "Finally, what do you think about this second audio:"), ("inline", "audio/wav", 200),
    ]


def test_mixed_paths_bytes_and_urls_keep_their_own_mime_types(stream, emu, files):
    a1 = files("audio1.mp3", 111)
    err = stream.process_single({
        "prompt": "M3 Analyze this audio file: <audio> and this video: <video> then this audio data: <audio>",
        "audio_path": [a1], "audio_bytes": [b"RIFF" + os.urandom(60)],
        "video_url": ["https://example.com/video.mp4"],
        "audio_mime_type": ["audio/mp3", "audio/wav"], "video_mime_type": ["video/mp4"]}, timeout=30)[2]
    assert err is None
    assert shape(parts_of(emu, "M3")) == [
        ("text", "M3 Analyze this audio file:"), ("inline", "audio/mp3", 111),
        ("text", "and this video:"), ("file", "video/mp4", "https://example.com/video.mp4"),
        ("text", "then this audio data:"), ("inline", "audio/wav", 64),  # the original sent these bytes as mp3
    ]


def test_video_metadata_applies_to_a_path_video(stream, emu, files):
    v = files("video.mp4", 500)
    err = stream.process_single({"prompt": "M4 Analyze this video segment: <video> What are the key points?",
                                 "video_path": [v],
                                 "video_metadata": [{"start_offset": "1250s", "end_offset": "1570s", "fps": 5}]},
                                timeout=30)[2]
    assert err is None
    parts = parts_of(emu, "M4")
    assert parts[1]["kind"] == "inline" and parts[1]["mime_type"] == "video/mp4"
    vm = parts[1]["video_metadata"]
    assert vm and vm.get("startOffset", vm.get("start_offset")) == "1250s" and float(vm.get("fps")) == 5


def test_fallback_order_videos_then_audios_then_text(stream, emu, files):
    a1, a2, v1 = files("a1.mp3", 10), files("a2.mp3", 20), files("v1.mp4", 30)
    err = stream.process_single({"prompt": "M5 Analyze the provided media files.",
                                 "audio_path": [a1, a2], "video_path": [v1]}, timeout=30)[2]
    assert err is None
    assert shape(parts_of(emu, "M5")) == [("inline", "video/mp4", 30), ("inline", "audio/mp3", 10),
                                          ("inline", "audio/mp3", 20), ("text", "M5 Analyze the provided media files.")]


def test_media_only_prompt_is_allowed(stream, emu, files):
    a = files("only.mp3", 77)
    meta, resp, err = stream.process_single({"prompt": "", "audio_path": a}, timeout=30)
    assert err is None and resp


def test_large_file_uploads_through_files_api_and_is_reused_per_project(stream, emu, files):
    big = files("long.mp4", 21 * 1024 * 1024)  # over the 20 MB request limit: must go through the Files API
    emu.configure(file_active_after_gets=2)
    for n in range(2):
        err = stream.process_single({"prompt": f"M6-{n} what happens: <video>", "video_path": big}, timeout=60)[2]
        assert err is None, err
    log = emu.log()
    uploads = [e for e in log if e.get("endpoint") == "upload_start"]
    gets = [e for e in log if e.get("endpoint") == "files.get"]
    assert len(gets) >= 2  # the worker polled until ACTIVE
    calls = [parts_of(emu, f"M6-{n}") for n in range(2)]
    for parts in calls:
        assert parts[1]["kind"] == "file" and parts[1]["mime_type"] == "video/mp4"
    # every key is its own project here; a second request on the same project reuses the upload
    projects_uploaded = len(uploads)
    assert 1 <= projects_uploaded <= 2
    if calls[0][1]["file_uri"] == calls[1][1]["file_uri"]:
        assert projects_uploaded == 1


def test_unreadable_path_on_worker_is_a_clear_error(stream, emu, tmp_path):
    from gemini_tasks.gemini.errors import InvalidPromptError

    with pytest.raises(InvalidPromptError, match="audio_path"):
        stream.process_single({"prompt": "x", "audio_path": str(tmp_path / "missing.mp3")}, timeout=10)
