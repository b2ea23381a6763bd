"""The emulator's whole mutable state in one object (`Emulator`), and the pieces every handler shares.

Everything runs on one asyncio loop, so no locks: a handler reads and updates this object between
awaits.  `configure` applies a partial config and refreshes whatever depends on it.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from typing import Any

from aiohttp import web

from . import wire
from .auth import Identity, KeyBook
from .faults import FaultBook, RequestFacts, Rule
from .files import FileStore
from .quota import QuotaBook, resolve_limits
from .reqlog import RequestLog
from .config import default_config, validate


class Emulator:
    """Config + keys + quota windows + fault rules + files + request log."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.initial = validate(config or {})
        self.config = default_config()
        self.config.update(self.initial)
        self.keys = KeyBook(self.config["keys"])
        self.quotas = QuotaBook()
        self.faults = FaultBook(self.config["seed"])
        self.files = FileStore()
        self.log = RequestLog(self.config["log_max"])
        self.rng = random.Random(self.config["seed"])
        self.in_flight = 0
        self.responses = 0
        self.shed = 0  # Flex requests shed (503)
        from .batches import BatchStore  # local import: batches imports this module

        self.batches = BatchStore()

    # -- configuration --------------------------------------------------------------------

    def configure(self, fields: dict[str, Any]) -> None:
        """Validate then merge top-level fields (a field given replaces its old value)."""
        checked = validate(fields)
        self.config.update(checked)
        if "keys" in checked:
            self.keys = KeyBook(self.config["keys"])
        if "log_max" in checked:
            self.log.resize(self.config["log_max"])
        if "seed" in checked:
            self.faults.reseed(self.config["seed"])
            self.rng.seed(self.config["seed"])

    def reset(self) -> None:
        """Back to the config the emulator was started with; windows, files, faults, log cleared."""
        self.config = default_config()
        self.config.update(self.initial)
        self.keys = KeyBook(self.config["keys"])
        self.quotas.clear()
        self.faults = FaultBook(self.config["seed"])
        self.files.clear()
        self.log = RequestLog(self.config["log_max"])
        self.rng.seed(self.config["seed"])
        self.responses = 0
        self.shed = 0
        self.batches.clear()

    # -- shared request steps ---------------------------------------------------------------

    def authenticate(self, request: web.Request, entry: dict[str, Any]) -> Identity:
        ident, err = self.keys.resolve(request.headers.get("x-goog-api-key"))
        if ident is not None:
            entry["key_label"] = ident.label
            entry["project"] = ident.project
        elif err is not None:
            entry["key_label"] = "<none>" if err.code == 403 else "<invalid>"
        if err is not None:
            raise err
        assert ident is not None
        return ident

    def limits(self, project: str, model: str) -> dict[str, int]:
        return resolve_limits(self.config["quotas"], project, model)

    def check_quota(self, ident: Identity, model: str, tokens: int) -> None:
        limits = self.limits(ident.project, model)
        cfg = self.config
        violations = self.quotas.check_and_record(
            ident.project, model, tokens, limits, time.time(), cfg["minute_seconds"], cfg["day_seconds"]
        )
        if not violations:
            return
        if any(v.kind == "rpd" for v in violations):
            delay = wire.parse_duration(cfg["day_retry_delay"])  # the real API's misleading short delay
        else:
            delay = max(v.retry_after for v in violations)
        raise wire.quota_exhausted([(v.kind, v.limit) for v in violations], model, delay)

    def global_latency(self) -> float:
        base = self.config["latency_seconds"]
        jitter = self.config["latency_jitter_seconds"]
        if jitter > 0:
            base += self.rng.uniform(0.0, jitter)
        return base

    async def apply_faults(self, request: web.Request, facts: RequestFacts, entry: dict[str, Any]) -> Rule | None:
        """Sleep for global latency and latency/hang rules; return the terminal rule to act on.

        `status`, `reset` and `hang ... then close|reset` are carried out here (they raise or
        abort); the rest (malformed, blocked, ...) are returned for the endpoint to shape its body.
        """
        delay = self.global_latency()
        rules = self.faults.pick(facts)
        terminal = None
        for rule in rules:
            if rule.action == "latency":
                delay += rule.spec["seconds"]
            else:
                terminal = rule
        if rules:
            entry["fault"] = "+".join(r.action for r in rules)
            entry["fault_ids"] = [r.id for r in rules]
        if terminal is not None and terminal.action == "hang":
            delay += terminal.spec["seconds"]
        if delay > 0:
            await asyncio.sleep(delay)
        if terminal is None:
            return None
        action = terminal.action
        if action == "hang":
            then = terminal.spec.get("then", "respond")
            if then == "respond":
                return None
            abort(request, rst=(then == "reset"))
            raise ConnectionAborted()
        if action == "reset":
            abort(request, rst=True)
            raise ConnectionAborted()
        if action == "status":
            raise self.status_error(terminal, facts.model or "gemini", request)
        return terminal

    def status_error(self, rule: Rule, model: str, request: web.Request) -> wire.ApiError:
        code = rule.spec["status"]
        message = rule.spec.get("message")
        if code == 429:
            kind = {"minute": "rpm", "day": "rpd", "tokens": "tpm", None: "rpm"}[rule.spec.get("quota_kind")]
            delay = rule.spec.get("retry_delay")
            if delay is None:
                delay = self.config["day_retry_delay"] if kind == "rpd" else "7s"
            limit = int(rule.spec.get("limit", {"rpm": 10, "rpd": 250, "tpm": 250000}[kind]))
            err = wire.quota_exhausted([(kind, limit)], model, wire.parse_duration(delay))
            err.quota = None  # scripted, not a real window: the log's `fault` field says so
            if message:
                err.message = message
            return err
        if code == 502 and message is None:
            return wire.bad_gateway()
        if code == 404 and message is None:
            m = wire.VERSION_RE.search(request.path)
            return wire.model_not_found(model, m.group(1) if m else "v1beta")
        if code == 403 and rule.spec.get("reason") == "API_KEY_SERVICE_BLOCKED":
            return wire.api_key_blocked(str(rule.spec.get("project", "project")))
        if code == 400 and rule.spec.get("reason") == "API_KEY_INVALID":
            return wire.api_key_invalid()
        return wire.ApiError(code, message)


class ConnectionAborted(Exception):
    """The handler dropped the TCP connection on purpose; nothing is sent."""


def abort(request: web.Request, rst: bool = True) -> None:
    """Close the client connection without a response; with rst=True send a TCP RST."""
    transport = request.transport
    if transport is None:
        return
    if rst:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
    transport.abort()
