"""A quick estimate of a request's input tokens, made before admission (for tpm limits).

It is corrected after the call with ``usageMetadata.promptTokenCount``, so it only has to be close, and on
the high side rather than the low. Rates follow Gemini's documented media costs: about 4 characters per
text token, 32 tokens per second of audio (~1 token per 500 bytes of compressed audio), 258 per image or
video frame (~1 per 500 bytes of compressed video at 1 fps).
"""

from __future__ import annotations

import math
from typing import Iterable

from google.genai import types

CHARS_PER_TOKEN = 4
MEDIA_BYTES_PER_TOKEN = 500
IMAGE_TOKENS = 258
#: a file referenced by URI whose size is unknown (an uploaded file, a YouTube URL)
UNKNOWN_FILE_TOKENS = 1000


def media_tokens(mime_type: str | None, size: int | None) -> int:
    if (mime_type or "").startswith("image/"):
        return IMAGE_TOKENS
    if size is None:
        return UNKNOWN_FILE_TOKENS
    return max(1, math.ceil(size / MEDIA_BYTES_PER_TOKEN))


def estimate_tokens(parts: Iterable[types.Part], sizes: dict[str, int] | None = None) -> int:
    """Input tokens of ``parts``; ``sizes`` gives byte sizes of files referenced by URI, where known."""
    total = 0
    for part in parts:
        if part.text:
            total += math.ceil(len(part.text) / CHARS_PER_TOKEN)
        elif part.inline_data is not None:
            total += media_tokens(part.inline_data.mime_type, len(part.inline_data.data or b""))
        elif part.file_data is not None:
            total += media_tokens(part.file_data.mime_type, (sizes or {}).get(part.file_data.file_uri or ""))
    return max(1, total)
