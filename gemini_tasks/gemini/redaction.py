"""Keeping API keys out of every error message: Google-shaped keys, ``api_key:...`` consumer ids, given secrets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

_MAX_MESSAGE_CHARS = 2000
_REDACTED = "[REDACTED]"
_GOOGLE_KEY_RE = re.compile(r"AIza[0-9A-Za-z_\-]{35}")
_CONSUMER_KEY_RE = re.compile(r"(api_key:)[^\s'\"\],}]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove API keys from ``text``: Google-shaped keys, ``api_key:...`` consumer ids, and ``secrets``."""
    if not text:
        return text
    for secret in sorted({s for s in secrets if s and len(s.strip()) >= 4}, key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
        stripped = secret.strip()
        if stripped != secret:
            text = text.replace(stripped, _REDACTED)
    text = _GOOGLE_KEY_RE.sub(_REDACTED, text)
    text = _CONSUMER_KEY_RE.sub(r"\1" + _REDACTED, text)
    return text


def clean_message(text: Any, secrets: Iterable[str]) -> str:
    """``text`` as a redacted string of at most ~2,000 characters (non-strings as JSON)."""
    if text is None:
        return ""
    if not isinstance(text, str):
        try:
            text = json.dumps(text, default=str)
        except (TypeError, ValueError):
            text = str(text)
    text = redact(text.strip(), secrets)
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[:_MAX_MESSAGE_CHARS] + "...[truncated]"
    return text

