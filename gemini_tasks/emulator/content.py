"""Reading a normalised generateContent request: parts summary, fingerprint and token estimate.

One pass over `contents` gives everything the handler needs: the request-log view of the parts
(in order, with mime types and sizes), the prompt text for echoing and fault matching, the files
it references, a short fingerprint that identifies the request in the response text, and a
token count shaped like the real API's (about 4 characters per text token, per-modality media).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import wire

# An emulator (or real Gemini) file URI: .../v1*/files/{id}, or a bare "files/{id}".
_FILE_URI_RE = re.compile(r"^(?:(?:https?://([^/]+))?(?:/[^?#]*)?/v1\w*/)?files/([a-z0-9-]{1,40})$")
_REAL_FILE_HOSTS = frozenset({"generativelanguage.googleapis.com"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]", "0.0.0.0"})

TEXT_CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 258
AUDIO_TOKENS_PER_SECOND = 32
VIDEO_FRAME_TOKENS = 258
EXTERNAL_VIDEO_TOKENS = 1000  # a YouTube URL's length is unknown; a fixed, modest guess


@dataclass(slots=True)
class FileRef:
    file_id: str
    uri: str
    index: int  # position in the flattened part list


@dataclass(slots=True)
class Summary:
    parts: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    file_refs: list[FileRef] = field(default_factory=list)
    tokens_by_modality: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""
    media_notes: list[str] = field(default_factory=list)

    @property
    def prompt_text(self) -> str:
        return "\n".join(self.texts)

    @property
    def prompt_tokens(self) -> int:
        return sum(self.tokens_by_modality.values())

    def tokens_details(self) -> list[dict[str, Any]]:
        return [{"modality": m, "tokenCount": n} for m, n in self.tokens_by_modality.items()]


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / TEXT_CHARS_PER_TOKEN)


def _modality(mime: str | None) -> str:
    mime = (mime or "").lower()
    if mime.startswith("image/"):
        return "IMAGE"
    if mime.startswith("audio/"):
        return "AUDIO"
    if mime.startswith("video/"):
        return "VIDEO"
    if mime.startswith("text/"):
        return "TEXT"
    return "DOCUMENT"


def _duration_seconds(video_metadata: dict | None) -> float | None:
    if not video_metadata or "end_offset" not in video_metadata:
        return None
    try:
        start = wire.parse_duration(video_metadata.get("start_offset", 0))
        end = wire.parse_duration(video_metadata["end_offset"])
    except (TypeError, ValueError):
        return None
    return max(0.0, end - start)


def media_tokens(mime: str | None, size: int | None, video_metadata: dict | None) -> tuple[str, int]:
    """(modality, tokens) with the real API's per-modality rates, estimated from size when needed."""
    modality = _modality(mime)
    if modality == "IMAGE":
        return modality, IMAGE_TOKENS
    seconds = _duration_seconds(video_metadata)
    if modality == "VIDEO":
        if seconds is not None:
            fps = float((video_metadata or {}).get("fps") or 1.0)
            return modality, max(1, int(seconds * (VIDEO_FRAME_TOKENS * fps + AUDIO_TOKENS_PER_SECOND)))
        return modality, EXTERNAL_VIDEO_TOKENS if size is None else max(1, size // 1000)
    if modality == "AUDIO":
        if seconds is not None:
            return modality, max(1, int(seconds * AUDIO_TOKENS_PER_SECOND))
        return modality, AUDIO_TOKENS_PER_SECOND * 30 if size is None else max(1, size // 500)
    if modality == "TEXT":
        return modality, 1 if not size else max(1, size // TEXT_CHARS_PER_TOKEN)
    return modality, IMAGE_TOKENS * max(1, (size or 0) // 50_000)


def emulator_file_id(uri: str, host: str) -> str | None:
    """The file id when `uri` names a file of this emulator (or of the real API), else None."""
    m = _FILE_URI_RE.match(uri)
    if not m:
        return None
    uri_host = m.group(1)
    if uri_host is None or uri_host == host or uri_host in _REAL_FILE_HOSTS:
        return m.group(2)
    # Same emulator reached under another loopback name (localhost vs 127.0.0.1).
    name, _, port = uri_host.rpartition(":")
    if name in _LOOPBACK and port == host.rpartition(":")[2] and host.rpartition(":")[0] in _LOOPBACK:
        return m.group(2)
    return None


def _content_list(contents: Any) -> list[Any]:
    """``contents`` as a list of Content objects (one alone is a list of one); missing or malformed is a 400."""
    if isinstance(contents, dict):
        contents = [contents]
    if contents is None or contents == []:
        raise wire.ApiError(400, "* GenerateContentRequest.contents: contents is not specified\n")
    if not isinstance(contents, list):
        raise wire.ApiError(
            400,
            "Invalid value at 'contents' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content), "
            + json.dumps(contents)[:100],
        )
    return contents


def _count_media(s: Summary, mime: str | None, size: int | None, vm: Any) -> None:
    modality, n = media_tokens(mime, size, vm)
    s.tokens_by_modality[modality] = s.tokens_by_modality.get(modality, 0) + n


def _text_part(s: Summary, part: dict[str, Any], text_limit: int) -> Any:
    text = part["text"] if isinstance(part["text"], str) else str(part["text"])
    s.texts.append(text)
    s.parts.append({"kind": "text", "text": text[:text_limit], "size": len(text)})
    return ("t", text)


def _inline_part(s: Summary, part: dict[str, Any], where: str) -> Any:
    blob = part["inline_data"] or {}
    mime = blob.get("mime_type")
    vm = part.get("video_metadata")
    try:
        raw = wire.b64decode_any(blob.get("data") or "")
    except (binascii.Error, ValueError):
        raise wire.ApiError(
            400, f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
        ) from None
    entry: dict[str, Any] = {"kind": "inline", "mime_type": mime, "size": len(raw)}
    if vm:
        entry["video_metadata"] = vm
    s.parts.append(entry)
    _count_media(s, mime, len(raw), vm)
    s.media_notes.append(f"inline {mime} {len(raw)}B")
    return ("i", mime, hashlib.sha256(raw).hexdigest(), vm)


def _file_part(s: Summary, part: dict[str, Any], host: str, file_size: Callable[[str], int | None]) -> Any:
    fd = part["file_data"] or {}
    uri = str(fd.get("file_uri") or "")
    mime = fd.get("mime_type")
    vm = part.get("video_metadata")
    entry: dict[str, Any] = {"kind": "file", "mime_type": mime, "file_uri": uri}
    if vm:
        entry["video_metadata"] = vm
    fid = emulator_file_id(uri, host)
    size = None
    if fid is not None:
        s.file_refs.append(FileRef(fid, uri, len(s.parts)))
        size = file_size(fid)
        entry["file_id"] = fid
        if size is not None:
            entry["size"] = size
    s.parts.append(entry)
    _count_media(s, mime, size, vm)
    s.media_notes.append(f"file {mime}")
    return ("f", uri, mime, vm)


def _part(s: Summary, part: Any, where: str, host: str, file_size: Callable[[str], int | None],
          text_limit: int) -> Any:
    """Record one part in ``s``; returns what the request's fingerprint takes from it."""
    if not isinstance(part, dict):
        raise wire.ApiError(400, f"Invalid value at '{where}': expected a Part")
    if "text" in part and not part.get("thought"):
        return _text_part(s, part, text_limit)
    if "inline_data" in part:
        return _inline_part(s, part, where)
    if "file_data" in part:
        return _file_part(s, part, host, file_size)
    s.parts.append({"kind": next(iter(part), "empty")})
    return ("o", json.dumps(part, sort_keys=True, default=str))


def summarize(
    contents: Any,
    host: str,
    file_size: Callable[[str], int | None],
    text_limit: int = 200,
) -> Summary:
    """Walk `contents` (already normalised to snake_case); raise ApiError on undecodable data."""
    s = Summary()
    desc: list[Any] = []
    for ci, content in enumerate(_content_list(contents)):
        if not isinstance(content, dict):
            raise wire.ApiError(400, f"Invalid value at 'contents[{ci}]': expected a Content object")
        desc.append(content.get("role", ""))
        for pi, part in enumerate(content.get("parts") or ()):
            desc.append(_part(s, part, f"contents[{ci}].parts[{pi}]", host, file_size, text_limit))
    text_chars = sum(len(t) for t in s.texts)
    tokens = s.tokens_by_modality
    if text_chars or not tokens:
        tokens["TEXT"] = tokens.get("TEXT", 0) + max(1, math.ceil(text_chars / TEXT_CHARS_PER_TOKEN))
        # keep TEXT first, the way the real API lists it
        s.tokens_by_modality = {"TEXT": tokens.pop("TEXT"), **tokens}
    s.fingerprint = hashlib.sha256(json.dumps(desc, default=str).encode("utf-8")).hexdigest()[:10]
    return s


def instruction_text(system_instruction: Any) -> str | None:
    """Joined text of a systemInstruction (a Content, a list of parts, or a bare string)."""
    if system_instruction is None:
        return None
    if isinstance(system_instruction, str):
        return system_instruction
    parts = system_instruction.get("parts") if isinstance(system_instruction, dict) else system_instruction
    if not isinstance(parts, list):
        return None
    return "\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
