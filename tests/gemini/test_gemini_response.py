"""Reading responses built from the wire doc's JSON (§4): blocked and empty are errors, never empty successes."""

from __future__ import annotations

import base64

import pytest
from google.genai import types

from gemini_tasks.gemini.errors import error_message
from gemini_tasks.gemini.response import GeminiCallFailed, extract_audio, extract_text, finish_reason, usage_dict

USAGE = {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10,
         "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 7}]}


def response(payload: dict) -> types.GenerateContentResponse:
    return types.GenerateContentResponse.model_validate(payload)


TEXT = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello from fake"}]}, "finishReason": "STOP", "index": 0}],
    "usageMetadata": USAGE,
    "modelVersion": "gemini-2.5-flash",
    "responseId": "r-1",
}
PROMPT_BLOCKED = {
    "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH"}]},
    "usageMetadata": USAGE,
}
CANDIDATE_SAFETY = {
    "candidates": [{"finishReason": "SAFETY", "index": 0,
                    "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH"}]}]
}
EMPTY_MAX_TOKENS = {"candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}]}
PCM = b"\x01\x00\x02\x00" * 100
TTS = {
    "candidates": [{"content": {"role": "model", "parts": [{"inlineData": {
        "mimeType": "audio/L16;codec=pcm;rate=24000", "data": base64.b64encode(PCM).decode()}}]},
        "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14},
    "modelVersion": "gemini-2.5-flash-preview-tts",
}


def test_text_success():
    r = response(TEXT)
    assert extract_text(r) == "Hello from fake"
    assert finish_reason(r) == "STOP"
    assert usage_dict(r) == {
        "prompt_token_count": 7,
        "candidates_token_count": 3,
        "total_token_count": 10,
        "thoughts_token_count": None,
        "cached_content_token_count": None,
    }


def test_text_joins_parts_skips_thoughts_and_can_strip():
    r = response({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "thinking...", "thought": True}, {"text": "  Hello "}, {"text": "world  "}]}, "finishReason": "STOP"}]})
    assert extract_text(r) == "  Hello world  "
    assert extract_text(r, strip=True) == "Hello world"


def test_max_tokens_with_text_is_a_truncated_success():
    r = response({"candidates": [{"content": {"role": "model", "parts": [{"text": "partial"}]}, "finishReason": "MAX_TOKENS"}]})
    assert extract_text(r) == "partial"


# (name, payload, status, reason, message)
FAILURES = [
    ("prompt blocked", PROMPT_BLOCKED, "BLOCKED", "SAFETY", "Response blocked by safety filters (SAFETY): prompt blocked"),
    ("prompt blocklist", {"promptFeedback": {"blockReason": "BLOCKLIST"}}, "BLOCKED", "BLOCKLIST", "Response blocked by safety filters (BLOCKLIST)"),
    ("prompt prohibited", {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}, "BLOCKED", "PROHIBITED_CONTENT", "Response blocked by safety filters (PROHIBITED_CONTENT)"),
    ("candidate safety", CANDIDATE_SAFETY, "BLOCKED", "SAFETY", "Response blocked by safety filters (SAFETY): candidate stopped"),
    ("candidate recitation with partial text",
     {"candidates": [{"content": {"role": "model", "parts": [{"text": "It was the best of"}]}, "finishReason": "RECITATION"}]},
     "BLOCKED", "RECITATION", "Response blocked by safety filters (RECITATION)"),
    ("candidate spii", {"candidates": [{"finishReason": "SPII"}]}, "BLOCKED", "SPII", "Response blocked by safety filters (SPII)"),
    ("empty max tokens", EMPTY_MAX_TOKENS, "EMPTY", "MAX_TOKENS", "Empty response (finish reason MAX_TOKENS)"),
    ("empty stop", {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}]}, "EMPTY", "STOP", "Empty response (finish reason STOP)"),
    ("whitespace only", {"candidates": [{"content": {"role": "model", "parts": [{"text": "  \n"}]}, "finishReason": "STOP"}]}, "EMPTY", "STOP", "Empty response (finish reason STOP)"),
    ("no candidates", {}, "EMPTY", "NONE", "Empty response (finish reason NONE): no candidates"),
    ("only thoughts", {"candidates": [{"content": {"role": "model", "parts": [{"text": "hmm", "thought": True}]}, "finishReason": "STOP"}]}, "EMPTY", "STOP", "Empty response (finish reason STOP)"),
    ("audio only, asked for text", TTS, "EMPTY", "STOP", "Empty response (finish reason STOP): no text"),
]


@pytest.mark.parametrize("payload,status,reason,message", [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_blocked_and_empty_are_errors(payload, status, reason, message):
    with pytest.raises(GeminiCallFailed) as info:
        extract_text(response(payload))
    err = info.value.error
    assert (err.kind, err.status, err.reason) == ("blocked", status, reason)
    assert error_message(err).startswith(message)
    assert str(info.value).startswith(message)


def test_unknown_finish_reason_with_no_text_is_empty_not_a_crash():
    with pytest.warns(UserWarning):
        r = response({"candidates": [{"finishReason": "NEW_THING"}]})
    with pytest.raises(GeminiCallFailed) as info:
        extract_text(r)
    assert info.value.error.reason == "NEW_THING"


def test_extract_audio():
    r = response(TTS)
    data, mime = extract_audio(r)
    assert data == PCM
    assert mime == "audio/L16;codec=pcm;rate=24000"
    assert usage_dict(r)["total_token_count"] == 14


def test_extract_audio_concatenates_pcm_parts():
    half = base64.b64encode(PCM[:200]).decode(), base64.b64encode(PCM[200:]).decode()
    r = response({"candidates": [{"content": {"role": "model", "parts": [
        {"inlineData": {"mimeType": "audio/L16;codec=pcm;rate=24000", "data": half[0]}},
        {"inlineData": {"mimeType": "audio/L16;codec=pcm;rate=24000", "data": half[1]}}]}, "finishReason": "STOP"}]})
    assert extract_audio(r) == (PCM, "audio/L16;codec=pcm;rate=24000")


@pytest.mark.parametrize("payload,status", [(PROMPT_BLOCKED, "BLOCKED"), (CANDIDATE_SAFETY, "BLOCKED"), (TEXT, "EMPTY"), ({}, "EMPTY")])
def test_extract_audio_failures(payload, status):
    with pytest.raises(GeminiCallFailed) as info:
        extract_audio(response(payload))
    assert info.value.error.status == status


def test_usage_dict_without_usage():
    assert set(usage_dict(response({})).values()) == {None}
