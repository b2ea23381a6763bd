"""Scripted faults: rules that a test adds through the control API.

A rule says what to do (`action`) to which requests (matchers), how many times (`times`) and how
often (`probability`, drawn from the emulator's seeded RNG so a run can be replayed).  Rules are
tried in the order they were added.  `latency` rules are cumulative and do not stop the search;
any other matching rule is terminal: it is applied and no later rule is consulted.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

ACTIONS = frozenset(
    {
        "status",
        "hang",
        "reset",
        "malformed",
        "latency",
        "blocked",
        "safety_finish",
        "empty",
        "stream_error",
        "file_failed",
        "shed",
        "downgrade",
    }
)
# Actions that only make sense for a generateContent-style answer.
GENERATE_ONLY = frozenset({"blocked", "safety_finish", "empty", "stream_error", "malformed", "shed", "downgrade"})
GENERATE_ENDPOINTS = frozenset({"generateContent", "streamGenerateContent"})

_MATCHERS = (
    "model",
    "key_label",
    "project",
    "prompt_contains",
    "path_contains",
    "endpoint",
    "method",
    "service_tier",
)
_PARAMS = (
    "status",
    "seconds",
    "then",
    "reason",
    "quota_kind",
    "retry_delay",
    "message",
    "limit",
    "after_chunks",
)
_ALLOWED = frozenset(("action", "times", "probability", "id") + _MATCHERS + _PARAMS)
STATUS_CODES = frozenset({400, 401, 403, 404, 409, 429, 500, 502, 503, 504})


class RuleError(ValueError):
    """A rule posted to the control API is malformed."""


@dataclass(slots=True)
class Rule:
    id: int
    action: str
    spec: dict[str, Any]
    times: int | None = None
    probability: float | None = None
    applied: int = 0
    matchers: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.spec)
        out.update(id=self.id, action=self.action, applied=self.applied, remaining=self.times)
        if self.probability is not None:
            out["probability"] = self.probability
        out.update(self.matchers)
        return out

    def get(self, name: str, default: Any = None) -> Any:
        return self.spec.get(name, default)


@dataclass(slots=True)
class RequestFacts:
    """What a rule can match on; filled in by the handler as it learns it."""

    endpoint: str
    method: str
    path: str
    model: str | None = None
    key_label: str | None = None
    project: str | None = None
    prompt: str | None = None
    finalize: bool = False  # upload chunk that completes the upload
    service_tier: str | None = None  # generate requests: the request's serviceTier, lower case


def _status_spec(action: str, spec: dict[str, Any]) -> None:
    """A status or stream-error rule: its HTTP status (500 / 503 by default) and quota kind, checked."""
    try:
        spec["status"] = int(spec.get("status", 500 if action == "status" else 503))
    except (TypeError, ValueError):
        raise RuleError("status must be an HTTP status code") from None
    if spec["status"] not in STATUS_CODES:
        raise RuleError(f"status must be one of {sorted(STATUS_CODES)}")
    if spec.get("quota_kind") not in (None, "minute", "day", "tokens"):
        raise RuleError("quota_kind must be 'minute', 'day' or 'tokens'")


def _shed_spec(spec: dict[str, Any]) -> None:
    """A shed rule's status, when given: 429 or 503."""
    try:
        spec["status"] = int(spec["status"])
    except (TypeError, ValueError):
        raise RuleError("status must be an HTTP status code") from None
    if spec["status"] not in (429, 503):
        raise RuleError("a shed is answered 429 or 503")


def _delay_spec(action: str, spec: dict[str, Any]) -> None:
    """A hang or latency rule: its seconds (an hour / one second by default) and what happens after, checked."""
    try:
        spec["seconds"] = float(spec.get("seconds", 3600.0 if action == "hang" else 1.0))
    except (TypeError, ValueError):
        raise RuleError("seconds must be a number") from None
    if spec.get("then", "respond") not in ("respond", "close", "reset"):
        raise RuleError("then must be 'respond', 'close' or 'reset'")


