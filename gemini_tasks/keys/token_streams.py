"""Redis names and primitives of token streams: text chunks travelling from a worker to its caller.

A streamed answer is one Redis Stream, ``gt:{pool}:tstream:<task id>``, written by the worker (XADD) and read by
the caller from its first entry (XREAD from ``0``): a caller that starts reading late replays every chunk, and
nothing passes through the broker or the result backend. Entries have a field ``t`` (the entry type) and ``d``
(its data):

- ``start``  the worker took the request (``d``: the worker's name);
- ``chunk``  a piece of text, in order;
- ``end``    the answer is complete (``d``: JSON with usage and the number of chunks);
- ``error``  the request failed (``d``: JSON ``{"kind", "message"}``, the message being the result tuple's
  error string).

Invariants: ``end`` or ``error`` is the last entry, written once; a stream expires ``ttl`` seconds after its
last write. The caller's cancel flag is the key manager's (``gt:{pool}:cancel:<task id>``): set when a caller
goes away, it refuses the admission and stops the worker between two chunks.
"""

from __future__ import annotations

import json
from typing import Any

import redis

START, CHUNK, END, ERROR = "start", "chunk", "end", "error"
#: seconds a stream outlives its last write (a caller that reads late still replays it)
DEFAULT_TTL = 600


def stream_key(prefix: str, task_id: str) -> str:
    return f"{prefix}tstream:{task_id}"


def cancel_key(prefix: str, task_id: str) -> str:
    """The key manager's cancel flag (see ``KeyPool.cancel``)."""
    return f"{prefix}cancel:{task_id}"


class StreamWriter:
    """The worker's side of one stream."""

    def __init__(self, client: redis.Redis, prefix: str, task_id: str, ttl: int = DEFAULT_TTL) -> None:
        self.client = client
        self.key = stream_key(prefix, task_id)
        self.cancel = cancel_key(prefix, task_id)
        self.ttl = ttl

    def _add(self, kind: str, data: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.key, {"t": kind, "d": data})
        pipe.expire(self.key, self.ttl)
        pipe.execute()

    def last_type(self) -> str | None:
        """The type of the stream's last entry (None: nothing written yet)."""
        entries = self.client.xrevrange(self.key, count=1)
        if not entries:
            return None
        fields = entries[0][1]
        kind = fields.get(b"t", fields.get("t"))  # type: ignore[union-attr]
        return kind.decode() if isinstance(kind, bytes) else kind

    def start(self, worker: str) -> None:
        self._add(START, worker)

    def chunk(self, text: str) -> None:
        self._add(CHUNK, text)

    def end(self, info: dict[str, Any]) -> None:
        self._add(END, json.dumps(info))

    def error(self, kind: str, message: str) -> None:
        self._add(ERROR, json.dumps({"kind": kind, "message": message}))

    def cancelled(self) -> bool:
        return bool(self.client.exists(self.cancel))


def decode_entry(fields: dict[Any, Any]) -> tuple[str, str]:
    """(type, data) of an entry read with a client that does not decode responses."""
    kind = fields.get(b"t", fields.get("t", b""))
    data = fields.get(b"d", fields.get("d", b""))
    return (kind.decode() if isinstance(kind, bytes) else str(kind),
            data.decode("utf-8") if isinstance(data, bytes) else str(data))
