"""Image generation requests (upstream 0.10's ``GeminiImageGenerator``): options, checks and the call config.

Aspect ratios and sizes are the ones the API documents for its image models (``types.ImageConfig``): anything else
is refused with a ``ValueError`` naming the field before a request is enqueued.
"""

from __future__ import annotations

from typing import Any

from google.genai import types

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGE_SIZES = ("1K", "2K", "4K")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"))


def check_options(aspect_ratio: Any, image_size: Any) -> None:
    if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)} (or None for the model's "
                         f"default), got {aspect_ratio!r}")
    if image_size is not None and image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {', '.join(IMAGE_SIZES)} (or None for the model's default, "
                         f"1K), got {image_size!r}")


def sniff_mime(data: bytes) -> str | None:
    """The image type of ``data`` from its first bytes (PNG, JPEG, GIF, WebP), else None."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_config(aspect_ratio: str | None, image_size: str | None) -> types.GenerateContentConfig:
    """The call's config: images only (as upstream asks), with the size options when given."""
    options = None
    if aspect_ratio or image_size:
        options = types.ImageConfig(aspect_ratio=aspect_ratio, image_size=image_size)
    return types.GenerateContentConfig(response_modalities=["IMAGE"], image_config=options)


def extract_images(response: Any) -> list[tuple[bytes, str]]:
    """Every inline image of the first candidate as ``(data, mime_type)``, in order."""
    from gemini_tasks.gemini.response import _first_candidate_parts, _empty

    parts, reason = _first_candidate_parts(response)
    images = []
    for part in parts:
        blob = getattr(part, "inline_data", None)
        if blob is not None and blob.data and (blob.mime_type or "").startswith("image/"):
            images.append((blob.data, blob.mime_type))
    if not images:
        raise _empty(reason or "NONE", "no image in the response")
    return images
