"""Rejecting a bad prompt_data on the caller's side, before it is enqueued, and shipping good ones as JSON.

Why before enqueueing: a request that cannot succeed should fail in the caller's stack with a message
that names the field, not minutes later in a worker as "Persistent API call error." (the original only
logged the reason). Everything :func:`gemini_tasks.gemini.content.build_contents` would refuse is refused
here too, plus what the API would refuse (wrong mime family, malformed offsets, inline payload over the
request limit, unknown generation_config fields).

Celery messages are JSON only (no pickle), so :func:`to_wire` / :func:`from_wire` carry bytes as
``{"__b64__": "<base64>"}`` and a ``GenerateContentConfig`` as its JSON dict.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from google.genai import types

from .config import GenerationConfigError, build_generate_config
from .content import INLINE_REQUEST_LIMIT, KINDS, SOURCE_ORDER, VIDEO, as_list, inline_cost, token_counts
from .errors import InvalidPromptError

__all__ = [
    "ALLOWED_FIELDS",
    "InvalidPromptError",
    "URL_SCHEMES",
    "from_wire",
    "to_wire",
    "validate_prompt",
]

MEDIA_FIELDS = (
    "audio_path",
    "audio_bytes",
    "audio_url",
    "audio_mime_type",
    "video_path",
    "video_bytes",
    "video_url",
    "video_mime_type",
    "video_metadata",
    "image_path",
    "image_bytes",
    "image_url",
    "image_mime_type",
)
#: Every top-level key a prompt_data dict may have.
ALLOWED_FIELDS = frozenset({"prompt", "metadata", "generation_config", *MEDIA_FIELDS})
BYTES_FIELDS = ("audio_bytes", "video_bytes", "image_bytes")
PATH_FIELDS = ("audio_path", "video_path", "image_path")
URL_SCHEMES = frozenset({"http", "https", "gs"})
VIDEO_METADATA_FIELDS = frozenset(
    {"start_offset", "end_offset", "fps", "content_layers", "startOffset", "endOffset", "contentLayers"}
)
#: A proto Duration as the API takes it for video offsets: seconds with an optional fraction, then "s".
DURATION_RE = re.compile(r"^\d+(?:\.\d+)?s$")
MAX_FPS = 24.0  # the SDK documents the valid range as (0.0, 24.0]
_MIME_RE = re.compile(r"^(?P<family>[A-Za-z0-9][\w.+-]*)/(?P<subtype>[\w.+-]+)\s*(?:;.*)?$")
_B64 = "__b64__"


class _Problems:
    """Collects every problem so one error names them all (the first one's field is ``.field``)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append((field, message))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        text = "; ".join(f"{field}: {message}" for field, message in self.items)
        error = InvalidPromptError(f"invalid prompt_data: {text}", problems=self.items)
        error.field = self.items[0][0]
        raise error


def _fmt_mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _check_prompt(prompt_data: Mapping[str, Any], problems: _Problems) -> str:
    prompt = prompt_data.get("prompt")
    if prompt is None:
        return ""
    if not isinstance(prompt, str):
        problems.add("prompt", f"must be a string, got {type(prompt).__name__}")
        return ""
    return prompt


def _check_metadata(prompt_data: Mapping[str, Any], problems: _Problems) -> None:
    if "metadata" not in prompt_data or prompt_data["metadata"] is None:
        return
    metadata = prompt_data["metadata"]
    if not isinstance(metadata, Mapping):
        problems.add("metadata", f"must be a dict, got {type(metadata).__name__}")
        return
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        problems.add("metadata", f"must be JSON-serialisable (it travels in the task message): {exc}")
        return
    changed = _json_changes("metadata", metadata)
    if changed:
        problems.add("metadata", f"must come back unchanged from JSON (it travels in the task message): {changed}")


def _json_changes(path: str, value: Any) -> str | None:
    """Where ``value`` would not survive a JSON round trip unchanged (a tuple becomes a list, a key 1 becomes
    "1"), or None. Metadata is returned exactly as given, so these are refused rather than silently changed."""
    if isinstance(value, tuple):
        return f"{path} is a tuple, which comes back as a list; use a list"
    if isinstance(value, Mapping):
        if not isinstance(value, dict):
            return f"{path} is a {type(value).__name__}, which comes back as a dict; use a dict"
        for key, item in value.items():
            if not isinstance(key, str):
                return (f"{path} has the key {key!r} ({type(key).__name__}), which comes back as the string "
                        f"{json.dumps(key)}; use string keys")
            found = _json_changes(f"{path}[{key!r}]", item)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _json_changes(f"{path}[{i}]", item)
            if found:
                return found
    elif not isinstance(value, (str, int, float, type(None))):  # bool is an int; json.dumps refused the rest
        return f"{path} is a {type(value).__name__}, which JSON does not bring back as such"
    elif type(value) not in (str, int, float, bool, type(None)):
        plain = type(value).__mro__[1].__name__
        return f"{path} is a {type(value).__name__} (a subclass), which comes back as a plain {plain}"
    return None


def _check_list_shape(prompt_data: Mapping[str, Any], key: str, problems: _Problems) -> list[Any]:
    value = prompt_data.get(key)
    if isinstance(value, (set, frozenset, dict)) and key != "video_metadata":
        problems.add(key, f"must be a single value or a list, got {type(value).__name__}")
        return []
    return as_list(value)


def _check_paths(prompt_data: Mapping[str, Any], key: str, check_paths: bool, problems: _Problems) -> int:
    values = _check_list_shape(prompt_data, key, problems)
    for i, value in enumerate(values):
        where = f"{key}[{i}]" if isinstance(prompt_data.get(key), (list, tuple)) else key
        if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes):
            problems.add(where, f"must be a file path string, got {type(value).__name__}")
            continue
        path = os.fspath(value)
        if not path.strip():
            problems.add(where, "is an empty path")
            continue
        if not check_paths:
            continue
        if not os.path.exists(path):
            problems.add(where, f"file not found: {path}")
        elif not os.path.isfile(path):
            problems.add(where, f"not a regular file: {path}")
        elif not os.access(path, os.R_OK):
            problems.add(where, f"file is not readable: {path}")
        elif os.path.getsize(path) == 0:
            problems.add(where, f"file is empty: {path}")
    return len(values)


