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
from collections.abc import Awaitable, Callable
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


async def _health(emu: Emulator, request: web.Request) -> web.Response:
    return _ok({"ok": True})


async def _config(emu: Emulator, request: web.Request) -> web.Response:
    if request.method == "POST":
        emu.configure(await _json(request) or {})
    return _ok(redacted(emu.config))


async def _faults_list(emu: Emulator, request: web.Request) -> web.Response:
    return _ok({"rules": [r.to_json() for r in emu.faults.rules]})


async def _faults_add(emu: Emulator, request: web.Request) -> web.Response:
    body = await _json(request)
    rules = body.get("rules") if isinstance(body, dict) and "rules" in body else body
    if isinstance(rules, dict):
        rules = [rules]
    if not isinstance(rules, list):
        return _bad("expected a rule, a list of rules, or {'rules': [...]}")
    return _ok({"ids": emu.faults.add(rules)})


async def _faults_clear(emu: Emulator, request: web.Request) -> web.Response:
    n = len(emu.faults.rules)
    emu.faults.clear()
    return _ok({"removed": n})


async def _fault_remove(emu: Emulator, request: web.Request) -> web.Response:
    return _ok({"removed": int(emu.faults.remove(int(request.path.rstrip("/").rsplit("/", 1)[1])))})


async def _log_read(emu: Emulator, request: web.Request) -> web.Response:
    since = int(request.query.get("since", "0"))
    limit = request.query.get("limit")
    entries = emu.log.since(since, int(limit) if limit else None)
    return _ok({"entries": entries, "last_seq": emu.log.seq})


async def _log_clear(emu: Emulator, request: web.Request) -> web.Response:
    emu.log.clear()
    return _ok({"last_seq": emu.log.seq})


async def _stats(emu: Emulator, request: web.Request) -> web.Response:
    if request.method == "DELETE":
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


async def _files(emu: Emulator, request: web.Request) -> web.Response:
    return _ok({"files": [f.summary() for f in emu.files.files.values()]})


async def _batches(emu: Emulator, request: web.Request) -> web.Response:
    return _ok({"batches": emu.batches.summary()})


async def _reset(emu: Emulator, request: web.Request) -> web.Response:
    body = await _json(request)
    emu.reset()
    if body:
        emu.configure(body)
    return _ok(redacted(emu.config))


Handler = Callable[[Emulator, web.Request], Awaitable[web.Response]]
#: path under /_emulator -> HTTP method (None: any) -> handler, as the module's docstring lists them
_ROUTES: dict[str, dict[str | None, Handler]] = {
    "/health": {None: _health},
    "/config": {None: _config},
    "/faults": {"GET": _faults_list, "POST": _faults_add, "DELETE": _faults_clear},
    "/log": {"GET": _log_read, "DELETE": _log_clear},
    "/stats": {None: _stats},
    "/files": {"GET": _files},
    "/batches": {"GET": _batches},
    "/reset": {"POST": _reset},
}


def _handler(path: str, method: str) -> Handler | None:
    if path.startswith("/faults/") and method == "DELETE":
        return _fault_remove
    routes = _ROUTES.get(path, {})
    return routes.get(method) or routes.get(None)


async def handle(emu: Emulator, request: web.Request) -> web.StreamResponse:
    handler = _handler(request.path[len("/_emulator") :].rstrip("/"), request.method)
    if handler is None:
        return _bad(f"no control endpoint {request.method} {request.path}", 404)
    try:
        return await handler(emu, request)
    except (ConfigError, RuleError) as exc:
        return _bad(str(exc))
    except (ValueError, TypeError) as exc:
        return _bad(f"bad request: {exc}")
