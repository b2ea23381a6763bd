"""Redis key names of a key pool: every name the package writes or reads is built here.

All of a pool's names share the prefix ``gt:{<pool>}:`` (the braces are a Redis Cluster hash tag, so one pool's
keys live in one slot). Functions take that prefix, as :class:`gemini_tasks.keys.pool.KeyPool` holds it
(``pool.prefix``). The Lua scripts build the names they touch from the same prefix (keys/lua/lib.lua).
"""

from __future__ import annotations

#: The suffix of a pool's call-counter hash (``gt:{pool}:calls``, see :mod:`gemini_tasks.keys.calls`).
CALLS_HASH = "calls"
#: ``SCAN`` pattern matching every pool's set of registered key ids (``gt:{<pool>}:ids``).
IDS_PATTERN = "gt:\\{*\\}:ids"
_HEAD = "gt:{"
_IDS_TAIL = "}:ids"


def pool_prefix(pool: str) -> str:
    """``gt:{<pool>}:``, the prefix of every name of a pool."""
    return f"gt:{{{pool}}}:"


def pool_of_ids_key(name: str) -> str:
    """The pool named by a key matched by :data:`IDS_PATTERN` (``gt:{p}:ids`` -> ``p``)."""
    return name[len(_HEAD):-len(_IDS_TAIL)]


def calls_key(prefix: str) -> str:
    """The pool's hash of call counters."""
    return prefix + CALLS_HASH


def done_key(prefix: str, task_id: str) -> str:
    """The stored result of a task that already succeeded (a redelivered copy returns it instead of paying)."""
    return f"{prefix}done:{task_id}"


def key_hash(prefix: str, key_id: str) -> str:
    """The hash of one registered API key (``proj`` and the key's state)."""
    return f"{prefix}key:{key_id}"


def upload_key(prefix: str, project: str, digest: str, mime_type: str) -> str:
    """A file uploaded to one project's Files API, by content digest and MIME type."""
    return f"{prefix}upload:{project}:{digest}:{mime_type}"


def blob_key(prefix: str, ref: str) -> str:
    """Bytes (audio, images) travelling beside the result backend."""
    return f"{prefix}blob:{ref}"
