"""The words around the tables in RESULTS.md: method, findings computed from the numbers, and reasons.

Everything that states a number takes it from the run's data; the explanations are what was found while
building the benchmark (each says how it was checked).
"""

from __future__ import annotations

from typing import Any

from bench.common import fmt
from bench.report import quota_findings


def _rows(sections: dict[str, Any], part_key: str) -> dict[str, dict[str, Any]]:
    for part in sections.get("quota", {}).get("data", {}).get("parts", []):
        if part["key"] == part_key:
            return {r["system"]: r for r in part["rows"]}
    return {}


def summary(sections: dict[str, Any]) -> list[str]:
    out: list[str] = []
    quota = sections.get("quota", {})
    if quota.get("data"):
        out += quota_findings(quota["data"]["parts"])
    ov = sections.get("overhead", {}).get("data")
    if ov:
        s, b = ov["streaming"], ov["batch"]
        out.append(f"- **Overhead**: a streaming round trip through the fleet costs "
                   f"{fmt(1000 * (s['fleet_p50'] - s['direct_p50']), 1)} ms more than a direct SDK call at the "
                   f"median ({fmt(1000 * s['fleet_p50'], 1)} vs {fmt(1000 * s['direct_p50'], 1)} ms). A batch of "
                   f"{b['n']:,} prompts took {fmt(b['total_s'], 1)} s from submit to last result "
                   f"({fmt(b['rps'], 0)} req/s), of which {fmt(b['submit_s'], 1)} s was the client submitting.")
    sc = sections.get("scale", {}).get("data")
    if sc and sc.get("rows"):
        thr = [r for r in sc["rows"] if r["pool"] == "threads"]
        best = max(thr, key=lambda r: r["rps"])
        out.append(f"- **Scale**: with 200 ms calls the threads pool peaks at {fmt(best['rps'], 0)} req/s "
                   f"({best['slots']} slots), where the 2 cores are saturated "
                   f"({fmt(best['total_cpu_ms'], 1)} ms of CPU per request across all processes, "
                   f"{fmt(best['worker_cpu_ms'], 1)} ms of it in the workers).")
    mem = sections.get("memory", {}).get("data")
    if mem:
        t = mem["tts"]
        out.append(f"- **Memory**: a 10-minute TTS clip took {fmt(t['client']['wall'], 1)} s end to end; worker "
                   f"peak RSS {fmt(t['worker_peak_mb'], 0)} MB, client peak {fmt(t['client']['peak_kb'] / 1024, 0)} "
                   f"MB, Redis peak {fmt(t['redis_after']['peak'] / 1e6, 0)} MB; the WAV is "
                   f"{'correct' if t['wav'].get('ok') else 'WRONG'}.")
    return out


def intro(name: str) -> str:
    if name == "quota":
        return (
            "The emulator enforces each project's quota as an exact sliding window of accepted requests (its "
            "README), answers a 429 with the true `retryDelay`, and logs every request; all counts below come from "
            "its log (warm-up calls use another model, whose quota window is separate). The physical limit is the "
            "sum of the projects' quotas. Two measures of how much of it a system used:\n\n"
            "- **% of limit, steady**: the rate of accepted requests from the first answer to the first answer of "
            "the last window's worth of prompts, over the limit. A system that sends a window's worth at once every "
            "window scores 100%, and so does one that sends evenly at exactly the limit: it neither rewards the free "
            "first window of a cold start nor penalises a system that does not burst. It needs many windows to be "
            "meaningful, so it is shown only for runs of 5 windows or more.\n"
            "- **% of limit, whole run**: the fastest the quota allows W slots to answer all N prompts from a cold "
            "start ((N / limit - 1) windows, plus the last window's worth at W calls at a time), over the time the "
            "system took. It also counts the client's submission, the last burst and any stall.\n\n"
            "p50/p99 are times to result: every prompt is submitted at t0, so they are dominated by the queue.\n\n"
            "How each system is configured: gemini-tasks as its README says for a known quota "
            "(`AdvancedApiKeyManager(keys, paid_keys=\"all\", projects={key: project}, "
            "project_limits={project: {\"rpm\": q}}, rate_window_seconds=<window>, "
            "key_settings={\"paid\": {\"max_concurrent_leases\": W}})`, `GeminiParallelProcessor(..., "
            "worker_cooldown_seconds=0, api_call_interval=0, max_workers=W)`, real `celery worker` processes); "
            "plain Celery as `bench/peers/plain_celery.py` (round-robin keys, the task's `rate_limit` set to "
            "quota x K / workers because it is per worker instance, `autoretry_for` 429 with `retry_backoff`, the "
            "google-genai SDK); LiteLLM as `bench/peers/litellm_router.py` (one deployment per key, its `rpm` set "
            "to its share of the project's quota, `routing_strategy=\"usage-based-routing-v2\"`, counters in "
            "Redis through `redis_host`/`redis_port`, `num_retries=3`, W caller threads over the same number of "
            "processes; LiteLLM's `gemini/` provider takes `api_base` and builds "
            "`{api_base}/models/{model}:generateContent` with the `x-goog-api-key` header, which the emulator "
            "serves as it is, so LiteLLM is unpatched and talks to the same emulator)."
        )
    return ""


def notes(name: str, sec: dict[str, Any]) -> list[str]:
    if sec.get("failed"):
        return []
    if name == "quota":
        return _quota_notes(sec)
    return []


