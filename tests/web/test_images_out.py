"""``GeminiImageGenerator`` through real workers, Redis blobs and the emulator's PNG parts."""

from __future__ import annotations

import pytest


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_generate_and_edit_images_on_the_fleet(worker, emu, manager, tmp_path, redis_client):
    from gemini_tasks import GeminiImageGenerator

    gen = GeminiImageGenerator(manager, "gemini-2.5-flash-image", timeout=30)
    out = tmp_path / "city.png"
    image = gen.generate_image("A futuristic city at sunset", output_file=str(out), aspect_ratio="16:9",
                               image_size="2K")
    assert image is not None, gen.last_error
    assert image.mime_type == "image/png" and _png_size(image.image_bytes) == (2688, 1536)
    assert out.read_bytes() == image.image_bytes
    call = [e for e in emu.log() if e.get("endpoint") == "generateContent"][-1]
    assert call["generation_config"]["response_modalities"] == ["IMAGE"]
    assert call["generation_config"]["image_config"] == {"aspect_ratio": "16:9", "image_size": "2K"}

    edited = gen.edit_image("Make it snowy", str(out), output_file=str(tmp_path / "snowy.png"))
    assert edited is not None, gen.last_error
    assert _png_size(edited.image_bytes) == (1024, 1024)  # no options: the model's default, 1:1 at 1K
    call = [e for e in emu.log() if e.get("endpoint") == "generateContent"][-1]
    kinds = [(p["kind"], p.get("mime_type"), p.get("size")) for p in call["parts"]]
    assert kinds == [("text", None, len("Make it snowy")), ("inline", "image/png", len(image.image_bytes))]
    assert (tmp_path / "snowy.png").read_bytes() == edited.image_bytes
    # the images never went through the broker or the result backend, and no blob is left behind
    assert not list(redis_client.scan_iter(match="*blob:*"))
    stored = b"".join(redis_client.get(k) or b"" for k in redis_client.scan_iter("celery-task-meta-*"))
    assert b"iVBORw0KGgo" not in stored and b"\x89PNG" not in stored  # no PNG, raw or base64, in any result


def test_bad_image_options_are_refused_before_enqueueing(worker, emu, manager, tmp_path):
    from gemini_tasks import GeminiImageGenerator

    gen = GeminiImageGenerator(manager, "gemini-2.5-flash-image", timeout=30)
    with pytest.raises(ValueError, match=r"aspect_ratio must be one of .*got '7:3'"):
        gen.generate_image("x", aspect_ratio="7:3")
    with pytest.raises(ValueError, match=r"image_size must be one of 1K, 2K, 4K.*got '8K'"):
        gen.generate_image("x", image_size="8K")
    with pytest.raises(ValueError, match="prompt"):
        gen.generate_image("   ")
    with pytest.raises(ValueError, match="input_image: cannot read"):
        gen.edit_image("x", str(tmp_path / "missing.png"))
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="input_image is not a PNG"):
        gen.edit_image("x", str(tmp_path / "notes.txt"))
    assert emu.log() == []


def test_a_failed_generation_returns_none_with_the_reason(worker, emu, manager):
    from gemini_tasks import GeminiImageGenerator

    emu.add_fault(action="blocked", reason="SAFETY", prompt_contains="forbidden")
    gen = GeminiImageGenerator(manager, "gemini-2.5-flash-image", timeout=30)
    assert gen.generate_image("something forbidden") is None
    assert "SAFETY" in gen.last_error
