"""TTS through the real SDK: PCM format and length, voices, speakers, WAV/mime variants, big clips."""

from __future__ import annotations

import io
import time
import wave

import pytest
from emu_helpers import TTS_MODEL
from google.genai import errors, types


def _speak(client, text: str, speech_config, model: str = TTS_MODEL):
    return client.models.generate_content(
        model=model,
        contents=text,
        config=types.GenerateContentConfig(response_modalities=["AUDIO"], speech_config=speech_config),
    )


def _voice(name: str) -> types.VoiceConfig:
    return types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=name))


def _two_speakers(*names: str) -> types.SpeechConfig:
    return types.SpeechConfig(
        multi_speaker_voice_config=types.MultiSpeakerVoiceConfig(
            speaker_voice_configs=[
                types.SpeakerVoiceConfig(speaker=f"S{i}", voice_config=_voice(n)) for i, n in enumerate(names)
            ]
        )
    )


def test_single_voice_pcm(client, ctl):
    text = "Say cheerfully: Have a wonderful day! " * 2  # 76 chars -> 4.56 s
    r = _speak(client, text, types.SpeechConfig(voice_config=_voice("Kore")))
    blob = r.candidates[0].content.parts[0].inline_data
    assert blob.mime_type == "audio/L16;codec=pcm;rate=24000"
    assert r.text is None
    seconds = len(text) * 0.06
    assert len(blob.data) == round(seconds * 24000) * 2  # s16le mono 24 kHz
    assert any(blob.data)  # a tone, not silence
    u = r.usage_metadata
    assert u.candidates_tokens_details[0].modality.value == "AUDIO"
    assert u.prompt_token_count == 19
    entry = ctl.log()[-1]
    assert entry["voices"] == ["Kore"] and entry["audio_seconds"] == pytest.approx(seconds)


def test_bare_string_voice_and_minimum_length(client):
    r = _speak(client, "Hi", "Puck")
    assert len(r.candidates[0].content.parts[0].inline_data.data) == 12000 * 2  # min 0.5 s


def test_voices_sound_different(client):
    kore = _speak(client, "Same words", "Kore").candidates[0].content.parts[0].inline_data.data
    puck = _speak(client, "Same words", "Puck").candidates[0].content.parts[0].inline_data.data
    assert len(kore) == len(puck) and kore != puck


def test_two_speakers(client, ctl):
    text = "TTS the following conversation between Joe and Jane:\nJoe: How's it going?\nJane: Not bad!"
    r = _speak(client, text, _two_speakers("Kore", "Puck"))
    data = r.candidates[0].content.parts[0].inline_data.data
    assert len(data) == round(len(text) * 0.06 * 24000) * 2
    assert ctl.log()[-1]["voices"] == ["Kore", "Puck"]


def test_unknown_voice_is_400(client, ctl):
    with pytest.raises(errors.ClientError) as ei:
        _speak(client, "Hello", "NotAVoice")
    assert ei.value.code == 400 and ei.value.status == "INVALID_ARGUMENT"
    assert "NotAVoice" in ei.value.message
    with pytest.raises(errors.ClientError) as ei:
        _speak(client, "Hello", _two_speakers("Kore", "Nobody"))
    assert ei.value.code == 400


def test_speaker_count_must_be_two(client):
    with pytest.raises(errors.ClientError) as ei:
        _speak(client, "Three people talk", _two_speakers("Kore", "Puck", "Zephyr"))
    assert ei.value.code == 400 and ei.value.status == "INVALID_ARGUMENT"
    with pytest.raises(errors.ClientError) as ei:
        _speak(client, "One person talks", _two_speakers("Kore"))
    assert ei.value.code == 400


def test_fixed_duration_and_wav_mime(client, ctl):
    ctl.configure(tts_seconds=1.5, tts_mime="audio/wav")
    r = _speak(client, "Whatever length this text has", "Charon")
    blob = r.candidates[0].content.parts[0].inline_data
    assert blob.mime_type == "audio/wav"
    assert blob.data[:4] == b"RIFF"
    with wave.open(io.BytesIO(blob.data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        assert w.getnframes() == 36000


def test_alternate_pcm_mime(client, ctl):
    ctl.configure(tts_mime="audio/l16; rate=24000; channels=1", tts_seconds=1)
    blob = _speak(client, "Hello", "Leda").candidates[0].content.parts[0].inline_data
    assert blob.mime_type == "audio/l16; rate=24000; channels=1"
    assert len(blob.data) == 48000


def test_streaming_tts_pcm(client, ctl):
    ctl.configure(tts_seconds=2.5)
    chunks = list(
        client.models.generate_content_stream(
            model=TTS_MODEL,
            contents="stream some audio",
            config=types.GenerateContentConfig(response_modalities=["AUDIO"], speech_config="Aoede"),
        )
    )
    pcm = b"".join(c.candidates[0].content.parts[0].inline_data.data for c in chunks)
    assert len(pcm) == 2.5 * 24000 * 2
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_ten_minute_clip(make_client, ctl):
    ctl.configure(tts_seconds=600)
    client = make_client(timeout_ms=60_000)
    t0 = time.perf_counter()
    r = _speak(client, "A very long audiobook chapter", "Sulafat")
    elapsed = time.perf_counter() - t0
    data = r.candidates[0].content.parts[0].inline_data.data
    assert len(data) == 600 * 24000 * 2  # 28.8 MB
    assert elapsed < 15, elapsed
    server_time = ctl.log()[-1]["duration"]
    assert server_time < 2.0, server_time
