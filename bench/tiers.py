"""Cost tiers: the same prompts through ``standard``, ``flex`` and ``batch`` on the emulator, same keys, same quota.

Set-up (every figure scaled down from the real API so a run takes about a minute):

* 2 projects x 2 keys, each project allowed ``quota`` generateContent requests per ``window`` seconds (the
  emulator's "minute"); the key manager is told the same limits (``project_limits``), as the README says.
* standard: ``latency`` s per request. flex: ``latency + flex_latency`` s (real Flex: 1-15 min) and each Flex
  request shed (503 UNAVAILABLE) with probability ``shed`` (seeded); sheds are retried on Flex with backoff.
* batch: the Gemini Batch API: jobs PENDING ``batch_pending`` s, then RUNNING ``batch_run`` s (real: up to
  24 h); the fleet polls every ``poll`` s. Batch requests do not use the generateContent quota (as on the API).
* one worker process with ``slots`` threads; ``max_workers = slots``.

Reported per tier: wall time from submit to the last answer, prompts answered (no error), estimated cost (the
default price table, gemini/pricing.py) and its ratio to the standard run's, 429s and shed requests (from the
emulator's log). Goal (issue 15): flex and batch at 0.50x the standard cost with every prompt answered.

    python bench/tiers.py [--n 1000] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (  # noqa: E402
    MODEL, emulator_log, fleet_env, fmt, key_secrets, machine, machine_line, md_table, stack, use_env, workers,
)


@dataclass
class Spec:
    n: int = 1000
    window: float = 2.0
    quota: int = 100  # per project per window
    latency: float = 0.05
    flex_latency: float = 0.5
    shed: float = 0.10
    batch_pending: float = 1.0
    batch_run: float = 2.0
    poll: float = 0.5
    slots: int = 16
    shed_status: int = 503  # how a shed is answered (Google does not document it: 503 or a 429 naming no quota)
    enqueued_tokens: int | None = None  # the projects' batch enqueued-token limit (emulator and batch_options)


def run(spec: Spec) -> tuple[str, list[dict[str, Any]]]:
    secrets = key_secrets("tiers", 4)
    key_project = {k: f"tier-proj-{i // 2}" for i, k in enumerate(sorted(secrets))}
    emu_cfg = {
        "keys": {secrets[k]: {"label": k, "project": p} for k, p in key_project.items()},
        "quotas": {"*": {"*": {"rpm": spec.quota}}},
        "minute_seconds": spec.window,
        "latency_seconds": spec.latency,
        "flex_latency_seconds": spec.flex_latency,
        "flex_shed_probability": spec.shed,
        "batch_pending_seconds": spec.batch_pending,
        "batch_run_seconds": spec.batch_run,
        "flex_shed_status": spec.shed_status,
        "seed": 15,
    }
    if spec.enqueued_tokens:
        emu_cfg["batch_enqueued_tokens"] = {MODEL: spec.enqueued_tokens}
    rows: list[dict[str, Any]] = []
    with stack(emu_cfg) as (rs, emu):
        env = fleet_env(rs.url, emu.url, secrets, GEMINI_TASKS_FLEX_TIMEOUT="60")
        use_env(env)
        with workers(env, 1, spec.slots, queues="batch"):
            from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor

            for tier in ("standard", "flex", "batch"):
                manager = AdvancedApiKeyManager(
                    list(secrets), paid_keys="all", projects=key_project,
                    project_limits={p: {"rpm": spec.quota} for p in set(key_project.values())},
                    rate_window_seconds=spec.window, key_settings={"paid": {"max_concurrent_leases": spec.slots}},
                    pool=f"bench-tiers-{uuid.uuid4().hex[:6]}")
                proc = GeminiParallelProcessor(
                    manager, MODEL, worker_cooldown_seconds=0, api_call_interval=0, max_workers=spec.slots,
                    service_tier=tier, flex_retry_backoff=0.2,
                    batch_options={"poll_interval": spec.poll, "enqueued_tokens": spec.enqueued_tokens})
                prompts = [{"prompt": f"tier bench prompt {i}: summarise the history of the number {i} in two "
                                      "sentences", "metadata": {"i": i}} for i in range(spec.n)]
                since = emu.control.clear_log()  # the log keeps counting: entries after `since` are this tier's
                shed_before = emu.control.stats()["shed"]
                t0 = time.perf_counter()
                results = proc.process_prompts(prompts, progress=False)
                wall = time.perf_counter() - t0
                log = [e for e in emulator_log(emu.control, since) if e.get("endpoint") == "generateContent"]
                s = proc.last_summary
                rows.append({
                    "tier": tier, "wall": wall,
                    "answered": sum(1 for _, text, err in results if err is None and text),
                    "in_order": all(meta.get("i") == i for i, (meta, _, _) in enumerate(results)),
                    "cost": s.cost_usd, "tokens": sum(sum(v.values()) for v in s.tokens.values()),
                    "r429": sum(1 for e in log if e.get("status") == 429 and not e.get("shed")),
                    "shed": emu.control.stats()["shed"] - shed_before,
                    "calls": len(log), "jobs": len(emu.control.batches()) if tier == "batch" else 0,
                    "refused_creates": sum(1 for e in emulator_log(emu.control, since)
                                           if e.get("endpoint") == "batches.create" and e.get("status") == 429),
                    "fallbacks": s.fallbacks,
                })
                print(f"{tier}: {rows[-1]}", file=sys.stderr)
    std = rows[0]["cost"] or 1.0
    table = md_table(
        ["tier", "prompts", "answered", "in order", "wall time (s)", "est. cost (USD)", "cost vs standard",
         "generate calls", "429s", "shed (retried)", "batch jobs"],
        [[r["tier"], spec.n, r["answered"], "yes" if r["in_order"] else "NO", fmt(r["wall"], 1),
          f"{r['cost']:.4f}", f"{r['cost'] / std:.2f}x", r["calls"], r["r429"], r["shed"], r["jobs"]]
         for r in rows])
    md = (f"### Cost tiers (bench/tiers.py)\n\n{machine_line(machine())}\n\n"
          f"{spec.n} prompts per tier, 2 projects x 2 keys, {spec.quota} requests per project per {spec.window:g} s "
          f"window (key manager told the same), {spec.slots} slots in one worker process; standard latency "
          f"{spec.latency:g} s, Flex +{spec.flex_latency:g} s and {spec.shed:.0%} of Flex requests shed "
          f"({spec.shed_status}); Batch jobs PENDING {spec.batch_pending:g} s then RUNNING {spec.batch_run:g} s, "
          f"polled every {spec.poll:g} s"
          + (f", at most {spec.enqueued_tokens} enqueued tokens per project (refused creates: "
             f"{rows[-1]['refused_creates']})" if spec.enqueued_tokens else "") + ". "
          f"Cost from the default price table (gemini-2.5-flash, tier multipliers flex/batch 0.5x).\n\n{table}\n")
    return md, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default=None, help="append the markdown section to this file (e.g. bench/RESULTS.md)")
    ap.add_argument("--shed-status", type=int, choices=(503, 429), default=503,
                    help="how the emulator answers a shed Flex request")
    ap.add_argument("--enqueued-tokens", type=int, default=None,
                    help="batch enqueued-token limit per project (the emulator's and batch_options')")
    args = ap.parse_args()
    md, _ = run(Spec(n=args.n, shed_status=args.shed_status, enqueued_tokens=args.enqueued_tokens))
    print(md)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + md)


if __name__ == "__main__":
    main()
