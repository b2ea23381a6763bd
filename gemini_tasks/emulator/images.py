"""Image output for image models (``gemini-2.5-flash-image``, ``gemini-3-pro-image-preview``): PNG parts.

A request is answered with an image when its model is an image model or ``response_modalities`` asks for
IMAGE. ``image_config.aspect_ratio`` and ``image_size`` are checked as the API documents them (an unknown
value is a 400 INVALID_ARGUMENT) and set the picture's size: 1K is about a megapixel (1:1 = 1024×1024,
16:9 = 1344×768), 2K twice and 4K four times each side. The PNG is a real, decodable 1-bit grayscale image
whose stripes follow the request's fingerprint (the same request gives the same bytes), so it stays small.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Any, Callable

from . import wire
from .content import Summary

#: width, height at 1K for each aspect ratio the API accepts
ASPECT_SIZES_1K = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184), "4:3": (1184, 864),
    "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344), "16:9": (1344, 768), "21:9": (1536, 672),
}
SIZE_SCALE = {"1K": 1, "2K": 2, "4K": 4}
#: output tokens of one generated image (the API's documented figure for up to 1024×1024)
IMAGE_TOKENS = 1290


def wants_image(model: str, modalities: list[str]) -> bool:
    return "IMAGE" in modalities or ("-image" in model and "imagen" not in model)


def png(width: int, height: int, seed: bytes) -> bytes:
    """A 1-bit grayscale PNG of ``width``×``height`` with stripes drawn from ``seed``."""
    row_bytes = (width + 7) // 8
    pattern = hashlib.sha256(seed).digest()
    row = bytes(pattern[i % len(pattern)] for i in range(row_bytes))
    raw = b"".join(b"\x00" + (row if (y // 64) % 2 == 0 else bytes(255 - b for b in row)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def image_size_for(image_config: Any) -> tuple[int, int, str, str]:
    """(width, height, aspect_ratio, image_size) for a request's ``image_config``; 400 on unknown values."""
    cfg = image_config if isinstance(image_config, dict) else {}
    ratio = cfg.get("aspect_ratio") or "1:1"
    size = cfg.get("image_size") or "1K"
    if ratio not in ASPECT_SIZES_1K:
        raise wire.ApiError(400, f"Invalid value at 'generation_config.image_config.aspect_ratio' ({ratio!r}): "
                                 f"supported values are {', '.join(ASPECT_SIZES_1K)}.")
    if size not in SIZE_SCALE:
        raise wire.ApiError(400, f"Invalid value at 'generation_config.image_config.image_size' ({size!r}): "
                                 "supported values are 1K, 2K, 4K.")
    w, h = ASPECT_SIZES_1K[ratio]
    scale = SIZE_SCALE[size]
    return w * scale, h * scale, ratio, size


def answer(entry: dict[str, Any], model: str, rid: str, summary: Summary, gen: dict[str, Any],
           usage_of: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """A generateContent body with one PNG part (and a short text part when TEXT is also asked for)."""
    width, height, ratio, size = image_size_for(gen.get("image_config"))
    data = png(width, height, summary.fingerprint.encode())
    entry["image"] = {"width": width, "height": height, "aspect_ratio": ratio, "image_size": size,
                      "bytes": len(data)}
    parts: list[dict[str, Any]] = []
    modalities = [str(m).upper() for m in gen.get("response_modalities") or ()]
    if "TEXT" in modalities:
        parts.append({"text": f"[emulator] {model} {summary.fingerprint} :: image {width}x{height}"})
    parts.append({"inlineData": {"mimeType": "image/png", "data": wire.b64(data)}})
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage_of(summary, IMAGE_TOKENS, "IMAGE"),
        "modelVersion": model,
        "responseId": rid,
    }
