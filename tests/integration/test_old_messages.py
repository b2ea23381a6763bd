"""A job message queued by an older client runs with the message's own defaults (gemini_tasks/messages).

The worker decodes the wire dict once (``Job.from_wire``) at the task boundary: a field the old message lacks
reads as :class:`~gemini_tasks.messages.CallPolicy`'s default, and keys no client writes any more are ignored.
"""

from __future__ import annotations

import time

from gemini_tasks.messages import CallPolicy


def _old_job(m, prompt: str, *, deadline: float) -> dict:
    """A generation job as an old client wrote it: no version, no tier, no ``worker_cooldown`` in the policy, and
    keys that no client writes (the worker once read them with defaults of its own)."""
    spec = m.spec()
    return {"kind": "generate", "model": "gemini-2.5-flash",
            "pool": {"pool": spec["pool"], "keys": spec["keys"]},
            "policy": {"processor_id": "old-client-1", "max_workers": 1, "api_call_interval": 0,
                       "max_sleep": 0.01, "backoff": 9.0, "backoff_max": 9.0, "window_margin": 0.0},
            "request": {"prompt": prompt}, "metadata": {"old": True}, "deadline": deadline,
            "an_unknown_key": {"from": "the future"}}


def test_an_old_message_without_worker_cooldown_gets_the_messages_default(worker, emu, manager_factory):
    m = manager_factory(4, paid_keys="all")
    app = worker.app
    first = app.send_task("gemini_tasks.generate_interactive", queue="interactive",
                          args=[_old_job(m, "OLDMSG 1", deadline=time.time() + 30)]).get(timeout=30)
    assert first["ok"] and "OLDMSG 1" in first["text"] and first["metadata"] == {"old": True}
    # the one slot (max_workers=1) now rests CallPolicy's worker_cooldown_seconds (20 s): a second request
    # whose caller waits 3 s is refused naming that default (a worker reading the missing field as 0 called)
    second = app.send_task("gemini_tasks.generate_interactive", queue="interactive",
                           args=[_old_job(m, "OLDMSG 2", deadline=time.time() + 3)])
    result = second.get(timeout=30, propagate=False)
    assert second.failed(), result
    message = str(result)
    default = CallPolicy().worker_cooldown_seconds
    assert "worker_cooldown" in message and f"worker_cooldown_seconds={default:g}" in message, message
    assert "max_workers=1" in message, message
    calls = [e for e in emu.log() if e.get("endpoint") == "generateContent"
             and any("OLDMSG" in (p.get("text") or "") for p in (e.get("parts") or []))]
    assert len(calls) == 1
