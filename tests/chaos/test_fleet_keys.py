"""Key leases and key announcements across real worker processes (issue 13 items 1 and 4, issue 12 item 7).

* A SIGKILLed worker's leases come back within one lease TTL, while a call longer than the TTL keeps its lease.
* An application whose environment holds no key secret works on a fresh pool against workers that announced
  their keys at start, with key names and with "all".
* After the key manager's Redis lost its data, the same long-lived application keeps working: workers and
  the manager register the pool again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from chaos_stack import KEY_IDS, Stack, generate_calls, pool_leases, prompt_of, wait_for

LEASE_TTL = 4.0


@pytest.fixture
def stack():
    """A stack of this test's own (redis-server, emulator, workers), not the module's: the first test SIGKILLs a
    worker in the middle of two calls, whose messages a later test's worker restored from the shared Redis after
    the visibility timeout and called the shared emulator with (10 calls counted where 6 were made). The stack's
    stop kills every worker it started, also when the test failed."""
    with Stack() as s:
        yield s

APP = textwrap.dedent("""
    import json, sys
    from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor
    names, explicit, rounds = json.loads(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
    out = {}
    for form in ("names", "all"):
        keys = names if form == "names" else "all"
        try:
            m = AdvancedApiKeyManager(keys, paid_keys="all" if explicit else None)
        except Exception as exc:
            out[form] = f"{type(exc).__name__}: {exc}"
            continue
        proc = GeminiParallelProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)
        errors = []
        for r in range(rounds):
            if r:
                print("READY", flush=True)
                sys.stdin.readline()  # the test makes Redis lose the key pool here
            res = proc.process_prompts([{"prompt": f"{form}-{r}-{i}"} for i in range(3)], timeout=60, progress=False)
            errors += [e for _, _, e in res if e]
        out[form] = errors
        out[form + "_paid"] = sorted(m.paid)
    print("RESULT " + json.dumps(out), flush=True)
""")


def _app_env(stack, pool: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_API_KEY", "CELERY_"))}
    env.update({"REDIS_URL": stack.url, "GEMINI_TASKS_POOL": pool, "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost", "GEMINI_TASKS_KEYS_REDIS_URL": ""})
    env.update(extra)
    assert not any(k.startswith("GEMINI_API_KEY") for k in env)
    return env


def test_dead_workers_leases_return_within_one_ttl_and_long_calls_keep_theirs(stack):
    from gemini_tasks import GeminiParallelProcessor

    ctl = stack.control
    ctl.reset(latency_seconds=30)  # every call outlives several lease TTLs
    victim = stack.worker(concurrency=2, GEMINI_TASKS_LEASE_TTL=str(LEASE_TTL), GEMINI_TASKS_REQUEST_TIMEOUT="60",
                          GEMINI_TASKS_VISIBILITY_TIMEOUT="120")
    keys = KEY_IDS[:2]
    manager = stack.manager(keys)
    proc = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)
    handle = proc.submit([{"prompt": f"long-{i}"} for i in range(2)])
    client = stack.client()
    wait_for(lambda: pool_leases(client, manager.pool_name) == 2, 30, interval=0.1, what="both keys leased")
    time.sleep(3 * LEASE_TTL)  # the calls run on: renewed leases keep both keys theirs
    status = manager.get_keys_status_summary()
    assert all(f":{victim.pid}:" in (status[k]["assigned_worker"] or "") for k in keys), status
    assert pool_leases(client, manager.pool_name) == 2
    victim.kill()
    killed = time.monotonic()
    freed_s = wait_for(lambda: manager.pool.status() and pool_leases(client, manager.pool_name) == 0,
                       LEASE_TTL + 10, interval=0.1, what="the dead worker's leases ending")
    print(f"\nFIGURES leases of a SIGKILLed worker freed after {freed_s:.1f}s (lease TTL {LEASE_TTL}s)")
    assert time.monotonic() - killed <= LEASE_TTL + 3
    ctl.reset()
    del handle
    client.close()


def test_secretless_application_works_on_a_fresh_pool_with_names_and_all(stack):
    pool = "s" + uuid.uuid4().hex[:10]
    stack.worker(concurrency=4, GEMINI_TASKS_POOL=pool)  # holds the keys; announces them at start
    stack.control.reset()
    r = subprocess.run([sys.executable, "-c", APP, json.dumps(KEY_IDS[:3]), "0", "1"], env=_app_env(stack, pool),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.split("RESULT ", 1)[1])
    assert out["names"] == [] and out["all"] == [], out
    # every answered call of this test's own emulator: the stack is this test's, nothing else is counted
    calls = [e for e in generate_calls(stack.control.log()) if e.get("status") == 200]
    # 3 prompts per form, each answered once by the worker that holds the keys
    assert len(calls) == 6, sorted(prompt_of(e) for e in calls)


def test_long_lived_application_recovers_after_the_key_redis_lost_its_data(stack):
    import redis

    from gemini_tasks.keys.pool import KeyPool
    from gemini_tasks.testing.local_redis import RedisServer
    from gemini_tasks.worker.worker_keys import WATCH_INTERVAL

    pool = "r" + uuid.uuid4().hex[:10]
    with RedisServer() as keys_redis:  # key state on its own Redis, without persistence
        stack.worker(concurrency=4, GEMINI_TASKS_POOL=pool, GEMINI_TASKS_KEYS_REDIS_URL=keys_redis.url)
        stack.control.reset()
        app = subprocess.Popen([sys.executable, "-c", APP, json.dumps(KEY_IDS[:3]), "1", "2"],
                               env=_app_env(stack, pool, GEMINI_TASKS_KEYS_REDIS_URL=keys_redis.url),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            keys_client = redis.Redis.from_url(keys_redis.url)
            held = KeyPool(keys_client, pool)

            def announced_again() -> bool:
                try:
                    return set(KEY_IDS) <= set(held.held_ids())  # the worker holds every chaos key
                except redis.ConnectionError:  # our own connection from before the restart
                    return False

            for _ in ("names", "all"):
                assert app.stdout.readline().strip() == "READY", app.stderr.read()[-3000:]
                keys_redis.restart()  # SIGKILL and start empty: every key, lease and setting is gone
                # the worker's pool watcher announces its keys again within one check interval; the "all"
                # manager, made right after the names rounds, finds its keys only among those a worker holds
                wait_for(announced_again, WATCH_INTERVAL + 5, interval=0.1, what="the worker announcing its keys again")
                app.stdin.write("go\n")
                app.stdin.flush()
            stdout, stderr = app.communicate(timeout=120)
        finally:
            if app.poll() is None:
                app.kill()
            keys_client.close()
        assert app.returncode == 0, stderr[-3000:]
        out = json.loads(stdout.split("RESULT ", 1)[1])
        assert out["names"] == [] and out["all"] == [], out
        assert out["names_paid"] == KEY_IDS[:3]  # the manager's explicit settings came back with the pool
