"""Several real worker processes share one quota: with per-project limits matching the emulator's quota,
no call draws a 429, and the fleet still runs close to the quota."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from gemini_tasks.testing.local_fleet import WorkerProcess
from gemini_tasks.testing.local_redis import RedisServer

SECRETS = {f"GEMINI_API_KEY_{i}": f"quota-secret-{i:02d}-abcdefghijkl" for i in range(1, 4)}
PROJECTS = {"GEMINI_API_KEY_1": "proj-a", "GEMINI_API_KEY_2": "proj-a", "GEMINI_API_KEY_3": "proj-b"}
WINDOW = 2.0      # the emulator's "minute"
RPM = 8           # per project and window
N = 48            # prompts: 3 windows' worth of the 2 projects' quota

CLIENT = textwrap.dedent("""
    import json, sys, time
    from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor
    projects, rpm, window, n = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    keys = AdvancedApiKeyManager("all", paid_keys="all", projects=projects,
                                 project_limits={p: {"rpm": rpm} for p in set(projects.values())},
                                 rate_window_seconds=window, pool="quota-fleet",
                                 key_settings={"paid": {"max_concurrent_leases": 8}})
    proc = GeminiParallelProcessor(keys, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                   max_workers=16)
    t0 = time.monotonic()
    results = proc.process_prompts([{"prompt": f"quota {i}"} for i in range(n)], progress=False)
    print(json.dumps({"wall": time.monotonic() - t0, "errors": [e for _, _, e in results if e],
                      "ok": sum(1 for _, r, e in results if e is None and r)}))
""")


@pytest.fixture
def private_redis():
    with RedisServer() as server:
        yield server


def test_fleet_at_quota_draws_no_429(emu, emulator, private_redis):
    emu.configure(keys={s: {"label": k, "project": PROJECTS[k]} for k, s in SECRETS.items()},
                  quotas={p: {"*": {"rpm": RPM}} for p in set(PROJECTS.values())},
                  minute_seconds=WINDOW, latency_seconds=0.05)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_API_KEY", "CELERY_"))}
    env.update(SECRETS, REDIS_URL=private_redis.url, GOOGLE_GEMINI_BASE_URL=emulator.url,
               GEMINI_TASKS_REQUEST_TIMEOUT="10")
    with WorkerProcess(env, concurrency=8, queues="batch"), WorkerProcess(env, concurrency=8, queues="batch"):
        r = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(PROJECTS), str(RPM), str(WINDOW), str(N)],
                           env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["errors"] == [] and out["ok"] == N
    stats = emu.stats()
    statuses = {int(k): v for k, v in stats["by_status"].items()}
    assert statuses.get(429, 0) == 0, f"the fleet drew 429s: {stats}"
    assert statuses.get(200, 0) == N
    # the physical limit: 2 projects x RPM per WINDOW; N prompts need at least (N / (2*RPM) - 1) full windows
    floor = (N / (2 * RPM) - 1) * WINDOW
    assert out["wall"] >= floor * 0.98, "faster than the quota allows: the limits were not enforced"
    assert out["wall"] <= floor + 3 * WINDOW, f"too slow for the quota: {out['wall']:.1f}s vs floor {floor:.1f}s"


def test_input_token_quota_is_paced_without_429(worker, emu, manager_factory, fleet_env):
    """Per-project input-tokens-per-minute limits: estimated before each call, corrected after it."""
    from gemini_tasks import GeminiParallelProcessor

    secrets = {k: v for k, v in fleet_env.items() if k.startswith("GEMINI_API_KEY_")}
    projects = {"GEMINI_API_KEY_1": "tok-a", "GEMINI_API_KEY_2": "tok-a", "GEMINI_API_KEY_3": "tok-b",
                "GEMINI_API_KEY_4": "tok-b"}
    window, tpm = 2.0, 600
    emu.configure(keys={s: {"label": k, "project": projects[k]} for k, s in secrets.items()},
                  quotas={p: {"*": {"tpm": tpm}} for p in set(projects.values())}, minute_seconds=window)
    m = manager_factory(4, paid_keys="all", projects=projects, rate_window_seconds=window,
                        project_limits={p: {"tpm": tpm} for p in set(projects.values())},
                        key_settings={"paid": {"max_concurrent_leases": 8}})
    proc = GeminiParallelProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                   max_workers=8)
    n = 24
    prompts = [{"prompt": f"T{i:02d} " + "x" * 796} for i in range(n)]  # 800 characters: 200 tokens each
    import time as _t

    t0 = _t.monotonic()
    results = proc.process_prompts(prompts, progress=False)
    wall = _t.monotonic() - t0
    assert all(e is None for _, _, e in results), [e for _, _, e in results if e][:3]
    stats = emu.stats()
    assert {int(k): v for k, v in stats["by_status"].items()}.get(429, 0) == 0, stats["by_quota"]
    # 2 projects x 3 requests (600 tokens) per window: 24 requests need at least 3 full windows
    floor = (n / 6 - 1) * window
    assert floor * 0.98 <= wall <= floor + 4 * window, f"{wall:.1f}s vs floor {floor:.1f}s"
