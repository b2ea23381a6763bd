"""Helpers shared by the emulator tests (imported by name: `from emu_helpers import ...`)."""

from __future__ import annotations

MODEL = "gemini-2.5-flash"
TTS_MODEL = "gemini-2.5-flash-preview-tts"


def error_details(exc) -> list[dict]:
    """The typed `details` list of an SDK APIError (e.details is the whole body)."""
    return exc.details["error"].get("details", [])


def detail(exc, type_suffix: str) -> dict:
    for d in error_details(exc):
        if d["@type"].endswith(type_suffix):
            return d
    raise AssertionError(f"no {type_suffix} in {error_details(exc)}")
