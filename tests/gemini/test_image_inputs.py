"""``<image>`` inputs (upstream 0.10): sources, mime types, token order with <audio>/<video>, fallback order."""

from __future__ import annotations

import pytest

from gemini_tasks.gemini.content import build_contents, layout
from gemini_tasks.gemini.validation import from_wire, to_wire, validate_prompt

PNG = b"\x89PNG\r\n\x1a\n" + b"p" * 40
JPG = b"\xff\xd8\xff" + b"j" * 40


def _describe(parts):
    out = []
    for p in parts:
        if p.text is not None:
            out.append(("text", p.text))
        elif p.inline_data is not None:
            out.append(("inline", p.inline_data.mime_type, p.inline_data.data[:4]))
        else:
            out.append(("file", p.file_data.mime_type, p.file_data.file_uri))
    return out


def test_image_tokens_take_images_in_order_among_audio_and_video(tmp_path):
    img = tmp_path / "cat.png"
    img.write_bytes(PNG)
    data = {"prompt": "Describe <image>, then transcribe <audio>, compare <image> and <video>",
            "image_path": str(img), "image_bytes": JPG, "audio_bytes": b"ID3aaaa", "video_url": "https://x.test/v.mp4"}
    validate_prompt(data)
    parts = _describe(build_contents(from_wire(to_wire(data))))
    assert parts == [
        ("text", "Describe"), ("inline", "image/png", PNG[:4]),  # image_path comes before image_bytes
        ("text", ", then transcribe"), ("inline", "audio/mp3", b"ID3a"),
        ("text", ", compare"), ("inline", "image/jpeg", JPG[:4]),  # bytes default to image/jpeg (upstream)
        ("text", "and"), ("file", "video/mp4", "https://x.test/v.mp4"),
    ]


def test_image_sources_are_url_then_path_then_bytes_with_mime_per_file(tmp_path):
    img = tmp_path / "a.webp"
    img.write_bytes(b"RIFFxxxxWEBP")
    data = {"prompt": "<image><image><image>", "image_bytes": PNG, "image_path": str(img),
            "image_url": "https://x.test/b.gif", "image_mime_type": ["image/gif", "image/webp", "image/png"]}
    validate_prompt(data)
    parts = _describe(build_contents(data))
    assert [p[1] for p in parts] == ["image/gif", "image/webp", "image/png"]
    assert parts[0] == ("file", "image/gif", "https://x.test/b.gif")


def test_without_tokens_images_then_videos_then_audios_then_text():
    data = {"prompt": "What is shown?", "audio_bytes": b"ID3aaaa", "video_bytes": b"vvvvvvv", "image_bytes": PNG,
            "image_mime_type": "image/png"}
    kinds = [getattr(x, "kind", "text") for x in layout(data)]
    assert kinds == ["image", "video", "audio", "text"]


def test_left_over_files_follow_audio_video_image():
    data = {"prompt": "<video> first", "audio_bytes": b"ID3aaaa", "video_bytes": [b"v1v1v1", b"v2v2v2"],
            "image_bytes": PNG}
    kinds = [getattr(x, "kind", "text") for x in layout(data)]
    assert kinds == ["video", "text", "audio", "video", "image"]


def test_images_only_prompt_is_allowed():
    validate_prompt({"image_bytes": PNG})
    assert [p.inline_data.mime_type for p in build_contents({"image_bytes": PNG})] == ["image/jpeg"]


@pytest.mark.parametrize("data, field, words", [
    ({"prompt": "look at <image>"}, "prompt", "more <image> tokens (1) than image files (0"),
    ({"prompt": "<image> <image>", "image_bytes": PNG}, "prompt", "<image> tokens (2)"),
    ({"prompt": "x", "image_bytes": "not bytes"}, "image_bytes", "must be bytes"),
    ({"prompt": "x", "image_bytes": PNG, "image_mime_type": "audio/mp3"}, "image_mime_type", "not a image type"),
    ({"prompt": "x", "image_url": "ftp://x.test/a.png"}, "image_url", "URL scheme"),
    ({"prompt": "x", "image_path": "/no/such/file.png"}, "image_path", "file not found"),
    ({"prompt": "x", "image_bytes": [PNG, PNG], "image_mime_type": ["image/png"]}, "image_mime_type",
     "1 entries but there are 2 image files"),
])
def test_bad_image_input_names_the_field(data, field, words):
    with pytest.raises(ValueError) as info:
        validate_prompt(data)
    assert info.value.field == field and words in str(info.value)
