"""The emulator's registries (files, upload sessions, batch jobs): new unused ids, and a size bound that forgets
the oldest entry first."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Container
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def unused_id(taken: Container[str], nbytes: int) -> str:
    """A random hex id of ``nbytes`` bytes that is not in ``taken``."""
    while True:
        candidate = secrets.token_hex(nbytes)
        if candidate not in taken:
            return candidate


def put_bounded(entries: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
    """``entries[key] = value``, then the oldest entries forgotten until at most ``limit`` remain."""
    entries[key] = value
    while len(entries) > limit:
        entries.popitem(last=False)