def _check_bytes(prompt_data: Mapping[str, Any], key: str, problems: _Problems) -> tuple[int, int]:
    values = _check_list_shape(prompt_data, key, problems)
    total = 0
    for i, value in enumerate(values):
        where = f"{key}[{i}]" if isinstance(prompt_data.get(key), (list, tuple)) else key
        if not isinstance(value, (bytes, bytearray, memoryview)):
            problems.add(where, f"must be bytes, got {type(value).__name__}")
            continue
        size = len(value) if not isinstance(value, memoryview) else value.nbytes
        if size == 0:
            problems.add(where, "is empty (0 bytes)")
        total += inline_cost(size)
    return len(values), total


def _check_urls(prompt_data: Mapping[str, Any], key: str, problems: _Problems) -> int:
    values = _check_list_shape(prompt_data, key, problems)
    for i, value in enumerate(values):
        where = f"{key}[{i}]" if isinstance(prompt_data.get(key), (list, tuple)) else key
        if not isinstance(value, str):
            problems.add(where, f"must be a URL string, got {type(value).__name__}")
            continue
        try:
            parsed = urlparse(value)
        except ValueError as exc:
            problems.add(where, f"malformed URL {value!r}: {exc}")
            continue
        if parsed.scheme.lower() not in URL_SCHEMES:
            problems.add(
                where, f"URL scheme must be one of {', '.join(sorted(URL_SCHEMES))}, got {value!r}"
            )
        elif not parsed.netloc or any(c.isspace() for c in value):
            problems.add(where, f"malformed URL {value!r}")
    return len(values)


