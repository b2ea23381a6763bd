"""Estimated cost of Gemini calls: tokens by kind and tier, priced with a table users can override.

Default prices (USD per 1M tokens, prompts up to 200k tokens) are Google's published Gemini Developer API
paid-tier prices, read from https://ai.google.dev/gemini-api/docs/pricing on 2026-11-29 (the page as stored
then; its "Standard" and "Batch" tabs per model). The Batch tab halves input and output prices and lists the
same context caching price as Standard, so cached tokens are not discounted at batch tier here. Flex (50 %
off) and Priority (75-100 % more, priced here at 1.8x) multipliers come from
https://ai.google.dev/gemini-api/docs/optimization (read 2026-11-29); the pricing page as stored showed no
Flex or Priority rows, so those multiply every kind. Changes against the 2025 table this project started
with: context caching 2.5 Pro $0.31 -> $0.125, 2.5 Flash $0.075 -> $0.03, 2.5 Flash-Lite $0.025 -> $0.01.
Prices change: pass your own table to the processor (``prices=``), or point ``GEMINI_TASKS_PRICES`` at a
JSON file of the same shape, before trusting a figure for billing.

Kinds: ``prompt`` (input tokens not served from cache), ``cached`` (input served from a context cache),
``output`` (candidates) and ``thinking`` (thoughts, billed as output). Audio input has its own price.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

#: model id prefix -> USD per 1M tokens; the longest matching prefix wins.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gemini-2.5-pro": {"input": 1.25, "output": 10.00, "cached": 0.125},
    "gemini-2.5-flash-lite": {"input": 0.10, "output": 0.40, "cached": 0.01},
    "gemini-2.5-flash-preview-tts": {"input": 0.50, "output": 10.00, "cached": 0.50},
    "gemini-2.5-pro-preview-tts": {"input": 1.00, "output": 20.00, "cached": 1.00},
    "gemini-2.5-flash": {"input": 0.30, "output": 2.50, "cached": 0.03},
    "gemini-2.0-flash": {"input": 0.10, "output": 0.40, "cached": 0.025},
}
#: price multiplier of each tier relative to standard
TIER_MULTIPLIERS: dict[str, float] = {"standard": 1.0, "flex": 0.5, "batch": 0.5, "priority": 1.8}
#: tiers whose context caching price differs from ``TIER_MULTIPLIERS`` (the pricing page's Batch tab lists
#: the standard caching price)
CACHED_TIER_MULTIPLIERS: dict[str, float] = {"batch": 1.0}
PRICES_READ = "ai.google.dev/gemini-api/docs/pricing and /optimization, read 2026-11-29"
KINDS = ("prompt", "cached", "output", "thinking")


def _load_env_table() -> dict[str, dict[str, float]] | None:
    from gemini_tasks.settings import get_settings

    path = get_settings().prices_path
    if not path:
        return None
    with open(path) as fh:
        return check_table(json.load(fh))


def check_table(table: Any) -> dict[str, dict[str, float]]:
    """A price table {model prefix: {"input", "output", "cached"}} (USD per 1M tokens); ValueError if malformed."""
    if not isinstance(table, Mapping):
        raise ValueError("a price table must be {model: {'input': usd, 'output': usd, 'cached': usd}} per 1M tokens")
    out: dict[str, dict[str, float]] = {}
    for model, row in table.items():
        if not isinstance(row, Mapping) or not {"input", "output"} <= set(row):
            raise ValueError(f"price table row {model!r} needs at least 'input' and 'output' (USD per 1M tokens)")
        try:
            out[str(model)] = {k: float(v) for k, v in row.items()}
        except (TypeError, ValueError):
            raise ValueError(f"price table row {model!r}: prices must be numbers") from None
        out[str(model)].setdefault("cached", out[str(model)]["input"])
    return out


@lru_cache(maxsize=1)
def default_table() -> dict[str, dict[str, float]]:
    return _load_env_table() or DEFAULT_PRICES


def price_row(model: str, table: Mapping[str, Mapping[str, float]] | None = None) -> Mapping[str, float] | None:
    table = default_table() if table is None else table
    bare = model.removeprefix("models/")
    best = None
    for prefix in table:
        if bare.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return table[best] if best is not None else None


def tokens_by_kind(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """{prompt, cached, output, thinking} from a usage dict (``usage_dict`` names)."""
    u = usage or {}

    def n(name: str) -> int:
        v = u.get(name)
        return int(v) if isinstance(v, (int, float)) and v > 0 else 0

    cached = n("cached_content_token_count")
    return {
        "prompt": max(0, n("prompt_token_count") - cached),
        "cached": cached,
        "output": n("candidates_token_count"),
        "thinking": n("thoughts_token_count"),
    }


def estimate_cost(model: str, tokens: Mapping[str, int], tier: str,
                  table: Mapping[str, Mapping[str, float]] | None = None) -> float | None:
    """USD for these tokens of ``model`` at ``tier``; None for a model the table does not price."""
    row = price_row(model, table)
    if row is None:
        return None
    mult = TIER_MULTIPLIERS.get(tier, 1.0)
    paid = (tokens.get("prompt", 0) * row["input"]
            + (tokens.get("output", 0) + tokens.get("thinking", 0)) * row["output"]) * mult
    cached = tokens.get("cached", 0) * row.get("cached", row["input"]) * CACHED_TIER_MULTIPLIERS.get(tier, mult)
    return (paid + cached) / 1_000_000


@dataclass
class UsageSummary:
    """Tokens by tier and kind, requests by tier, and the estimated cost (what a batch's summary shows)."""

    model: str
    table: Mapping[str, Mapping[str, float]] | None = None
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    unpriced: int = 0
    shed: int = 0
    fallbacks: int = 0

    def add(self, usage: Mapping[str, Any] | None, tier: str, *, model: str | None = None, shed: int = 0,
            fallback: bool = False) -> None:
        kinds = tokens_by_kind(usage)
        row = self.tokens.setdefault(tier, dict.fromkeys(KINDS, 0))
        for k, v in kinds.items():
            row[k] += v
        self.requests[tier] = self.requests.get(tier, 0) + 1
        model = model or self.model
        self.model = self.model or model
        cost = estimate_cost(model, kinds, tier, self.table)
        if cost is None:
            self.unpriced += 1
        else:
            self.cost_usd += cost
        self.shed += shed
        self.fallbacks += bool(fallback)

    def standard_cost(self) -> float | None:
        """What the same tokens would cost at standard tier (for 'x of standard' figures)."""
        total = dict.fromkeys(KINDS, 0)
        for row in self.tokens.values():
            for k, v in row.items():
                total[k] += v
        return estimate_cost(self.model, total, "standard", self.table)

    def line(self) -> str:
        parts = [f"{tier}: {n} req" for tier, n in sorted(self.requests.items())]
        tok = dict.fromkeys(KINDS, 0)
        for row in self.tokens.values():
            for k, v in row.items():
                tok[k] += v
        std = self.standard_cost()
        rel = f" ({self.cost_usd / std:.2f}x standard)" if std else ""
        extra = f", {self.shed} shed, {self.fallbacks} fell back to standard" if self.shed or self.fallbacks else ""
        return (f"{', '.join(parts)}; tokens prompt {tok['prompt']}, cached {tok['cached']}, output {tok['output']}, "
                f"thinking {tok['thinking']}; estimated ${self.cost_usd:.6f}{rel}{extra}")

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "requests": self.requests, "cost_usd": round(self.cost_usd, 9),
                "standard_cost_usd": self.standard_cost(), "unpriced": self.unpriced, "shed": self.shed,
                "fallbacks": self.fallbacks}
