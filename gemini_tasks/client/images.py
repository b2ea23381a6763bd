"""``GeminiImageGenerator``: upstream 0.10's image generation and editing ("Nano Banana"), run by the fleet.

``generate_image(prompt, output_file=None, aspect_ratio=None, image_size=None)`` and
``edit_image(prompt, input_image, output_file=None)`` return a ``google.genai.types.Image`` (``image_bytes``,
``mime_type``, ``save(path)``, ``show()``) as upstream's ``part.as_image()`` does, or ``None`` on failure with the
reason in ``last_error``. With several images, ``output_file`` gets ``_1``, ``_2``... before its extension, as
upstream. Images come back as short-lived Redis blobs (never through the broker or the result backend); the image
to edit goes to the worker the same way. Bad input (an unknown aspect ratio or size, an empty prompt, an image
that cannot be read) raises ``ValueError`` naming the field before anything is enqueued.
"""

from __future__ import annotations

import io
import logging
import os
import time
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from google.genai import types

from gemini_tasks.client.jobs import CallPolicy, check_manager, check_model
from gemini_tasks.client.sending import task_ref
from gemini_tasks.gemini import images as image_lib
from gemini_tasks.keys.manager import AdvancedApiKeyManager
from gemini_tasks.messages import ImageSpec, Job, PoolSpec, blobs

log = logging.getLogger("gemini_tasks.client.images")


def _input_bytes(input_image: Any) -> tuple[bytes, str]:
    """The bytes and mime type of an image to edit: a path, bytes, a ``types.Image`` or a PIL image."""
    if isinstance(input_image, (str, os.PathLike)):
        path = os.fspath(input_image)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ValueError(f"input_image: cannot read {path!r}: {exc.strerror or exc}") from None
    elif isinstance(input_image, (bytes, bytearray, memoryview)):
        data = bytes(input_image)
    elif isinstance(input_image, types.Image):
        if not input_image.image_bytes:
            raise ValueError("input_image: the types.Image has no image_bytes")
        data = input_image.image_bytes
    elif hasattr(input_image, "save") and hasattr(input_image, "size"):  # a PIL image (Pillow not required)
        buffer = io.BytesIO()
        input_image.save(buffer, format="PNG")
        data = buffer.getvalue()
    else:
        raise ValueError(f"input_image must be a file path, bytes, a google.genai.types.Image or a PIL image, "
                         f"got {type(input_image).__name__}")
    mime = image_lib.sniff_mime(data)
    if not data or mime is None:
        raise ValueError("input_image is not a PNG, JPEG, GIF or WebP image")
    return data, mime


def _output_names(output_file: str, count: int) -> list[str]:
    if count == 1:
        return [output_file]
    base, ext = os.path.splitext(output_file)
    return [f"{base}_{i + 1}{ext}" for i in range(count)]


class GeminiImageGenerator:
    """Text-to-image and image editing through the fleet's shared key pool (the interactive queue)."""

    def __init__(self, key_manager: AdvancedApiKeyManager | None = None,
                 model_name: str = "gemini-3-pro-image-preview", *, api_call_interval: float = 0.0,
                 timeout: float = 300.0) -> None:
        if key_manager is None:
            key_manager = AdvancedApiKeyManager("all")
        self.key_manager = check_manager(key_manager)
        self.model_name = check_model(model_name)
        self.timeout = timeout
        self.policy = CallPolicy(worker_cooldown_seconds=0, api_call_interval=api_call_interval, max_workers=4,
                                 max_wait_seconds=timeout)
        self.last_error: str | None = None
        #: every image of the last call (``generate_image`` returns the first)
        self.last_images: list[types.Image] = []

    def _check_prompt(self, prompt: Any) -> str:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        return prompt

    def _job(self, spec: ImageSpec) -> Job:
        from gemini_tasks.client.processors import STREAM_DEADLINE_GRACE

        return Job(kind="image", model=self.model_name, pool=PoolSpec.from_wire(self.key_manager.spec()),
                   policy=self.policy, image=spec, deadline=time.time() + self.timeout + STREAM_DEADLINE_GRACE)

    def _run(self, spec: ImageSpec, output_file: str | None) -> types.Image | None:
        from gemini_tasks.client.collect import release_pending
        from gemini_tasks.client.processors import STREAM_DEADLINE_GRACE, to_result_tuple

        pool = self.key_manager.pool
        job = self._job(spec)
        res = task_ref("image", "interactive").apply_async(args=[job.to_wire()], queue="interactive",
                                                           expires=self.timeout + STREAM_DEADLINE_GRACE,
                                                           argsrepr=job.describe())
        try:
            value = res.get(timeout=self.timeout, propagate=False, interval=0.05)
        except CeleryTimeoutError:
            pool.cancel(res.id)
            res.revoke()
            release_pending([res])
            self.last_error = f"Image generation timed out after {self.timeout} seconds"
            return None
        finally:
            if spec.input_ref:
                pool.client.delete(blobs.blob_key(pool.prefix, spec.input_ref))
        res.forget()
        _meta, _none, error = to_result_tuple(value)
        if error is not None or not isinstance(value, dict):
            self.last_error = error or "image generation failed"
            log.error("image generation failed: %s", self.last_error)
            return None
        images = [types.Image(image_bytes=blobs.take(pool.client, pool.prefix, item["ref"]),
                              mime_type=item["mime_type"]) for item in value["images"]]
        if output_file:
            for image, name in zip(images, _output_names(output_file, len(images))):
                image.save(name)
        self.last_error = None
        self.last_images = images
        return images[0]

    def generate_image(self, prompt: str, output_file: str | None = None, aspect_ratio: str | None = None,
                       image_size: str | None = None) -> types.Image | None:
        """An image from a text prompt; ``aspect_ratio`` ("1:1", "16:9", ...) and ``image_size`` ("1K", "2K",
        "4K") default to the model's own."""
        image_lib.check_options(aspect_ratio, image_size)
        return self._run(ImageSpec(self._check_prompt(prompt), aspect_ratio, image_size), output_file)

    def edit_image(self, prompt: str, input_image: Any, output_file: str | None = None,
                   aspect_ratio: str | None = None, image_size: str | None = None) -> types.Image | None:
        """``input_image`` (a path, bytes, a ``types.Image`` or a PIL image) changed as ``prompt`` says."""
        image_lib.check_options(aspect_ratio, image_size)
        prompt = self._check_prompt(prompt)
        data, mime = _input_bytes(input_image)
        pool = self.key_manager.pool
        ref = blobs.put(pool.client, pool.prefix, data)
        return self._run(ImageSpec(prompt, aspect_ratio, image_size, input_ref=ref, input_mime=mime), output_file)