def _check_mime(prompt_data: Mapping[str, Any], kind: str, count: int, problems: _Problems) -> None:
    key = f"{kind}_mime_type"
    spec = prompt_data.get(key)
    if spec is None:
        return
    if isinstance(spec, str):
        entries = [(key, spec)]
    elif isinstance(spec, (list, tuple)):
        if len(spec) != count:
            problems.add(
                key,
                f"has {len(spec)} entries but there are {count} {kind} files; give one mime type per file "
                f"in the order {', '.join(k for _, k in SOURCE_ORDER[kind])}, or a single string for all",
            )
        entries = [(f"{key}[{i}]", m) for i, m in enumerate(spec) if m is not None]
    else:
        problems.add(key, f"must be a string or a list of strings, got {type(spec).__name__}")
        return
    for where, mime in entries:
        if not isinstance(mime, str):
            problems.add(where, f"must be a string, got {type(mime).__name__}")
            continue
        match = _MIME_RE.match(mime.strip())
        if not match:
            problems.add(where, f"malformed mime type {mime!r}")
        elif match.group("family").lower() != kind:
            problems.add(where, f"mime type {mime!r} is not a {kind} type (expected {kind}/...)")


def _check_offset(where: str, name: str, value: Any, problems: _Problems) -> float | None:
    if not isinstance(value, str) or not DURATION_RE.match(value.strip()):
        problems.add(where, f"{name} must be a duration string like '12s' or '1.5s', got {value!r}")
        return None
    return float(value.strip()[:-1])


def _video_metadata_entries(raw: Any, video_count: int, problems: _Problems) -> list[tuple[str, Any]]:
    """``video_metadata`` (one dict, or a list following the video order) as (where, entry) pairs; none when it
    is neither. More entries than videos is a problem."""
    if isinstance(raw, Mapping):
        entries = [("video_metadata", raw)]
    elif isinstance(raw, (list, tuple)):
        entries = [(f"video_metadata[{i}]", entry) for i, entry in enumerate(raw)]
    else:
        problems.add("video_metadata", f"must be a dict or a list of dicts, got {type(raw).__name__}")
        return []
    if len(entries) > video_count:
        problems.add(
            "video_metadata",
            f"has {len(entries)} entries but there are only {video_count} videos "
            "(entries follow the video order: video_url, video_path, video_bytes)",
        )
    return entries


def _check_clip(where: str, entry: Mapping[str, Any], problems: _Problems) -> None:
    """The clip's offsets are durations and it ends after it starts (either spelling of each field)."""
    start = end = None
    for name in ("start_offset", "startOffset"):
        if entry.get(name) is not None:
            start = _check_offset(where, "start_offset", entry[name], problems)
    for name in ("end_offset", "endOffset"):
        if entry.get(name) is not None:
            end = _check_offset(where, "end_offset", entry[name], problems)
    if start is not None and end is not None and end <= start:
        problems.add(where, f"end_offset ({end:g}s) must be after start_offset ({start:g}s)")


def _check_fps(where: str, fps: Any, problems: _Problems) -> None:
    if fps is None:
        return
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or math.isnan(fps):
        problems.add(where, f"fps must be a number, got {fps!r}")
    elif not 0 < fps <= MAX_FPS:
        problems.add(where, f"fps must be > 0 and <= {MAX_FPS:g}, got {fps!r}")


def _check_video_metadata_entry(where: str, entry: Any, problems: _Problems) -> None:
    if entry is None:
        return
    if not isinstance(entry, Mapping):
        problems.add(where, f"must be a dict, got {type(entry).__name__}")
        return
    unknown = sorted(str(k) for k in entry if k not in VIDEO_METADATA_FIELDS)
    if unknown:
        problems.add(
            where,
            f"unknown field(s) {', '.join(unknown)}; allowed: start_offset, end_offset, fps, content_layers",
        )
        return
    _check_clip(where, entry, problems)
    _check_fps(where, entry.get("fps"), problems)
    try:
        types.VideoMetadata.model_validate(dict(entry))
    except ValueError as exc:
        if not any(w == where for w, _ in problems.items):
            problems.add(where, f"invalid: {exc}")


def _check_video_metadata(prompt_data: Mapping[str, Any], video_count: int, problems: _Problems) -> None:
    raw = prompt_data.get("video_metadata")
    if raw is None:
        return
    for where, entry in _video_metadata_entries(raw, video_count, problems):
        _check_video_metadata_entry(where, entry, problems)