def _times_and_probability(raw: dict[str, Any]) -> tuple[int | None, float | None]:
    times = raw.get("times")
    if times is not None:
        times = int(times)
        if times < 1:
            raise RuleError("times must be >= 1 (omit it for 'until cleared')")
    prob = raw.get("probability")
    if prob is not None:
        prob = float(prob)
        if not 0.0 <= prob <= 1.0:
            raise RuleError("probability must be within 0..1")
    return times, prob


def make_rule(rule_id: int, raw: dict[str, Any]) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError("a rule must be a JSON object")
    unknown = set(raw) - _ALLOWED
    if unknown:
        raise RuleError(f"unknown rule fields: {sorted(unknown)}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise RuleError(f"action must be one of {sorted(ACTIONS)}")
    spec = {k: raw[k] for k in _PARAMS if raw.get(k) is not None}
    if action in ("status", "stream_error"):
        _status_spec(action, spec)
    if action == "shed" and "status" in spec:
        _shed_spec(spec)
    if action in ("hang", "latency"):
        _delay_spec(action, spec)
    times, prob = _times_and_probability(raw)
    matchers = {k: raw[k] for k in _MATCHERS if raw.get(k) is not None}
    if "model" in matchers and str(matchers["model"]).startswith("models/"):
        matchers["model"] = str(matchers["model"])[7:]
    return Rule(rule_id, action, spec, times, prob, 0, matchers)


def _matches(rule: Rule, facts: RequestFacts) -> bool:
    if rule.action in GENERATE_ONLY and facts.endpoint not in GENERATE_ENDPOINTS:
        return False
    if rule.action == "file_failed" and not facts.finalize:
        return False
    m = rule.matchers
    if not m:
        return True
    if "endpoint" in m and m["endpoint"] != facts.endpoint:
        return False
    if "method" in m and str(m["method"]).upper() != facts.method:
        return False
    if "model" in m and m["model"] != facts.model:
        return False
    if "key_label" in m and m["key_label"] != facts.key_label:
        return False
    if "project" in m and m["project"] != facts.project:
        return False
    if "path_contains" in m and m["path_contains"] not in facts.path:
        return False
    if "service_tier" in m and str(m["service_tier"]).lower() != (facts.service_tier or "standard"):
        return False
    if "prompt_contains" in m and (facts.prompt is None or m["prompt_contains"] not in facts.prompt):
        return False
    return True


class FaultBook:
    """The ordered rule list, the seeded RNG, and the pick logic."""

    def __init__(self, seed: int = 0) -> None:
        self.rules: list[Rule] = []
        self._ids = itertools.count(1)
        self.rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        self.rng.seed(seed)

    def add(self, raws: list[dict[str, Any]]) -> list[int]:
        """Validate all, then add all (a bad rule adds nothing)."""
        rules = [make_rule(0, raw) for raw in raws]
        ids = []
        for rule in rules:
            rule.id = next(self._ids)
            self.rules.append(rule)
            ids.append(rule.id)
        return ids

    def clear(self) -> None:
        self.rules.clear()

    def remove(self, rule_id: int) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def pick(self, facts: RequestFacts) -> list[Rule]:
        """Rules to apply to this request: any latency rules, then at most one terminal rule."""
        if not self.rules:
            return []
        chosen: list[Rule] = []
        spent = False
        for rule in self.rules:
            if not _matches(rule, facts):
                continue
            if rule.probability is not None and self.rng.random() >= rule.probability:
                continue
            rule.applied += 1
            if rule.times is not None:
                rule.times -= 1
                spent = spent or rule.times <= 0
            chosen.append(rule)
            if rule.action != "latency":
                break
        if spent:
            self.rules = [r for r in self.rules if r.times is None or r.times > 0]
        return chosen
