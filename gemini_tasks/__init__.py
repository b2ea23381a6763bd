"""gemini-tasks: Gemini generation and text-to-speech as Celery tasks, with one Redis key pool per fleet.

Public names are loaded lazily, so ``import gemini_tasks`` stays cheap and importing the key manager does
not start Celery. ``celery -A gemini_tasks worker`` finds the Celery app as ``gemini_tasks.app``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "app": "gemini_tasks.celery_app",
    "AdvancedApiKeyManager": "gemini_tasks.keys.manager",
    "GeminiParallelProcessor": "gemini_tasks.client.processors",
    "GeminiStreamingProcessor": "gemini_tasks.client.processors",
    "GeminiTTSProcessor": "gemini_tasks.client.tts_processor",
    "text_to_speech": "gemini_tasks.client.tts_processor",
    "TTS_VOICES": "gemini_tasks.gemini.tts",
    "TTS_MODELS": "gemini_tasks.gemini.tts",
    "BatchHandle": "gemini_tasks.client.processors",
    "GeminiSequentialProcessor": "gemini_tasks.client.sequential",
    "GeminiImageGenerator": "gemini_tasks.client.images",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gemini_tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
