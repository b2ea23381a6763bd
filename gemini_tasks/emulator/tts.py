"""Text-to-speech: speechConfig validation and deterministic audio.

The audio is a quiet sine tone whose pitch depends on the (first) voice, so a test can tell voices
apart, and whose length follows the text (or a fixed configured duration).  A 10-minute clip is
28.8 MB of PCM; it is built by repeating one pre-computed period (a memcpy, not a Python loop)
and base64-encoded in one C call.
"""

from __future__ import annotations

import array
import base64
import math
import re
import struct
import sys
from functools import lru_cache
from typing import Any

from . import wire

VOICES: tuple[str, ...] = (
    "Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe", "Autonoe",
    "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib", "Rasalgethi",
    "Laomedeia", "Achernar", "Alnilam", "Schedar", "Gacrux", "Pulcherrima", "Achird",
    "Zubenelgenubi", "Vindemiatrix", "Sadachbia", "Sadaltager", "Sulafat",
)  # fmt: skip
_VOICE_INDEX = {v.lower(): i for i, v in enumerate(VOICES)}
DEFAULT_RATE = 24000
AMPLITUDE = 1200  # about -29 dBFS: audible, quiet
AUDIO_TOKENS_PER_SECOND = 25
_RATE_RE = re.compile(r"rate\s*=\s*(\d+)", re.IGNORECASE)


def _invalid(message: str) -> wire.ApiError:
    return wire.ApiError(400, message, "INVALID_ARGUMENT")


def _voice_name(voice_config: Any, where: str, strict: bool) -> str | None:
    if voice_config is None:
        return None
    if isinstance(voice_config, str):  # tolerate a bare name at this level too
        voice_config = {"prebuilt_voice_config": {"voice_name": voice_config}}
    if not isinstance(voice_config, dict):
        raise _invalid(f"Invalid value at '{where}': expected a VoiceConfig object")
    if "replicated_voice_config" in voice_config:
        return None  # a cloned voice: nothing to check against
    name = None
    prebuilt = voice_config.get("prebuilt_voice_config")
    if isinstance(prebuilt, dict):
        name = prebuilt.get("voice_name")
    if name is None:
        name = voice_config.get("voice")
    if name is None:
        return None
    if strict and str(name).lower() not in _VOICE_INDEX:
        raise _invalid(f"Voice name '{name}' is not supported. Supported voices are: {', '.join(VOICES)}.")
    return str(name)


def validate_speech_config(speech_config: Any, strict: bool = True) -> list[str]:
    """Voice names in use (may be empty = default voice); raise 400 INVALID_ARGUMENT if invalid."""
    if speech_config is None:
        return []
    if isinstance(speech_config, str):
        speech_config = {"voice_config": speech_config}
    if not isinstance(speech_config, dict):
        raise _invalid("Invalid value at 'generation_config.speech_config'")
    single = speech_config.get("voice_config")
    multi = speech_config.get("multi_speaker_voice_config")
    if single is not None and multi is not None:
        raise _invalid("Only one of voice_config and multi_speaker_voice_config may be set in speech_config.")
    if multi is not None:
        speakers = multi.get("speaker_voice_configs") if isinstance(multi, dict) else None
        if not isinstance(speakers, list) or len(speakers) != 2:
            n = len(speakers) if isinstance(speakers, list) else 0
            raise _invalid(
                "Multi-speaker voice config must have exactly 2 speaker voice configs "
                f"(got {n}); multi-speaker speech supports at most 2 speakers."
            )
        names = []
        for i, sp in enumerate(speakers):
            if not isinstance(sp, dict) or not sp.get("speaker"):
                raise _invalid(
                    f"Invalid value at 'generation_config.speech_config.multi_speaker_voice_config."
                    f"speaker_voice_configs[{i}].speaker': a speaker name is required"
                )
            where = f"generation_config.speech_config.multi_speaker_voice_config.speaker_voice_configs[{i}]"
            name = _voice_name(sp.get("voice_config"), where, strict)
            if name:
                names.append(name)
        return names
    name = _voice_name(single, "generation_config.speech_config.voice_config", strict)
    return [name] if name else []


def rate_from_mime(mime: str) -> int:
    m = _RATE_RE.search(mime)
    return int(m.group(1)) if m else DEFAULT_RATE


def duration_for(text_chars: int, config: dict[str, Any]) -> float:
    fixed = config.get("tts_seconds")
    if fixed is not None:
        return max(0.0, float(fixed))
    return max(float(config["tts_min_seconds"]), text_chars * float(config["tts_seconds_per_char"]))


@lru_cache(maxsize=64)
def _period(samples: int) -> bytes:
    """One period of the tone as s16le bytes."""
    a = array.array("h", (int(AMPLITUDE * math.sin(2 * math.pi * i / samples)) for i in range(samples)))
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def period_for(voices: list[str]) -> int:
    """Samples per period: 40..98 at 24 kHz = 600..245 Hz, one pitch per voice."""
    idx = _VOICE_INDEX.get(voices[0].lower(), 0) if voices else 3  # default voice Kore
    return 40 + 2 * idx


def pcm(seconds: float, rate: int, period: int) -> bytes:
    n = int(round(seconds * rate))
    one = _period(period)
    reps = n // period + 1
    return (one * reps)[: n * 2]


def wav_header(data_len: int, rate: int) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_len,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        data_len,
    )


@lru_cache(maxsize=16)
def _encoded_small(seconds: float, rate: int, period: int, wav: bool) -> bytes:
    return _encode(seconds, rate, period, wav)


def _encode(seconds: float, rate: int, period: int, wav: bool) -> bytes:
    data = pcm(seconds, rate, period)
    if wav:
        data = wav_header(len(data), rate) + data
    return base64.b64encode(data)


def synthesize(seconds: float, mime: str, voices: list[str]) -> tuple[bytes, int]:
    """(base64 bytes, audio byte length) for the clip; short clips are cached."""
    seconds = round(seconds, 4)
    wav = "wav" in mime.lower()
    rate = rate_from_mime(mime) if not wav or "rate=" in mime.lower() else DEFAULT_RATE
    period = period_for(voices)
    n_bytes = int(round(seconds * rate)) * 2 + (44 if wav else 0)
    if n_bytes <= 2_000_000:
        return _encoded_small(seconds, rate, period, wav), n_bytes
    return _encode(seconds, rate, period, wav), n_bytes


def audio_tokens(seconds: float) -> int:
    return max(1, int(math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)))
