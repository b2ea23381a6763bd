"""Audio results travel beside Celery's result backend, not through it.

A 10-minute TTS clip is ~29 MB of PCM: through the result backend it would be base64-encoded (+33 %),
written twice (SETEX and PUBLISH) and kept for a day. Instead the worker stores the raw bytes once under
a short-lived Redis key and the task result carries only a reference; the caller fetches and deletes it.
"""

from __future__ import annotations

import uuid

import redis

from gemini_tasks.keys.names import blob_key

DEFAULT_TTL = 3600
CHUNK = 8 * 1024 * 1024


def put(client: redis.Redis, prefix: str, data: bytes | bytearray | memoryview, ttl: int = DEFAULT_TTL) -> str:
    """Store bytes (appended in 8 MiB pieces so no second full-size copy is built) and return a reference."""
    ref = uuid.uuid4().hex
    key = blob_key(prefix, ref)
    view = memoryview(data)
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    for start in range(0, len(view), CHUNK):
        pipe.append(key, view[start:start + CHUNK].tobytes())
    if len(view) == 0:
        pipe.set(key, b"")
    pipe.expire(key, ttl)
    pipe.execute()
    return ref


def take(client: redis.Redis, prefix: str, ref: str, *, delete: bool = True) -> bytes:
    """Fetch a blob (and delete it). Raises KeyError when it expired or was already taken."""
    key = blob_key(prefix, ref)
    data = client.get(key)
    if data is None:
        raise KeyError(f"audio blob {ref} is gone (expired after {DEFAULT_TTL}s or already collected)")
    if delete:
        client.delete(key)
    return data  # type: ignore[return-value]
