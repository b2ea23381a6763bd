"""generateContent through the real SDK: identifying text, usage, casing, base64, streaming."""

from __future__ import annotations

import base64
import json
import math
import time

import httpx2
import pytest
from emu_helpers import MODEL, TTS_MODEL
from google import genai
from google.genai import errors, types


def test_text_identifies_the_request(client, ctl):
    r1 = client.models.generate_content(model=MODEL, contents="What is the capital of France?")
    r2 = client.models.generate_content(model=MODEL, contents="What is the capital of Spain?")
    r1_again = client.models.generate_content(model=MODEL, contents="What is the capital of France?")

    assert r1.text.startswith(f"[emulator] {MODEL} ")
    assert r1.text.endswith(":: What is the capital of France?")
    assert r1.text != r2.text
    assert r1.text == r1_again.text  # deterministic
    fingerprint = r1.text.split()[2]
    log = ctl.log()
    assert [e["fingerprint"] for e in log] == [fingerprint, r2.text.split()[2], fingerprint]
    assert r1.candidates[0].finish_reason == types.FinishReason.STOP
    assert r1.model_version == MODEL
    assert r1.response_id and r1.response_id != r2.response_id


def test_usage_metadata_is_realistic(client):
    prompt = "x" * 41  # 41 chars -> ceil(41/4) = 11 tokens
    r = client.models.generate_content(model="models/gemini-3.5-flash", contents=prompt)
    u = r.usage_metadata
    assert u.prompt_token_count == 11
    assert u.candidates_token_count == math.ceil(len(r.text) / 4)
    assert u.total_token_count == u.prompt_token_count + u.candidates_token_count
    assert [(d.modality, d.token_count) for d in u.prompt_tokens_details] == [(types.MediaModality.TEXT, 11)]
    assert r.model_version == "gemini-3.5-flash"


def test_media_adds_prompt_tokens(client):
    audio = b"\x01" * 50_000  # ~100 audio tokens by the emulator's 500 bytes/token estimate
    r = client.models.generate_content(
        model=MODEL,
        contents=["Transcribe", types.Part.from_bytes(data=audio, mime_type="audio/mp3")],
    )
    details = {d.modality: d.token_count for d in r.usage_metadata.prompt_tokens_details}
    assert details[types.MediaModality.TEXT] == 3
    assert details[types.MediaModality.AUDIO] == 100
    assert r.usage_metadata.prompt_token_count == 103
    assert "inline audio/mp3 50000B" in r.text


def _raw(url: str, body: dict, key: str = "raw-key", version: str = "v1beta") -> httpx2.Response:
    return httpx2.post(
        f"{url}/{version}/models/{MODEL}:generateContent",
        json=body,
        headers={"x-goog-api-key": key},
        timeout=5,
    )


def test_snake_and_camel_bodies_are_equivalent(emu, ctl):
    data = bytes(range(256)) * 3  # contains bytes that differ between the two base64 alphabets
    camel = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Describe this"},
                    {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}},
                    {
                        "fileData": {"fileUri": "https://www.youtube.com/watch?v=abc", "mimeType": "video/mp4"},
                        "videoMetadata": {"startOffset": "1s", "endOffset": "3s"},
                    },
                ],
            }
        ],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {"maxOutputTokens": 64, "thinkingConfig": {"thinkingBudget": 0}},
    }
    snake = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Describe this"},
                    {"inline_data": {"mime_type": "image/png", "data": base64.urlsafe_b64encode(data).decode()}},
                    {
                        "file_data": {"file_uri": "https://www.youtube.com/watch?v=abc", "mime_type": "video/mp4"},
                        "video_metadata": {"start_offset": "1s", "end_offset": "3s"},
                    },
                ],
            }
        ],
        "system_instruction": {"parts": [{"text": "be brief"}]},
        "generation_config": {"max_output_tokens": 64, "thinking_config": {"thinking_budget": 0}},
    }
    unpadded = json.loads(json.dumps(snake))
    blob = unpadded["contents"][0]["parts"][1]["inline_data"]
    blob["data"] = blob["data"].rstrip("=")

    answers = [_raw(emu.url, b) for b in (camel, snake, unpadded)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    texts = [a.json()["candidates"][0]["content"]["parts"][0]["text"] for a in answers]
    assert texts[0] == texts[1] == texts[2]

    for entry in ctl.log():
        assert entry["parts"][1] == {"kind": "inline", "mime_type": "image/png", "size": 768}
        assert entry["parts"][2]["video_metadata"] == {"start_offset": "1s", "end_offset": "3s"}
        assert entry["system_instruction"] == "be brief"
        assert entry["generation_config"] == {"max_output_tokens": 64, "thinking_config": {"thinking_budget": 0}}


def test_bad_base64_and_bad_json_are_400(emu):
    bad = {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "***"}}]}]}
    r = _raw(emu.url, bad)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "Base64 decoding failed" in r.json()["error"]["message"]
    r = httpx2.post(
        f"{emu.url}/v1beta/models/{MODEL}:generateContent",
        content=b"{not json",
        headers={"x-goog-api-key": "k", "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/json")
    r = _raw(emu.url, {"contents": []})
    assert r.status_code == 400


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1alpha"])
def test_any_v1_version_prefix(emu, make_client, version):
    c = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=emu.url, api_version=version, timeout=5000))
    assert c.models.generate_content(model=MODEL, contents="hi").text.endswith(":: hi")
    c.close()


