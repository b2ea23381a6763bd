"""The aiohttp application: routing, the per-request log wrapper, and `run`.

One catch-all route dispatches on precompiled regexes.  That keeps every API request, including
404s and auth failures, flowing through one place that times it and appends it to the request log,
and lets any path prefix before the `v1*` segment work (the SDK keeps a base_url path prefix).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import batches, control_server, files_api, generate, wire
from .shared_state import ConnectionAborted, Emulator

log = logging.getLogger("gemini_tasks.emulator")

EMULATOR = web.AppKey("emulator", Emulator)

_GENERATE_RE = re.compile(
    r"^(?P<prefix>.*?)/(?P<version>v1\w*)/(?P<model>(?:models|tunedModels)/[^:/]+)"
    r":(?P<method>generateContent|streamGenerateContent|countTokens)$"
)
_UPLOAD_RE = re.compile(r"^(?P<prefix>.*?)/upload/(?P<version>v1\w*)/files$")
_FILE_RE = re.compile(r"^(?P<prefix>.*?)/(?P<version>v1\w*)/files/(?P<id>[^/:]+)$")
_FILES_RE = re.compile(r"^(?P<prefix>.*?)/(?P<version>v1\w*)/files$")
_DOWNLOAD_RE = re.compile(r"^(?P<prefix>.*?)/(?P<version>v1\w*)/files/(?P<id>[^/:]+):download$")
_BATCH_CREATE_RE = re.compile(
    r"^(?P<prefix>.*?)/(?P<version>v1\w*)/(?P<model>models/[^:/]+):batchGenerateContent$"
)
_BATCH_RE = re.compile(r"^(?P<prefix>.*?)/(?P<version>v1\w*)/batches/(?P<id>[^/:]+)$")
_BATCH_CANCEL_RE = re.compile(r"^(?P<prefix>.*?)/(?P<version>v1\w*)/batches/(?P<id>[^/:]+):cancel$")
_BATCHES_RE = re.compile(r"^(?P<prefix>.*?)/(?P<version>v1\w*)/batches$")

MAX_BODY_BYTES = 1024 * 1024 * 1024
_ERROR_HEADERS = {"Content-Type": wire.JSON_CT}
_UPLOAD_ERROR_HEADERS = {"Content-Type": wire.JSON_CT, "X-Goog-Upload-Status": "final"}


Handler = Callable[..., Awaitable[web.StreamResponse]]


def _generate(emu: Emulator, request: web.Request, entry: dict[str, Any], version: str, model: str,
              method: str) -> Awaitable[web.StreamResponse]:
    entry["endpoint"] = method
    return generate.handle(emu, request, entry, version, model, method)


def _upload(emu: Emulator, request: web.Request, entry: dict[str, Any], prefix: str,
            version: str) -> Awaitable[web.StreamResponse]:
    upload_id = request.query.get("upload_id")
    if upload_id:
        entry["endpoint"] = "upload_chunk"
        return files_api.upload_chunk(emu, request, entry, upload_id)
    entry["endpoint"] = "upload_start"
    return files_api.upload_start(emu, request, entry, prefix, version)


#: (HTTP method, path, endpoint (None: the handler names it), handler, the path's parts it is given), in order
_ROUTES: tuple[tuple[str, re.Pattern[str], str | None, Handler, tuple[str, ...]], ...] = (
    ("POST", _GENERATE_RE, None, _generate, ("version", "model", "method")),
    ("POST", _UPLOAD_RE, None, _upload, ("prefix", "version")),
    ("POST", _BATCH_CREATE_RE, "batches.create", batches.create, ("prefix", "version", "model")),
    ("POST", _BATCH_CANCEL_RE, "batches.cancel", batches.cancel, ("id",)),
    ("GET", _FILE_RE, "files.get", files_api.files_get, ("id",)),
    ("GET", _FILES_RE, "files.list", files_api.files_list, ()),
    ("GET", _DOWNLOAD_RE, "files.download", files_api.files_download, ("id",)),
    ("GET", _BATCH_RE, "batches.get", batches.get, ("id",)),
    ("GET", _BATCHES_RE, "batches.list", batches.list_jobs, ()),
    ("DELETE", _FILE_RE, "files.delete", files_api.files_delete, ("id",)),
    ("DELETE", _BATCH_RE, "batches.delete", batches.delete, ("id",)),
)


def _route(emu: Emulator, request: web.Request, entry: dict[str, Any]) -> Awaitable[web.StreamResponse] | None:
    """The handler call for this request (its endpoint recorded in ``entry``), or None: no such endpoint."""
    for method, pattern, endpoint, handler, parts in _ROUTES:
        m = pattern.match(request.path) if method == request.method else None
        if m:
            if endpoint is not None:
                entry["endpoint"] = endpoint
            return handler(emu, request, entry, *(m[p] for p in parts))
    return None


async def _dispatch(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    path = request.path
    if path.startswith("/_emulator/"):
        return await control_server.handle(emu, request)

    t0 = time.perf_counter()
    entry: dict[str, Any] = {
        "seq": 0,
        "t": time.time(),
        "method": request.method,
        "path": path,
        "endpoint": "unknown",
        "key_label": None,
        "project": None,
        "model": None,
        "parts": None,
        "system_instruction": None,
        "generation_config": None,
        "status": None,
        "quota": None,
        "fault": None,
        "duration": None,
    }
    transport = request.transport
    if transport is not None:
        peer = transport.get_extra_info("peername")
        if peer:
            entry["client_port"] = peer[1]  # identifies the TCP connection: keep-alive is visible
            entry["client_addr"] = peer[0]  # which host called (multi-host tests in network namespaces)
    server_timeout = request.headers.get("X-Server-Timeout")
    if server_timeout is not None:
        entry["server_timeout"] = server_timeout  # the SDK sends ceil(timeout seconds)
    emu.in_flight += 1
    resp: web.StreamResponse
    try:
        handler = _route(emu, request, entry)
        if handler is None:
            raise wire.ApiError(404, f"Method not found: {request.method} {path}", "NOT_FOUND")
        resp = await handler
        entry["status"] = resp.status
    except wire.ApiError as err:
        resp = _error_response(err, entry)
    except ConnectionAborted:
        entry["status"] = 0  # no response at all
        resp = web.Response(status=500)  # never reaches the client: the transport is gone
    except (asyncio.CancelledError, web.HTTPException):
        raise
    except Exception:  # a bug in the emulator: still answer like Google would, and say so loudly
        log.exception("emulator bug handling %s %s", request.method, path)
        resp = _error_response(wire.ApiError(500), entry)
    finally:
        emu.in_flight -= 1
        entry["duration"] = time.perf_counter() - t0
        transport = request.transport
        if transport is None or transport.is_closing():
            entry["client_gone"] = True
        emu.log.append(entry)
    return resp


def _error_response(err: wire.ApiError, entry: dict[str, Any]) -> web.Response:
    headers = _UPLOAD_ERROR_HEADERS if entry["endpoint"].startswith("upload") else _ERROR_HEADERS
    if err.headers:
        headers = {**headers, **err.headers}
    entry["status"] = err.code
    entry["quota"] = err.quota
    if err.html is not None:
        headers = {**headers, "Content-Type": "text/html; charset=UTF-8"}
        return web.Response(body=err.html, status=err.code, headers=headers)
    return web.Response(body=wire.dumps(err.body()), status=err.code, headers=headers)


def create_app(config: dict[str, Any] | None = None) -> web.Application:
    """A fresh emulator application; `config` is the start-up config (reset() returns to it)."""
    emu = Emulator(config)
    # The per-request limit is checked in the handler against the live config; this is a backstop.
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[EMULATOR] = emu
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


def format_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Set up and start a TCP site; returns the runner and the URL actually bound (port 0 resolved)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, format_url(host, bound_port)


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    config: dict[str, Any] | None = None,
    on_ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set (or SIGINT/SIGTERM when running in the main thread)."""
    app = create_app(config)
    runner, url = await start_site(app, host, port)
    log.info("emulator listening on %s", url)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread / not supported: the caller owns `stop`
    if on_ready is not None:
        on_ready(url)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(
    host: str = "127.0.0.1",
    port: int = 0,
    config: dict[str, Any] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Blocking: serve until SIGINT/SIGTERM.  `on_ready(url)` is called once it is listening."""
    asyncio.run(serve(host, port, config, on_ready))
