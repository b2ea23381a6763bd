"""Usage and estimated cost by service tier, in the same per-pool call-counter hash as
:func:`gemini_tasks.ops.metrics.record_call` (``gt:{pool}:calls``), and their Prometheus families.

Fields (the model last, so a model id is never split wrongly):

* ``tier_requests|<tier>|<model>``          answered requests
* ``tier_tokens|<tier>|<kind>|<model>``     tokens by kind: prompt (not cached), cached, output, thinking
* ``tier_cost|<tier>|<model>``              estimated USD (gemini/pricing.py, the worker's price table)
* ``flex_fallbacks|<model>``                Flex requests sent at standard tier after ``flex_fallback_after``

Shed Flex calls are counted by ``record_call`` as calls with outcome ``shed``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from gemini_tasks.gemini.pricing import estimate_cost, tokens_by_kind

log = logging.getLogger("gemini_tasks")


def record_usage(pool: Any, *, model: str, tier: str, usage: Mapping[str, Any] | None,
                 fallback: bool = False, pipe: Any = None) -> None:
    """Count one answered request's tokens and estimated cost by tier (one pipelined round trip, never raises).

    With ``pipe`` the commands are only queued on that pipeline (the caller executes it)."""
    from gemini_tasks.ops.metrics import CALLS_HASH

    try:
        kinds = tokens_by_kind(usage)
        key = pool.prefix + CALLS_HASH
        own = pipe is None
        if own:
            pipe = pool.client.pipeline(transaction=False)
        pipe.hincrby(key, f"tier_requests|{tier}|{model}", 1)
        for kind, count in kinds.items():
            if count:
                pipe.hincrby(key, f"tier_tokens|{tier}|{kind}|{model}", count)
        cost = estimate_cost(model, kinds, tier)
        if cost:
            pipe.hincrbyfloat(key, f"tier_cost|{tier}|{model}", round(cost, 12))
        if fallback:
            pipe.hincrby(key, f"flex_fallbacks|{model}", 1)
        if own:
            pipe.execute()
    except Exception as exc:  # noqa: BLE001 - metrics are best effort by design
        log.debug("metrics: could not record usage for pool %s: %r", getattr(pool, "pool", "?"), exc)


class TierFamilies:
    """The Prometheus families of the fields above, filled from a pool's call-counter hash."""

    def __init__(self) -> None:
        self.requests = CounterMetricFamily("gemini_tasks_tier_requests", "Answered requests by service tier",
                                            labels=["pool", "model", "tier"])
        self.tokens = CounterMetricFamily("gemini_tasks_tier_tokens", "Tokens by service tier and kind "
                                          "(prompt, cached, output, thinking)", labels=["pool", "model", "tier", "kind"])
        self.cost = CounterMetricFamily("gemini_tasks_estimated_cost_usd", "Estimated cost in USD by service tier "
                                        "(default or GEMINI_TASKS_PRICES price table)", labels=["pool", "model", "tier"])
        self.fallbacks = CounterMetricFamily("gemini_tasks_flex_fallbacks", "Flex requests sent at standard tier "
                                             "after flex_fallback_after", labels=["pool", "model"])

    def add(self, pool: str, kind: str, rest: str, value: float) -> bool:
        """Consume one hash field (``kind|rest``); False if it is not one of ours."""
        if kind == "tier_requests":
            tier, _, model = rest.partition("|")
            self.requests.add_metric([pool, model, tier], value)
        elif kind == "tier_tokens":
            tier, _, rest2 = rest.partition("|")
            token_kind, _, model = rest2.partition("|")
            self.tokens.add_metric([pool, model, tier, token_kind], value)
        elif kind == "tier_cost":
            tier, _, model = rest.partition("|")
            self.cost.add_metric([pool, model, tier], value)
        elif kind == "flex_fallbacks":
            self.fallbacks.add_metric([pool, rest], value)
        else:
            return False
        return True

    def all(self) -> list[Metric]:
        return [self.requests, self.tokens, self.cost, self.fallbacks]
