"""A backlog and a soak: memory of workers and Redis stays flat, and nothing is left behind: no lease, no
repeated upload, no per-request key without an expiry.

CI runs a CI-sized version (``SOAK_BACKLOG`` tasks, ``SOAK_SECONDS`` of steady load). The full soak (10,000
queued tasks, then 10 minutes) is ``@pytest.mark.slow`` and runs only with ``GEMINI_TASKS_SOAK=1``.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest

from chaos_stack import HERE, KEY_IDS, KEY_SECRETS, Stack, pool_leases, queue_lengths, record_figures, rss_kib

RESULT_EXPIRES = 5  # soak_celeryconfig.result_expires
VISIBILITY = 10  # the soak workers' GEMINI_TASKS_VISIBILITY_TIMEOUT (the shortest accepted); done markers live 20 s
#: per-deployment keys, bounded in number: everything else is per request and must carry a TTL
STEADY_POOL_KEYS = ("ids", "held", "key", "projkeys", "proj", "limited", "ready", "waiting", "gate", "leases",
                    "kl", "seq", "stats", "calls", "clock_offset", "epoch")


def _family(name: str) -> str:
    if name.startswith("gt:{"):
        return "gt:" + name.split("}:", 1)[1].split(":")[0].split("|")[0]
    if name.startswith("celery-task"):
        return name.rsplit("-", 5)[0]
    if name.startswith("_kombu"):
        return "_kombu"
    return name


def _redis_audit(client) -> dict:
    """Keys counted by family, and the per-request keys that would never expire (leaks)."""
    families: dict[str, int] = {}
    no_ttl: list[str] = []
    done_ttl_max = 0
    result_max = 0
    for raw in client.scan_iter(count=1000):
        name = raw.decode()
        family = _family(name)
        families[family] = families.get(family, 0) + 1
        steady = family in ("_kombu", "batch", "interactive", "unacked", "unacked_index", "unacked_mutex") or (
            family.startswith("gt:") and family[3:] in STEADY_POOL_KEYS)
        ttl = client.ttl(name) if not steady or family == "gt:done" else 0
        if not steady and ttl == -1:  # -2: expired meanwhile
            no_ttl.append(name)
        if family == "gt:done":
            done_ttl_max = max(done_ttl_max, ttl)
        if family == "celery-task-meta":
            result_max = max(result_max, int(client.strlen(name)))
    return {"families": families, "no_ttl": no_ttl[:20], "done_ttl_max": done_ttl_max, "result_bytes_max": result_max}


def run_soak(backlog: int, seconds: float, batch: int = 100) -> dict:
    audio = HERE / ".soak-audio.bin"  # above the inline budget: sent through the Files API once per project
    audio.write_bytes(os.urandom(64) * (21 * 1024 * 1024 // 64))
    inline = os.urandom(256 * 1024)  # travels in the message; must not be stored again with the result
    env = {"GEMINI_TASKS_CELERY_CONFIG": "soak_celeryconfig", "GEMINI_TASKS_VISIBILITY_TIMEOUT": str(VISIBILITY),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    try:
        with Stack(**env) as stack:
            from gemini_tasks import GeminiParallelProcessor

            ctl = stack.control
            ctl.reset(latency_seconds=0.01,
                      keys={KEY_SECRETS[k]: {"label": k, "project": "proj-soak"} for k in KEY_IDS})
            # the group records this side saves outlive the backlog's submission and the workers' start-up
            stack.app.conf.result_expires = 120
            manager = stack.manager(projects={k: "proj-soak" for k in KEY_IDS},
                                    key_settings={"paid": {"max_concurrent_leases": 2}})
            proc = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0,
                                           api_call_interval=0, max_workers=16)
            client = stack.client()

            def prompts(tag: str, n: int) -> list[dict]:
                out = [{"prompt": f"{tag}-{i}", "metadata": {"i": i}} for i in range(n)]
                for i in range(0, n, 100):  # in every hundred: one uploaded file, one inline media part
                    out[i] = {"prompt": f"{tag}-audio <audio>", "audio_path": str(audio),
                              "audio_mime_type": "audio/wav", "metadata": {"i": i}}
                    out[i + 1] = {"prompt": f"{tag}-inline <audio>", "audio_bytes": inline,
                                  "audio_mime_type": "audio/wav", "metadata": {"i": i + 1}}
                return out

            # 1. the backlog: everything queued before any worker runs, then drained
            handle = proc.submit(prompts("backlog", backlog))
            queued = queue_lengths(client)["batch"]
            t0 = time.monotonic()
            workers = [stack.worker(concurrency=8), stack.worker(concurrency=8)]
            results = proc.collect(handle, timeout=max(120, backlog / 10))
            backlog_s = time.monotonic() - t0
            assert all(e is None for _, _, e in results), [e for _, _, e in results if e][:3]
            # 2. steady load: batch after batch; memory sampled once warm
            samples: list[tuple[float, list[int], int]] = []
            done = backlog
            t1 = time.monotonic()
            batch_times: list[float] = []
            while time.monotonic() - t1 < seconds:
                tb = time.monotonic()
                res = proc.process_prompts(prompts("soak", batch), timeout=120, progress=False)
                batch_times.append(time.monotonic() - tb)
                assert all(e is None for _, _, e in res), [e for _, _, e in res if e][:3]
                done += batch
                samples.append((time.monotonic() - t1, [rss_kib(w.pid) for w in workers],
                                int(client.info("memory")["used_memory"])))
            soak_s = time.monotonic() - t1
            # 3. nothing left behind
            leases = pool_leases(client, manager.pool_name)
            audit = _redis_audit(client)
            uploads = len(ctl.files())
            queues = queue_lengths(client)
            warm = next(x for x in samples if x[0] >= seconds / 2)  # after several expiry turnovers
            last = samples[-1]
            figures = {
                "backlog": backlog, "backlog_queued": queued, "backlog_seconds": round(backlog_s, 1),
                "soak_seconds": round(soak_s, 1), "requests": done, "lost": 0,
                "throughput_per_s": round((done - backlog) / soak_s, 1),
                "worker_rss_mib_warm": [round(k / 1024, 1) for k in warm[1]],
                "worker_rss_mib_end": [round(k / 1024, 1) for k in last[1]],
                "redis_mib_warm": round(warm[2] / 2**20, 2), "redis_mib_end": round(last[2] / 2**20, 2),
                "redis_mib_median": round(statistics.median(s[2] for s in samples) / 2**20, 2),
                "leases_left": leases, "uploads": uploads, "keys": audit["families"], "no_ttl": audit["no_ttl"],
                "batch_seconds_max": round(max(batch_times), 2), "done_ttl_max": audit["done_ttl_max"],
                "result_bytes_max": audit["result_bytes_max"],
                "queues": queues,
                "trend": [(round(t), [round(k / 1024) for k in rss], round(mem / 2**20, 1))
                          for t, rss, mem in samples[:: max(1, len(samples) // 10)]],
            }
            client.close()
            return figures
    finally:
        audio.unlink(missing_ok=True)


def _check(f: dict, *, rss_growth_mib: float, redis_growth_mib: float) -> None:
    assert f["backlog_queued"] == f["backlog"], f  # it really was a backlog
    assert f["leases_left"] == 0, f
    assert f["no_ttl"] == [], f"per-request keys without an expiry: {f['no_ttl']}"
    # done markers (a second copy of each result) follow result_expires, floored at twice the visibility timeout
    assert 0 < f["done_ttl_max"] <= max(RESULT_EXPIRES, 2 * VISIBILITY), f
    assert f["result_bytes_max"] < 64 * 1024, f"a stored result holds the request's inline media: {f}"
    assert f["uploads"] <= 4, f"the same file was uploaded {f['uploads']} times"  # once, plus first-use races
    assert f["queues"] == {"interactive": 0, "batch": 0, "unacked": 0}, f
    for warm, end in zip(f["worker_rss_mib_warm"], f["worker_rss_mib_end"]):
        assert end - warm <= rss_growth_mib, f
    assert f["redis_mib_end"] - f["redis_mib_warm"] <= redis_growth_mib, f
    assert f["batch_seconds_max"] < 2 * VISIBILITY + 10, f  # no request stalled (a lost message is back in ~VT)


def test_soak_ci_sized():
    f = run_soak(backlog=int(os.environ.get("SOAK_BACKLOG", 1000)), seconds=float(os.environ.get("SOAK_SECONDS", 20)))
    record_figures("soak_ci", **f)
    _check(f, rss_growth_mib=20, redis_growth_mib=8)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GEMINI_TASKS_SOAK") != "1", reason="full soak: set GEMINI_TASKS_SOAK=1")
@pytest.mark.timeout(1800)
def test_soak_full():
    f = run_soak(backlog=10_000, seconds=600)
    record_figures("soak_full", **f)
    _check(f, rss_growth_mib=20, redis_growth_mib=8)
