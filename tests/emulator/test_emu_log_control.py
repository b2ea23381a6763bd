"""The request log and the control API (config, stats, reset)."""

from __future__ import annotations

import pytest
from emu_helpers import MODEL
from google.genai import errors, types

from gemini_tasks.emulator.control_client import EmulatorControlError


def test_log_entry_records_parts_in_order(client, ctl):
    f = client.files.upload(file=__import__("io").BytesIO(b"m" * 2048), config={"mime_type": "video/mp4"})
    client.files.get(name=f.name)
    mark = ctl.log()[-1]["seq"]
    contents = [
        types.Content(
            role="user",
            parts=[
                types.Part(text="First <audio> then <video>"),
                types.Part.from_bytes(data=b"\x00" * 1234, mime_type="audio/wav"),
                types.Part(
                    file_data=types.FileData(file_uri=f.uri, mime_type="video/mp4"),
                    video_metadata=types.VideoMetadata(start_offset="2s", end_offset="4s"),
                ),
                types.Part(
                    file_data=types.FileData(file_uri="https://www.youtube.com/watch?v=q", mime_type="video/mp4")
                ),
                types.Part(text="and finally this"),
            ],
        )
    ]
    client.models.generate_content(
        model=MODEL,
        contents=contents,
        config=types.GenerateContentConfig(system_instruction="You are terse", max_output_tokens=32),
    )
    [entry] = ctl.log(since=mark)
    assert entry["seq"] == mark + 1
    assert entry["method"] == "POST" and entry["endpoint"] == "generateContent"
    assert entry["path"] == f"/v1beta/models/{MODEL}:generateContent"
    assert entry["model"] == MODEL and entry["status"] == 200
    assert entry["key_label"].startswith("key-") and entry["project"] == entry["key_label"]
    assert entry["t"] > 1e9 and 0 <= entry["duration"] < 1
    assert entry["quota"] is None and entry["fault"] is None
    parts = entry["parts"]
    assert [p["kind"] for p in parts] == ["text", "inline", "file", "file", "text"]
    assert parts[0]["text"] == "First <audio> then <video>"
    assert parts[1] == {"kind": "inline", "mime_type": "audio/wav", "size": 1234}
    assert parts[2]["file_uri"] == f.uri and parts[2]["mime_type"] == "video/mp4" and parts[2]["size"] == 2048
    assert parts[2]["video_metadata"] == {"start_offset": "2s", "end_offset": "4s"}
    assert parts[3]["file_uri"] == "https://www.youtube.com/watch?v=q" and "size" not in parts[3]
    assert entry["system_instruction"] == "You are terse"
    assert entry["generation_config"] == {"max_output_tokens": 32}


def test_log_text_is_truncated_to_200_chars(client, ctl):
    client.models.generate_content(model=MODEL, contents="a" * 1000)
    part = ctl.log()[-1]["parts"][0]
    assert len(part["text"]) == 200 and part["size"] == 1000


def test_log_since_clear_and_ring_buffer(client, ctl):
    for i in range(3):
        client.models.generate_content(model=MODEL, contents=f"n{i}")
    log = ctl.log()
    assert [e["seq"] for e in log] == [1, 2, 3]
    assert [e["seq"] for e in ctl.log(since=1)] == [2, 3]
    assert ctl.log(since=3) == []
    assert ctl.clear_log() == 3
    assert ctl.log() == []
    client.models.generate_content(model=MODEL, contents="after clear")
    assert [e["seq"] for e in ctl.log()] == [4]  # sequence numbers are never reused

    ctl.configure(log_max=2)
    for i in range(4):
        client.models.generate_content(model=MODEL, contents=f"m{i}")
    assert [e["seq"] for e in ctl.log()] == [7, 8]
    assert ctl.stats()["total"] == 8  # counters survive the ring buffer


def test_stats(make_client, ctl):
    ctl.configure(keys={"s1": {"label": "K1", "project": "P"}, "s2": {"label": "K2", "project": "P"}})
    make_client("s1").models.generate_content(model=MODEL, contents="x")
    make_client("s2").models.generate_content(model="gemini-2.5-pro", contents="x")
    ctl.add_fault(action="status", status=503, times=1)
    with pytest.raises(errors.ServerError):
        make_client("s2").models.generate_content(model=MODEL, contents="x")
    s = ctl.stats()
    assert s["total"] == 3 and s["ok"] == 2 and s["errors"] == 1
    assert s["by_status"] == {"200": 2, "503": 1}
    assert s["by_key_label"] == {"K1": 1, "K2": 2}
    assert s["by_project"] == {"P": 3}
    assert s["by_model"] == {MODEL: 2, "gemini-2.5-pro": 1}
    assert s["by_endpoint"] == {"generateContent": 3}
    assert s["by_fault"] == {"status": 1}
    assert s["in_flight"] == 0
    assert ctl.clear_stats()["total"] == 0


def test_config_merge_validation_and_reset(ctl):
    cfg = ctl.configure(minute_seconds=2.0, quotas={"*": {"*": {"rpm": 5}}})
    assert cfg["minute_seconds"] == 2.0 and cfg["quotas"] == {"*": {"*": {"rpm": 5}}}
    assert ctl.config()["day_seconds"] == 86400.0  # untouched fields keep their values
    with pytest.raises(EmulatorControlError) as ei:
        ctl.configure(minute_secnods=2.0)
    assert ei.value.status == 400 and "minute_secnods" in str(ei.value.body)
    with pytest.raises(EmulatorControlError):
        ctl.configure(quotas={"*": {"*": {"rpx": 1}}})
    ctl.add_fault(action="status", status=500)
    ctl.reset()
    assert ctl.config()["minute_seconds"] == 60.0 and ctl.config()["quotas"] == {}
    assert ctl.faults() == [] and ctl.log() == [] and ctl.files() == []
    assert ctl.reset(latency_seconds=0.01)["latency_seconds"] == 0.01


def test_create_app_config_is_the_reset_baseline():
    from gemini_tasks.emulator.runner import EmulatorThread

    with EmulatorThread(config={"minute_seconds": 3.0, "keys": {"abc": {"label": "L"}}}) as emu:
        ctl = emu.control
        ctl.wait_ready(5)
        ctl.configure(minute_seconds=9.0)
        ctl.reset()
        cfg = ctl.config()
        assert cfg["minute_seconds"] == 3.0
        assert cfg["keys"] == [{"label": "L", "project": "L", "blocked": False}]
