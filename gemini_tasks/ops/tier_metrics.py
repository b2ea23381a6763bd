"""Usage and estimated cost by service tier, in the same per-pool call-counter hash as
:func:`gemini_tasks.keys.calls.record_call` (``gt:{pool}:calls``), as Prometheus families. The worker records
them (:func:`gemini_tasks.keys.calls.record_tier_usage`); this module reads them.

Fields (the model last, so a model id is never split wrongly):

* ``tier_requests|<tier>|<model>``          answered requests
* ``tier_tokens|<tier>|<kind>|<model>``     tokens by kind: prompt (not cached), cached, output, thinking
* ``tier_cost|<tier>|<model>``              estimated USD (gemini/pricing.py, the worker's price table)
* ``flex_fallbacks|<model>``                Flex requests sent at standard tier after ``flex_fallback_after``
* ``tier_reported|<requested>|<reported>|<model>``  answered synchronous requests by the tier asked for and
  the tier the API reported in ``usageMetadata.serviceTier`` (``none``: not read or not reported, so counted
  at the requested tier; standard calls are not asked for their raw body)

Shed Flex calls are counted by ``record_call`` as calls with outcome ``shed``.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, Metric


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
        self.reported = CounterMetricFamily("gemini_tasks_tier_reported", "Answered requests by the tier asked for "
                                            "and the tier the API reported (none: not reported, counted as asked)",
                                            labels=["pool", "model", "requested", "reported"])

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
        elif kind == "tier_reported":
            requested, _, rest2 = rest.partition("|")
            reported, _, model = rest2.partition("|")
            self.reported.add_metric([pool, model, requested, reported], value)
        else:
            return False
        return True

    def all(self) -> list[Metric]:
        return [self.requests, self.tokens, self.cost, self.fallbacks, self.reported]
