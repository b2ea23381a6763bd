"""Service tiers: the names users give, what goes on the wire, and how long a call of each tier may take.

* ``standard`` (default): nothing extra on the wire.
* ``flex``: ``GenerateContentConfig.service_tier = "flex"`` (wire ``serviceTier``); half price, minutes of
  latency (Google: 1-15 min), best-effort. A shed Flex request is answered ``503 UNAVAILABLE`` (the same
  answer as an overloaded model); the worker retries it on Flex with backoff, outside the error-retry
  budget, and after ``flex_fallback_after`` seconds (if set) sends it at standard tier.
* ``priority``: ``service_tier = "priority"``; 75-100 % more, never shed.
* ``batch``: the Gemini Batch API (:mod:`gemini_tasks.client.batch_api`): half price, asynchronous.
"""

from __future__ import annotations

from typing import Any

TIERS: tuple[str, ...] = ("standard", "flex", "priority", "batch")
#: Tiers sent as ``GenerateContentConfig.service_tier`` on a synchronous call.
WIRE_TIERS = frozenset({"flex", "priority"})
#: Default per-call timeout for Flex calls (seconds): Google quotes 1-15 minutes of latency.
DEFAULT_FLEX_TIMEOUT = 900.0


def check_tier(value: Any, where: str = "service_tier") -> str:
    """A valid tier name (lower case); ValueError naming ``where`` otherwise."""
    if not isinstance(value, str) or value.strip().lower() not in TIERS:
        raise ValueError(f"{where} must be one of {', '.join(TIERS)}; got {value!r}")
    return value.strip().lower()


def check_fallback(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise ValueError(f"flex_fallback_after must be a number of seconds >= 0 or None, got {value!r}")
    return float(value)


def flex_timeout() -> float:
    """Per-call timeout of Flex calls: ``GEMINI_TASKS_FLEX_TIMEOUT`` seconds (default 900)."""
    from gemini_tasks.settings import get_settings

    return get_settings().flex_timeout or DEFAULT_FLEX_TIMEOUT


def call_timeout(tier: str, standard_timeout: float) -> float:
    """How long one synchronous call of ``tier`` may take."""
    return max(standard_timeout, flex_timeout()) if tier == "flex" else standard_timeout


def is_shed(tier: str, code: int | None) -> bool:
    """Whether a failed call is a Flex request the API shed (503 UNAVAILABLE on a Flex call)."""
    return tier == "flex" and code == 503
