"""Files API handlers: resumable upload (start, chunks, finalize), get, delete, list.

Follows the wire doc §5 to the letter where the SDK depends on it: the start answer carries an
absolute upload URL on this emulator's own host:port; every chunk answer, errors included,
carries `X-Goog-Upload-Status` (without it the SDK silently re-sends the chunk with 1-2-4 s
sleeps); the finalize answer is `{"file": File}` in state PROCESSING.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aiohttp import web

from . import wire
from .shared_state import Emulator
from .faults import RequestFacts
from .files import StoredFile, UploadSession, advance
from .generate import json_response

CHUNK_GRANULARITY = 8 * 1024 * 1024
_FILE_ID_RE = re.compile(r"^[a-z0-9-]{1,40}$")


def _int_header(request: web.Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise wire.ApiError(400, f"Invalid value for header {name}: {value!r}") from None


async def upload_start(
    emu: Emulator, request: web.Request, entry: dict[str, Any], prefix: str, version: str
) -> web.StreamResponse:
    ident = emu.authenticate(request, entry)
    facts = RequestFacts("upload_start", request.method, request.path, None, ident.label, ident.project)
    await emu.apply_faults(request, facts, entry)
    raw = await request.read()
    try:
        body = wire.normalize(json.loads(raw)) if raw.strip() else {}
    except ValueError:
        raise wire.ApiError(400, "Invalid JSON payload received.") from None
    spec = body.get("file") or {} if isinstance(body, dict) else {}
    requested = spec.get("name")
    if requested is not None:
        fid = str(requested).removeprefix("files/")
        if not _FILE_ID_RE.match(fid):
            raise wire.ApiError(
                400, f"Invalid file name '{requested}': use lowercase letters, digits and dashes (max 40)."
            )
        if emu.files.get(fid, time.time()) is not None:
            raise wire.ApiError(409, f"File files/{fid} already exists.", "ALREADY_EXISTS")
        requested = fid
    declared = _int_header(request, "X-Goog-Upload-Header-Content-Length")
    if declared is None and spec.get("size_bytes") is not None:
        declared = int(spec["size_bytes"])
    mime = (
        spec.get("mime_type") or request.headers.get("X-Goog-Upload-Header-Content-Type") or "application/octet-stream"
    )
    base = f"{request.scheme}://{request.host}{prefix}"
    session = UploadSession(
        upload_id=emu.files.new_upload_id(),
        project=ident.project,
        key_label=ident.label,
        base=base,
        version=version,
        display_name=spec.get("display_name"),
        mime_type=str(mime),
        declared_size=declared,
        requested_name=requested,
        source_name=request.headers.get("X-Goog-Upload-File-Name"),
        created=time.time(),
    )
    if keeps_content(session.mime_type, session.source_name):
        session.content = bytearray()
    emu.files.add_session(session)
    entry["upload_id"] = session.upload_id
    entry["mime_type"] = session.mime_type
    entry["declared_size"] = declared
    url = f"{base}/upload/{version}/files?upload_id={session.upload_id}&upload_protocol=resumable"
    return web.Response(
        status=200,
        headers={
            "X-Goog-Upload-Status": "active",
            "X-Goog-Upload-URL": url,
            "X-Goog-Upload-Control-URL": url,
            "X-Goog-Upload-Chunk-Granularity": str(CHUNK_GRANULARITY),
        },
    )


async def upload_chunk(
    emu: Emulator, request: web.Request, entry: dict[str, Any], upload_id: str
) -> web.StreamResponse:
    session = emu.files.sessions.get(upload_id)
    if session is None:
        raise wire.ApiError(404, "Upload session not found or already finalized.", "NOT_FOUND")
    entry["key_label"] = session.key_label
    entry["project"] = session.project
    entry["upload_id"] = upload_id
    commands = {c.strip() for c in request.headers.get("X-Goog-Upload-Command", "upload").lower().split(",")}
    finalize = "finalize" in commands
    entry["upload_command"] = ", ".join(sorted(commands))
    facts = RequestFacts(
        "upload_chunk", request.method, request.path, None, session.key_label, session.project, None, finalize
    )
    rule = await emu.apply_faults(request, facts, entry)
    progress = {"X-Goog-Upload-Size-Received": str(session.received)}

    if "cancel" in commands:
        emu.files.sessions.pop(upload_id, None)
        return web.Response(status=200, headers={"X-Goog-Upload-Status": "cancelled"})
    if "query" in commands:
        return web.Response(status=200, headers={"X-Goog-Upload-Status": "active", **progress})

    offset = _int_header(request, "X-Goog-Upload-Offset")
    if offset is not None and offset != session.received:
        raise wire.ApiError(400, f"Invalid upload offset {offset}: the server has received {session.received} bytes.")
    n = 0
    hasher = session.hasher
    async for data in request.content.iter_chunked(1 << 20):
        hasher.update(data)  # hash and drop: memory stays bounded whatever the file size
        if session.content is not None:
            session.content.extend(data)  # JSON/JSONL only: Batch API input
        n += len(data)
    session.received += n
    emu.files.bytes_received += n
    entry["bytes_in"] = n
    entry["offset"] = offset if offset is not None else session.received - n
    if not finalize:
        return web.Response(
            status=200,
            headers={"X-Goog-Upload-Status": "active", "X-Goog-Upload-Size-Received": str(session.received)},
        )

    if session.declared_size is not None and session.received != session.declared_size:
        raise wire.ApiError(
            400,
            f"Upload size {session.received} does not match the declared size {session.declared_size}.",
        )
    del emu.files.sessions[upload_id]
    fid = session.requested_name or emu.files.new_file_id()
    now = time.time()
    fail_names = set(emu.config["file_fail_names"])
    fail = (rule is not None and rule.action == "file_failed") or bool(
        fail_names & {fid, f"files/{fid}", session.display_name, session.source_name}
    )
    f = StoredFile(
        id=fid,
        project=session.project,
        key_label=session.key_label,
        display_name=session.display_name,
        source_name=session.source_name,
        mime_type=session.mime_type,
        size=session.received,
        sha256=hasher.digest(),
        uri=f"{session.base}/{session.version}/files/{fid}",
        created=now,
        fail=fail,
        content=bytes(session.content) if session.content is not None else None,
    )
    cfg = emu.config
    advance(f, now, cfg["file_active_after_gets"], cfg["file_active_after_seconds"])
    emu.files.add_file(f)
    entry["file"] = fid
    entry["mime_type"] = f.mime_type
    entry["size"] = f.size
    entry["sha256"] = f.sha256.hex()
    return json_response({"file": f.to_json()}, headers={"X-Goog-Upload-Status": "final"})


def keeps_content(mime: str, source_name: str | None) -> bool:
    """Uploads whose bytes the emulator keeps: JSON Lines (Batch API input files)."""
    return "json" in mime.lower() or (source_name or "").lower().endswith((".jsonl", ".json"))


async def files_download(
    emu: Emulator, request: web.Request, entry: dict[str, Any], file_id: str
) -> web.StreamResponse:
    """`files.download`: only generated files (batch output) can be downloaded, as on the real API."""
    ident = emu.authenticate(request, entry)
    entry["file"] = file_id
    await emu.apply_faults(
        request, RequestFacts("files.download", request.method, request.path, None, ident.label, ident.project), entry
    )
    f = _owned(emu, file_id, ident.project)
    if not f.generated or f.content is None:
        raise wire.ApiError(400, f"File files/{file_id} is not downloadable: only generated files can be downloaded.")
    entry["bytes_out"] = len(f.content)
    return web.Response(body=f.content, headers={"Content-Type": "application/octet-stream"})


def _owned(emu: Emulator, file_id: str, project: str) -> StoredFile:
    f = emu.files.get(file_id, time.time())
    if f is None or f.project != project:
        raise wire.file_denied(file_id)
    return f


async def files_get(emu: Emulator, request: web.Request, entry: dict[str, Any], file_id: str) -> web.StreamResponse:
    ident = emu.authenticate(request, entry)
    entry["file"] = file_id
    await emu.apply_faults(
        request, RequestFacts("files.get", request.method, request.path, None, ident.label, ident.project), entry
    )
    f = _owned(emu, file_id, ident.project)
    f.gets += 1
    now = time.time()
    advance(f, now, emu.config["file_active_after_gets"], emu.config["file_active_after_seconds"])
    entry["file_state"] = f.state
    return json_response(f.to_json())


async def files_delete(emu: Emulator, request: web.Request, entry: dict[str, Any], file_id: str) -> web.StreamResponse:
    ident = emu.authenticate(request, entry)
    entry["file"] = file_id
    await emu.apply_faults(
        request, RequestFacts("files.delete", request.method, request.path, None, ident.label, ident.project), entry
    )
    _owned(emu, file_id, ident.project)
    emu.files.delete(file_id)
    return json_response({})


async def files_list(emu: Emulator, request: web.Request, entry: dict[str, Any]) -> web.StreamResponse:
    ident = emu.authenticate(request, entry)
    await emu.apply_faults(
        request, RequestFacts("files.list", request.method, request.path, None, ident.label, ident.project), entry
    )
    try:
        size = min(100, max(1, int(request.query.get("pageSize", "10"))))
        start = int(request.query.get("pageToken") or 0)
    except ValueError:
        raise wire.ApiError(400, "Invalid pageSize or pageToken.") from None
    mine = emu.files.list_for(ident.project)
    now = time.time()
    page = mine[start : start + size]
    for f in page:
        advance(f, now, emu.config["file_active_after_gets"], emu.config["file_active_after_seconds"])
    body: dict[str, Any] = {"files": [f.to_json() for f in page]} if page else {}
    if start + size < len(mine):
        body["nextPageToken"] = str(start + size)
    return json_response(body)
