"""Service tiers on generateContent through the real SDK: serviceTier on the wire, usage, Flex latency, shedding."""

from __future__ import annotations

import time

import pytest
from emu_helpers import MODEL
from google.genai import errors, types


def test_tier_is_sent_and_reported_in_usage(client, ctl):
    for tier in ("flex", "priority", "standard"):
        r = client.models.generate_content(
            model=MODEL, contents="hello", config=types.GenerateContentConfig(service_tier=tier)
        )
        assert r.text.startswith("[emulator]")
        assert ctl.log()[-1]["service_tier"] == tier
    client.models.generate_content(model=MODEL, contents="no tier")
    assert ctl.log()[-1]["service_tier"] == "standard"
    # The SDK (3.6) drops usageMetadata.serviceTier from its typed response; the raw body carries it.
    raw = client.models.generate_content(
        model=MODEL,
        contents="raw",
        config=types.GenerateContentConfig(service_tier="flex", should_return_http_response=True),
    )
    assert '"serviceTier": "flex"' in raw.sdk_http_response.body or '"serviceTier":"flex"' in raw.sdk_http_response.body


def test_unknown_tier_is_400(client):
    with pytest.raises(errors.ClientError) as ei:
        client.models.generate_content(model=MODEL, contents="x", config={"service_tier": "gold"})
    assert ei.value.code == 400 and "service_tier" in ei.value.message


def test_flex_latency_applies_to_flex_only(client, ctl):
    ctl.configure(flex_latency_seconds=0.4)
    t0 = time.monotonic()
    client.models.generate_content(model=MODEL, contents="fast")
    standard = time.monotonic() - t0
    t0 = time.monotonic()
    client.models.generate_content(model=MODEL, contents="slow", config={"service_tier": "flex"})
    flex = time.monotonic() - t0
    assert standard < 0.3 and flex >= 0.4


def test_flex_shed_on_demand_is_503_unavailable_and_not_counted(client, ctl):
    ctl.configure(quotas={"*": {"*": {"rpm": 1}}}, minute_seconds=60)
    ctl.add_fault(action="shed", service_tier="flex", times=2)
    for _ in range(2):
        with pytest.raises(errors.ServerError) as ei:
            client.models.generate_content(model=MODEL, contents="x", config={"service_tier": "flex"})
        assert ei.value.code == 503 and ei.value.status == "UNAVAILABLE"
        assert "high demand" in ei.value.message
        assert ctl.log()[-1]["shed"] is True
    # the sheds did not use the project's single request of the minute
    r = client.models.generate_content(model=MODEL, contents="x", config={"service_tier": "flex"})
    assert r.text
    assert ctl.stats()["shed"] == 2


def test_shed_rule_leaves_standard_alone_and_probability_sheds_flex_only(client, ctl):
    ctl.add_fault(action="shed", service_tier="flex")
    assert client.models.generate_content(model=MODEL, contents="std").text
    assert client.models.generate_content(model=MODEL, contents="p", config={"service_tier": "priority"}).text
    ctl.clear_faults()
    ctl.configure(flex_shed_probability=1.0)
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model=MODEL, contents="x", config={"service_tier": "flex"})
    assert client.models.generate_content(model=MODEL, contents="std").text


def test_shed_as_429_resource_exhausted_names_no_quota(client, ctl):
    """Google's docs do not say how a shed Flex request is answered: the emulator can answer 429 as well."""
    ctl.add_fault(action="shed", service_tier="flex", status=429, times=1)
    with pytest.raises(errors.ClientError) as ei:
        client.models.generate_content(model=MODEL, contents="x", config={"service_tier": "flex"})
    assert ei.value.code == 429 and ei.value.status == "RESOURCE_EXHAUSTED"
    assert "QuotaFailure" not in str(ei.value.details)
    assert ctl.log()[-1]["shed"] is True
    ctl.configure(flex_shed_probability=1.0, flex_shed_status=429)
    with pytest.raises(errors.ClientError) as ei:
        client.models.generate_content(model=MODEL, contents="x", config={"service_tier": "flex"})
    assert ei.value.code == 429
    with pytest.raises(Exception, match="429 or 503"):
        ctl.add_fault(action="shed", service_tier="flex", status=500)


def test_the_tier_the_api_reports_is_read_from_the_raw_body_with_the_same_typed_response(client, ctl):
    """google-genai 3.6's typed usage has no service_tier; generate_reporting_tier reads it from the raw body of
    the same single request and builds the typed response with the SDK's own converter."""
    from gemini_tasks.gemini.reported_tier import generate_reporting_tier

    plain = client.models.generate_content(model=MODEL, contents="same", config={"service_tier": "flex"})
    assert getattr(plain.usage_metadata, "service_tier", None) is None  # dropped by the SDK
    n = len(ctl.log())
    response, reported = generate_reporting_tier(
        client, model=MODEL, contents="same", config=types.GenerateContentConfig(service_tier="flex"))
    assert len(ctl.log()) == n + 1 and reported == "flex"
    assert response.text == plain.text and response.usage_metadata.prompt_token_count > 0
    ctl.add_fault(action="downgrade", service_tier="priority", times=1)
    response, reported = generate_reporting_tier(
        client, model=MODEL, contents="busy", config=types.GenerateContentConfig(service_tier="priority"))
    assert reported == "standard" and response.text and ctl.log()[-1]["served_tier"] == "standard"
