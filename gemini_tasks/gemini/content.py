"""Building the request ``contents`` from a prompt_data dict, in the original library's order.

The prompt_data format is the original's (README "Multi-Modal Usage"); the order rules are its own:

* per type, the media list is audio = ``[paths..., bytes..., urls...]``, video = ``[urls..., paths...,
  bytes...]`` and image = ``[urls..., paths..., bytes...]`` (``audio_url`` is new and goes last among audio;
  images follow upstream 0.10, k1064190/GeminiParallel, which added them);
* with ``<audio>``/``<video>``/``<image>`` tokens in the prompt, the prompt is split on them, text pieces are
  stripped and empty ones dropped, and each token takes the next file of its type; files left over follow at
  the end, audios first, then videos, then images;
* without tokens: all images, then all videos, then all audios, then the prompt text.

What differs from the original, on purpose (its defects, original-implementation.md §4/§7):

* ``audio_mime_type``/``video_mime_type`` lists and ``video_metadata`` lists are indexed by the position in
  the *combined* per-type list above. The original indexed mime types by position among bytes only and
  metadata by position within each source list, so ``[path, bytes]`` with ``["audio/mp3", "audio/wav"]``
  sent the WAV bytes as MP3, and metadata never reached path videos.
* A single mime string applies to every file of its type; a missing one is guessed from the file or URL
  extension (``mimetypes``), falling back to the original's defaults (``audio/mp3``, ``video/mp4``).
* URLs become ``file_data(file_uri=..., mime_type=...)`` (the original's ``file_url`` never validated).
* A token with no file left is an error (the original logged a warning and dropped it); prompts that are
  only media are allowed (the original rejected an empty prompt before looking at media).
* Paths are not uploaded here: the caller injects ``resolve_path`` and decides inline vs Files API
  (:func:`plan_media` and :func:`choose_uploads` tell it sizes and order); the default inlines the file.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union
from urllib.parse import urlparse

from google.genai import types

from .errors import InvalidPromptError

logger = logging.getLogger("gemini_tasks")

__all__ = [
    "AUDIO",
    "DEFAULT_MIME",
    "IMAGE",
    "KINDS",
    "INLINE_REQUEST_LIMIT",
    "MediaItem",
    "as_list",
    "PathResolver",
    "SOURCE_ORDER",
    "TOKEN_RE",
    "VIDEO",
    "build_contents",
    "choose_uploads",
    "guess_mime",
    "inline_cost",
    "inline_path",
    "layout",
    "media_items",
    "plan_media",
    "token_counts",
]

AUDIO = "audio"
VIDEO = "video"
IMAGE = "image"
#: Every media type, in the order files left over after the tokens are appended (upstream's order).
KINDS = (AUDIO, VIDEO, IMAGE)
#: The original's (and upstream 0.10's) defaults when nothing better is known.
DEFAULT_MIME = {AUDIO: "audio/mp3", VIDEO: "video/mp4", IMAGE: "image/jpeg"}
#: Gemini's limit on one request, inline media included (as sent: base64, see :func:`inline_cost`).
INLINE_REQUEST_LIMIT = 20 * 1024 * 1024
#: Room kept for the JSON envelope, text and config when planning what fits inline.
INLINE_HEADROOM = 64 * 1024
#: The exact lowercase tokens of the original.
TOKEN_RE = re.compile(r"<(audio|video|image)>")

# Where each source sits in the combined per-type list (the original's order; audio_url is new, last).
SOURCE_ORDER = {
    AUDIO: (("path", "audio_path"), ("bytes", "audio_bytes"), ("url", "audio_url")),
    VIDEO: (("url", "video_url"), ("path", "video_path"), ("bytes", "video_bytes")),
    IMAGE: (("url", "image_url"), ("path", "image_path"), ("bytes", "image_bytes")),
}

# Host mime tables differ (/etc/mime.types); map the usual aliases to the names Gemini documents.
_MIME_ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/mpeg": "audio/mp3",
    "audio/x-aiff": "audio/aiff",
    "audio/x-flac": "audio/flac",
    "video/quicktime": "video/mov",
    "video/x-msvideo": "video/avi",
    "video/x-ms-wmv": "video/wmv",
}


@dataclass(frozen=True)
class MediaItem:
    """One media file of a request, where it goes and what it costs.

    ``index`` is the position in the combined per-type list (what mime lists and ``video_metadata`` are
    indexed by); ``size`` is the byte size (file size for paths, None for URLs or unreadable paths);
    ``metadata`` is the ``video_metadata`` entry of a video (None when absent or empty).
    """

    kind: str
    source: str
    index: int
    value: str | bytes = field(repr=False)
    mime_type: str
    size: int | None
    metadata: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """A short human description (never the bytes themselves)."""
        if self.source == "bytes":
            return f"{self.kind}_bytes[{self.index}] ({self.size} bytes)"
        return f"{self.kind} {self.source} {self.value!s}"

    def __repr__(self) -> str:
        return (
            f"MediaItem({self.kind}/{self.source} #{self.index} {self.label!r}, mime={self.mime_type!r}, "
            f"size={self.size}, metadata={self.metadata})"
        )


#: ``resolve_path(path, mime_type, kind)`` returns what the request should carry for a path: a
#: ``types.Part``, a ``types.File`` (uploaded), ``types.FileData``, ``types.Blob``, raw ``bytes``, or a
#: file URI string.
PathResolver = Callable[[str, str, str], Union[types.Part, types.File, types.FileData, types.Blob, bytes, str]]


def as_list(value: Any) -> list[Any]:
    """The original's "single value or list" convention."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def inline_cost(size: int) -> int:
    """Bytes a payload of ``size`` takes in the request body: inline data is sent base64-encoded."""
    return 4 * ((size + 2) // 3)


def guess_mime(name: str, kind: str) -> str:
    """A mime type of the right family for a path or URL, from its extension, else the default."""
    path = urlparse(name).path if "://" in name else name
    guessed, _ = mimetypes.guess_type(path, strict=False)
    if guessed:
        guessed = _MIME_ALIASES.get(guessed.lower(), guessed.lower())
        family, _, subtype = guessed.partition("/")
        if family == kind:
            return guessed
        if kind == AUDIO and family == VIDEO and subtype in ("mp4", "webm", "ogg", "mpeg", "3gpp"):
            return f"audio/{'mp3' if subtype == 'mpeg' else subtype}"
        if kind == VIDEO and family == AUDIO and subtype in ("3gpp", "mp4", "webm"):
            return f"video/{subtype}"
    return DEFAULT_MIME[kind]


def _mime_for(prompt_data: Mapping[str, Any], kind: str, index: int, source: str, value: Any) -> str:
    spec = prompt_data.get(f"{kind}_mime_type")
    if isinstance(spec, str) and spec:
        return spec
    if isinstance(spec, (list, tuple)) and index < len(spec) and isinstance(spec[index], str) and spec[index]:
        return spec[index]
    if source in ("path", "url"):
        return guess_mime(os.fspath(value), kind)
    return DEFAULT_MIME[kind]


def _metadata_for(prompt_data: Mapping[str, Any], kind: str, index: int) -> dict[str, Any] | None:
    if kind != VIDEO:
        return None
    entries = as_list(prompt_data.get("video_metadata"))
    entry = entries[index] if index < len(entries) else None
    return dict(entry) if entry else None


def _size_of(source: str, value: Any) -> int | None:
    if source == "bytes":
        return len(value)
    if source == "path":
        try:
            return os.path.getsize(value)
        except OSError:
            return None
    return None


def media_items(prompt_data: Mapping[str, Any], kind: str) -> list[MediaItem]:
    """All media of one type in the combined per-type order (not yet placed in the prompt)."""
    items: list[MediaItem] = []
    for source, key in SOURCE_ORDER[kind]:
        for value in as_list(prompt_data.get(key)):
            if source == "path":
                value = os.fspath(value)
            elif source == "bytes" and isinstance(value, (bytearray, memoryview)):
                value = bytes(value)
            index = len(items)
            items.append(
                MediaItem(
                    kind=kind,
                    source=source,
                    index=index,
                    value=value,
                    mime_type=_mime_for(prompt_data, kind, index, source, value),
                    size=_size_of(source, value),
                    metadata=_metadata_for(prompt_data, kind, index),
                )
            )
    return items


def token_counts(prompt: str) -> dict[str, int]:
    """How many ``<audio>``, ``<video>`` and ``<image>`` tokens a prompt holds."""
    found = TOKEN_RE.findall(prompt or "")
    return {kind: found.count(kind) for kind in KINDS}


def layout(prompt_data: Mapping[str, Any]) -> list[str | MediaItem]:
    """The request in final order: text pieces (str) and media items.

    Raises :class:`InvalidPromptError` for a token without a file, or when there is nothing to send.
    """
    prompt = prompt_data.get("prompt") or ""
    if not isinstance(prompt, str):
        raise InvalidPromptError(f"must be a string, got {type(prompt).__name__}", field="prompt")
    media = {kind: media_items(prompt_data, kind) for kind in KINDS}
    sequence: list[str | MediaItem] = []
    if TOKEN_RE.search(prompt):
        counts = token_counts(prompt)
        for kind in KINDS:
            if counts[kind] > len(media[kind]):
                raise InvalidPromptError(
                    f"more <{kind}> tokens ({counts[kind]}) than {kind} files ({len(media[kind])} given "
                    f"in {kind}_path/{kind}_bytes/{kind}_url)",
                    field="prompt",
                )
        used = {kind: 0 for kind in KINDS}
        for position, piece in enumerate(TOKEN_RE.split(prompt)):
            if position % 2 == 1:  # a captured token name
                sequence.append(media[piece][used[piece]])
                used[piece] += 1
            elif piece.strip():
                sequence.append(piece.strip())
        for kind in KINDS:
            sequence.extend(media[kind][used[kind] :])
    else:
        sequence.extend(media[IMAGE])
        sequence.extend(media[VIDEO])
        sequence.extend(media[AUDIO])
        if prompt.strip():
            sequence.append(prompt)
    if not sequence:
        raise InvalidPromptError(
            "no content provided: the prompt is empty and there are no audio, video or image files "
            "(give a prompt, media, or both)",
            field="prompt",
        )
    return sequence


def plan_media(prompt_data: Mapping[str, Any]) -> list[MediaItem]:
    """Every media item in the order it will appear in the request (for upload decisions)."""
    return [item for item in layout(prompt_data) if isinstance(item, MediaItem)]


def choose_uploads(
    items: Sequence[MediaItem], *, limit: int = INLINE_REQUEST_LIMIT, text_bytes: int = 0
) -> list[str]:
    """Paths to send through the Files API so that the rest fits in one request, largest first.

    Bytes and URLs cannot move; only paths can. A path whose size is unknown is uploaded (it cannot be
    budgeted). Returns distinct paths, largest first.
    """
    budget = limit - INLINE_HEADROOM - text_bytes
    inline_total = 0
    per_path: dict[str, int] = {}
    unknown: list[str] = []
    for item in items:
        if item.source == "bytes":
            inline_total += inline_cost(item.size or 0)
        elif item.source == "path":
            path = str(item.value)
            if item.size is None:
                if path not in unknown:
                    unknown.append(path)
            else:
                per_path[path] = per_path.get(path, 0) + inline_cost(item.size)
    uploads = list(unknown)
    inline_total += sum(cost for path, cost in per_path.items())
    for path, cost in sorted(per_path.items(), key=lambda kv: kv[1], reverse=True):
        if inline_total <= budget:
            break
        uploads.append(path)
        inline_total -= cost
    return uploads


def inline_path(path: str, mime_type: str, kind: str) -> types.Part:
    """The default resolver: read the file and send it inline."""
    with open(path, "rb") as handle:
        data = handle.read()
    return types.Part(inline_data=types.Blob(data=data, mime_type=mime_type))


def _video_metadata(entry: dict[str, Any] | None) -> types.VideoMetadata | None:
    return types.VideoMetadata.model_validate(entry) if entry else None


def _part_from_resolved(resolved: Any, item: MediaItem) -> types.Part:
    if isinstance(resolved, types.Part):
        return resolved
    if isinstance(resolved, types.File):
        if not resolved.uri:
            raise ValueError(f"uploaded file {resolved.name!r} for {item.label} has no uri")
        return types.Part(
            file_data=types.FileData(file_uri=resolved.uri, mime_type=resolved.mime_type or item.mime_type)
        )
    if isinstance(resolved, types.FileData):
        if not resolved.mime_type:
            resolved = resolved.model_copy(update={"mime_type": item.mime_type})
        return types.Part(file_data=resolved)
    if isinstance(resolved, types.Blob):
        return types.Part(inline_data=resolved)
    if isinstance(resolved, (bytes, bytearray)):
        return types.Part(inline_data=types.Blob(data=bytes(resolved), mime_type=item.mime_type))
    if isinstance(resolved, str):
        return types.Part(file_data=types.FileData(file_uri=resolved, mime_type=item.mime_type))
    raise TypeError(f"resolve_path returned {type(resolved).__name__} for {item.label}")


def _media_part(item: MediaItem, resolve_path: PathResolver) -> types.Part:
    metadata = _video_metadata(item.metadata)
    if item.source == "bytes":
        part = types.Part(inline_data=types.Blob(data=item.value, mime_type=item.mime_type))  # type: ignore[arg-type]
    elif item.source == "url":
        part = types.Part(file_data=types.FileData(file_uri=str(item.value), mime_type=item.mime_type))
    else:
        part = _part_from_resolved(resolve_path(str(item.value), item.mime_type, item.kind), item)
    if metadata is not None:
        part = part.model_copy(update={"video_metadata": metadata})
    return part


def build_contents(
    prompt_data: Mapping[str, Any], resolve_path: PathResolver = inline_path
) -> list[types.Part]:
    """The parts of the single user turn, in the order described in the module docstring."""
    parts: list[types.Part] = []
    for element in layout(prompt_data):
        if isinstance(element, str):
            parts.append(types.Part(text=element))
        else:
            parts.append(_media_part(element, resolve_path))
    return parts
