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
        lat = sc["latency"]
        first, last = thr[0], thr[-1]
        out.append(f"- **Scale**: with {lat * 1000:.0f} ms calls each threads-pool slot delivers "
                   f"{fmt(first['rps_per_slot'], 2)} req/s at {first['slots']} slots (ideal {1 / lat:g}) and "
                   f"{fmt(last['rps_per_slot'], 2)} at {last['slots']}; best {fmt(best['rps'], 0)} req/s "
                   f"({best['slots']} slots). Each request costs {fmt(best['total_cpu_ms'], 1)} ms of CPU across all "
                   f"processes ({fmt(best['worker_cpu_ms'], 1)} ms in the workers), so this 2-core machine cannot do "
                   f"much more than 2 / {best['total_cpu_ms'] / 1000:.4f} = {2000 / best['total_cpu_ms']:.0f} req/s "
                   "whatever the pool.")
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


def notes(name: str, sec: dict[str, Any], sections: dict[str, Any] | None = None) -> list[str]:
    if sec.get("failed"):
        return []
    if name == "quota":
        return _quota_notes(sec)
    if name == "overhead":
        b = sec["data"]["batch"]
        share = 100 * b["submit_s"] / b["total_s"]
        return [f"{share:.0f}% of the batch's time is the client submitting ({1000 * b['submit_s'] / b['n']:.2f} ms "
                "per prompt, while the workers already run): the group goes out 500 messages per pipelined round trip, "
                "with one `task.multi` task-sent event per chunk (`gemini_tasks/client/publish.py`). The rest is the "
                "workers' CPU per request (above), on the same 2 cores as the client, Redis and the emulator. A "
                "worker's request costs: the broker delivery and ack (kombu's unacked bookkeeping), its task events "
                "(batched every 0.1 s), the done-marker read, the admission (one script call), the SDK call, then "
                "the report, the call metrics and the done marker in one round trip, and the result write. "
                "`bench/profile_cpu.py` breaks a worker's CPU down by these steps (py-spy). A streaming call pays "
                "one enqueue, a worker's pick-up, that same path and the client's result read."]
    if name == "scale":
        rows = sec["data"]["rows"]
        top = max((r for r in rows if r["pool"] == "threads"), key=lambda r: r["rps"])
        ov = ((sections or {}).get("overhead") or {}).get("data") or {}
        sdk = ov.get("batch", {}).get("direct_sdk_cpu_ms_per_request")
        sdk_text = f"the SDK call itself {sdk:.1f} ms, section 2" if sdk else "the SDK call itself is part of it"
        lo, hi = fmt(min(r["worker_cpu_ms"] for r in rows), 0), fmt(max(r["worker_cpu_ms"] for r in rows), 0)
        worker_ms = lo if lo == hi else f"{lo}-{hi}"
        rest_ms = fmt(top["total_cpu_ms"] - top["worker_cpu_ms"], 1)
        return [f"Where slots are few, each delivers close to its {1 / sec['data']['latency']:g} calls per second; with more, the fleet levels "
                f"off ({fmt(top['rps'], 0)} req/s at best, {fmt(top['cores_busy'], 2)} of 2 cores busy): every "
                "request costs about "
                f"{worker_ms} ms of CPU in a worker ({sdk_text}; the rest "
                "is Celery's message, events and result handling and the key manager's admission and report with "
                f"the metrics write) and {rest_ms} ms more in Redis, the emulator and the client, all on the same 2 cores; "
                "each worker process also runs its threads under one GIL. More slots on this machine add waiting, "
                "not throughput: more hosts do. Prefork matches threads per slot at small counts and costs a process "
                "per slot (section 5); `bench/pools.py` compares the pools in depth (including gevent)."]
    return []


