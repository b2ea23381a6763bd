"""Load the key manager's Lua scripts (package data) and register them once per Redis client."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import redis
from redis.commands.core import Script

SCRIPT_NAMES = ("admit", "report", "status", "register", "mark_sent", "reset", "renew", "configure")


@lru_cache(maxsize=None)
def script_source(name: str) -> str:
    """``lib.lua`` followed by the named script: one self-contained, atomic script."""
    lua = resources.files("gemini_tasks.keys") / "lua"
    return (lua / "lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


class Scripts:
    """The registered scripts for one Redis client (EVALSHA, falling back to EVAL after a SCRIPT FLUSH)."""

    admit: Script
    report: Script
    status: Script
    register: Script
    mark_sent: Script
    reset: Script
    renew: Script
    configure: Script

    def __init__(self, client: redis.Redis) -> None:
        for name in SCRIPT_NAMES:
            setattr(self, name, client.register_script(script_source(name)))
