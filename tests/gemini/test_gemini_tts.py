"""TTS voices, configs, prompts (speaker order kept) and WAV output checked with the stdlib wave module."""

from __future__ import annotations

import io
import os
import struct
import wave

import pytest
from google.genai import types

from gemini_tasks.gemini.tts import (
    TTS_MODELS,
    TTS_VOICES,
    dialogue_prompt,
    dialogue_speakers,
    is_wav,
    list_voices,
    multi_speaker_config,
    parse_audio_mime,
    resolve_tts_model,
    single_speaker_config,
    speech_prompt,
    to_wav_bytes,
    validate_voice,
    wav_duration,
    write_wav,
)

WIRE_DOC_VOICES = (
    "Zephyr (Bright), Puck (Upbeat), Charon (Informative), Kore (Firm), Fenrir (Excitable), Leda (Youthful), "
    "Orus (Firm), Aoede (Breezy), Callirrhoe (Easy-going), Autonoe (Bright), Enceladus (Breathy), Iapetus (Clear), "
    "Umbriel (Easy-going), Algieba (Smooth), Despina (Smooth), Erinome (Clear), Algenib (Gravelly), "
    "Rasalgethi (Informative), Laomedeia (Upbeat), Achernar (Soft), Alnilam (Firm), Schedar (Even), Gacrux (Mature), "
    "Pulcherrima (Forward), Achird (Friendly), Zubenelgenubi (Casual), Vindemiatrix (Gentle), Sadachbia (Lively), "
    "Sadaltager (Knowledgeable), Sulafat (Warm)"
)


def test_thirty_voices_with_the_documented_styles():
    expected = dict(item.rstrip(")").split(" (") for item in WIRE_DOC_VOICES.split(", "))
    assert len(expected) == 30
    assert TTS_VOICES == expected


def test_models():
    assert TTS_MODELS == {"flash": "gemini-2.5-flash-preview-tts", "pro": "gemini-2.5-pro-preview-tts"}
    assert resolve_tts_model("flash") == "gemini-2.5-flash-preview-tts"
    assert resolve_tts_model("Pro") == "gemini-2.5-pro-preview-tts"
    assert resolve_tts_model(None) == "gemini-2.5-flash-preview-tts"
    assert resolve_tts_model("gemini-3.8-flash-tts") == "gemini-3.8-flash-tts"


def test_list_voices():
    assert list_voices("Bright") == {"Zephyr": "Bright", "Autonoe": "Bright"}
    assert list_voices("bright") == list_voices("BRIGHT") == list_voices("Bright")
    assert list_voices("Easy-going") == {"Callirrhoe": "Easy-going", "Umbriel": "Easy-going"}
    assert list_voices("Bri") == {}  # exact match, like the original
    everything = list_voices()
    assert everything == TTS_VOICES and everything is not TTS_VOICES
    everything["Nope"] = "x"
    assert "Nope" not in TTS_VOICES


def test_validate_voice():
    assert validate_voice("Kore") == "Kore"
    assert validate_voice(" kore ") == "Kore"
    with pytest.raises(ValueError) as info:
        validate_voice("Korra")
    assert "'Korra'" in str(info.value)
    assert "Zephyr" in str(info.value) and "Sulafat" in str(info.value)


def test_single_speaker_config_matches_the_wire():
    config = single_speaker_config("kore")
    assert config.model_dump(mode="json", exclude_none=True) == {
        "response_modalities": ["AUDIO"],
        "speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}}},
    }
    with pytest.raises(ValueError, match="unknown TTS voice 'Nobody'"):
        single_speaker_config("Nobody")


