"""Waiting for a batch's results (gemini_tasks/client/collect.py) against a real redis-server and Celery's own
Redis result backend: what it hands over equals ``join_native(propagate=False)``, it sees results stored before
it subscribed and after, ignores intermediate states, survives a killed subscription, and publishing a group
leaves nothing registered with Celery's result consumer."""

from __future__ import annotations

import threading
import time

import pytest
from celery import states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, GroupResult, ResultSet
from celery.utils import uuid


def _store(app, task_id, value, state=states.SUCCESS):
    app.backend.store_result(task_id, value, state)


def test_results_before_and_after_subscribing_equal_join_native(celery_app):
    from gemini_tasks.client import collect

    assert collect.supported(celery_app.backend)
    ids = [uuid() for _ in range(1203)]  # more than two chunks of 500
    for tid in ids[:600]:  # already stored: read by the MGET after subscribing
        _store(celery_app, tid, {"ok": True, "n": tid})
    _store(celery_app, ids[600], ValueError("bad prompt"), states.FAILURE)
    got: dict[str, object] = {}

    def later():
        time.sleep(0.3)
        for tid in ids[601:]:  # published while the collector waits
            _store(celery_app, tid, {"ok": True, "n": tid})

    t = threading.Thread(target=later)
    t.start()
    collect.wait_for_results(celery_app.backend, ids, lambda tid, v: got.__setitem__(tid, v), timeout=30)
    t.join()
    assert list(got) and set(got) == set(ids) and len(got) == len(ids)
    native: dict[str, object] = {}
    ResultSet([AsyncResult(t, app=celery_app) for t in ids], app=celery_app).join_native(
        propagate=False, callback=lambda tid, v: native.__setitem__(tid, v), timeout=30)
    failed = got.pop(ids[600])
    assert isinstance(failed, ValueError) and str(failed) == "bad prompt"
    assert isinstance(native.pop(ids[600]), ValueError)
    assert got == native


def test_retry_state_is_not_an_answer_and_timeout_raises(celery_app):
    from gemini_tasks.client import collect

    waiting, answered = uuid(), uuid()
    _store(celery_app, waiting, None, states.RETRY)  # a rate-limit wait re-queued the task
    _store(celery_app, answered, {"ok": True})
    got: dict[str, object] = {}
    t0 = time.monotonic()
    with pytest.raises(CeleryTimeoutError):
        collect.wait_for_results(celery_app.backend, [waiting, answered], lambda tid, v: got.__setitem__(tid, v),
                                 timeout=0.6)
    assert 0.5 < time.monotonic() - t0 < 5
    assert got == {answered: {"ok": True}}


def test_on_interval_runs_while_waiting_and_may_stop_the_wait(celery_app):
    from gemini_tasks.client import collect

    calls = []

    class Lost(Exception):
        pass

    def check():
        calls.append(time.monotonic())
        if len(calls) >= 3:
            raise Lost()

    with pytest.raises(Lost):
        collect.wait_for_results(celery_app.backend, [uuid()], lambda *_: None, on_interval=check, interval=0.1)
    assert len(calls) == 3


def test_a_killed_subscription_is_renewed_and_results_stored_meanwhile_arrive(celery_app):
    import redis

    from gemini_tasks.client import collect
    from gemini_tasks.testing.local_redis import RedisServer

    # a Redis of its own: killing every subscriber there must not cut the session's worker or result consumer
    with RedisServer() as server:
        backend = type(celery_app.backend)(app=celery_app, url=server.url)
        admin = redis.Redis.from_url(server.url)
        ids = [uuid() for _ in range(3)]
        got: dict[str, object] = {}
        done = threading.Event()

        def run():
            collect.wait_for_results(backend, ids, lambda tid, v: got.__setitem__(tid, v), timeout=30)
            done.set()

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.5)
        backend.store_result(ids[0], 1, states.SUCCESS)
        time.sleep(0.3)
        assert admin.client_kill_filter(_type="pubsub") == 1  # the collector's subscription
        backend.store_result(ids[1], 2, states.SUCCESS)  # published while nobody listens: read after resubscribing
        time.sleep(1.5)
        backend.store_result(ids[2], 3, states.SUCCESS)
        assert done.wait(20), got
        t.join()
        admin.close()
        backend.client.close()
    assert got == {ids[0]: 1, ids[1]: 2, ids[2]: 3}


def test_publish_group_registers_nothing_and_its_ids_read_back_in_order(celery_app):
    from gemini_tasks.client import collect
    from gemini_tasks.client.publish import publish_group
    from gemini_tasks.client.sending import task_ref

    consumer = celery_app.backend.result_consumer
    before = set(getattr(consumer, "subscribed_to", set()))
    jobs = [{"n": i} for i in range(7)]  # never consumed here: no worker is started by this test
    res = publish_group(task_ref("generate", "batch"), jobs, [f"job {i}" for i in range(7)], queue="gt-collect-test")
    assert set(getattr(consumer, "subscribed_to", set())) == before
    ids = [r.id for r in res.results]
    assert collect.group_task_ids(celery_app.backend, res.id) == ids
    restored = GroupResult.restore(res.id, app=celery_app)
    assert [r.id for r in restored.results] == ids
    for child in restored.results:  # restoring registered each child with the result consumer: unregister now
        child.backend.remove_pending_result(child)
        child.backend = None
    assert collect.group_task_ids(celery_app.backend, uuid()) is None


def test_count_ready_counts_final_states_only(celery_app):
    from gemini_tasks.client import collect

    ids = [uuid() for _ in range(1001)]
    for tid in ids[:700]:
        _store(celery_app, tid, {"ok": True})
    _store(celery_app, ids[700], ValueError("x"), states.FAILURE)
    _store(celery_app, ids[701], None, states.RETRY)
    assert collect.count_ready(celery_app.backend, ids) == 701
    assert sum(AsyncResult(t, app=celery_app).ready() for t in ids) == 701


@pytest.mark.parametrize("on_redis", [True, False], ids=["collector", "join_native"])
def test_wait_all_hands_over_every_result_and_leaves_nothing_pending(celery_app, monkeypatch, on_redis):
    """One waiting function for the processors and the CLI: the collector on a Redis result backend, Celery's
    join_native on any other; either way every result once, a timeout as Celery's TimeoutError, and no result
    left registered with the backend afterwards (AsyncResult.__del__ would print a traceback each at exit)."""
    from gemini_tasks.client import collect

    monkeypatch.setattr(collect, "supported", lambda backend: on_redis)
    ids = [uuid() for _ in range(5)]
    for tid in ids:
        _store(celery_app, tid, {"ok": True, "n": tid})
    got: dict[str, object] = {}
    collect.wait_all(celery_app, ids, lambda tid, v: got.__setitem__(tid, v), timeout=30)
    assert got == {tid: {"ok": True, "n": tid} for tid in ids}
    missing = uuid()
    with pytest.raises(CeleryTimeoutError):
        collect.wait_all(celery_app, [ids[0], missing], lambda tid, v: None, timeout=0.5)
    assert not any(tid in celery_app.backend._pending_results.concrete for tid in ids + [missing])
