"""Text-to-speech building blocks: voices, request configs, prompts, and turning the audio into WAV.

Kept from the original (original-implementation.md §6): the 30 voices and their styles, ``TTS_MODELS``,
``list_voices(style)`` (case-insensitive exact match), the prompt formats. Fixed:

* speaker order in a two-speaker config is the order of first appearance in the dialogue (the original
  went through ``set()`` and lost it), and a dialogue must have exactly 2 speakers (the API's limit for
  ``multi_speaker_voice_config``; the original let a single speaker through);
* an unknown voice is an error naming the valid ones, not a silent fallback to the default;
* the WAV header takes rate/channels/width from the MIME type the API sent (``audio/L16;codec=pcm;
  rate=24000``, ``audio/l16; rate=24000; channels=1``), and a response that already is a complete WAV
  (``RIFF....WAVE``, as newer models send) is passed through instead of being wrapped twice;
* files are written to a temporary name and renamed, so a reader never sees half a WAV.

Gemini labels its PCM ``L16`` but sends it little-endian (which is what WAV wants), so no byte swapping.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import tempfile
import wave
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

from google.genai import types

logger = logging.getLogger("gemini_tasks")

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_SAMPLE_RATE",
    "DEFAULT_SAMPLE_WIDTH",
    "TTS_MODELS",
    "TTS_VOICES",
    "dialogue_prompt",
    "dialogue_speakers",
    "is_wav",
    "list_voices",
    "multi_speaker_config",
    "parse_audio_mime",
    "resolve_tts_model",
    "single_speaker_config",
    "speech_prompt",
    "to_wav_bytes",
    "validate_voice",
    "wav_duration",
    "write_wav",
]

#: The 30 prebuilt voices and the style Google gives each (wire doc §8).
TTS_VOICES: dict[str, str] = {
    "Zephyr": "Bright",
    "Puck": "Upbeat",
    "Charon": "Informative",
    "Kore": "Firm",
    "Fenrir": "Excitable",
    "Leda": "Youthful",
    "Orus": "Firm",
    "Aoede": "Breezy",
    "Callirrhoe": "Easy-going",
    "Autonoe": "Bright",
    "Enceladus": "Breathy",
    "Iapetus": "Clear",
    "Umbriel": "Easy-going",
    "Algieba": "Smooth",
    "Despina": "Smooth",
    "Erinome": "Clear",
    "Algenib": "Gravelly",
    "Rasalgethi": "Informative",
    "Laomedeia": "Upbeat",
    "Achernar": "Soft",
    "Alnilam": "Firm",
    "Schedar": "Even",
    "Gacrux": "Mature",
    "Pulcherrima": "Forward",
    "Achird": "Friendly",
    "Zubenelgenubi": "Casual",
    "Vindemiatrix": "Gentle",
    "Sadachbia": "Lively",
    "Sadaltager": "Knowledgeable",
    "Sulafat": "Warm",
}

TTS_MODELS: dict[str, str] = {
    "flash": "gemini-2.5-flash-preview-tts",
    "pro": "gemini-2.5-pro-preview-tts",
}

#: What the 2.5 TTS models send: signed 16-bit little-endian PCM, mono, 24 kHz.
DEFAULT_SAMPLE_RATE = 24000
DEFAULT_CHANNELS = 1
DEFAULT_SAMPLE_WIDTH = 2

_VOICES_BY_LOWER = {name.lower(): name for name in TTS_VOICES}
_WAV_SUBTYPES = frozenset({"wav", "x-wav", "wave", "vnd.wave"})

AudioData = Union[bytes, bytearray, memoryview]


# ------------------------------------------------------------------------------------------------ voices


def resolve_tts_model(name: str | None) -> str:
    """``"flash"``/``"pro"`` to their model ids; any other model id is used as it is (as the original)."""
    if not name:
        return TTS_MODELS["flash"]
    return TTS_MODELS.get(name.strip().lower(), name.strip())


def list_voices(style: str | None = None) -> dict[str, str]:
    """Voices and their styles, optionally only those whose style equals ``style`` (ignoring case)."""
    if style is None:
        return dict(TTS_VOICES)
    wanted = style.strip().lower()
    return {name: s for name, s in TTS_VOICES.items() if s.lower() == wanted}


def validate_voice(name: str) -> str:
    """The canonical spelling of a prebuilt voice; ``ValueError`` naming the voice and the valid ones."""
    if not isinstance(name, str) or name.strip().lower() not in _VOICES_BY_LOWER:
        raise ValueError(f"unknown TTS voice {name!r}; valid voices: {', '.join(sorted(TTS_VOICES))}")
    return _VOICES_BY_LOWER[name.strip().lower()]


def _voice_config(voice: str) -> types.VoiceConfig:
    return types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=validate_voice(voice)))


def single_speaker_config(voice: str) -> types.GenerateContentConfig:
    """Config for one voice (audio output only)."""
    return types.GenerateContentConfig(
        response_modalities=["AUDIO"],
        speech_config=types.SpeechConfig(voice_config=_voice_config(voice)),
    )


def multi_speaker_config(pairs_in_order: Sequence[tuple[str, str]]) -> types.GenerateContentConfig:
    """Config for a two-speaker dialogue; ``pairs_in_order`` is ``[(speaker, voice), ...]`` in dialogue order."""
    pairs = list(pairs_in_order)
    speakers = [speaker for speaker, _ in pairs]
    if len(pairs) != 2 or len(set(speakers)) != 2:
        raise ValueError(
            f"multi-speaker TTS needs exactly 2 distinct speakers, got {len(set(speakers))}: {speakers}"
        )
    return types.GenerateContentConfig(
        response_modalities=["AUDIO"],
        speech_config=types.SpeechConfig(
            multi_speaker_voice_config=types.MultiSpeakerVoiceConfig(
                speaker_voice_configs=[
                    types.SpeakerVoiceConfig(speaker=speaker, voice_config=_voice_config(voice))
                    for speaker, voice in pairs
                ]
            )
        ),
    )


# ----------------------------------------------------------------------------------------------- prompts


def config_for(speech: Mapping[str, Any]) -> types.GenerateContentConfig:
    """The config of a speech job's ``speech`` dict: ``{"voice"}`` or ``{"speakers": [[speaker, voice], ...]}``."""
    if speech.get("speakers"):
        return multi_speaker_config([(str(s), str(v)) for s, v in speech["speakers"]])
    return single_speaker_config(str(speech["voice"]))


