"""Drop-in alias for users of the "Gemini Parallel API Processor": ``from gemini_parallel import ...``.

Everything resolves to :mod:`gemini_tasks`; the calls now run on a Celery fleet sharing one Redis key pool.
"""

from gemini_tasks import (  # noqa: F401
    TTS_MODELS,
    TTS_VOICES,
    AdvancedApiKeyManager,
    GeminiImageGenerator,
    GeminiParallelProcessor,
    GeminiSequentialProcessor,
    GeminiStreamingProcessor,
    GeminiTTSProcessor,
    text_to_speech,
)

__all__ = [
    "AdvancedApiKeyManager", "GeminiParallelProcessor", "GeminiStreamingProcessor", "GeminiTTSProcessor",
    "GeminiSequentialProcessor", "GeminiImageGenerator",
    "text_to_speech", "TTS_VOICES", "TTS_MODELS",
]