def _quota_notes(sec: dict[str, Any]) -> list[str]:
    out = ["#### Why the numbers are what they are", ""]
    parts = sec["data"]["parts"]
    gt_bits = []
    ceilings = []
    for part in parts:
        gt = next((r for r in part["rows"] if r["system"] == "gemini-tasks"), None)
        if gt:
            w = part["spec"]["window"]
            margin = max(0.1, 0.02 * w)
            ceilings.append(f"{100 * w / (w + margin):.1f}% at the {w:g} s window"
                            + (" (the 100 ms floor)" if margin > 0.02 * w else ""))
            if part["spec"]["rounds"] >= 5:
                gt_bits.append(f"{fmt(gt['util_pct'])}% steady at a {w:g} s window (ceiling "
                               f"{100 * w / (w + margin):.1f}%, {gt['r429']} 429s)")
            else:
                gt_bits.append(f"{fmt(gt['wall_util_pct'])}% over the whole run at a {w:g} s window (steady ceiling "
                               f"{100 * w / (w + margin):.1f}%, {gt['r429']} 429s)")
    if gt_bits:
        out.append(
            "- **gemini-tasks** admits a project's next window's worth only a margin after the window frees: 2% of "
            "the window, at least 100 ms, for the time between the key manager's admission and the API counting "
            "the request (the emulator counts after its latency). Its ceiling is therefore window / (window + "
            "margin): " + ", ".join(dict.fromkeys(ceilings)) + f" of this run (from 5 s up the margin is 2%: {100 / 1.02:.1f}%). Measured: " + "; ".join(gt_bits) + ". The rest of the gap is the few ms a waiting slot takes to "
            "wake and be admitted; the whole-run measure also pays for the client's submission (section 2) and for "
            "cold-start bursts that 16 slots need a second or more to send. The margin is what keeps it at zero "
            "429s, and it is the one thing to tune for the last 2%: `AdmitPolicy.window_margin` sets it, but "
            "`GeminiParallelProcessor` does not expose it, and the README says to keep the default, so the runs "
            "above use the default.")
    cel = [(p, r) for p in parts for r in p["rows"] if r["system"].startswith("plain Celery")]
    if cel:
        bits = "; ".join(f"{r['system']} {fmt(r['util_pct'])}% at a {p['spec']['window']:g} s window "
                         f"({r['r429']} 429s)" for p, r in cel)
        base = [(p, r) for p, r in cel if r["system"] == "plain Celery" and p["spec"]["rounds"] >= 5]
        settled = ""
        if base:
            p0, r0 = base[0]
            settled = (f" and settling near {r0['steady_rps'] / p0['spec']['procs']:.0f} tasks/s per worker "
                       f"(configured {p0['spec']['quota'] * p0['spec']['projects'] / p0['spec']['window'] / p0['spec']['procs']:g}/s, "
                       f"{p0['spec']['latency'] * 1000:.0f} ms calls) within seconds")
        tuned = [r for _, r in cel if r["system"].endswith("x2")]
        tuned_text = (f"; doubling `rate_limit` by hand (the x2 row, {fmt(tuned[0]['util_pct'])}%) does not lift the "
                      "settled rate" if tuned else "")
        out.append(
            f"- **plain Celery** ({bits}; steady rate, or for the real minute the rate of the answers it gave before "
            "the run was stopped): its `rate_limit` adds up to exactly the limit, yet it delivered about half of it "
            "or less. Celery's rate limit is a token bucket of capacity 1 per worker (`kombu.utils.limits."
            f"TokenBucket`); the plot shows it starting at its configured rate{settled}{tuned_text}. "
            "Checked separately (outside this run, so without figures here) with the same task and emulator: "
            "the shortfall appears with one worker and no latency, grows with the number of queued tasks, and "
            "does not depend on the threads count, `acks_late` or prefetch; without a rate limit the same worker "
            "runs several times faster. A likely cause, from reading the code (not proven here): a worker whose pool has no "
            "event loop (threads, prefork) releases a rate-limited task from a timer entry "
            "(`Consumer._schedule_bucket_request` via `timer.call_after`), and Celery's timer thread "
            "(`celery.utils.timer2.Timer.run`) waits for its next entry with `time.sleep(delay)`, which an entry "
            "added meanwhile for an earlier time does not interrupt; tasks then wait for whatever the timer was "
            "sleeping towards. The bucket also knows nothing of projects or of the API's window, and a 429 is "
            "retried with `retry_backoff` (whole seconds at least).")
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