def speech_prompt(text: str, style_prompt: str | None = None) -> str:
    """The original's single-speaker prompt: ``"{style_prompt}: {text}"`` or just the text."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("TTS text must be a non-empty string")
    return f"{style_prompt}: {text}" if style_prompt else text


def _dialogue_lines(dialogue: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    items = list(dialogue.items()) if isinstance(dialogue, Mapping) else list(dialogue)
    lines: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"dialogue[{i}] must be a (speaker, text) pair, got {item!r}")
        speaker, text = item
        if not isinstance(speaker, str) or not speaker.strip():
            raise ValueError(f"dialogue[{i}]: speaker must be a non-empty string, got {speaker!r}")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"dialogue[{i}]: text for {speaker!r} must be a non-empty string")
        lines.append((speaker, text))
    if not lines:
        raise ValueError("dialogue is empty")
    return lines


def dialogue_speakers(dialogue: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[str]:
    """Distinct speakers in order of first appearance."""
    return list(dict.fromkeys(speaker for speaker, _ in _dialogue_lines(dialogue)))


def dialogue_prompt(
    dialogue: Mapping[str, str] | Iterable[tuple[str, str]], style_prompt: str | None = None
) -> str:
    """The original's dialogue prompt; the dialogue must have exactly 2 speakers (the API's limit)."""
    lines = _dialogue_lines(dialogue)
    speakers = list(dict.fromkeys(s for s, _ in lines))
    if len(speakers) != 2:
        raise ValueError(f"multi-speaker TTS needs exactly 2 speakers, got {len(speakers)}: {speakers}")
    body = "TTS the following conversation:\n" + "\n".join(f"{s}: {t}" for s, t in lines)
    return f"{style_prompt}\n\n{body}" if style_prompt else body


# ---------------------------------------------------------------------------------------------------- WAV


def parse_audio_mime(mime: str | None) -> tuple[int, int, int, bool]:
    """``(sample_rate, channels, sample_width, is_wav)`` from a MIME type such as ``audio/L16;rate=24000``.

    Parameters are matched case-insensitively with spaces tolerated; what is missing takes the 2.5 TTS
    defaults (24 kHz, mono, 16-bit). ``audio/L8``/``L24`` give widths 1/3.
    """
    if not mime:
        return DEFAULT_SAMPLE_RATE, DEFAULT_CHANNELS, DEFAULT_SAMPLE_WIDTH, False
    main, *params = [piece.strip() for piece in mime.split(";")]
    subtype = main.lower().partition("/")[2].strip()
    rate, channels, width = DEFAULT_SAMPLE_RATE, DEFAULT_CHANNELS, DEFAULT_SAMPLE_WIDTH
    if subtype in ("l8", "l24", "l32"):
        width = int(subtype[1:]) // 8
    for param in params:
        key, _, value = param.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"')
        try:
            if key == "rate":
                rate = int(float(value))
            elif key == "channels":
                channels = int(value)
        except ValueError:
            logger.warning("ignoring unparseable %s=%r in audio mime type %r", key, value, mime)
    if rate <= 0 or channels <= 0:
        raise ValueError(f"audio mime type {mime!r} has a non-positive rate or channel count")
    return rate, channels, width, subtype in _WAV_SUBTYPES


def is_wav(data: AudioData) -> bool:
    """Whether ``data`` already is a RIFF/WAVE file (sniffed, whatever the MIME type says)."""
    head = bytes(memoryview(data)[:12])
    return len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE"


class _ChunkSink:
    """A write-only file object for ``wave`` that keeps references instead of copying into a buffer."""

    def __init__(self) -> None:
        self.chunks: list[AudioData] = []

    def write(self, data: AudioData) -> int:
        self.chunks.append(data)
        return len(data)

    def flush(self) -> None:
        pass


def _whole_frames(data: AudioData, frame_size: int) -> memoryview:
    view = memoryview(data).cast("B")
    usable = len(view) - len(view) % frame_size
    if usable != len(view):
        logger.warning("dropping %d trailing byte(s) that do not make a whole audio frame", len(view) - usable)
    return view[:usable]


def to_wav_bytes(data: AudioData, mime: str | None) -> bytes:
    """A complete WAV file: headerless PCM wrapped in a RIFF header, or a WAV passed through unchanged."""
    if is_wav(data):
        return data if isinstance(data, bytes) else bytes(data)
    rate, channels, width, wav_label = parse_audio_mime(mime)
    if wav_label:
        logger.warning("audio labelled %r has no RIFF header; treating it as raw PCM", mime)
    frames = _whole_frames(data, channels * width)
    sink = _ChunkSink()
    with wave.open(sink, "wb") as writer:  # type: ignore[arg-type, call-overload]
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.setnframes(len(frames) // (channels * width))
        writer.writeframesraw(frames)
    return b"".join(sink.chunks)  # the one copy of the PCM that a bytes result needs


def write_wav(path: str | os.PathLike[str], data: AudioData | Iterable[AudioData], mime: str | None) -> str:
    """Write a WAV file atomically (temp file in the same directory, then rename); returns the path.

    ``data`` is the whole response, or an iterable of PCM chunks (streaming); chunks go to disk as they
    come and the header is patched at the end, so no joined copy of the audio is ever made.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            chunks: Iterable[AudioData] = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
            _write_chunks(handle, iter(chunks), mime)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def _write_chunks(handle: io.BufferedWriter, chunks: Iterable[AudioData], mime: str | None) -> None:
    iterator = iter(chunks)
    first = next(iterator, b"")
    if is_wav(first):
        handle.write(first)
        for chunk in iterator:
            handle.write(chunk)
        return
    rate, channels, width, _ = parse_audio_mime(mime)
    frame = channels * width
    with wave.open(handle, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        carry = b""
        for chunk in _prepend(first, iterator):
            view = memoryview(chunk).cast("B")
            if carry:  # a partial frame left by the previous chunk
                need = frame - len(carry)
                carry += bytes(view[:need])
                view = view[need:]
                if len(carry) == frame:
                    writer.writeframesraw(carry)
                    carry = b""
            usable = len(view) - len(view) % frame
            if usable:
                writer.writeframesraw(view[:usable])
            carry += bytes(view[usable:])
        if carry:
            logger.warning("dropping %d trailing byte(s) that do not make a whole audio frame", len(carry))


def _prepend(first: AudioData, rest: Iterable[AudioData]) -> Iterable[AudioData]:
    if len(first):
        yield first
    yield from rest


def wav_duration(path_or_bytes: str | os.PathLike[str] | AudioData) -> float:
    """Seconds of audio in a WAV file (path) or WAV bytes."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        source: io.BytesIO | str = io.BytesIO(path_or_bytes)
    else:
        source = os.fspath(path_or_bytes)
    try:
        with wave.open(source, "rb") as reader:
            return reader.getnframes() / float(reader.getframerate())
    except wave.Error:
        # e.g. WAVE_FORMAT_EXTENSIBLE, which the 3.11 wave module refuses: read the chunks ourselves.
        if isinstance(source, io.BytesIO):
            source.seek(0)
            return _riff_duration(source)
        with open(source, "rb") as handle:
            return _riff_duration(handle)


def _riff_duration(handle: io.BufferedIOBase | io.BytesIO) -> float:
    header = handle.read(12)
    if len(header) != 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise ValueError("not a WAV file (no RIFF/WAVE header)")
    byte_rate = None
    while True:
        chunk = handle.read(8)
        if len(chunk) < 8:
            raise ValueError("WAV file has no data chunk")
        chunk_id, size = struct.unpack("<4sI", chunk)
        if chunk_id == b"fmt ":
            fmt = handle.read(size + (size & 1))
            byte_rate = struct.unpack("<I", fmt[8:12])[0]
        elif chunk_id == b"data":
            if not byte_rate:
                raise ValueError("WAV data chunk before a usable fmt chunk")
            return size / float(byte_rate)
        else:
            handle.seek(size + (size & 1), io.SEEK_CUR)
