"""Media paths mean the caller's files: resolved where the caller is, checked where the worker reads them.

A relative ``audio_path="audio1.mp3"`` means the file in the *application's* working directory. The client
turns every path into an absolute one before enqueueing and records what it validated (the size, and a
SHA-256 when the file is small). The worker checks that the file it is about to send is that file, so a
different ``audio1.mp3`` in the worker's directory, or a file changed in between, is refused with an error
saying so instead of being sent silently.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

PATH_FIELDS = ("audio_path", "video_path", "image_path")
#: the wire key (inside the request) that carries what the client validated, per absolute path
CHECKS_KEY = "file_checks"
#: files up to this size are also compared by SHA-256 (about 10 ms per MiB); larger ones by size
HASH_LIMIT = 8 * 1024 * 1024


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _absolute(value: Any) -> Any:
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        return os.path.abspath(os.fspath(value))
    return value


def resolve_paths(prompt_data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``prompt_data`` whose paths are absolute, resolved against this process's directory."""
    out = dict(prompt_data)
    for key in PATH_FIELDS:
        value = out.get(key)
        if value is None:
            continue
        out[key] = [_absolute(v) for v in value] if isinstance(value, (list, tuple)) else _absolute(value)
    return out


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: str) -> dict[str, Any]:
    """What identifies a file: its size, and its SHA-256 when it is at most :data:`HASH_LIMIT` bytes."""
    size = os.path.getsize(path)
    out: dict[str, Any] = {"size": size}
    if size <= HASH_LIMIT:
        out["sha256"] = sha256_of(path)
    return out


def file_checks(prompt_data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per absolute path of a (validated, resolved) prompt: its :func:`fingerprint`."""
    checks: dict[str, dict[str, Any]] = {}
    for key in PATH_FIELDS:
        for value in _as_list(prompt_data.get(key)) if prompt_data.get(key) is not None else []:
            path = os.fspath(value)
            if path not in checks:
                checks[path] = fingerprint(path)
    return checks


def mismatch(path: str, expected: Mapping[str, Any]) -> str | None:
    """Why the file at ``path`` here is not the one the caller validated, or None when it is."""
    size = os.path.getsize(path)
    if size != expected.get("size"):
        return f"it has {size} bytes here, {expected.get('size')} where the request was made"
    want = expected.get("sha256")
    if want and sha256_of(path) != want:
        return "its content differs from the file where the request was made (same size, different SHA-256)"
    return None
