"""The original's keylist_names / paid_keys / key_settings forms (no Redis needed)."""

from __future__ import annotations

import pytest

from gemini_tasks.keys.selection import merge_settings, normalise_limits, resolve_key_names, resolve_paid

ENV = {
    "GEMINI_API_KEY_1": "x" * 20, "GEMINI_API_KEY_2": "x" * 20, "GEMINI_API_KEY_10": "x" * 20,
    "GEMINI_API_KEY_3": "short", "GEMINI_API_KEY": "y" * 20, "OTHER": "z" * 20,
}


@pytest.mark.parametrize("form,expected", [
    ("all", ["GEMINI_API_KEY", "GEMINI_API_KEY_1", "GEMINI_API_KEY_2", "GEMINI_API_KEY_10"]),
    (3, ["GEMINI_API_KEY_1", "GEMINI_API_KEY_2"]),       # 3 is too short: skipped, as the original
    ("2", ["GEMINI_API_KEY_1", "GEMINI_API_KEY_2"]),
    ("2-10", ["GEMINI_API_KEY_2", "GEMINI_API_KEY_10"]),
    (["GEMINI_API_KEY_10", "GEMINI_API_KEY_1"], ["GEMINI_API_KEY_10", "GEMINI_API_KEY_1"]),
    ("GEMINI_API_KEY_2", ["GEMINI_API_KEY_2"]),
])
def test_keylist_forms(form, expected):
    assert resolve_key_names(form, ENV) == expected


def test_remote_held_ids_count_as_known():
    assert resolve_key_names(["GEMINI_API_KEY_7"], {}, remote_held=["GEMINI_API_KEY_7"]) == ["GEMINI_API_KEY_7"]
    assert resolve_key_names("all", {}, remote_held=["GEMINI_API_KEY_7"]) == ["GEMINI_API_KEY_7"]


@pytest.mark.parametrize("form,match", [
    (["GEMINI_API_KEY_9"], "Unknown API key name.*GEMINI_API_KEY_9"),
    (["bad name"], "environment variable names"),
    (0, "range"),
    ("5-2", "range"),
    (True, "keylist_names must be"),
    (3.5, "keylist_names must be"),
    ("all", "No valid API keys found"),
])
def test_keylist_errors(form, match):
    env = {} if form == "all" else ENV
    with pytest.raises(ValueError, match=match):
        resolve_key_names(form, env)


def test_paid_forms():
    ids = ["A", "B"]
    assert resolve_paid(None, ids) == set()
    assert resolve_paid("all", ids) == {"A", "B"}
    assert resolve_paid(["B"], ids) == {"B"}
    with pytest.raises(ValueError, match="not in the pool: C"):
        resolve_paid(["C"], ids)


def test_settings_merge_and_validation():
    s = merge_settings({"free": {"key_cooldown_seconds": 10}, "paid": {"rpm": 100}})
    assert s["free"]["key_cooldown_seconds"] == 10 and s["free"]["exhausted_wait_seconds"] == 120
    assert s["paid"]["key_cooldown_seconds"] == 0 and s["paid"]["rpm"] == 100
    for bad, match in [
        ({"gold": {}}, "unknown category 'gold'"),
        ({"free": {"cooldown": 1}}, "unknown setting 'cooldown'"),
        ({"free": {"key_cooldown_seconds": -1}}, ">= 0"),
        ({"free": {"key_cooldown_seconds": "30"}}, "must be a number"),
        ({"free": {"max_exhausted_retries": 0}}, "whole number >= 1"),
        ({"free": {"max_concurrent_leases": 1.5}}, "whole number >= 1"),
        ({"free": 3}, "must be a dict"),
        ([1], "must be a dict"),
    ]:
        with pytest.raises(ValueError, match=match):
            merge_settings(bad)


def test_project_limits_validation():
    assert normalise_limits("p", {"requests_per_minute": 10, "models": {"m": {"rpd": 5}}}) == {
        "rpm": 10, "models": {"m": {"rpd": 5}}}
    with pytest.raises(ValueError, match="unknown limit 'tpd'"):
        normalise_limits("p", {"tpd": 1})
    with pytest.raises(ValueError, match="whole number >= 1"):
        normalise_limits("p", {"rpm": 0})