def test_base_url_path_prefix_and_env_var(emu, ctl, monkeypatch):
    c = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(base_url=emu.url + "/proxy/gemini/", api_version="v1beta", timeout=5000),
    )
    assert c.models.generate_content(model=MODEL, contents="prefixed").text.endswith(":: prefixed")
    c.close()
    assert ctl.log()[-1]["path"] == f"/proxy/gemini/v1beta/models/{MODEL}:generateContent"

    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.url)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)  # it would win over GEMINI_API_KEY
    monkeypatch.setenv("GEMINI_API_KEY", "env-key")
    c = genai.Client(http_options=types.HttpOptions(api_version="v1beta", timeout=5000))
    assert c.models.generate_content(model=MODEL, contents="via env").text.endswith(":: via env")
    c.close()


def test_system_instruction_and_json_mode(client, ctl):
    r = client.models.generate_content(
        model=MODEL,
        contents="List three colours",
        config=types.GenerateContentConfig(
            system_instruction="Answer in JSON", response_mime_type="application/json", temperature=0.2
        ),
    )
    payload = json.loads(r.text)
    assert payload["emulator"] is True and payload["model"] == MODEL
    assert payload["echo"] == "List three colours"
    entry = ctl.log()[-1]
    assert entry["system_instruction"] == "Answer in JSON"
    assert entry["generation_config"]["response_mime_type"] == "application/json"
    assert entry["generation_config"]["temperature"] == 0.2


def test_echo_is_truncated(client, ctl):
    ctl.configure(echo_max_chars=20)
    r = client.models.generate_content(model=MODEL, contents="word " * 100)
    echo = r.text.split(" :: ", 1)[1]
    assert len(echo) == 20 and echo.endswith("...")
    assert ctl.log()[-1]["parts"][0]["size"] == 500


def test_streaming(client, ctl):
    whole = client.models.generate_content(model=MODEL, contents="Tell me a story about streams").text
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Tell me a story about streams"))
    assert len(chunks) > 1
    assert "".join(c.text for c in chunks) == whole
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.prompt_token_count == 8
    assert ctl.log()[-1]["endpoint"] == "streamGenerateContent"


def test_count_tokens_does_not_use_quota(client, ctl):
    ctl.configure(quotas={"*": {"*": {"rpm": 1}}})
    assert client.models.count_tokens(model=MODEL, contents="12345678").total_tokens == 2
    assert client.models.count_tokens(model=MODEL, contents="12345678").total_tokens == 2
    client.models.generate_content(model=MODEL, contents="still allowed")


def test_tts_model_requires_audio_modality(client):
    with pytest.raises(errors.ClientError) as ei:
        client.models.generate_content(model=TTS_MODEL, contents="Say hi")
    assert ei.value.code == 400 and ei.value.status == "INVALID_ARGUMENT"


def test_keep_alive_and_low_latency(client, ctl):
    """One TCP connection for sequential SDK calls, and no Nagle/delayed-ACK 40 ms stalls."""
    client.models.generate_content(model=MODEL, contents="warm")
    t0 = time.perf_counter()
    for i in range(20):
        client.models.generate_content(model=MODEL, contents=f"ping {i}")
    per_call = (time.perf_counter() - t0) / 20
    assert per_call < 0.035, per_call  # Nagle + delayed ACK would cost ~40 ms per call
    assert len({e["client_port"] for e in ctl.log()}) == 1


def test_unknown_route_is_404_envelope(emu):
    r = httpx2.get(f"{emu.url}/v1beta/models", headers={"x-goog-api-key": "k"})
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
def test_async_client_aiohttp_backend(client, ctl):
    """client.aio uses aiohttp when installed; it only parses error JSON sent as application/json."""
    import asyncio

    async def main():
        r = await client.aio.models.generate_content(model=MODEL, contents="async hello")
        assert r.text.endswith(":: async hello")
        ctl.add_fault(action="status", status=429, times=1)
        with pytest.raises(errors.ClientError) as ei:
            await client.aio.models.generate_content(model=MODEL, contents="async again")
        assert ei.value.status == "RESOURCE_EXHAUSTED"
        assert ei.value.details["error"]["details"][2]["retryDelay"] == "7s"
        await client.aio.aclose()

    asyncio.run(main())


def test_request_size_limit_and_server_timeout_header(client, ctl):
    ctl.configure(max_request_mb=1)
    big = types.Part.from_bytes(data=b"\x00" * (1024 * 1024), mime_type="image/png")
    with pytest.raises(errors.ClientError) as ei:
        client.models.generate_content(model=MODEL, contents=["too big", big])
    assert ei.value.code == 400 and "payload size exceeds" in ei.value.message
    client.models.generate_content(model=MODEL, contents="small")
    assert ctl.log()[-1]["server_timeout"] == "5"  # timeout=5000 ms -> X-Server-Timeout: 5


def test_file_uri_under_another_loopback_name(client, ctl):
    import io

    f = client.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "text/plain"})
    uri = f.uri.replace("127.0.0.1", "localhost")
    part = types.Part(file_data=types.FileData(file_uri=uri, mime_type="text/plain"))
    with pytest.raises(errors.ClientError) as ei:  # recognised as ours: not ACTIVE yet
        client.models.generate_content(model=MODEL, contents=[part])
    assert ei.value.status == "FAILED_PRECONDITION"
