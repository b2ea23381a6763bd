"""Helpers of the capacity tests (a module name no other test directory uses)."""

from __future__ import annotations

from typing import Any


def max_in_flight(entries: list[dict[str, Any]]) -> int:
    """The most generateContent calls the emulator was serving at one moment (from its log's start/duration)."""
    edges = []
    for e in entries:
        if e.get("endpoint") == "generateContent" and e.get("duration") is not None:
            edges += [(e["t"], 1), (e["t"] + e["duration"], -1)]
    best = now = 0
    for _, step in sorted(edges, key=lambda x: (x[0], x[1])):
        now += step
        best = max(best, now)
    return best
