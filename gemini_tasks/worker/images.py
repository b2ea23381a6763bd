"""Image generation on a worker: admission, the call, the report, and the images delivered as Redis blobs.

The generated images never travel through the broker or the result backend: like TTS audio, each is stored once
in a short-lived blob after the key is released, and the result carries references. An image to edit arrives
the same way (the caller stored it as a blob), so large inputs do not go through the broker either.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Task
from google.genai import types

from gemini_tasks.celery_app import app
from gemini_tasks.gemini import images as image_lib
from gemini_tasks.gemini.response import usage_dict
from gemini_tasks.gemini.tokens import IMAGE_TOKENS, estimate_tokens
from gemini_tasks.keys.pool import KeyPool, Lease
from gemini_tasks.settings import get_settings
from gemini_tasks.messages import Job, blobs
from gemini_tasks.worker import settle, tier_calls
from gemini_tasks.worker.execution import JobContext, TaskFailed, _fail, read_job, run_with_key, worker_pool


def execute_image(job: Job, ctx: JobContext) -> dict[str, Any]:
    spec = job.image
    if spec is None:
        raise ValueError(f"execute_image needs an image job, got a {job.kind} job")
    settings = get_settings()
    config = image_lib.image_config(spec.aspect_ratio, spec.image_size)
    contents: list[Any] = [types.Part(text=spec.prompt)]
    if spec.input_ref:
        pool = worker_pool(job.pool.pool)
        try:
            data = blobs.take(pool.client, pool.prefix, spec.input_ref, delete=False)
        except KeyError:
            _fail("Persistent input error: the image to edit is gone from Redis (its blob expired before a worker "
                  "took the request); send it again", "bad_input", job)
        contents.append(types.Part(inline_data=types.Blob(data=data, mime_type=spec.input_mime or "image/png")))

    def call(client: Any, lease: Lease, pool: KeyPool) -> dict[str, Any]:
        call_cfg = tier_calls.call_config(config, tier_calls.current_tier(job), settings.request_timeout)
        response, tier_fields = tier_calls.generate(client, job, contents=contents, config=call_cfg)
        images = image_lib.extract_images(response)
        return {"images": images, "usage": usage_dict(response), **tier_fields}

    def deliver(result: dict[str, Any], lease: Lease, pool: KeyPool) -> dict[str, Any]:
        images = result.pop("images")  # paid for: storing them is retried, never the call
        refs = []
        try:
            for data, mime in images:
                ref = settle.with_budget("storing the image", functools.partial(blobs.put, pool.client, pool.prefix, data),
                                         task_id=ctx.task_id)
                refs.append({"ref": ref, "mime_type": mime, "bytes": len(data)})
        except Exception as exc:  # noqa: BLE001 - reported as a storage error, never as a Gemini error
            _fail(f"Storage error: the image was generated but could not be stored for delivery "
                  f"({type(exc).__name__}: {str(exc)[:200]}); no second call was made", "storage", job,
                  key_id=lease.key_id)
        return {"images": refs, **result}

    tokens = estimate_tokens(contents) + (IMAGE_TOKENS if spec.input_ref else 0)
    return run_with_key(job, ctx, call, lease_ttl=tier_calls.lease_seconds(job, settings.request_timeout),
                        tokens=tokens, deliver=deliver)


@app.task(bind=True, name="gemini_tasks.image_interactive", max_retries=None, throws=(TaskFailed,))
def image_interactive(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    from gemini_tasks.worker.tasks import _context

    return execute_image(read_job(job), _context(self))
