"""Section 5: memory. Worker RSS idle and under load; a 10-minute TTS clip end to end.

* TTS (run first, on a fresh Redis, so Redis's ``used_memory_peak`` is this clip's): the emulator answers every
  speech request with 600 s of audio (``tts_seconds: 600``: 28.8 MB of 16-bit 24 kHz PCM, ~38 MB of base64 JSON
  on the wire). A fresh worker process (threads, 4 slots) makes the call and stores the audio as a Redis blob; a
  separate client process (``GeminiTTSProcessor.generate_speech(..., output_file=...)``) fetches it and writes the
  WAV. Peak RSS is each process's own ``VmHWM``/``ru_maxrss``; the WAV is checked with the ``wave`` module.
* Worker memory: one worker process (threads pool, 16 slots; and prefork with 4 children, the whole process
  tree) idle after start, after a warm-up batch, at its peak while draining 2,000 prompts (sampled every 50 ms),
  and idle again afterwards. Proportional set size (PSS), so pages a prefork parent shares with its children
  are counted once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import wave
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import MODEL, ROOT, Section, fmt, gt_stack, md_table, status_kb, tree, tree_pss_mb  # noqa: E402

TTS_SECONDS = 600
RATE = 24000

CLIENT = r"""
import json, os, resource, sys, time
t_import = time.perf_counter()
from gemini_tasks import AdvancedApiKeyManager, GeminiTTSProcessor
keys, pool, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
manager = AdvancedApiKeyManager(keys, pool=pool)  # key names only: the pool keeps the fleet's settings
tts = GeminiTTSProcessor(manager, api_call_interval=0, timeout=600)
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
pcm = tts.generate_speech("A long reading for the benchmark. " * 20, voice="Kore", output_file=out)
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "ok": pcm is not None, "pcm_bytes": len(pcm or b""), "error": tts.last_error,
                  "base_kb": base_kb, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def redis_mem(st: Any) -> dict[str, int]:
    import redis

    info = redis.Redis.from_url(st.redis.url).info("memory")
    return {"used": int(info["used_memory"]), "peak": int(info["used_memory_peak"]),
            "rss": int(info["used_memory_rss"])}


def check_wav(path: str) -> dict[str, Any]:
    with wave.open(path, "rb") as w:
        ch, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
    size = os.path.getsize(path)
    ok = ch == 1 and width == 2 and rate == RATE and frames == TTS_SECONDS * RATE and size == 44 + frames * 2
    return {"channels": ch, "sample_width": width, "rate": rate, "frames": frames, "seconds": frames / rate,
            "file_bytes": size, "ok": ok}


def tts(st: Any) -> dict[str, Any]:
    st.emulator.control.configure(tts_seconds=TTS_SECONDS, latency_seconds=0.0)
    before = redis_mem(st)
    with st.fleet(procs=1, concurrency=4, queues="interactive") as fleet:
        worker = fleet.worker_pids()[0]
        idle_mb = status_kb(worker, "VmRSS") / 1024
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "clip.wav")
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(list(fleet.secrets)),
                                fleet.manager.pool_name, out], env=fleet.env, cwd=str(ROOT),
                               capture_output=True, text=True, timeout=900)
            end_to_end = time.perf_counter() - t0
            if r.returncode != 0:
                raise RuntimeError(f"TTS client failed: {r.stderr[-2000:]}")
            client = json.loads(r.stdout.strip().splitlines()[-1])
            wav = check_wav(out) if client["ok"] else {"ok": False}
        worker_peak_mb = status_kb(worker, "VmHWM") / 1024
        worker_after_mb = status_kb(worker, "VmRSS") / 1024
    after = redis_mem(st)
    st.emulator.control.configure(tts_seconds=None)
    return {"client": client, "wav": wav, "process_wall": end_to_end, "worker_idle_mb": idle_mb,
            "worker_peak_mb": worker_peak_mb, "worker_after_mb": worker_after_mb,
            "redis_before": before, "redis_after": after,
            "pcm_mb": TTS_SECONDS * RATE * 2 / 1e6}


