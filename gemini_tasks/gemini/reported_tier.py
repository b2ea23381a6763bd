"""The service tier the API reports for a synchronous call (``usageMetadata.serviceTier``).

google-genai 3.6 drops it: ``GenerateContentResponseUsageMetadata`` has ``traffic_type`` but no
``service_tier``, and the SDK removes unknown fields before validating a response. The tier served can differ
from the one asked for: Google downgrades Priority requests over a project's dynamic limits to standard
("rather than failing with an error", https://ai.google.dev/gemini-api/docs/optimization, read 2026-11-29).
So a tiered call asks the SDK for the raw HTTP response (``GenerateContentConfig.should_return_http_response``),
reads the tier from its body and builds the typed response from the same body with the SDK's own converter:
still one request, and the same response object as a plain call.
"""

from __future__ import annotations

import json
from typing import Any

from google.genai import models as sdk_models
from google.genai import types


def normalize_tier(value: Any) -> str | None:
    """``flex``/``priority``/``standard`` from the wire's enum spelling (``SERVICE_TIER_FLEX``, ``flex``, ...)."""
    if value is None:
        return None
    name = str(getattr(value, "value", value)).strip().lower().removeprefix("service_tier_")
    if name in ("", "unspecified"):
        return "standard"
    return name


def generate_reporting_tier(client: Any, *, model: str, contents: Any, config: types.GenerateContentConfig | None
                            ) -> tuple[types.GenerateContentResponse, str | None]:
    """``client.models.generate_content`` and the tier the API reported (None when the body has none)."""
    config = config or types.GenerateContentConfig()
    raw = client.models.generate_content(model=model, contents=contents,
                                         config=config.model_copy(update={"should_return_http_response": True}))
    http = raw.sdk_http_response
    body = json.loads(http.body) if http is not None and http.body else {}
    usage = body.get("usageMetadata") or body.get("usage_metadata") or {}
    reported = normalize_tier(usage.get("serviceTier") or usage.get("service_tier"))
    converted = sdk_models._GenerateContentResponse_from_mldev(body, None, None)
    response = types.GenerateContentResponse._from_response(
        response=converted,
        kwargs={"config": {"response_schema": config.response_schema,
                           "response_json_schema": config.response_json_schema}})
    response.sdk_http_response = types.HttpResponse(headers=http.headers if http is not None else None)
    return response, reported
