"""Service tiers: the names users give, what goes on the wire, and how long a call of each tier may take.

* ``standard`` (default): nothing extra on the wire.
* ``flex``: ``GenerateContentConfig.service_tier = "flex"`` (wire ``serviceTier``); half price, minutes of
  latency (Google: 1-15 min), best-effort ("Sheddable"). What a shed request is answered is not documented:
  https://ai.google.dev/gemini-api/docs/flex-inference and .../docs/optimization (read 2026-11-29) only say
  Flex traffic "may be preempted" and wrap the call in a bare ``except``. So both answers an overloaded
  Gemini API gives count as a shed on a Flex call: ``503 UNAVAILABLE`` and a ``429 RESOURCE_EXHAUSTED``
  that names no quota (no QuotaFailure detail, e.g. reason ``MODEL_CAPACITY_EXHAUSTED``); a 429 naming a
  quota stays the key pool's rate limit. The worker retries a shed on Flex with backoff, outside the
  error-retry budget, without benching the key, and after ``flex_fallback_after`` seconds (if set) sends
  it at standard tier.
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


def is_shed(tier: str, code: int | None, quota_id: str | None = None, quota_kind: str | None = None) -> bool:
    """Whether a failed call is a Flex request the API shed: on a Flex call, 503 UNAVAILABLE, or 429
    RESOURCE_EXHAUSTED naming no quota (``quota_id`` None and the quota kind unknown). See the module doc:
    Google does not document the shed answer."""
    if tier != "flex":
        return False
    if code == 503:
        return True
    return code == 429 and quota_id is None and quota_kind in (None, "unknown")


#: Batch API "enqueued tokens per model": the most input tokens a project may have in unfinished batch jobs
#: of one model, summed over its jobs. Tier 1 (the lowest paid tier, so safe for every paid project) values
#: of https://ai.google.dev/gemini-api/docs/rate-limits ("Batch API rate limits", table "Batch enqueued
#: tokens"), read 2026-11-29; higher tiers allow 100x more. Models the page lists without a figure (TTS,
#: image) use :data:`DEFAULT_BATCH_ENQUEUED_TOKENS`. Longest matching prefix wins.
BATCH_ENQUEUED_TOKENS: dict[str, int] = {
    "gemini-3-pro": 50_000_000,
    "gemini-3-flash": 3_000_000,
    "gemini-2.5-pro": 5_000_000,
    "gemini-2.5-flash": 3_000_000,
    "gemini-2.5-flash-lite": 10_000_000,
    "gemini-2.0-flash": 10_000_000,
    "gemini-2.0-flash-lite": 10_000_000,
}
DEFAULT_BATCH_ENQUEUED_TOKENS = 3_000_000


def batch_enqueued_tokens(model: str) -> int:
    """The default enqueued-token budget of a project's batch jobs for ``model`` (Tier 1, see above)."""
    bare = model.removeprefix("models/")
    best = max((p for p in BATCH_ENQUEUED_TOKENS if bare.startswith(p)), key=len, default=None)
    if best is None or "tts" in bare or "image" in bare:
        return DEFAULT_BATCH_ENQUEUED_TOKENS
    return BATCH_ENQUEUED_TOKENS[best]
