"""Streaming generation on a worker: ``generate_content_stream`` with each text piece sent to a Redis Stream.

Admission, the call's report and the retry rules are :func:`~gemini_tasks.worker.execution.run_with_key`'s,
as for every other call. The text goes to the caller through the request's token stream
(:mod:`gemini_tasks.keys.token_streams`) as the SDK yields it, never through the broker or the result backend;
the task's own result is a small summary. Two rules are specific to streams:

- once text has been delivered, a failure is final (kind ``persistent``): retrying would repeat text the caller
  already has; before the first chunk, errors are retried as usual;
- the caller's cancel flag is checked after every chunk: a caller that went away stops the call (the HTTP
  stream is closed), and a redelivered stream (its worker died) ends with an error instead of starting again.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import Retry

from gemini_tasks.celery_app import app
from gemini_tasks.gemini.classification import classify
from gemini_tasks.gemini.errors import PERSISTENT, RATE_LIMITED, TRANSIENT, GeminiCallFailed
from gemini_tasks.gemini.response import _first_candidate_parts, extract_text, usage_dict
from gemini_tasks.keys.token_streams import END, ERROR, StreamWriter
from gemini_tasks.messages import Job
from gemini_tasks.worker.execution import JobContext, TaskFailed, execute_generate, read_job, worker_pool

log = logging.getLogger("gemini_tasks.worker.token_stream")


def chunk_text(chunk: Any) -> str:
    """The answer text of one streamed chunk (thoughts skipped); raises for a blocked prompt or candidate."""
    feedback = getattr(chunk, "prompt_feedback", None)
    if not chunk.candidates and not (feedback is not None and getattr(feedback, "block_reason", None)):
        return ""  # a usage-only chunk
    parts, _reason = _first_candidate_parts(chunk)
    return "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False))


def _final(err: Any, sent: int) -> GeminiCallFailed:
    """After text was delivered an error is never retried (it would repeat text): reclassify it as persistent."""
    if err.kind not in (TRANSIENT, RATE_LIMITED):
        return GeminiCallFailed(err)
    note = f"the stream broke after {sent} chunk(s) and is not retried, so no text repeats"
    return GeminiCallFailed(dataclasses.replace(err, kind=PERSISTENT, message=f"{note}: {err.message}"))


def _start_writing(job: Job, ctx: JobContext, writer: StreamWriter) -> bool:
    """Begin this request's token stream; False when a redelivered copy finds it already finished. A copy
    that finds it begun by a worker that died mid-way ends it with an error: a stream never starts again."""
    last = writer.last_type()
    if last in (END, ERROR):
        return False
    if last is not None:
        message = "Transient error (stream interrupted): the worker answering this stream stopped; ask again"
        writer.error(TRANSIENT, message)
        raise TaskFailed(message, {"kind": TRANSIENT, "metadata": job.metadata})
    writer.start(f"{socket.gethostname()}:{ctx.owner or ctx.task_id}")
    return True


def _streaming_call(job: Job, ctx: JobContext, writer: StreamWriter) -> Callable[[Any, Any, Any], dict[str, Any]]:
    """The call :func:`execute_generate` makes with the leased key's client: a streaming call whose text pieces
    go to ``writer`` as they come, stopped when the caller went away."""

    def respond(client: Any, contents: Any, call_cfg: Any) -> dict[str, Any]:
        sent, pieces, last_chunk, usage, cancelled = 0, [], None, None, False
        stream = client.models.generate_content_stream(model=job.model, contents=contents, config=call_cfg)
        try:
            for chunk in stream:
                last_chunk = chunk
                if chunk.usage_metadata is not None:
                    usage = chunk
                piece = chunk_text(chunk)
                if piece:
                    writer.chunk(piece)
                    pieces.append(piece)
                    sent += 1
                if writer.cancelled():
                    cancelled = True
                    log.info("task %s: the caller went away after %d chunk(s); stream closed", ctx.task_id, sent)
                    break
        except GeminiCallFailed as exc:
            raise _final(exc.error, sent) if sent else exc
        except Exception as exc:  # noqa: BLE001 - classified like any call failure
            if not sent:
                raise
            raise _final(classify(exc), sent) from None
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if not pieces and not cancelled:
            extract_text(last_chunk)  # raises the blocked / empty error for a stream with no text
        return {"usage": usage_dict(usage) if usage is not None else None, "chunks": sent,
                "chars": sum(len(p) for p in pieces), "cancelled": cancelled}

    return respond


def execute_stream(job: Job, ctx: JobContext) -> dict[str, Any]:
    """``execute_generate`` with a streaming call: every text piece goes to the request's token stream."""
    pool = worker_pool(job.pool.pool)
    writer = StreamWriter(pool.client, pool.prefix, ctx.task_id)
    if not _start_writing(job, ctx, writer):  # a redelivered copy of a finished stream
        return {"ok": True, "replayed": True, "task_id": ctx.task_id}
    try:
        result = execute_generate(job, ctx, respond=_streaming_call(job, ctx, writer))
    except TaskFailed as exc:
        writer.error(exc.info.get("kind") or PERSISTENT, exc.message)
        raise
    except Retry:
        raise
    except Exception as exc:  # noqa: BLE001 - the caller must never wait for a stream that will not come
        writer.error(PERSISTENT, f"Persistent error (worker: {type(exc).__name__}): {exc}"[:500])
        raise
    writer.end({"usage": result.get("usage"), "chunks": result.get("chunks"), "key_id": result.get("key_id"),
                "cancelled": result.get("cancelled", False)})
    return result


@app.task(bind=True, name="gemini_tasks.generate_stream", ignore_result=True)
def generate_stream(self: Task, job: dict[str, Any]) -> dict[str, Any]:
    from gemini_tasks.worker.tasks import _context

    return execute_stream(read_job(job), _context(self))
