"""Which keys this worker process holds, and announcing them to the pool.

A worker leases only keys whose secret it holds in its own environment (or ``.env``); the secret is looked up
here at call time and never leaves the process.
"""

from __future__ import annotations

import logging
import os
from typing import Iterable

from gemini_tasks.keys.pool import FingerprintConflict, KeyPool
from gemini_tasks.settings import key_env_names, load_env_file

log = logging.getLogger("gemini_tasks")
_conflicts: set[str] = set()


def held_secrets(ids: Iterable[str]) -> dict[str, str]:
    """``{id: secret}`` for the ids whose secret this process holds (and that did not fail a fingerprint check)."""
    out = {}
    for key_id in ids:
        value = os.environ.get(key_id, "").strip()
        if len(value) > 10 and key_id not in _conflicts:
            out[key_id] = value
    return out


def announce(pool: KeyPool) -> list[str]:
    """Tell the pool which ids this host holds; ids whose secret differs from the pool's are refused here."""
    load_env_file()
    ids = key_env_names()
    held: list[str] = []
    for key_id in ids:
        try:
            pool.announce_held({key_id: os.environ[key_id]})
            held.append(key_id)
        except FingerprintConflict as exc:
            _conflicts.add(key_id)
            log.error("refusing to use %s on this worker: %s", key_id, exc)
    return held