def worker_rss(st: Any, pool: str, concurrency: int, n: int) -> dict[str, Any]:
    from gemini_tasks import GeminiParallelProcessor

    st.emulator.control.configure(latency_seconds=0.05)
    with st.fleet(procs=1, concurrency=concurrency, queues="batch", pool=pool) as fleet:
        pid = fleet.worker_pids()[0]
        time.sleep(1.0)
        started = tree_pss_mb(pid)
        proc = GeminiParallelProcessor(fleet.manager, MODEL, worker_cooldown_seconds=0, api_call_interval=0,
                                       max_workers=concurrency)
        proc.process_prompts([{"prompt": f"warm {i}"} for i in range(4 * concurrency)], progress=False)
        warm = tree_pss_mb(pid)
        peak = [warm]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], tree_pss_mb(pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        results = proc.process_prompts([{"prompt": f"load {i} " + "x" * 200} for i in range(n)], progress=False)
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        time.sleep(1.0)
        after = tree_pss_mb(pid)
        procs = len(tree(pid))
    return {"pool": pool, "concurrency": concurrency, "processes": procs, "started_mb": started, "warm_mb": warm,
            "load_peak_mb": peak[0], "after_mb": after, "n": n, "wall": wall,
            "errors": sum(1 for _, _, e in results if e)}


def main(quick: bool = False) -> Section:
    t_start = time.time()
    n = 300 if quick else 2000
    with gt_stack({"latency_seconds": 0.0}, n_keys=2) as st:
        t = tts(st)
        rows = [worker_rss(st, "threads", 16, n)] + ([] if quick else [worker_rss(st, "prefork", 4, n // 2)])
    c, w = t["client"], t["wav"]
    tts_table = md_table(["10-minute TTS clip (600 s, 24 kHz mono 16-bit)", "value"], [
        ["wall time, generate_speech call (enqueue -> WAV written)", f"{fmt(c['wall'], 2)} s"],
        ["wall time, client process incl. imports", f"{fmt(t['process_wall'], 2)} s"],
        ["worker RSS idle / peak / after", f"{fmt(t['worker_idle_mb'])} / {fmt(t['worker_peak_mb'])} / "
                                           f"{fmt(t['worker_after_mb'])} MB"],
        ["client RSS after imports / peak", f"{fmt(c['base_kb'] / 1024)} / {fmt(c['peak_kb'] / 1024)} MB"],
        ["Redis used_memory before / peak / after", f"{fmt(t['redis_before']['used'] / 1e6)} / "
                                                    f"{fmt(t['redis_after']['peak'] / 1e6)} / "
                                                    f"{fmt(t['redis_after']['used'] / 1e6)} MB"],
        ["PCM size", f"{fmt(t['pcm_mb'])} MB"],
        ["WAV", (f"{w['channels']} ch, {w['sample_width'] * 8}-bit, {w['rate']} Hz, {w['frames']:,} frames = "
                 f"{w['seconds']:.1f} s, {w['file_bytes']:,} bytes: " + ("correct" if w["ok"] else "WRONG"))
         if "frames" in w else f"not written: {c.get('error')}"],
    ], align="ll")
    rss_table = md_table(["worker", "processes", "PSS after start MB", "after warm-up MB", "peak under load MB",
                          "idle after load MB", "load"], [
        [f"{r['pool']} x{r['concurrency']}", r["processes"], fmt(r["started_mb"]), fmt(r["warm_mb"]),
         fmt(r["load_peak_mb"]), fmt(r["after_mb"]),
         f"{r['n']:,} prompts in {r['wall']:.1f} s, {r['errors']} errors"] for r in rows],
        align="lrrrrrl")
    md = tts_table + "\n\n" + rss_table
    return Section("memory", md, {"tts": t, "workers": rows}, time.time() - t_start)


if __name__ == "__main__":
    from bench.common import section_cli

    section_cli(main)
