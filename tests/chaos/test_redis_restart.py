"""Restart Redis in the middle of a batch.

With persistence (AOF, ``appendfsync always``) nothing is lost: workers reconnect on their own and every
request is answered. Without persistence the queues, the results and the key pool are gone: the waiting
caller gets a clear error (never a hang), and the fleet serves the next batch by itself.
"""

from __future__ import annotations

import gc
import threading
import time

import pytest

from chaos_stack import Stack, generate_calls, prompt_of, queue_lengths, record_figures, wait_for

VISIBILITY = 10
#: how long Redis stays down in the persistent case (redis-py's default retry gives up after ~3 s)
DOWN_SECONDS = 4.0


def _processor(manager, max_workers: int = 8):
    from gemini_tasks import GeminiParallelProcessor

    return GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                   max_workers=max_workers)


def _batch(tag: str, n: int) -> list[dict]:
    return [{"prompt": f"{tag}-{i:03d}", "metadata": {"i": i}} for i in range(n)]


def test_restart_with_persistence_loses_nothing():
    with Stack(persistence=True) as stack:
        stack.control.reset(latency_seconds=0.5)
        stack.worker(concurrency=4)
        stack.worker(concurrency=4)
        manager = stack.manager()
        proc = _processor(manager)
        n = 40
        handle = proc.submit(_batch("persist", n))
        wait_for(lambda: len(generate_calls(stack.control.log())) >= 6, 30, what="calls under way")
        stack.redis_server.kill()  # a crash, and a restart that takes a few seconds: calls finish meanwhile
        time.sleep(DOWN_SECONDS)
        stack.redis_server.start()
        restarted = time.monotonic()
        results = proc.collect(handle, timeout=VISIBILITY * 6)
        recovered_s = time.monotonic() - restarted
        errors = [(m, e) for m, _, e in results if e is not None]
        assert errors == [], errors
        assert [m["i"] for m, _, _ in results] == list(range(n))
        calls = [prompt_of(e) for e in generate_calls(stack.control.log())]
        duplicates = len(calls) - len(set(calls))
        assert set(calls) == {f"persist-{i:03d}" for i in range(n)}
        assert duplicates <= 8  # at most what the two workers had in flight when Redis went away
        client = stack.client()
        wait_for(lambda: queue_lengths(client) == {"interactive": 0, "batch": 0, "unacked": 0}, VISIBILITY * 3,
                 what="broker drained")
        # the same manager keeps working: the key pool survived with the data
        assert all(e is None for _, _, e in proc.process_prompts(_batch("persist-after", 8), timeout=30,
                                                                 progress=False))
        record_figures("redis_restart_persistent", requests=n + 8, lost=0, duplicates=duplicates,
                       redis_down_seconds=DOWN_SECONDS, recovery_seconds=round(recovered_s, 1))
        client.close()


def test_restart_without_persistence_fails_clearly_and_fleet_recovers(monkeypatch):
    with Stack(persistence=False) as stack:
        stack.control.reset(latency_seconds=0.5)
        stack.worker(concurrency=4)
        stack.worker(concurrency=4)
        proc = _processor(stack.manager())
        outcome: list = []

        def caller() -> None:  # the original API: process_prompts without a timeout
            try:
                outcome.append(proc.process_prompts(_batch("volatile", 40), progress=False))
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                outcome.append(exc)

        t = threading.Thread(target=caller, daemon=True)
        t.start()
        wait_for(lambda: len(generate_calls(stack.control.log())) >= 6, 30, what="calls under way")
        stack.redis_server.restart()
        restarted = time.monotonic()
        t.join(60)
        assert not t.is_alive(), "process_prompts hung after Redis lost the batch"
        waited = time.monotonic() - restarted
        err = outcome[0]
        assert isinstance(err, Exception), f"expected an error, got {len(err)} results"
        assert "lost" in str(err) and "Redis" in str(err), err
        message = str(err)
        del err
        outcome.clear()  # drop the lost batch's AsyncResults now, while Redis is up (they unsubscribe on GC)
        gc.collect()
        # the fleet needs nothing: a new manager re-registers the keys and the workers serve it
        proc2 = _processor(stack.manager())
        results = proc2.process_prompts(_batch("volatile-after", 16), timeout=VISIBILITY * 4, progress=False)
        assert all(e is None for _, _, e in results), results
        # and a batch that merely outlives result_expires is not mistaken for a lost one: while the caller
        # waits, the check renews the group record's expiry
        import gemini_tasks.client.processors as processors
        from chaos_stack import forget_backend

        monkeypatch.setattr(processors, "LOST_CHECK_SECONDS", 0.5)
        monkeypatch.setitem(stack.app.conf, "result_expires", 3)
        forget_backend(stack.app)
        stack.control.configure(latency_seconds=1.0)
        results = _processor(stack.manager(), max_workers=1).process_prompts(_batch("outlives-expiry", 5), progress=False)
        assert all(e is None for _, _, e in results), results
        forget_backend(stack.app)
        record_figures("redis_restart_volatile", error=message[:200], error_after_seconds=round(waited, 1))
