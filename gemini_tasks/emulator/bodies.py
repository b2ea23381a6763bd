"""Request bodies: read within a size limit and parsed as a JSON object, refused with the API's own errors."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from . import wire


def _too_large(limit: int) -> wire.ApiError:
    return wire.ApiError(400, f"Request payload size exceeds the limit: {limit} bytes.")


async def read_json_object(request: web.Request, limit: int,
                           entry: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
    """The body as a JSON object and its size in bytes; a declared or actual size over ``limit`` bytes, bad JSON
    or another JSON value is a 400. With ``entry`` (the request-log entry), the bytes read are recorded in it
    as ``bytes_in`` before the size is checked, so a refused body still counts."""
    if (request.content_length or 0) > limit:
        raise _too_large(limit)
    raw = await request.read()
    if entry is not None:
        entry["bytes_in"] = len(raw)
    if len(raw) > limit:
        raise _too_large(limit)
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise wire.ApiError(400, "Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(body, dict):
        raise wire.ApiError(400, "Invalid JSON payload received. Expected an object.")
    return body, len(raw)
