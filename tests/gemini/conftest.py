"""Fixtures for the gemini layer tests (helpers live in gemini_wire_bodies.py, imported by name)."""

from __future__ import annotations

import pytest


@pytest.fixture
def media_files(tmp_path):
    """Small files with media extensions (content does not matter to the request builder)."""
    names = ["audio1.mp3", "audio2.wav", "interview1.mp3", "interview2.mp3", "video1.mp4", "presentation.mp4", "clip.mov"]
    paths = {}
    for i, name in enumerate(names):
        p = tmp_path / name
        p.write_bytes(bytes([i + 1]) * (100 + i))
        paths[name] = str(p)
    return paths
