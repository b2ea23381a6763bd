"""The plain-Python Gemini layer the tasks call: requests, clients, error classification, TTS and WAV.

Nothing here imports Celery or the key manager; everything is testable without a network.

* :mod:`.errors` -- ``CallError`` and its kinds, the result-string wording; :mod:`.classification` --
  ``classify(exc) -> CallError``; :mod:`.redaction` -- keys out of messages; :mod:`.api_core_errors` -- ``to_api_core``.
* :mod:`.response` -- text/audio out of a response; blocked or empty responses raise.
* :mod:`.content` -- prompt_data -> ``list[types.Part]`` in the original's token order.
* :mod:`.validation` -- reject bad prompt_data before enqueueing; JSON wire format.
* :mod:`.config` -- ``generation_config`` in any spelling -> ``GenerateContentConfig``.
* :mod:`.tts` -- voices, TTS configs and prompts, WAV.
* :mod:`.client` -- one SDK client per key per process.
"""

from .client import ClientCache, close_all, get_client, make_client
from .config import GenerationConfigError, build_generate_config
from .content import INLINE_REQUEST_LIMIT, MediaItem, build_contents, choose_uploads, inline_path, plan_media
from .api_core_errors import to_api_core
from .classification import classify
from .errors import CallError, GeminiCallFailed, InvalidPromptError, error_message
from .redaction import redact
from .response import extract_audio, extract_text, finish_reason, usage_dict
from .tts import (
    TTS_MODELS,
    TTS_VOICES,
    dialogue_prompt,
    dialogue_speakers,
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
from .validation import ALLOWED_FIELDS, from_wire, to_wire, validate_prompt

__all__ = [
    "ALLOWED_FIELDS",
    "INLINE_REQUEST_LIMIT",
    "TTS_MODELS",
    "TTS_VOICES",
    "CallError",
    "ClientCache",
    "GeminiCallFailed",
    "GenerationConfigError",
    "InvalidPromptError",
    "MediaItem",
    "build_contents",
    "build_generate_config",
    "choose_uploads",
    "classify",
    "close_all",
    "dialogue_prompt",
    "dialogue_speakers",
    "error_message",
    "extract_audio",
    "extract_text",
    "finish_reason",
    "from_wire",
    "get_client",
    "inline_path",
    "list_voices",
    "make_client",
    "multi_speaker_config",
    "parse_audio_mime",
    "plan_media",
    "redact",
    "resolve_tts_model",
    "single_speaker_config",
    "speech_prompt",
    "to_api_core",
    "to_wav_bytes",
    "to_wire",
    "usage_dict",
    "validate_prompt",
    "validate_voice",
    "wav_duration",
    "write_wav",
]