def validate_prompt(prompt_data: Any, *, check_paths: bool = True) -> None:
    """Raise :class:`InvalidPromptError` (a ``ValueError``) naming every problem and its field.

    ``check_paths``: also check that paths exist and are readable here (turn off when the caller does not
    see the workers' shared storage).
    """
    if not isinstance(prompt_data, Mapping):
        raise InvalidPromptError(
            f"prompt_data must be a dict, got {type(prompt_data).__name__}", field="prompt_data"
        )
    problems = _Problems()
    unknown = sorted(str(k) for k in prompt_data if k not in ALLOWED_FIELDS)
    if unknown:
        problems.add(
            "prompt_data",
            f"unknown field(s) {', '.join(unknown)}; allowed fields: {', '.join(sorted(ALLOWED_FIELDS))}",
        )
    prompt = _check_prompt(prompt_data, problems)
    _check_metadata(prompt_data, problems)

    counts = {kind: 0 for kind in KINDS}
    inline_total = len(prompt.encode("utf-8", "surrogatepass"))
    for kind in KINDS:
        counts[kind] += _check_paths(prompt_data, f"{kind}_path", check_paths, problems)
        n_bytes, cost = _check_bytes(prompt_data, f"{kind}_bytes", problems)
        counts[kind] += n_bytes
        inline_total += cost
        counts[kind] += _check_urls(prompt_data, f"{kind}_url", problems)
        _check_mime(prompt_data, kind, counts[kind], problems)
    _check_video_metadata(prompt_data, counts[VIDEO], problems)

    if inline_total > INLINE_REQUEST_LIMIT:
        problems.add(
            "audio_bytes/video_bytes/image_bytes",
            f"inline media take {_fmt_mb(inline_total)} in the request (base64-encoded), over the "
            f"{_fmt_mb(INLINE_REQUEST_LIMIT)} request limit; bytes cannot be uploaded from here, so pass a "
            "path on storage the workers share (audio_path/video_path/image_path) or a URL (audio_url/video_url/image_url)",
        )

    if not prompt.strip() and not any(counts.values()):
        problems.add("prompt", "no content provided: the prompt is empty and there are no audio, video or image "
                     "files")
    tokens = token_counts(prompt)
    for kind in KINDS:
        if tokens[kind] > counts[kind]:
            problems.add(
                "prompt",
                f"more <{kind}> tokens ({tokens[kind]}) than {kind} files ({counts[kind]} given in "
                f"{kind}_path/{kind}_bytes/{kind}_url)",
            )

    if prompt_data.get("generation_config") is not None:
        try:
            build_generate_config(prompt_data["generation_config"])
        except GenerationConfigError as exc:
            problems.add("generation_config", str(exc).removeprefix("generation_config: "))
    problems.raise_if_any()


# ------------------------------------------------------------------------------------------------ wire


def _encode_bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_B64: base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _decode_bytes(value: Any) -> Any:
    if isinstance(value, Mapping) and set(value) == {_B64} and isinstance(value[_B64], str):
        return base64.b64decode(value[_B64], validate=True)
    return value


def _map_single_or_list(value: Any, fn) -> Any:
    if isinstance(value, (list, tuple)):
        return [fn(v) for v in value]
    return fn(value)


def _path_to_str(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def to_wire(prompt_data: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-serialisable copy of a (validated) prompt_data for the Celery message."""
    wire: dict[str, Any] = {}
    for key, value in prompt_data.items():
        if key in BYTES_FIELDS:
            value = _map_single_or_list(value, _encode_bytes)
        elif key in PATH_FIELDS:
            value = _map_single_or_list(value, _path_to_str)
        elif key == "generation_config" and value is not None:
            from .structured import schema_to_wire

            value = schema_to_wire(value)  # a pydantic class as response_schema: its Schema, as the SDK sends it
            if isinstance(value, types.GenerateContentConfig):
                value = value.model_dump(mode="json", exclude_none=True)
            else:
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    config = build_generate_config(value)
                    value = config.model_dump(mode="json", exclude_none=True) if config else None
        elif isinstance(value, tuple):
            value = list(value)
        wire[key] = value
    return wire


def from_wire(wire: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`to_wire` (``generation_config`` stays a dict; build it with ``config``)."""
    data: dict[str, Any] = dict(wire)
    data.pop("file_checks", None)  # what the client validated (gemini.media_files): read by the worker only
    for key in BYTES_FIELDS:
        if key in data:
            data[key] = _map_single_or_list(data[key], _decode_bytes)
    return data
