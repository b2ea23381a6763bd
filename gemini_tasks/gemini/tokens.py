"""A quick estimate of a request's input tokens, made before admission (for tpm limits).

It is corrected after the call with ``usageMetadata.promptTokenCount``, so it only has to be close, and on
the high side rather than the low. Rates follow Gemini's documented media costs: about 4 characters per
text token, 32 tokens per second of audio (~1 token per 500 bytes of compressed audio), 258 per image or
video frame (~1 per 500 bytes of compressed video at 1 fps).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

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


def estimate_job_tokens(job: Mapping[str, Any]) -> int:
    """Input tokens of a queued job (its wire form, before media are uploaded): text at 4 characters a token,
    inline bytes at their size, a local path at its size when readable here, else :data:`UNKNOWN_FILE_TOKENS`;
    an image 258. Used to keep a Batch API job under the project's enqueued-token budget."""
    if job.get("kind") == "speech":
        return max(1, math.ceil(len(str((job.get("speech") or {}).get("prompt") or "")) / CHARS_PER_TOKEN))
    req = job.get("request") or {}
    total = 0
    prompt = req.get("prompt")
    texts = prompt if isinstance(prompt, list) else [prompt]
    total += sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts if isinstance(t, str))
    for kind in ("image", "audio", "video"):
        mime = f"{kind}/" if kind == "image" else None
        for field, size_of in ((f"{kind}_bytes", _b64_size), (f"{kind}_path", _path_size), (f"{kind}_url", _no_size)):
            values = req.get(field)
            for value in values if isinstance(values, list) else ([values] if values else []):
                total += media_tokens(mime, size_of(value))
    return max(1, total)


def _b64_size(value: Any) -> int | None:
    if isinstance(value, Mapping):  # the wire form of bytes: {"__b64__": "..."}
        value = next(iter(value.values()), None)
    return len(value) * 3 // 4 if isinstance(value, str) else None


def _path_size(value: Any) -> int | None:
    try:
        return os.path.getsize(str(value))
    except OSError:
        return None


def _no_size(_value: Any) -> int | None:
    return None
