"""Service tiers on generate requests: `serviceTier` parsing, Flex latency and Flex shedding.

The request body carries the tier at the top level (`serviceTier`, the SDK's
`GenerateContentConfig.service_tier`): `standard` (the default, also `unspecified`), `flex`,
`priority`.  The answer's `usageMetadata.serviceTier` reports the tier that served it.

Flex is best-effort: when capacity is short the API sheds the request.  What it answers is not
documented (https://ai.google.dev/gemini-api/docs/flex-inference and .../optimization, read
2026-11-29, say only "sheddable" / "may be preempted"), so the emulator answers either way an
overloaded Gemini API does: 503 UNAVAILABLE with the overloaded-model message (default,
`flex_shed_status`), or 429 RESOURCE_EXHAUSTED naming no quota (no QuotaFailure detail, ErrorInfo
reason MODEL_CAPACITY_EXHAUSTED).  Shedding happens before any work and does not count against the
quota.  It is scripted with `flex_shed_probability` (seeded) or a fault rule
`{"action": "shed", "service_tier": "flex", "times": N, "status": 429|503}`.  A fault rule
`{"action": "downgrade", "service_tier": "priority"}` serves the request at standard tier and
reports `standard` in its usage, as the API does when a project exceeds its dynamic Priority
limits (https://ai.google.dev/gemini-api/docs/optimization: requests are "downgraded to standard
processing rather than failing").  Flex requests also wait `flex_latency_seconds` (+ uniform
jitter up to `flex_latency_jitter_seconds`) on top of the global latency: real Flex answers take
minutes, scale that down in tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import wire
from .faults import Rule
from .shared_state import Emulator

TIERS = ("standard", "flex", "priority")
_ALIASES = {
    "unspecified": "standard",
    "service_tier_unspecified": "standard",
    "standard": "standard",
    "service_tier_standard": "standard",
    "flex": "flex",
    "service_tier_flex": "flex",
    "priority": "priority",
    "service_tier_priority": "priority",
}
SHED_MESSAGE = (
    "This model is currently experiencing high demand. Spikes in demand are usually temporary. "
    "Please try again later."
)


def parse_tier(req: dict[str, Any]) -> str:
    """The request's tier (lower case), `standard` when absent; 400 for an unknown value."""
    raw = req.get("service_tier")
    if raw is None:
        return "standard"
    tier = _ALIASES.get(str(raw).strip().lower())
    if tier is None:
        raise wire.ApiError(
            400,
            "Invalid value at 'service_tier' (type.googleapis.com/google.ai.generativelanguage.v1beta.ServiceTier), "
            f'"{raw}"',
        )
    return tier


CAPACITY_MESSAGE = "Resource exhausted: no capacity is available for this request at the flex tier. Please try again later."


def shed_error(status: int = 503) -> wire.ApiError:
    if status == 429:
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "MODEL_CAPACITY_EXHAUSTED",
                "domain": "generativelanguage.googleapis.com"}
        return wire.ApiError(429, CAPACITY_MESSAGE, "RESOURCE_EXHAUSTED", [info])
    return wire.ApiError(503, SHED_MESSAGE, "UNAVAILABLE")


async def apply(emu: Emulator, tier: str, rule: Rule | None, entry: dict[str, Any]) -> tuple[Rule | None, str]:
    """Shed (raise) or delay a Flex request, or serve it at another tier; returns the fault rule still to act
    on and the tier that serves the request."""
    cfg = emu.config
    if rule is not None and rule.action == "downgrade":
        entry["served_tier"] = "standard"
        return None, "standard"
    shed = rule is not None and rule.action == "shed"
    if tier == "flex" and not shed:
        p = cfg["flex_shed_probability"]
        shed = p > 0 and emu.rng.random() < p
    if shed:
        entry["shed"] = True
        emu.shed += 1
        status = rule.spec.get("status") if rule is not None and rule.action == "shed" else None
        raise shed_error(int(status or cfg["flex_shed_status"]))
    if tier == "flex":
        delay = cfg["flex_latency_seconds"]
        jitter = cfg["flex_latency_jitter_seconds"]
        if jitter > 0:
            delay += emu.rng.uniform(0.0, jitter)
        if delay > 0:
            await asyncio.sleep(delay)
    return rule, tier