def _quota_notes(sec: dict[str, Any]) -> list[str]:
    out = ["#### Why the numbers are what they are", ""]
    parts = sec["data"]["parts"]
    gt_bits = []
    for part in parts:
        gt = next((r for r in part["rows"] if r["system"] == "gemini-tasks"), None)
        if gt:
            w = part["spec"]["window"]
            margin = max(0.1, 0.02 * w)
            gt_bits.append(f"{fmt(gt['util_pct'])}% at a {w:g} s window (ceiling {100 * w / (w + margin):.1f}%, "
                           f"{gt['r429']} 429s)")
    if gt_bits:
        out.append(
            "- **gemini-tasks** admits a project's next window's worth only a margin after the window frees: 2% of "
            "the window, at least 100 ms, for the time between the key manager's admission and the API counting "
            "the request (the emulator counts after its latency). Its ceiling is therefore window / (window + "
            "margin): 98.0% at any window of 5 s or more, 95.2% at 2 s, where the 100 ms floor is 5% of the "
            "window. Measured: " + "; ".join(gt_bits) + ". The remaining gap to the ceiling is the few ms a waiting "
            "slot takes to wake and be admitted. The ideal-wall column also pays for the time the client takes to "
            "submit (about 4 ms per prompt, section 2) before the first window's worth is out. The margin is what "
            "keeps it at zero 429s; `AdmitPolicy.window_margin` can lower it, but `GeminiParallelProcessor` does "
            "not expose it, so the README configuration runs with the default.")
    cel = [(p, r) for p in parts for r in p["rows"] if r["system"].startswith("plain Celery")]
    if cel:
        bits = "; ".join(f"{r['system']} {fmt(r['util_pct'])}% at a {p['spec']['window']:g} s window "
                         f"({r['r429']} 429s)" for p, r in cel)
        out.append(
            f"- **plain Celery** ({bits}): its `rate_limit` adds up to exactly the limit, yet it delivered about "
            "half of it. Celery's rate limit is a per-worker token bucket of capacity 1 (`kombu.utils.limits."
            "TokenBucket`) that the worker consults as rate-limited messages arrive and on timers; it starts at the "
            "configured rate and settles near half of it after a few dozen tasks. Checked separately with the same "
            "task and emulator: 2/s per worker gave 1.97 tasks/s over 40 tasks but 1.21/s over 100 (no latency, one "
            "worker); 20/s gave 9.4-10.3/s with 100 ms calls, with 8 or 32 threads, with or without `acks_late` "
            "and prefetch 1; without a rate limit the same worker ran ~55 tasks/s. Doubling `rate_limit` by hand "
            "(the x2 row) recovers part of it, but the bucket knows nothing of projects or of the API's window, so "
            "nothing stops it from overshooting when it does run at its configured rate, and a 429 is retried with "
            "`retry_backoff` (Celery rounds the backoff factor up to whole seconds).")
    real = next((p for p in parts if p["key"] == "real"), None)
    ll = next((r for r in real["rows"] if r["system"] == "LiteLLM Router"), None) if real else None
    if ll:
        errs = ll.get("extra", {}).get("caller_errors", {})
        samples = ll.get("extra", {}).get("caller_error_samples", {})
        out.append(
            f"- **LiteLLM Router** drew {ll['r429']} 429s ({fmt(ll['r429_pct'], 1)}% of its calls) and took "
            f"{fmt(ll['wall'])} s for what the quota allows in {fmt(ll['ideal_wall'])} s. Its `rpm` check counts "
            "requests per calendar minute (`{id}:rpm:{HH-MM}` keys in Redis, `router_strategy/"
            "lowest_tpm_rpm_v2.py`): a fixed window, while the quota here is a sliding one. At each minute boundary "
            "it sends the whole next minute's worth while the API still counts the previous burst, so those calls "
            "draw 429s; the failed calls still count against its minute, and after a 429 the deployment cools down "
            "for the Router's `cooldown_time` (5 s by default; the `retryDelay` in Gemini's JSON body is not read, "
            "BerriAI/litellm#25507), so the rest of that minute is mostly lost. Its callers saw "
            + (", ".join(f"{v:,} x `{k}`" for k, v in sorted(errs.items())) or "no errors") + ". "
            + (f"A sample of the most frequent: \"{_one_line(samples[max(errs, key=errs.get)])}\". "
               if errs and samples else "")
            + "Google's minute quotas may be calendar-aligned (an unverified forum answer says they reset at :00); "
            "against such a quota LiteLLM's counter would fit far better. The emulator models a sliding window, so "
            "this row is LiteLLM against a sliding-window quota.")
    out.append("")
    return out


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def caveats(sections: dict[str, Any], quick: bool) -> list[str]:
    out = [
        "- LiteLLM is compared only at a real 60 s minute: its rpm windows are calendar minutes and cannot be "
        "scaled down without patching it, so it is left out of the scaled-minute table.",
        "- The machine has 2 cores shared by every process of every system (and, while this ran, possibly by "
        "other work on the host); the real-minute comparison runs the three systems at the same time so that they "
        "see the same load.",
        "- The emulator is not Google: its quota is an exact sliding window with exact `retryDelay`s. Real "
        "per-minute quotas may be enforced differently (see LiteLLM above).",
        "- Tokens-per-minute and per-day quotas, media uploads and multi-host fleets are not exercised here.",
    ]
    if quick:
        out.insert(0, "- **Quick mode**: shorter runs, and the real-minute comparison (the only one with LiteLLM) "
                      "was skipped. Run without `--quick` for the full report.")
    return out
