"""Files API state: resumable upload sessions and stored files (metadata only).

Uploaded bytes are hashed as they stream in and then dropped, so a long benchmark that uploads
gigabytes keeps only a size and a sha256 per file.  File state moves PROCESSING -> ACTIVE (or
FAILED) lazily, when a files.get or a generateContent looks at it, on a configurable schedule.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .bounded import put_bounded, unused_id
from .wire import rfc3339

FILE_TTL_SECONDS = 48 * 3600.0
MAX_SESSIONS = 10000
MAX_FILES = 200000


@dataclass(slots=True)
class UploadSession:
    upload_id: str
    project: str
    key_label: str
    base: str  # scheme://host[/prefix] of the start request, for the file's uri
    version: str
    display_name: str | None
    mime_type: str
    declared_size: int | None
    requested_name: str | None
    source_name: str | None  # X-Goog-Upload-File-Name
    created: float
    received: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    content: bytearray | None = None  # kept only for JSON/JSONL uploads (Batch API input files)


@dataclass(slots=True)
class StoredFile:
    id: str
    project: str
    key_label: str
    display_name: str | None
    source_name: str | None
    mime_type: str
    size: int
    sha256: bytes
    uri: str
    created: float
    state: str = "PROCESSING"
    gets: int = 0
    fail: bool = False
    error: dict[str, Any] | None = None
    updated: float = 0.0
    content: bytes | None = None  # JSONL batch input, or a batch's generated output
    generated: bool = False  # written by the service (batch output): downloadable

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": f"files/{self.id}"}
        if self.display_name:
            out["displayName"] = self.display_name
        out.update(
            mimeType=self.mime_type,
            sizeBytes=str(self.size),
            createTime=rfc3339(self.created),
            updateTime=rfc3339(self.updated or self.created),
            expirationTime=rfc3339(self.created + FILE_TTL_SECONDS),
            sha256Hash=base64.b64encode(self.sha256.hex().encode()).decode(),
            uri=self.uri,
            state=self.state,
            source="GENERATED" if self.generated else "UPLOADED",
        )
        if self.generated:
            out["downloadUri"] = self.uri.replace(f"/files/{self.id}", f"/files/{self.id}:download?alt=media")
        if self.error:
            out["error"] = self.error
        return out

    def summary(self) -> dict[str, Any]:
        """Control-API view: includes owner and the plain hex sha256 for assertions."""
        return {
            "id": self.id,
            "name": f"files/{self.id}",
            "project": self.project,
            "key_label": self.key_label,
            "display_name": self.display_name,
            "source_name": self.source_name,
            "mime_type": self.mime_type,
            "size": self.size,
            "sha256": self.sha256.hex(),
            "state": self.state,
            "gets": self.gets,
            "uri": self.uri,
        }


class FileStore:
    def __init__(self) -> None:
        self.sessions: OrderedDict[str, UploadSession] = OrderedDict()
        self.files: OrderedDict[str, StoredFile] = OrderedDict()
        self.bytes_received = 0

    def clear(self) -> None:
        self.sessions.clear()
        self.files.clear()
        self.bytes_received = 0

    def new_upload_id(self) -> str:
        return "emu-" + secrets.token_urlsafe(18)

    def new_file_id(self) -> str:
        return unused_id(self.files, 6)

    def add_session(self, session: UploadSession) -> None:
        put_bounded(self.sessions, session.upload_id, session, MAX_SESSIONS)

    def add_file(self, f: StoredFile) -> None:
        put_bounded(self.files, f.id, f, MAX_FILES)

    def get(self, file_id: str, now: float) -> StoredFile | None:
        f = self.files.get(file_id)
        if f is not None and now - f.created > FILE_TTL_SECONDS:
            del self.files[file_id]
            return None
        return f

    def delete(self, file_id: str) -> bool:
        return self.files.pop(file_id, None) is not None

    def list_for(self, project: str) -> list[StoredFile]:
        return [f for f in self.files.values() if f.project == project]


def advance(f: StoredFile, now: float, after_gets: int, after_seconds: float | None) -> None:
    """Move PROCESSING to ACTIVE/FAILED once the configured GET count and age are both reached."""
    if f.state != "PROCESSING":
        return
    if f.gets < after_gets:
        return
    if after_seconds is not None and now - f.created < after_seconds:
        return
    f.updated = now
    if f.fail:
        f.state = "FAILED"
        f.error = {"code": 3, "message": "File processing failed: the media could not be decoded."}
    else:
        f.state = "ACTIVE"
