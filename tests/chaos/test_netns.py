"""Several hosts in Linux network namespaces (issue 13, item 5): Redis on one host, workers on two others, the
client and the Gemini emulator (standing in for Google) in the root namespace. A worker host is cut off
mid-batch and healed; ``spacing_scope="host"`` spaces calls per host across distinct hosts.

Skipped, with the reason, only where namespaces cannot be made (not root, no iproute2)."""

from __future__ import annotations

import collections
import os
import time

import pytest
from chaos_stack import (
    KEY_IDS,
    KEY_SECRETS,
    celery_app_on,
    generate_calls,
    prompt_of,
    record_figures,
    wait_for,
)

from gemini_tasks.testing.netns import NetLab, why_unavailable

HEAVY = os.environ.get("GEMINI_TASKS_HEAVY") == "1"


@pytest.fixture(scope="module")
def lab():
    reason = why_unavailable()
    if reason:
        pytest.skip(f"multi-host tests need Linux network namespaces: {reason}")
    from gemini_tasks.emulator.runner import EmulatorProcess

    with NetLab() as net:
        redis_host = net.host("redis")
        net.redis_server = redis_host.redis()  # type: ignore[attr-defined]
        net.workers_hosts = [net.host("w1"), net.host("w2")]  # type: ignore[attr-defined]
        with EmulatorProcess(host=net.root_addr) as emu:
            net.emulator = emu  # type: ignore[attr-defined]
            mp = pytest.MonkeyPatch()
            for name, secret in KEY_SECRETS.items():
                mp.setenv(name, secret)
            try:
                with celery_app_on(net.redis_server.url):  # type: ignore[attr-defined]
                    yield net
            finally:
                mp.undo()


