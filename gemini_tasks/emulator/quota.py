"""Per-(project, model) quota windows, counted the way the real API counts them.

Exact sliding windows: a log of the arrival times of *accepted* requests (and their input
tokens) per (project, model).  A request rejected with 429 is not recorded, so hammering a
limited key does not push its recovery further out.  The per-minute request and token windows are
always kept (a quota configured mid-run sees the last minute's traffic); the per-day window is
kept only while an `rpd` limit applies to the pair, so an unlimited day-long benchmark does not
hold a day of timestamps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Violation:
    kind: str  # "rpm" | "rpd" | "tpm"
    limit: int
    retry_after: float  # seconds until this window would admit the request


@dataclass(slots=True)
class _Windows:
    minute: deque = field(default_factory=deque)  # arrival times, last minute
    day: deque = field(default_factory=deque)  # arrival times, last day
    tokens: deque = field(default_factory=deque)  # (time, tokens), last minute
    token_sum: int = 0


def resolve_limits(quotas: dict[str, dict[str, dict[str, int]]], project: str, model: str) -> dict[str, int]:
    """Field-wise merge, least to most specific: */*, */model, project/*, project/model."""
    limits: dict[str, int] = {}
    for p in ("*", project):
        per_model = quotas.get(p)
        if per_model:
            for m in ("*", model):
                spec = per_model.get(m)
                if spec:
                    limits.update(spec)
    return limits


class QuotaBook:
    """Sliding windows for every (project, model) seen since the last reset."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], _Windows] = {}

    def clear(self) -> None:
        self._windows.clear()

    def check_and_record(
        self,
        project: str,
        model: str,
        tokens: int,
        limits: dict[str, int],
        now: float,
        minute_seconds: float,
        day_seconds: float,
    ) -> list[Violation]:
        """Return the violated windows (most important first); record the request if none."""
        w = self._windows.get((project, model))
        if w is None:
            w = self._windows[(project, model)] = _Windows()
        minute_start = now - minute_seconds
        day_start = now - day_seconds
        while w.minute and w.minute[0] <= minute_start:
            w.minute.popleft()
        while w.day and w.day[0] <= day_start:
            w.day.popleft()
        while w.tokens and w.tokens[0][0] <= minute_start:
            w.token_sum -= w.tokens.popleft()[1]

        violations: list[Violation] = []
        rpd = limits.get("rpd")
        if rpd is not None and len(w.day) >= rpd:
            free_at = w.day[len(w.day) - rpd] + day_seconds if rpd > 0 else now + day_seconds
            violations.append(Violation("rpd", rpd, max(0.0, free_at - now)))
        rpm = limits.get("rpm")
        if rpm is not None and len(w.minute) >= rpm:
            free_at = w.minute[len(w.minute) - rpm] + minute_seconds if rpm > 0 else now + minute_seconds
            violations.append(Violation("rpm", rpm, max(0.0, free_at - now)))
        tpm = limits.get("tpm")
        if tpm is not None and w.token_sum + tokens > tpm:
            violations.append(Violation("tpm", tpm, self._token_wait(w, tokens, tpm, now, minute_seconds)))
        if violations:
            return violations

        w.minute.append(now)
        if rpd is not None:
            w.day.append(now)
        elif w.day:
            w.day.clear()
        w.tokens.append((now, tokens))
        w.token_sum += tokens
        return []

    @staticmethod
    def _token_wait(w: _Windows, tokens: int, tpm: int, now: float, minute_seconds: float) -> float:
        """Time until enough old tokens leave the window for this request to fit."""
        if tokens > tpm or not w.tokens:
            return minute_seconds  # never fits in one window; say "a minute", as the API does
        need = w.token_sum + tokens - tpm
        for t, n in w.tokens:
            need -= n
            if need <= 0:
                return max(0.0, t + minute_seconds - now)
        return minute_seconds

    def snapshot(self, now: float, minute_seconds: float, day_seconds: float) -> list[dict[str, Any]]:
        """Current window occupancy, for the stats endpoint."""
        out = []
        for (project, model), w in self._windows.items():
            out.append(
                {
                    "project": project,
                    "model": model,
                    "minute": sum(1 for t in w.minute if t > now - minute_seconds),
                    "day": sum(1 for t in w.day if t > now - day_seconds),
                    "tokens_minute": sum(n for t, n in w.tokens if t > now - minute_seconds),
                }
            )
        return out
