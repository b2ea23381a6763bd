"""Redis Sentinel (issue 13, item 3): broker, result backend and key manager on
``REDIS_URL=sentinel://…;sentinel://…;sentinel://…/0``; the master is SIGKILLed mid-batch and the sentinels
promote the replica: every prompt is answered, duplicate calls stay within the calls in flight, and the time
to recover is measured."""

from __future__ import annotations

import collections
import os
import time

import pytest
from chaos_stack import KEY_IDS, generate_calls, prompt_of, record_figures, wait_for

from gemini_tasks.testing.rabbitmq import point_app_at, restore_app
from gemini_tasks.testing.sentinel import SentinelGroup


@pytest.fixture(scope="module")
def sentinel_group():
    with SentinelGroup(master_name="mymaster") as group:
        yield group


def test_master_sigkilled_mid_batch_every_prompt_answered(stack, sentinel_group):
    from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor
    from gemini_tasks.keys.redis_conn import get_redis

    group = sentinel_group
    ctl = stack.control
    ctl.reset(latency_seconds=0.5)
    saved = point_app_at(stack.app, group.url, group.url)
    workers = []
    try:
        env = {"REDIS_URL": group.url, "REDIS_SENTINEL_MASTER": "mymaster"}
        workers = [stack.worker(concurrency=4, **env), stack.worker(concurrency=4, **env)]
        manager = AdvancedApiKeyManager(KEY_IDS, paid_keys="all", redis_url=group.url, pool="s" + str(time.time_ns()))
        proc = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                       max_workers=8)
        n = int(os.environ.get("GT_SENTINEL_N", "24"))
        prompts = [{"prompt": f"sent-{i:03d}", "metadata": {"i": i}} for i in range(n)]
        handle = proc.submit(prompts)
        wait_for(lambda: len(generate_calls(ctl.log())) >= 6, 60, interval=0.05, what="a quarter answered")
        old = group.master_port()
        group.kill_master()
        killed = time.monotonic()
        failover_s = group.wait_failover(old)
        group_result = stack.app.GroupResult.restore(handle.group_id)
        ids = [r.id for r in group_result.results]
        # wait until every request is answered or the stragglers have been idle long enough to be lost
        done, last_progress = 0, time.monotonic()
        while time.monotonic() - last_progress < 40:  # 40 s without a new answer: what is left is lost
            states = [stack.app.AsyncResult(i).state for i in ids]
            if sum(st == "SUCCESS" for st in states) > done:
                done, last_progress = sum(st == "SUCCESS" for st in states), time.monotonic()
            if done == n:
                break
            time.sleep(0.2)
        recovered_s = last_progress - killed  # the kill to the last request answered
        states = [stack.app.AsyncResult(i).state for i in ids]
        lost = [ids[k] for k, st in enumerate(states) if st != "SUCCESS"]
        log = generate_calls(ctl.log())
        calls = collections.Counter(prompt_of(e) for e in log if prompt_of(e))
        if lost:  # say where the lost requests are (queued, held, or nowhere), then fail
            r = get_redis(group.url)
            held = [t.decode() for t, v in r.hgetall("unacked").items() if any(i.encode() in v for i in lost)]
            index = {t.decode() for t in r.zrange("unacked_index", 0, -1)}
            queued = [i for i in lost for q in ("batch", "interactive") for m in r.lrange(q, 0, -1) if i.encode() in m]
            pytest.fail(f"{len(lost)} request(s) lost in the failover: {lost}; held {held} (indexed: "
                        f"{[t in index for t in held]}), queued {queued}; calls {dict(calls)}")
        assert set(calls) == {p["prompt"] for p in prompts}
        duplicates = sum(c - 1 for c in calls.values())
        assert duplicates <= sum(w.concurrency for w in workers), calls  # at most the calls in flight
        # the key manager follows the new master too
        assert get_redis(group.url).ping()
        assert manager.get_keys_status_summary()
        record_figures("sentinel_failover", requests=n, lost=0, duplicates=duplicates,
                       failover_seconds=round(failover_s, 1), recovery_seconds=round(recovered_s, 1))
    finally:
        for w in workers:
            w.kill()
        restore_app(stack.app, saved)