def _env(net, **extra: str) -> dict[str, str]:
    env = {name: "" for name in os.environ if name.startswith("GEMINI_API_KEY")}
    env.update(KEY_SECRETS)
    env.update({"REDIS_URL": net.redis_server.url, "CELERY_BROKER_URL": "", "CELERY_RESULT_BACKEND": "",
                "GEMINI_TASKS_KEYS_REDIS_URL": "", "GOOGLE_GEMINI_BASE_URL": net.emulator.url,
                "GEMINI_TASKS_REQUEST_TIMEOUT": "10", "GEMINI_TASKS_VISIBILITY_TIMEOUT": "10",
                "NO_PROXY": "*", "no_proxy": "*", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _manager(net, **kw):
    from gemini_tasks import AdvancedApiKeyManager

    kw.setdefault("paid_keys", "all")
    return AdvancedApiKeyManager(KEY_IDS, redis_url=net.redis_server.url, pool="n" + str(time.time_ns()), **kw)


def _start_workers(net, concurrency: int = 4):
    workers = [h.worker(_env(net), concurrency=concurrency, loglevel="INFO") for h in net.workers_hosts]
    for w in workers:
        w.start(timeout=60)
    return workers


def test_partition_a_worker_host_mid_batch_then_heal(lab):
    from gemini_tasks import GeminiParallelProcessor

    ctl = lab.emulator.control
    ctl.reset(latency_seconds=1.5)
    cut_host = lab.workers_hosts[0]
    workers = _start_workers(lab)
    try:
        manager = _manager(lab)
        proc = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                       max_workers=8)
        n = 32
        prompts = [{"prompt": f"part-{i:03d}", "metadata": {"i": i}} for i in range(n)]
        handle = proc.submit(prompts)
        on_cut = lambda: [k for k, s in manager.get_keys_status_summary().items()
                          if cut_host.hostname in (s["assigned_worker"] or "")]
        wait_for(lambda: len(on_cut()) >= 2, 30, interval=0.05, what="the host to cut is mid-call")
        cut_host.partition()
        cut_at = time.monotonic()
        results = proc.collect(handle, timeout=120)
        recovered_s = time.monotonic() - cut_at
        assert [e for _, _, e in results] == [None] * n
        # heal after its calls have timed out on the far side; its late reports arrive now
        time.sleep(max(0.0, 20 - (time.monotonic() - cut_at)))
        cut_host.heal()
        time.sleep(8)
        log = generate_calls(ctl.log())
        calls = collections.Counter(prompt_of(e) for e in log if prompt_of(e) and e.get("status") == 200)
        assert set(calls) == {p["prompt"] for p in prompts}
        duplicates = sum(c - 1 for c in calls.values())
        assert duplicates <= workers[0].concurrency, calls
        # late reports did not corrupt key state: no 429 counted, no key quarantined, lease counts agree
        status = manager.get_keys_status_summary()
        assert all(s["status"] in ("AVAILABLE", "COOLDOWN") for s in status.values()), status
        assert all(s["exhausted_count"] == 0 and s["active_leases"] >= 0 for s in status.values()), status
        client = manager.pool.client
        assert int(client.zcard(f"gt:{{{manager.pool_name}}}:leases")) == sum(s["active_leases"]
                                                                              for s in status.values())
        # and the healed host serves again: a new batch is answered, some of it by the healed host
        ctl.reset()
        again = proc.process_prompts([{"prompt": f"after-{i}"} for i in range(16)], timeout=90, progress=False)
        assert [e for _, _, e in again] == [None] * 16
        hosts = collections.Counter(e.get("client_addr") for e in generate_calls(ctl.log()))
        record_figures("netns_partition", requests=n, lost=0, duplicates=duplicates,
                       recovery_seconds=round(recovered_s, 1), visibility_timeout=10,
                       after_heal_by_host=dict(hosts))
    finally:
        for w in workers:
            w.kill()


def test_spacing_per_host_across_distinct_hosts(lab):
    """``spacing_scope="host"``: each host keeps ``api_call_interval`` between its own calls; two hosts call
    side by side."""
    from gemini_tasks import GeminiParallelProcessor

    ctl = lab.emulator.control
    ctl.reset()
    workers = _start_workers(lab, concurrency=3)
    try:
        proc = GeminiParallelProcessor(_manager(lab), "gemini-2.5-flash", worker_cooldown_seconds=0,
                                       api_call_interval=1.0, spacing_scope="host", max_workers=6)
        results = proc.process_prompts([{"prompt": f"space-{i}"} for i in range(12)], timeout=90, progress=False)
        assert [e for _, _, e in results] == [None] * 12
        by_host: dict[str, list[float]] = collections.defaultdict(list)
        for e in generate_calls(ctl.log()):
            by_host[e["client_addr"]].append(e["t"])
        assert set(by_host) == {h.addr for h in lab.workers_hosts}, by_host.keys()
        gaps = [b - a for ts in by_host.values() for a, b in zip(sorted(ts), sorted(ts)[1:])]
        # per host: the interval between admissions (Redis clock), less the jitter of the request leaving the
        # worker after admission (up to ~0.2 s on a loaded machine)
        assert min(gaps) >= 0.7, gaps
        every = sorted(t for ts in by_host.values() for t in ts)
        assert min(b - a for a, b in zip(every, every[1:])) < 0.5  # across hosts: side by side
        record_figures("netns_spacing_per_host", calls=len(every), min_gap_same_host=round(min(gaps), 2),
                       hosts=len(by_host))
    finally:
        for w in workers:
            w.kill()


@pytest.mark.skipif(not HEAVY, reason="heavy variant: set GEMINI_TASKS_HEAVY=1")
def test_kill_one_hosts_workers(lab):
    from gemini_tasks import GeminiParallelProcessor

    ctl = lab.emulator.control
    ctl.reset(latency_seconds=1.0)
    workers = _start_workers(lab)
    try:
        proc = GeminiParallelProcessor(_manager(lab), "gemini-2.5-flash", worker_cooldown_seconds=0,
                                       api_call_interval=0, max_workers=8)
        prompts = [{"prompt": f"hkill-{i:03d}"} for i in range(24)]
        handle = proc.submit(prompts)
        wait_for(lambda: len(generate_calls(ctl.log())) >= 6, 30, interval=0.05, what="calls under way")
        workers[0].kill()
        killed = time.monotonic()
        results = proc.collect(handle, timeout=90)
        assert [e for _, _, e in results] == [None] * 24
        calls = collections.Counter(prompt_of(e) for e in generate_calls(ctl.log()) if prompt_of(e))
        duplicates = sum(c - 1 for c in calls.values())
        assert duplicates <= workers[0].concurrency
        record_figures("netns_host_kill", requests=24, lost=0, duplicates=duplicates,
                       recovery_seconds=round(time.monotonic() - killed, 1))
    finally:
        for w in workers:
            w.kill()


@pytest.mark.skipif(not HEAVY, reason="heavy variant (a private RabbitMQ node): set GEMINI_TASKS_HEAVY=1")
def test_rabbitmq_on_its_host_requeues_a_partitioned_workers_messages(lab):
    """RabbitMQ on the Redis host: a worker host that vanishes (partition, no connection closed) is declared
    dead by missed heartbeats (5 s) and its messages go to the other host."""
    from gemini_tasks import GeminiParallelProcessor
    from gemini_tasks.testing.rabbitmq import point_app_at, restore_app

    rabbit = lab.hosts[0].rabbitmq()
    saved = point_app_at(celery_app(), rabbit.url, lab.redis_server.url)
    cut_host = lab.workers_hosts[0]
    workers = [h.worker(_env(lab, CELERY_BROKER_URL=rabbit.url), concurrency=4, loglevel="INFO")
               for h in lab.workers_hosts]
    try:
        for w in workers:
            w.start(timeout=60)
        ctl = lab.emulator.control
        ctl.reset(latency_seconds=1.5)
        manager = _manager(lab)
        proc = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                       max_workers=8)
        n = 24
        prompts = [{"prompt": f"rpart-{i:03d}"} for i in range(n)]
        handle = proc.submit(prompts)
        wait_for(lambda: sum(1 for s in manager.get_keys_status_summary().values()
                             if cut_host.hostname in (s["assigned_worker"] or "")) >= 2, 30, interval=0.05,
                 what="the host to cut is mid-call")
        cut_host.partition()
        cut_at = time.monotonic()
        results = proc.collect(handle, timeout=120)
        recovered_s = time.monotonic() - cut_at
        assert [e for _, _, e in results] == [None] * n
        calls = collections.Counter(prompt_of(e) for e in generate_calls(ctl.log())
                                    if prompt_of(e) and e.get("status") == 200)
        assert set(calls) == {p["prompt"] for p in prompts}
        duplicates = sum(c - 1 for c in calls.values())
        assert duplicates <= workers[0].concurrency, calls
        assert recovered_s <= 40, recovered_s
        record_figures("netns_rabbitmq_partition", broker="rabbitmq", requests=n, lost=0, duplicates=duplicates,
                       recovery_seconds=round(recovered_s, 1), heartbeat=5)
    finally:
        cut_host.heal()
        for w in workers:
            w.kill()
        restore_app(celery_app(), saved)
        rabbit.stop()


def celery_app():
    from gemini_tasks.celery_app import app

    return app
