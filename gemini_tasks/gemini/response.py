"""Reading a ``GenerateContentResponse`` so that a blocked or empty answer is an error, never a success.

The SDK never raises for these: ``response.text`` is simply ``None`` when the prompt was blocked, the
candidate was stopped by a filter, or nothing came back (wire doc §4.3). The original library then either
crashed on ``None.strip()`` or returned ``(metadata, None, None)`` as a "success". Here they raise
:class:`GeminiCallFailed` with a ``blocked`` :class:`CallError` that names the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from .errors import BLOCKED, STATUS_BLOCKED, STATUS_EMPTY, CallError, GeminiCallFailed

logger = logging.getLogger("gemini_tasks")

__all__ = [
    "BLOCKING_FINISH_REASONS",
    "GeminiCallFailed",
    "extract_audio",
    "extract_text",
    "finish_reason",
    "usage_dict",
]

#: Finish reasons meaning a filter stopped the candidate; whatever partial text came with it is not an answer.
BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
        "JAILBREAK",
    }
)


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    text = str(value)
    return text.rsplit(".", 1)[-1] if text else None


def _blocked(reason: str, message: str = "") -> GeminiCallFailed:
    return GeminiCallFailed(CallError(kind=BLOCKED, status=STATUS_BLOCKED, reason=reason, message=message))


def _empty(reason: str, message: str = "") -> GeminiCallFailed:
    return GeminiCallFailed(CallError(kind=BLOCKED, status=STATUS_EMPTY, reason=reason, message=message))


def finish_reason(response: Any) -> str | None:
    """The first candidate's finish reason as a plain name (``"STOP"``), or None."""
    candidates = getattr(response, "candidates", None) or []
    return _enum_name(getattr(candidates[0], "finish_reason", None)) if candidates else None


def _first_candidate_parts(response: Any) -> tuple[list[Any], str | None]:
    """Raise for a blocked prompt or filtered candidate; else the parts of candidate 0 and its finish reason."""
    feedback = getattr(response, "prompt_feedback", None)
    block_reason = _enum_name(getattr(feedback, "block_reason", None)) if feedback is not None else None
    if block_reason and block_reason != "BLOCKED_REASON_UNSPECIFIED":
        detail = getattr(feedback, "block_reason_message", None) or "prompt blocked"
        raise _blocked(block_reason, detail)
    candidates = getattr(response, "candidates", None) or []
    if not candidates:
        raise _empty("NONE", "no candidates in the response")
    candidate = candidates[0]
    reason = _enum_name(getattr(candidate, "finish_reason", None))
    if reason in BLOCKING_FINISH_REASONS:
        detail = getattr(candidate, "finish_message", None) or "candidate stopped"
        raise _blocked(reason, detail)
    content = getattr(candidate, "content", None)
    parts = list(getattr(content, "parts", None) or [])
    return parts, reason


def extract_text(response: Any, *, strip: bool = False) -> str:
    """The text of the first candidate (thought parts skipped); raises :class:`GeminiCallFailed` if none.

    A ``MAX_TOKENS`` stop with some text is a (truncated) success; with no text it is an error.
    """
    parts, reason = _first_candidate_parts(response)
    pieces = [p.text for p in parts if getattr(p, "text", None) is not None and not getattr(p, "thought", False)]
    text = "".join(pieces)
    if not text.strip():
        raise _empty(reason or "NONE", "no text in the response")
    return text.strip() if strip else text


def extract_audio(response: Any) -> tuple[bytes, str]:
    """The audio of a TTS response as ``(data, mime_type)``; raises :class:`GeminiCallFailed` if none.

    Several audio parts (a model that splits its output) are concatenated when they are raw PCM of one
    MIME type; otherwise the first is returned.
    """
    parts, reason = _first_candidate_parts(response)
    blobs = []
    for part in parts:
        blob = getattr(part, "inline_data", None)
        data = getattr(blob, "data", None)
        mime = getattr(blob, "mime_type", None) or ""
        if data and (mime.lower().startswith("audio/") or not mime):
            blobs.append((data, mime or "audio/L16;codec=pcm;rate=24000"))
    if not blobs:
        raise _empty(reason or "NONE", "no audio in the response")
    if len(blobs) == 1:
        return blobs[0]
    data0, mime0 = blobs[0]
    if all(m == mime0 for _, m in blobs) and not data0[:4] == b"RIFF":
        return b"".join(d for d, _ in blobs), mime0
    logger.warning("TTS response has %d audio parts of differing formats; using the first", len(blobs))
    return data0, mime0


_USAGE_FIELDS = (
    "prompt_token_count",
    "candidates_token_count",
    "total_token_count",
    "thoughts_token_count",
    "cached_content_token_count",
)


def usage_dict(response: Any) -> dict[str, int | None]:
    """Token counts of the call (JSON-safe), for results and metrics; missing counts are None."""
    usage = getattr(response, "usage_metadata", None)
    return {name: (getattr(usage, name, None) if usage is not None else None) for name in _USAGE_FIELDS}
