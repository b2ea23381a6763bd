"""The control API under /_emulator/: how a test in another process scripts the emulator.

    GET    /_emulator/health          {"ok": true}
    GET    /_emulator/config          current config (key secrets replaced by labels)
    POST   /_emulator/config          merge the given top-level fields; returns the new config
    GET    /_emulator/faults          rules with their remaining `times` and `applied` counts
    POST   /_emulator/faults          add one rule, a list of rules, or {"rules": [...]}; {"ids": [...]}
    DELETE /_emulator/faults          remove all rules
    DELETE /_emulator/faults/{id}     remove one rule
    GET    /_emulator/log?since=SEQ&limit=N   {"entries": [...], "last_seq": N}
    DELETE /_emulator/log             drop log entries (sequence numbers keep counting)
    GET    /_emulator/stats           counters by status, key label, project, endpoint, model, fault
    DELETE /_emulator/stats           zero the counters
    GET    /_emulator/files           every stored file with owner, size and sha256
    GET    /_emulator/batches         every batch job with owner, state, request count
    POST   /_emulator/reset           config, quota windows, files, faults, log back to start-up state;
                                      an optional JSON body is then applied as config

Control requests are not written to the request log.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from . import wire
from .shared_state import Emulator
from .faults import RuleError
from .config import ConfigError, redacted

_H = {"Content-Type": wire.JSON_CT}


def _ok(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=wire.dumps(obj), status=status, headers=_H)


def _bad(message: str, status: int = 400) -> web.Response:
    return _ok({"error": {"code": status, "message": message}}, status)


async def _json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    return json.loads(raw)


async def handle(emu: Emulator, request: web.Request) -> web.StreamResponse:  # noqa: C901 - over the limit before it was set; split when next changed
    path = request.path[len("/_emulator") :].rstrip("/")
    method = request.method
    try:
        if path == "/health":
            return _ok({"ok": True})
        if path == "/config":
            if method == "POST":
                emu.configure(await _json(request) or {})
            return _ok(redacted(emu.config))
        if path == "/faults":
            if method == "GET":
                return _ok({"rules": [r.to_json() for r in emu.faults.rules]})
            if method == "POST":
                body = await _json(request)
                rules = body.get("rules") if isinstance(body, dict) and "rules" in body else body
                if isinstance(rules, dict):
                    rules = [rules]
                if not isinstance(rules, list):
                    return _bad("expected a rule, a list of rules, or {'rules': [...]}")
                return _ok({"ids": emu.faults.add(rules)})
            if method == "DELETE":
                n = len(emu.faults.rules)
                emu.faults.clear()
                return _ok({"removed": n})
        if path.startswith("/faults/") and method == "DELETE":
            return _ok({"removed": int(emu.faults.remove(int(path.rsplit("/", 1)[1])))})
        if path == "/log":
            if method == "GET":
                since = int(request.query.get("since", "0"))
                limit = request.query.get("limit")
                entries = emu.log.since(since, int(limit) if limit else None)
                return _ok({"entries": entries, "last_seq": emu.log.seq})
            if method == "DELETE":
                emu.log.clear()
                return _ok({"last_seq": emu.log.seq})
        if path == "/stats":
            if method == "DELETE":
                emu.log.clear_stats()
            stats = emu.log.stats()
            cfg = emu.config
            stats.update(
                in_flight=emu.in_flight,
                files=len(emu.files.files),
                upload_sessions=len(emu.files.sessions),
                bytes_uploaded=emu.files.bytes_received,
                fault_rules=len(emu.faults.rules),
                shed=emu.shed,
                batch_jobs_created=emu.batches.created,
                quota_windows=emu.quotas.snapshot(time.time(), cfg["minute_seconds"], cfg["day_seconds"]),
            )
            return _ok(stats)
        if path == "/files" and method == "GET":
            return _ok({"files": [f.summary() for f in emu.files.files.values()]})
        if path == "/batches" and method == "GET":
            return _ok({"batches": emu.batches.summary()})
        if path == "/reset" and method == "POST":
            body = await _json(request)
            emu.reset()
            if body:
                emu.configure(body)
            return _ok(redacted(emu.config))
    except (ConfigError, RuleError) as exc:
        return _bad(str(exc))
    except (ValueError, TypeError) as exc:
        return _bad(f"bad request: {exc}")
    return _bad(f"no control endpoint {method} {request.path}", 404)
