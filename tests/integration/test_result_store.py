"""A worker's result write in one round trip (gemini_tasks/worker/result_store.py), against a real redis-server and
Celery's own Redis result backend: a SUCCESS is never overwritten by a later state, other states are, the expiry
and the publish are Celery's, and the write no longer reads the key first."""

from __future__ import annotations

import threading
import time

from celery import states
from celery.utils import uuid


def _installed(app):
    from gemini_tasks.worker import result_store

    assert result_store.install()
    return app.backend


def test_a_success_is_never_overwritten_and_other_states_are(celery_app):
    backend = _installed(celery_app)
    done, retried = uuid(), uuid()
    backend.store_result(done, {"ok": True, "text": "first"}, states.SUCCESS)
    backend.store_result(done, ValueError("a late copy failed"), states.FAILURE)  # e.g. a redelivered copy
    backend.store_result(done, {"ok": True, "text": "second"}, states.SUCCESS)
    meta = backend.get_task_meta(done, cache=False)
    assert meta["status"] == states.SUCCESS and meta["result"] == {"ok": True, "text": "first"}

    backend.store_result(retried, None, states.RETRY)  # a rate-limit wait re-queued the task
    backend.store_result(retried, {"ok": True, "text": "later"}, states.SUCCESS)
    meta = backend.get_task_meta(retried, cache=False)
    assert meta["status"] == states.SUCCESS and meta["result"] == {"ok": True, "text": "later"}


def test_expiry_is_result_expires_and_failures_follow_their_own(celery_app, redis_client):
    backend = _installed(celery_app)
    ok, failed = uuid(), uuid()
    backend.store_result(ok, {"ok": True}, states.SUCCESS)
    backend.store_result(failed, ValueError("x"), states.FAILURE)
    assert backend.expires and abs(redis_client.ttl(backend.get_key_for_task(ok)) - backend.expires) <= 2
    assert abs(redis_client.ttl(backend.get_key_for_task(failed)) - backend.failure_expires) <= 2


def test_the_result_is_published_to_a_waiting_collector(celery_app):
    from gemini_tasks.client import collect

    backend = _installed(celery_app)
    tid = uuid()
    got = {}
    t = threading.Thread(target=lambda: collect.wait_for_results(backend, [tid], got.__setitem__, timeout=20))
    t.start()
    time.sleep(0.5)  # subscribed and found nothing stored: the answer can only come by PUBLISH
    backend.store_result(tid, {"ok": True, "text": "published"}, states.SUCCESS)
    t.join(20)
    assert got == {tid: {"ok": True, "text": "published"}}


def test_a_write_does_not_read_the_key_first(celery_app, redis_client):
    backend = _installed(celery_app)
    ids = [uuid() for _ in range(50)]
    backend.store_result(uuid(), {"ok": True}, states.SUCCESS)  # the script is loaded outside the count
    before = redis_client.info("commandstats")
    for tid in ids:
        backend.store_result(tid, {"ok": True}, states.SUCCESS)
    after = redis_client.info("commandstats")

    def delta(cmd):
        return after.get(f"cmdstat_{cmd}", {}).get("calls", 0) - before.get(f"cmdstat_{cmd}", {}).get("calls", 0)

    # Celery's own write is a GET, then MULTI/SETEX/PUBLISH/EXEC: two round trips. Now one EVALSHA (the GET, SET
    # and PUBLISH inside it count in commandstats too); other fixtures' background work may add a few of each
    assert delta("exec") < 10 and delta("multi") < 10
    assert len(ids) <= delta("evalsha") < len(ids) + 10
    assert all(backend.get_task_meta(t, cache=False)["status"] == states.SUCCESS for t in ids)
