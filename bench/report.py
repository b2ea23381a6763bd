"""Turning the sections' data into ``bench/RESULTS.md`` and small PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.common import fmt

COLORS = {"gemini-tasks": "#1a7f37", "plain Celery": "#c2410c", "LiteLLM Router": "#6d28d9"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rolling_utilization(ok_times: list[float], window: float, per_window: int, end: float,
                        step: float) -> tuple[list[float], list[float]]:
    """Accepted requests in the trailing window at each time, as % of the limit per window."""
    xs, ys = [], []
    lo = hi = 0
    t = 0.0
    while t <= end:
        while hi < len(ok_times) and ok_times[hi] <= t:
            hi += 1
        while lo < hi and ok_times[lo] <= t - window:
            lo += 1
        xs.append(t)
        ys.append(100.0 * (hi - lo) / per_window)
        t += step
    return xs, ys


def plot_quota(part: dict[str, Any], path: Path) -> None:
    plt = _plt()
    spec = part["spec"]
    per_window = spec["projects"] * spec["quota"]
    window = spec["window"]
    end = max((r["ok_times"][-1] for r in part["rows"] if r["ok_times"]), default=window) + window
    fig, ax = plt.subplots(figsize=(7.5, 3.2), dpi=90)
    ax.axhline(100, color="black", lw=1, ls="--", label="physical limit")
    for r in part["rows"]:
        xs, ys = rolling_utilization(r["ok_times"], window, per_window, end, window / 40)
        ax.plot(xs, ys, lw=1.4, color=COLORS.get(r["system"]), label=r["system"])
    ax.set_xlabel("seconds since submission")
    ax.set_ylabel(f"accepted in last {window:g} s\n(% of quota)")
    ax.set_ylim(0, 115)
    ax.set_xlim(0, end)
    ax.set_title(f"Quota utilization over time ({window:g} s quota window)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_scale(data: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, ax1 = plt.subplots(figsize=(7.5, 3.2), dpi=90)
    rows = data["rows"]
    for pool, marker in (("threads", "o"), ("prefork", "s")):
        pts = [r for r in rows if r["pool"] == pool]
        if pts:
            ax1.plot([r["slots"] for r in pts], [r["rps"] for r in pts], marker=marker, label=f"{pool} pool")
    slots = sorted({r["slots"] for r in rows})
    ax1.plot(slots, [s / data["latency"] for s in slots], ls="--", color="gray", label="slots / latency")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(slots)
    ax1.set_xticklabels([str(s) for s in slots])
    top = max(r["rps"] for r in rows if not math.isnan(r["rps"]))
    ax1.set_ylim(0, top * 1.6)
    ax1.set_xlabel("worker slots")
    ax1.set_ylabel("requests / s")
    ax1.set_title(f"Throughput vs slots (latency {data['latency'] * 1000:.0f} ms, 2 cores)", fontsize=10)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def quota_findings(parts: list[dict[str, Any]]) -> list[str]:
    """Verdict lines computed from the numbers (goal: >= 95% of the limit, <= 0.5% 429s, ahead of both peers).

    The steady rate is the measure where the run spans enough windows; otherwise the whole-run measure (ideal
    time over actual time) is, and the line says which one it used."""
    out = []
    for part in parts:
        rows = {r["system"]: r for r in part["rows"]}
        gt = rows.get("gemini-tasks")
        if not gt:
            continue
        steady = part["spec"]["rounds"] >= 5
        ideal = gt["ideal_wall"]
        timeout = 2 * ideal + 30  # QuotaSpec.timeout

        def util(r: dict[str, Any]) -> float:
            if steady:
                return r["util_pct"]
            return r["wall_util_pct"] if r["finished"] else 100.0 * ideal / timeout  # an upper bound

        measure = "steady rate" if steady else "whole run (ideal time / time)"
        met = util(gt) >= 95 and gt["r429_pct"] <= 0.5
        peers = [r for name, r in rows.items() if name != "gemini-tasks"]
        ahead = all(util(gt) > util(p) and gt["finished"] for p in peers)

        def peer(p: dict[str, Any]) -> str:
            shown = f"{fmt(util(p))}%" if p["finished"] or steady else f"< {fmt(util(p))}%, did not finish"
            return f"{p['system']} ({shown}, {p['r429']} 429s)"

        verdict = (f"- **{part['title']}** ({measure}): gemini-tasks at **{fmt(util(gt))}%** of the physical limit "
                   f"with **{gt['r429']} 429s ({fmt(gt['r429_pct'], 2)}% of calls)**: goal (>= 95%, <= 0.5% 429s) "
                   f"{'met' if met else 'NOT met'}")
        if peers:
            verdict += ("; ahead of " if ahead else "; NOT ahead of every peer: ") + ", ".join(peer(p) for p in peers)
        out.append(verdict + ".")
    return out
