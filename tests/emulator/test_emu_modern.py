"""The emulator's newer surfaces, through the real SDK: spaced SSE chunks, image parts, thoughts, schemas."""

from __future__ import annotations

import time
import zlib

import pydantic
import pytest
from google.genai import errors, types


def test_stream_arrives_in_several_spaced_chunks(ctl, make_client):
    """The emulator sleeps ``delay`` before each chunk after the first and writes each one as it goes.

    Arrival times are the client's (this process, which also runs the emulator's thread): under load the
    client can take the first chunk late, so the measured first-to-last span may be shorter than the
    emulator's 4 sleeps (0.66 s was measured for 4 x 0.2 s). What load cannot do is make a chunk arrive
    before the emulator slept for it, nor make chunks that were written apart look written together by a
    whole sleep: the bounds below are those two."""
    delay = 0.3
    ctl.configure(stream_chunks=5, stream_chunk_delay_seconds=delay)
    client = make_client()
    t0 = time.monotonic()
    arrivals, texts = [], []
    for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="tell me a long story"):
        arrivals.append(time.monotonic() - t0)
        texts.append(chunk.text or "")
    assert len(arrivals) == 5 and all(texts)
    assert "tell me a long story" in "".join(texts)
    # chunk k cannot arrive before the emulator slept k times (t0 precedes the request)
    assert all(at >= k * delay - 0.01 for k, at in enumerate(arrivals)), arrivals
    # streamed, not buffered: the first chunk was in the client's hands at least one sleep before the last
    assert arrivals[-1] - arrivals[0] >= delay, arrivals


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.parametrize("ratio, size, expected", [("1:1", None, (1024, 1024)), ("16:9", "2K", (2688, 1536)),
                                                   (None, None, (1024, 1024))])
def test_image_models_answer_with_png_parts(ctl, make_client, ratio, size, expected):
    client = make_client()
    config = types.GenerateContentConfig(response_modalities=["IMAGE"],
                                         image_config=types.ImageConfig(aspect_ratio=ratio, image_size=size))
    response = client.models.generate_content(model="gemini-2.5-flash-image", contents="a red fox", config=config)
    (part,) = response.candidates[0].content.parts
    image = part.as_image()
    assert image.mime_type == "image/png" and _png_size(image.image_bytes) == expected
    # a real, decodable PNG: its IDAT inflates to height rows of (1 + width/8) bytes
    data = image.image_bytes
    idat_len = int.from_bytes(data[33:37], "big")
    assert len(zlib.decompress(data[41:41 + idat_len])) == expected[1] * (1 + (expected[0] + 7) // 8)
    assert ctl.log()[-1]["image"]["width"] == expected[0]


def test_unknown_aspect_ratio_is_a_400(make_client):
    config = types.GenerateContentConfig(image_config=types.ImageConfig(aspect_ratio="7:3"))
    with pytest.raises(errors.ClientError) as info:
        make_client().models.generate_content(model="gemini-3-pro-image-preview", contents="x", config=config)
    assert info.value.code == 400 and "aspect_ratio" in str(info.value)


def test_include_thoughts_adds_a_thought_part(ctl, make_client):
    config = {"thinking_config": {"include_thoughts": True, "thinking_budget": 512}}
    response = make_client().models.generate_content(model="gemini-2.5-flash", contents="why?", config=config)
    parts = response.candidates[0].content.parts
    assert parts[0].thought is True and "thinking_budget=512" in parts[0].text
    assert parts[1].thought is None and response.text.startswith("[emulator]")
    assert response.usage_metadata.thoughts_token_count > 0
    assert ctl.log()[-1]["generation_config"]["thinking_config"] == {"include_thoughts": True,
                                                                     "thinking_budget": 512}


class Recipe(pydantic.BaseModel):
    name: str
    minutes: int
    steps: list[str]


def test_json_answers_follow_the_schema(make_client):
    client = make_client()
    for config in ({"response_mime_type": "application/json", "response_schema": Recipe},
                   {"response_mime_type": "application/json", "response_json_schema": Recipe.model_json_schema()}):
        response = client.models.generate_content(model="gemini-2.5-flash", contents="a recipe", config=config)
        recipe = Recipe.model_validate_json(response.text)
        assert "a recipe" in recipe.name and recipe.steps
    response = client.models.generate_content(model="gemini-2.5-flash", contents="a recipe",
                                              config={"response_mime_type": "application/json",
                                                      "response_schema": Recipe})
    assert isinstance(response.parsed, Recipe)
