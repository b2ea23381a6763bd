"""Calling a task function directly (no broker, no task id): each call is its own request (issue 11 item 11)."""

from __future__ import annotations


def test_direct_calls_each_get_their_own_answer(fleet_env, emu, manager_factory):
    from gemini_tasks.client.jobs import CallPolicy, generate_job
    from gemini_tasks.worker.tasks import generate_batch

    m = manager_factory(2, paid_keys="all")
    policy = CallPolicy(worker_cooldown_seconds=0, api_call_interval=0)
    answers = [generate_batch(generate_job({"prompt": f"EAGER {i}"}, model="gemini-2.5-flash", manager=m,
                                           policy=policy)) for i in range(3)]
    assert [f"EAGER {i}" in a["text"] for i, a in enumerate(answers)] == [True, True, True], answers
    assert len({a["task_id"] for a in answers}) == 3
    calls = [e for e in emu.log() if e.get("endpoint") == "generateContent"]
    assert len(calls) == 3


def test_direct_call_waits_for_a_cooling_key_in_place(fleet_env, emu, manager_factory):
    from gemini_tasks.client.jobs import CallPolicy, generate_job
    from gemini_tasks.worker.tasks import generate_batch

    # one free key resting 6 s: the second call waits longer than a slot sleeps (5 s) and, with no broker to
    # re-queue to, sleeps where it is
    m = manager_factory(["GEMINI_API_KEY_1"], key_settings={"free": {"key_cooldown_seconds": 6}})
    policy = CallPolicy(worker_cooldown_seconds=0, api_call_interval=0)
    answers = [generate_batch(generate_job({"prompt": f"EAGERW {i}"}, model="gemini-2.5-flash", manager=m,
                                           policy=policy)) for i in range(2)]
    assert [f"EAGERW {i}" in a["text"] for i, a in enumerate(answers)] == [True, True]
