"""Files API uploads made with the leased key, reused for the same project while they live.

Files belong to a Google Cloud project, not to a key: a file uploaded with one key of a project can be
used with any key of that project, and with no other. An upload is remembered in Redis under the project
and the file's SHA-256, so a retry (or another task sending the same file) does not upload it again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

import redis
from google import genai
from google.genai import types

from gemini_tasks.gemini.errors import PERSISTENT, TRANSIENT, CallError, GeminiCallFailed
from gemini_tasks.gemini.media_files import sha256_of
from gemini_tasks.keys.names import upload_key

log = logging.getLogger("gemini_tasks")

#: Files live 48 h on Google's side; stop reusing them a little earlier.
REUSE_SECONDS = 46 * 3600


@dataclass(eq=False)  # a resolver, compared by identity
class ProjectUploads:
    """A path resolver for :func:`gemini_tasks.gemini.content.build_contents` that uploads ``upload_paths`` (and
    inlines any other path); ``uploaded`` and ``reused`` count what it did."""

    store: redis.Redis
    prefix: str
    project: str
    client: genai.Client
    upload_paths: set[str]
    poll_interval: float = field(default=0.5, kw_only=True)
    active_timeout: float = field(default=300.0, kw_only=True)
    uploaded: int = field(default=0, init=False)
    reused: int = field(default=0, init=False)

    def __call__(self, path: str, mime_type: str, kind: str) -> types.Part | types.File:
        if path not in self.upload_paths:
            with open(path, "rb") as handle:
                return types.Part(inline_data=types.Blob(data=handle.read(), mime_type=mime_type))
        digest = sha256_of(path)
        key = upload_key(self.prefix, self.project, digest, mime_type)
        cached = self.store.get(key)
        if cached:
            info = json.loads(cached)
            self.reused += 1
            return types.Part(file_data=types.FileData(file_uri=info["uri"], mime_type=info["mime_type"]))
        uploaded = self.client.files.upload(
            file=path, config=types.UploadFileConfig(mime_type=mime_type, display_name=os.path.basename(path))
        )
        active = self._wait_active(uploaded, path)
        self.uploaded += 1
        self.store.set(
            key, json.dumps({"name": active.name, "uri": active.uri, "mime_type": active.mime_type or mime_type}),
            ex=REUSE_SECONDS,
        )
        return active

    def _wait_active(self, file: types.File, path: str) -> types.File:
        deadline = time.monotonic() + self.active_timeout
        current = file
        while True:
            state = getattr(current.state, "name", str(current.state))
            if state == "ACTIVE":
                return current
            if state == "FAILED":
                detail = current.error.message if current.error else "no detail"
                raise GeminiCallFailed(CallError(kind=PERSISTENT, status="FAILED_PRECONDITION",
                                                 message=f"Files API could not process {path}: {detail}"))
            if time.monotonic() > deadline:
                raise GeminiCallFailed(CallError(kind=TRANSIENT, status="DEADLINE_EXCEEDED",
                                                 message=f"{path} was still {state} after {self.active_timeout:.0f}s"))
            time.sleep(self.poll_interval)
            current = self.client.files.get(name=current.name)  # type: ignore[arg-type]
