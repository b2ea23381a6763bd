"""Plain Celery, the way a Celery user calls Gemini without gemini-tasks.

One task. It picks the next key round-robin, calls the real google-genai SDK (default client: no SDK retries,
``GOOGLE_GEMINI_BASE_URL`` honoured by the SDK), relies on Celery's own ``rate_limit`` for pacing (a per worker
*instance* token bucket, so the benchmark sets it to the quota divided by the number of workers, as the Celery
docs tell a user), and retries 429s with ``autoretry_for`` + ``retry_backoff``.

Settings come from the environment so the same module serves the worker processes and the client:
``PLAIN_CELERY_BROKER`` (broker and result backend), ``PLAIN_CELERY_RATE_LIMIT`` (e.g. ``"20/s"``), and the keys
``GEMINI_API_KEY_1..N``.

    celery -A bench.peers.plain_celery worker -P threads -c 16
"""

from __future__ import annotations

import itertools
import os
import re
import threading

from celery import Celery
from google import genai
from google.genai import errors

MODEL = os.environ.get("PLAIN_CELERY_MODEL", "gemini-2.5-flash")
_BROKER = os.environ.get("PLAIN_CELERY_BROKER", "redis://127.0.0.1:6379/1")

app = Celery("plain_celery", broker=_BROKER, backend=_BROKER)
app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"],
    task_acks_late=True, worker_prefetch_multiplier=1, task_default_queue="plain",
    broker_connection_retry_on_startup=True, result_expires=3600, worker_hijack_root_logger=False,
    broker_transport_options={"visibility_timeout": 600},
)


def _keys() -> list[str]:
    names = [n for n in os.environ if re.fullmatch(r"GEMINI_API_KEY_\d+", n)]
    return [os.environ[n] for n in sorted(names, key=lambda n: int(n.rsplit("_", 1)[1]))]


_KEYS = _keys()
_next = itertools.count()
_clients: dict[str, genai.Client] = {}
_lock = threading.Lock()


def _client(key: str) -> genai.Client:
    with _lock:
        if key not in _clients:
            _clients[key] = genai.Client(api_key=key)
        return _clients[key]


class RateLimited(Exception):
    """A 429 from Gemini (re-raised as a plain exception so the JSON result backend can store it)."""


@app.task(bind=True, name="plain.generate", rate_limit=os.environ.get("PLAIN_CELERY_RATE_LIMIT") or None,
          autoretry_for=(RateLimited,), retry_backoff=True, retry_backoff_max=60, retry_jitter=True,
          max_retries=None)
def generate(self, prompt: str, model: str | None = None) -> str:
    key = _KEYS[next(_next) % len(_KEYS)]
    try:
        response = _client(key).models.generate_content(model=model or MODEL, contents=prompt)
    except errors.APIError as exc:
        if exc.code == 429:
            raise RateLimited(f"429 {exc.status}") from None
        raise
    return response.text
