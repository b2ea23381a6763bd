"""``<image>`` inputs through the real stack: the emulator receives the parts in token order."""

from __future__ import annotations

import pytest

PNG = b"\x89PNG\r\n\x1a\n" + b"p" * 64


def test_image_tokens_reach_the_api_in_order(worker, emu, manager, tmp_path):
    from gemini_tasks import GeminiSequentialProcessor

    img = tmp_path / "photo.png"
    img.write_bytes(PNG)
    proc = GeminiSequentialProcessor(manager, "gemini-2.5-flash", api_call_interval=0)
    meta, text, error = proc.process_single({
        "prompt": "Describe <image>, then transcribe <audio>, compare with <image>",
        "image_path": str(img), "image_url": "https://example.test/a.jpg", "audio_bytes": b"ID3" + b"a" * 30,
        "metadata": {"task_id": "img-1"}})
    assert error is None and meta["task_id"] == "img-1" and text.startswith("[emulator]")
    (entry,) = [e for e in emu.log() if e.get("endpoint") == "generateContent"]
    shape = [(p["kind"], p.get("mime_type"), p.get("text") or p.get("file_uri") or p.get("size")) for p in entry["parts"]]
    assert shape == [
        ("text", None, "Describe"), ("file", "image/jpeg", "https://example.test/a.jpg"),  # image_url comes first
        ("text", None, ", then transcribe"), ("inline", "audio/mp3", 33),
        ("text", None, ", compare with"), ("inline", "image/png", len(PNG)),
    ]


def test_image_token_without_an_image_is_refused_before_enqueueing(worker, emu, manager):
    from gemini_tasks import GeminiParallelProcessor, GeminiSequentialProcessor

    seq = GeminiSequentialProcessor(manager, "gemini-2.5-flash", api_call_interval=0)
    with pytest.raises(ValueError, match=r"prompt.*<image> tokens \(1\) than image files \(0"):
        seq.process_single({"prompt": "What is in <image>?"})
    with pytest.raises(ValueError, match=r"prompts_data\[1\].*image_bytes"):
        GeminiParallelProcessor(manager, "gemini-2.5-flash").process_prompts(
            [{"prompt": "fine"}, {"prompt": "<image>", "image_bytes": "not bytes"}])
    assert seq.get_queue_size() == 0 and emu.log() == []
