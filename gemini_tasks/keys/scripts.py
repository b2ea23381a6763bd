"""Load the key manager's Lua scripts (package data) and register them once per Redis client."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import redis
from redis.commands.core import Script

SCRIPT_NAMES = ("admit", "report", "status", "register", "mark_sent")


@lru_cache(maxsize=None)
def script_source(name: str) -> str:
    """``lib.lua`` followed by the named script: one self-contained, atomic script."""
    lua = resources.files("gemini_tasks.keys") / "lua"
    return (lua / "lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


class Scripts:
    """The registered scripts for one Redis client (EVALSHA, falling back to EVAL after a SCRIPT FLUSH)."""

    def __init__(self, client: redis.Redis) -> None:
        self.admit: Script = client.register_script(script_source("admit"))
        self.report: Script = client.register_script(script_source("report"))
        self.status: Script = client.register_script(script_source("status"))
        self.register: Script = client.register_script(script_source("register"))
        self.mark_sent: Script = client.register_script(script_source("mark_sent"))
