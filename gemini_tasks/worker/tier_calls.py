"""How a worker calls at a service tier: the SDK config of the call, shed Flex requests, fallback to standard.

Plain functions on the typed job (its ``state`` travels with the job when it is re-queued), used by
:mod:`gemini_tasks.worker.execution`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

from google.genai import types

from gemini_tasks.gemini import pricing
from gemini_tasks.gemini.reported_tier import generate_reporting_tier, normalize_tier
from gemini_tasks.gemini.tiers import WIRE_TIERS, call_timeout, is_shed
from gemini_tasks.keys.calls import record_tier_usage
from gemini_tasks.messages import Job

#: the ceiling of the backoff between tries of a shed Flex request (its base is ``CallPolicy.flex_retry_backoff``)
SHED_BACKOFF_MAX_SECONDS = 120.0


def current_tier(job: Job) -> str:
    """The tier of the next call: the job's, or ``standard`` after a Flex fallback."""
    return job.state.tier_now or job.tier


def call_config(config: types.GenerateContentConfig | None, tier: str,
                standard_timeout: float) -> types.GenerateContentConfig | None:
    """The call's config at ``tier``: ``service_tier`` set for flex/priority, and a Flex call's longer timeout."""
    if tier not in WIRE_TIERS:
        return config
    update: dict[str, Any] = {"service_tier": tier}
    timeout = call_timeout(tier, standard_timeout)
    if timeout != standard_timeout:
        update["http_options"] = types.HttpOptions(timeout=int(timeout * 1000))
    return (config or types.GenerateContentConfig()).model_copy(update=update)


def lease_seconds(job: Job, standard_timeout: float) -> float:
    """Lease lifetime for a call of this job: its longest possible call plus a margin."""
    return call_timeout(job.tier, standard_timeout) + 60


def shed_error(job: Job, err: Any) -> bool:
    """Whether the failed call (a :class:`~gemini_tasks.gemini.errors.CallError`) is a shed Flex request."""
    return is_shed(current_tier(job), err.code, err.quota_id, err.quota_kind)


def on_shed(job: Job, now: float | None = None) -> float:
    """Count a shed Flex call; return the backoff before the next try (0 after switching to standard).

    Backoff is exponential with full jitter from ``policy.flex_retry_backoff`` up to
    :data:`SHED_BACKOFF_MAX_SECONDS`. With ``policy.flex_fallback_after`` set, the request goes to the standard
    tier once that many seconds have passed since its first Flex try, and no backoff ends later.
    """
    now = time.time() if now is None else now
    state = job.state
    state.shed += 1
    if state.flex_since is None:
        state.flex_since = state.first_seen if state.first_seen is not None else now
    since = state.flex_since
    fallback = job.policy.flex_fallback_after
    if fallback is not None and now - since >= fallback:
        state.tier_now = "standard"
        state.fallback = True
        return 0.0
    ceiling = min(SHED_BACKOFF_MAX_SECONDS, job.policy.flex_retry_backoff * 2 ** min(state.shed - 1, 30))
    backoff = random.uniform(0.0, ceiling)  # full jitter: sheds come in waves, spread the retries
    if fallback is not None:
        backoff = min(backoff, max(0.0, since + fallback - now))
    return float(backoff)


def generate(client: Any, job: Job, *, contents: Any,
             config: types.GenerateContentConfig | None) -> tuple[Any, dict[str, Any]]:
    """The call at the job's current tier: (response, :func:`result_fields`). A Flex or Priority call reads
    the tier the API reports from the raw body (:mod:`gemini_tasks.gemini.reported_tier`); a standard call is
    made as it always was."""
    reported = None
    if current_tier(job) in WIRE_TIERS:
        response, reported = generate_reporting_tier(client, model=job.model, contents=contents, config=config)
    else:
        response = client.models.generate_content(model=job.model, contents=contents, config=config)
    return response, result_fields(job, response, reported)


def result_fields(job: Job, response: Any, reported: str | None = None) -> dict[str, Any]:
    """What a result records about tiers: ``tier`` (the one the API reported, else the one asked for; usage
    and cost are counted at it), ``tier_requested``, ``reported_tier`` when the API reported one, sheds and
    fallback."""
    state = job.state
    if reported is None:  # a later SDK may keep it in the typed usage
        reported = normalize_tier(getattr(getattr(response, "usage_metadata", None), "service_tier", None))
    requested = current_tier(job)
    out: dict[str, Any] = {"tier": reported or requested, "tier_requested": requested}
    if reported is not None:
        out["reported_tier"] = reported
    if state.shed:
        out["shed"] = state.shed
    if state.fallback:
        out["fallback"] = True
    return out


def record_usage(pool: Any, *, model: str, tier: str, usage: Mapping[str, Any] | None,
                 fallback: bool = False, pipe: Any = None, requested: str | None = None,
                 reported: str | None = None) -> None:
    """Count one answered request's tokens and estimated cost by tier at the worker's prices, and which tier
    was asked for against the one the API reported (``none``: not reported, counted at the requested one)
    (:func:`gemini_tasks.keys.calls.record_tier_usage`: one pipelined round trip, never raises)."""
    record_tier_usage(pool, model=model, tier=tier, usage=usage, pricing=pricing, fallback=fallback, pipe=pipe,
                      requested=requested, reported=reported)
