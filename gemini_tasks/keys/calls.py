"""Recording the statistics of Gemini calls beside the key pool: a per-pool hash of call counters,
``gt:{pool}:calls`` (:func:`gemini_tasks.keys.names.calls_key`), that each worker bumps once per call.

The worker writes here; the Prometheus exporter (:mod:`gemini_tasks.ops.metrics`,
:mod:`gemini_tasks.ops.tier_metrics`) reads the hash. Fields put the model last, so a model id is never split
wrongly:

* ``calls|<outcome>|<model>``, ``lat_le|<bucket>|<model>``, ``latency_sum|<model>``, ``tokens_<kind>|<model>``
  (:func:`record_call`; shed Flex calls are calls with outcome ``shed``)
* ``tier_requests|<tier>|<model>``          answered requests
* ``tier_tokens|<tier>|<kind>|<model>``     tokens by kind: prompt (not cached), cached, output, thinking
* ``tier_cost|<tier>|<model>``              estimated USD (gemini/pricing.py, the worker's price table)
* ``flex_fallbacks|<model>``                Flex requests sent at standard tier after ``flex_fallback_after``
  (:func:`record_tier_usage`)

Every recorder is one pipelined round trip and never raises: a metrics failure must not fail a task that
already paid for its call, so errors are logged at debug. With ``pipe`` the commands are only queued on that
pipeline (the caller executes it).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Protocol

from gemini_tasks.keys.names import CALLS_HASH, calls_key

log = logging.getLogger("gemini_tasks.keys.calls")

__all__ = ["CALLS_HASH", "LATENCY_BUCKETS", "TOKEN_FIELDS", "Pricing", "bucket_label", "latency_bucket", "record_call",
           "record_tier_usage"]

#: Upper bounds (seconds) of the call-latency histogram: Gemini calls run from ~0.3 s (short text) to minutes
#: (long video, TTS), and the SDK timeout (default 120 s) is the last finite bucket worth having.
LATENCY_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: The usage fields counted, as the SDK names them (``usage_dict``), and the label value each gets.
TOKEN_FIELDS: Mapping[str, str] = {
    "prompt_token_count": "prompt",
    "candidates_token_count": "candidates",
    "thoughts_token_count": "thoughts",
    "cached_content_token_count": "cached",
}


def bucket_label(bound: float) -> str:
    """The label of a histogram bucket's upper bound (``+Inf`` for the last)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def latency_bucket(latency_s: float) -> str:
    """The (non-cumulative) bucket one observation falls in; the exporter accumulates them."""
    for bound in LATENCY_BUCKETS:
        if latency_s <= bound:
            return bucket_label(bound)
    return "+Inf"


def record_call(pool: Any, *, model: str, latency_s: float, usage: Mapping[str, Any] | None,
                outcome: str, pipe: Any = None) -> None:
    """Count one Gemini call in the pool's call-counter hash: one pipelined round trip, never raises."""
    try:
        latency_s = max(0.0, float(latency_s))
        key = calls_key(pool.prefix)
        own = pipe is None
        if own:
            pipe = pool.client.pipeline(transaction=False)
        pipe.hincrby(key, f"calls|{outcome}|{model}", 1)
        pipe.hincrby(key, f"lat_le|{latency_bucket(latency_s)}|{model}", 1)
        pipe.hincrbyfloat(key, f"latency_sum|{model}", round(latency_s, 6))
        for field, kind in TOKEN_FIELDS.items():
            count = (usage or {}).get(field)
            if isinstance(count, int) and count > 0:
                pipe.hincrby(key, f"tokens_{kind}|{model}", count)
        if own:
            pipe.execute()
    except Exception as exc:  # noqa: BLE001 - metrics are best effort by design
        log.debug("metrics: could not record a call for pool %s: %r", getattr(pool, "pool", "?"), exc)


class Pricing(Protocol):
    """What the tier recorder needs of a price table (:mod:`gemini_tasks.gemini.pricing` is one)."""

    def tokens_by_kind(self, usage: Mapping[str, Any] | None) -> dict[str, int]: ...

    def estimate_cost(self, model: str, tokens: Mapping[str, int], tier: str) -> float | None: ...


def record_tier_usage(pool: Any, *, model: str, tier: str, usage: Mapping[str, Any] | None, pricing: Pricing,
                      fallback: bool = False, pipe: Any = None, requested: str | None = None,
                      reported: str | None = None) -> None:
    """Count one answered request's tokens (by kind) and estimated cost by tier: one round trip, never raises.

    ``pricing`` turns the usage into tokens by kind and a cost (the worker passes :mod:`gemini_tasks.gemini.pricing`,
    see :func:`gemini_tasks.worker.tier_calls.record_usage`)."""
    try:
        kinds = pricing.tokens_by_kind(usage)
        key = calls_key(pool.prefix)
        own = pipe is None
        if own:
            pipe = pool.client.pipeline(transaction=False)
        pipe.hincrby(key, f"tier_requests|{tier}|{model}", 1)
        for kind, count in kinds.items():
            if count:
                pipe.hincrby(key, f"tier_tokens|{tier}|{kind}|{model}", count)
        cost = pricing.estimate_cost(model, kinds, tier)
        if cost:
            pipe.hincrbyfloat(key, f"tier_cost|{tier}|{model}", round(cost, 12))
        if fallback:
            pipe.hincrby(key, f"flex_fallbacks|{model}", 1)
        if requested is not None:
            pipe.hincrby(key, f"tier_reported|{requested}|{reported or 'none'}|{model}", 1)
        if own:
            pipe.execute()
    except Exception as exc:  # noqa: BLE001 - metrics are best effort by design
        log.debug("metrics: could not record usage for pool %s: %r", getattr(pool, "pool", "?"), exc)
