"""``gemini-tasks keys test``: one real call per key, made by a worker that holds the secrets.

The command line has the key *names* only; a worker resolves each name it holds to its secret and makes one small
``generateContent`` call with it, outside admission (a diagnosis, not a request: key states are not changed). The
answer per key is one of:

- ``valid``      the call succeeded;
- ``invalid``    the API rejected the key (400 ``API_KEY_INVALID``, an unknown or deleted key);
- ``blocked``    the key exists but may not call Gemini (403, e.g. ``API_KEY_SERVICE_BLOCKED``, a suspended
  consumer, an API restriction);
- ``exhausted``  a 429: its quota is used up for now (the detail says which quota and when it frees);
- ``error``      anything else (network, 5xx), with the error string;
- ``not held``   this worker does not have the variable (no call was made).

Secrets never leave the worker: the result carries ids, statuses and redacted error strings.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from gemini_tasks.celery_app import app
from gemini_tasks.gemini.classification import classify
from gemini_tasks.gemini.client import make_client
from gemini_tasks.gemini.errors import INVALID_KEY, RATE_LIMITED, error_message
from gemini_tasks.settings import get_settings
from gemini_tasks.worker.worker_keys import held_secrets

PROBE_PROMPT = "Reply with the single word OK."


def status_of(err: Any) -> str:
    if err.kind == RATE_LIMITED:
        return "exhausted"
    if err.kind == INVALID_KEY:
        blocked = err.code == 403 or "BLOCKED" in f"{err.reason} {err.status}".upper()
        return "blocked" if blocked else "invalid"
    return "error"


def probe_keys(key_ids: list[str], model: str) -> dict[str, Any]:
    settings = get_settings()
    secrets = held_secrets(key_ids)
    results: dict[str, Any] = {}
    for key_id in key_ids:
        secret = secrets.get(key_id)
        if not secret:
            results[key_id] = {"status": "not held", "detail": f"{socket.gethostname()} has no {key_id}"}
            continue
        client = make_client(secret, timeout_s=min(settings.request_timeout, 60.0), api_version=settings.api_version)
        started = time.perf_counter()
        try:
            client.models.generate_content(model=model, contents=PROBE_PROMPT)
            results[key_id] = {"status": "valid", "detail": ""}
        except Exception as exc:  # noqa: BLE001 - every failure is the answer for this key
            err = classify(exc, secrets=[secret])
            results[key_id] = {"status": status_of(err), "detail": error_message(err, secrets=[secret])[:300]}
        finally:
            client.close()
        results[key_id]["latency_ms"] = round((time.perf_counter() - started) * 1000)
    return {"worker": socket.gethostname(), "model": model, "keys": results}


@app.task(name="gemini_tasks.keys_probe")
def keys_probe(key_ids: list[str], model: str) -> dict[str, Any]:
    return probe_keys(list(key_ids), model)