def test_multi_speaker_config_keeps_order():
    config = multi_speaker_config([("Joe", "Kore"), ("Jane", "Puck")])
    dumped = config.model_dump(mode="json", exclude_none=True)
    assert dumped["speech_config"]["multi_speaker_voice_config"]["speaker_voice_configs"] == [
        {"speaker": "Joe", "voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}}},
        {"speaker": "Jane", "voice_config": {"prebuilt_voice_config": {"voice_name": "Puck"}}},
    ]
    reversed_ = multi_speaker_config([("Jane", "Puck"), ("Joe", "Kore")])
    assert [c.speaker for c in reversed_.speech_config.multi_speaker_voice_config.speaker_voice_configs] == ["Jane", "Joe"]
    assert isinstance(config, types.GenerateContentConfig)


@pytest.mark.parametrize(
    "pairs,match",
    [([("Joe", "Kore")], "exactly 2"), ([("A", "Kore"), ("B", "Puck"), ("C", "Leda")], "exactly 2"),
     ([("A", "Kore"), ("A", "Puck")], "exactly 2 distinct"), ([("A", "Kore"), ("B", "Bogus")], "unknown TTS voice 'Bogus'")],
)
def test_multi_speaker_config_errors(pairs, match):
    with pytest.raises(ValueError, match=match):
        multi_speaker_config(pairs)


PODCAST = [
    ("Host", "Welcome to Tech Talk podcast!"),
    ("Guest", "Thanks for having me!"),
    ("Host", "Let's discuss AI advancements."),
    ("Guest", "I'm excited to share my insights!"),
]


def test_dialogue_speakers_in_order_of_first_appearance():
    assert dialogue_speakers(PODCAST) == ["Host", "Guest"]
    assert dialogue_speakers(list(reversed(PODCAST))) == ["Guest", "Host"]
    assert dialogue_speakers({"Zed": "hi", "Amy": "hello"}) == ["Zed", "Amy"]  # not sorted, not set()-ordered


def test_dialogue_prompt_format():
    assert dialogue_prompt(PODCAST, "Make Host sound professional and Guest enthusiastic") == (
        "Make Host sound professional and Guest enthusiastic\n\n"
        "TTS the following conversation:\n"
        "Host: Welcome to Tech Talk podcast!\n"
        "Guest: Thanks for having me!\n"
        "Host: Let's discuss AI advancements.\n"
        "Guest: I'm excited to share my insights!"
    )
    assert dialogue_prompt({"Joe": "Hi", "Jane": "Hey"}) == "TTS the following conversation:\nJoe: Hi\nJane: Hey"


@pytest.mark.parametrize(
    "dialogue,match",
    [([("Solo", "Just me")], "exactly 2 speakers, got 1"),
     ([("A", "1"), ("B", "2"), ("C", "3")], "exactly 2 speakers, got 3"),
     ([], "dialogue is empty"),
     ([("A", "1"), ("B",)], r"dialogue\[1\] must be a \(speaker, text\) pair"),
     ([("A", "1"), ("", "2")], "speaker must be a non-empty string"),
     ([("A", "1"), ("B", "  ")], "text for 'B' must be a non-empty string")],
)
def test_dialogue_prompt_errors(dialogue, match):
    with pytest.raises(ValueError, match=match):
        dialogue_prompt(dialogue)


def test_speech_prompt():
    assert speech_prompt("Welcome!", "Say this with excitement") == "Say this with excitement: Welcome!"
    assert speech_prompt("Welcome!") == "Welcome!"
    with pytest.raises(ValueError):
        speech_prompt("  ")


# ---------------------------------------------------------------------------------------------------- WAV


@pytest.mark.parametrize(
    "mime,expected",
    [
        ("audio/L16;codec=pcm;rate=24000", (24000, 1, 2, False)),
        ("audio/l16; rate=24000; channels=1", (24000, 1, 2, False)),
        ("audio/L16; RATE = 16000 ; Channels=2", (16000, 2, 2, False)),
        ("audio/L16;codec=pcm;rate=44100.0", (44100, 1, 2, False)),
        ("audio/pcm", (24000, 1, 2, False)),
        ("audio/L8;rate=8000", (8000, 1, 1, False)),
        ("audio/L24;rate=48000", (48000, 1, 3, False)),
        ("audio/wav", (24000, 1, 2, True)),
        ("AUDIO/X-WAV", (24000, 1, 2, True)),
        ("", (24000, 1, 2, False)),
        (None, (24000, 1, 2, False)),
        ("audio/L16;rate=abc", (24000, 1, 2, False)),
    ],
)
def test_parse_audio_mime(mime, expected):
    assert parse_audio_mime(mime) == expected


def test_parse_audio_mime_rejects_nonsense_rates():
    with pytest.raises(ValueError):
        parse_audio_mime("audio/L16;rate=0")


def pcm(frames: int, channels: int = 1, width: int = 2) -> bytes:
    return bytes((i * 7) % 256 for i in range(frames * channels * width))


def read_wav(data: bytes) -> tuple[int, int, int, int, bytes]:
    with wave.open(io.BytesIO(data), "rb") as r:
        return r.getframerate(), r.getnchannels(), r.getsampwidth(), r.getnframes(), r.readframes(r.getnframes())


@pytest.mark.parametrize(
    "mime,rate,channels,width",
    [
        ("audio/L16;codec=pcm;rate=24000", 24000, 1, 2),
        ("audio/l16; rate=24000; channels=1", 24000, 1, 2),
        ("audio/L16; rate=16000; channels=2", 16000, 2, 2),
        ("audio/L16;rate=44100", 44100, 1, 2),
        ("audio/L8;rate=8000", 8000, 1, 1),
        (None, 24000, 1, 2),
    ],
)
def test_to_wav_bytes_header_is_correct(mime, rate, channels, width):
    data = pcm(2400, channels, width)
    wav = to_wav_bytes(data, mime)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert struct.unpack("<I", wav[4:8])[0] == len(wav) - 8  # RIFF size field
    assert read_wav(wav) == (rate, channels, width, 2400, data)
    assert wav_duration(wav) == pytest.approx(2400 / rate)


def test_complete_wav_passes_through_unchanged():
    wav = to_wav_bytes(pcm(100), "audio/L16;rate=24000")
    assert to_wav_bytes(wav, "audio/wav") == wav
    assert to_wav_bytes(wav, "audio/L16;codec=pcm;rate=24000") == wav  # sniffed, whatever the label says
    assert to_wav_bytes(bytearray(wav), "audio/wav") == wav
    assert is_wav(wav) and not is_wav(pcm(100)) and not is_wav(b"RIFF")


def test_wav_label_without_header_is_wrapped_as_pcm():
    assert read_wav(to_wav_bytes(pcm(10), "audio/wav"))[:4] == (24000, 1, 2, 10)


def test_partial_trailing_frame_is_dropped():
    data = pcm(10) + b"\x01"
    assert read_wav(to_wav_bytes(data, "audio/L16;rate=24000"))[3:] == (10, data[:-1])


def test_empty_pcm_gives_an_empty_but_valid_wav():
    assert read_wav(to_wav_bytes(b"", "audio/L16;rate=24000")) == (24000, 1, 2, 0, b"")


def test_write_wav_atomic(tmp_path):
    data = pcm(24000)
    target = tmp_path / "hello.wav"
    assert write_wav(target, data, "audio/L16;codec=pcm;rate=24000") == str(target)
    assert read_wav(target.read_bytes()) == (24000, 1, 2, 24000, data)
    assert wav_duration(target) == pytest.approx(1.0)
    assert wav_duration(str(target)) == pytest.approx(1.0)
    assert os.listdir(tmp_path) == ["hello.wav"]  # no temp file left behind
    # overwrite in place
    write_wav(target, pcm(12000), "audio/L16;rate=24000")
    assert wav_duration(target) == pytest.approx(0.5)


def test_write_wav_streams_chunks_with_split_frames(tmp_path):
    data = pcm(1000, channels=2)
    chunks = [data[:3], data[3:1001], data[1001:1002], data[1002:]]  # chunk edges cut frames in half
    target = tmp_path / "stream.wav"
    write_wav(target, iter(chunks), "audio/L16;rate=16000;channels=2")
    assert read_wav(target.read_bytes()) == (16000, 2, 2, 1000, data)


def test_write_wav_passes_a_complete_wav_through(tmp_path):
    wav = to_wav_bytes(pcm(50), "audio/L16;rate=22050")
    target = tmp_path / "x.wav"
    write_wav(target, wav, "audio/wav")
    assert target.read_bytes() == wav


def test_write_wav_failure_leaves_nothing(tmp_path):
    def broken():
        yield pcm(10)
        raise RuntimeError("stream broke")

    target = tmp_path / "broken.wav"
    with pytest.raises(RuntimeError):
        write_wav(target, broken(), "audio/L16;rate=24000")
    assert os.listdir(tmp_path) == []


def test_wav_duration_of_wave_format_extensible():
    """Newer models may send WAVE_FORMAT_EXTENSIBLE, which Python 3.11's wave refuses to open."""
    data = pcm(4800)
    fmt = struct.pack("<HHIIHH", 0xFFFE, 1, 24000, 48000, 2, 16) + struct.pack("<HHI16s", 22, 16, 4, b"\x01" + b"\x00" * 15)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    wav = b"RIFF" + struct.pack("<I", len(body)) + body
    assert wav_duration(wav) == pytest.approx(0.2)
    assert to_wav_bytes(wav, "audio/wav") == wav
