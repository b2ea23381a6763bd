"""``gemini-tasks submit``: a JSONL file of prompts run on the fleet, resumable at every instant.

The promise: interrupt the command at any moment (Ctrl-C, SIGKILL, a lost terminal) and re-run it to
finish, without any prompt being sent twice, and with every prompt answered exactly once in the output.

How it holds:

* **The output file** (``results.jsonl``) is appended one row per answer as answers arrive; a row carries the
  prompt's line number in the input file (``"line"``), which is how a re-run knows what is done. It is
  sorted by line once at the end.
* **The state file** (``results.jsonl.state.jsonl``) is append-only: one JSON line per chunk of up to
  :data:`CHUNK` prompts, ``{"group": <id>, "tasks": [[<task id>, <line>], ...]}``, written and flushed to
  disk *before* the chunk is published, with task ids chosen here. Its size is linear in the batch
  (about 60 bytes per prompt) and it is written once per chunk, never per answer.
* **A chunk is proven published** by its Celery group record in the result backend, saved right after the
  chunk's messages. Ctrl-C is held back while a chunk is being published, so an interrupted run has either
  published and recorded a chunk, or not published it at all. A re-run waits for the tasks of chunks whose
  group record exists and submits again, under the same task ids, the prompts of chunks whose record does
  not exist (never published, or lost: Redis restarted without persistence, was flushed, or the results
  expired). Re-using the task id means a copy that did run is answered from the worker's done marker
  rather than paid again.
* **While waiting**, the group records of chunks with unanswered prompts are checked (and their expiry
  renewed) every few seconds; when one is gone, :class:`BatchLost` ends the wait at once instead of a hang.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemini_tasks.messages import Job

log = logging.getLogger("gemini_tasks.ops.jsonl_batch")

#: prompts published per chunk (one state-file line and one group record each)
CHUNK = 200
#: seconds between two checks that Redis still holds the chunks being waited for
LOST_CHECK_SECONDS = 5.0


class BatchFileError(ValueError):
    """The prompts file cannot be used as it is; the message names the file and line."""


class BatchLost(LookupError):
    """Redis no longer holds prompts this run submitted; re-running submits them again."""


@dataclass(frozen=True)
class FilePrompt:
    """One prompt of the input file: its 1-based line number and the prompt dict as the Python API takes it."""

    line: int
    prompt: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.prompt.get("metadata")
        return meta if isinstance(meta, dict) else {}


def read_prompts(path: Path) -> list[FilePrompt]:
    """Every non-blank line of a JSONL file: a prompt dict, or a bare string (the prompt text)."""
    items: list[FilePrompt] = []
    with path.open(encoding="utf-8") as handle:
        for n, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BatchFileError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if isinstance(obj, str):
                obj = {"prompt": obj}
            if not isinstance(obj, dict):
                raise BatchFileError(f"{path}:{n}: each line must be a JSON object or a string, "
                                     f"got {type(obj).__name__}")
            items.append(FilePrompt(n, obj))
    return items


def done_lines(output: Path) -> set[int]:
    """Lines of the input already answered in ``output`` (rows this command wrote; others are ignored)."""
    done: set[int] = set()
    if output.exists():
        with output.open(encoding="utf-8") as handle:
            for text in handle:
                try:
                    line = json.loads(text)["line"]
                except (ValueError, KeyError, TypeError):
                    continue
                if isinstance(line, int) and not isinstance(line, bool):
                    done.add(line)
    return done


@dataclass
class Chunk:
    group: str
    tasks: list[tuple[str, int]]  # (task id, line)


@dataclass
class StateLog:
    """The append-only record of what was (about to be) published, next to the output file."""

    path: Path

    @classmethod
    def for_output(cls, output: Path) -> StateLog:
        return cls(output.with_name(output.name + ".state.jsonl"))

    def read(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        if not self.path.exists():
            return chunks
        with self.path.open(encoding="utf-8") as handle:
            for text in handle:
                try:
                    rec = json.loads(text)
                    chunks.append(Chunk(str(rec["group"]), [(str(t), int(n)) for t, n in rec["tasks"]]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash while it was written: its chunk was never published
        return chunks

    def append(self, chunk: Chunk) -> None:
        text = json.dumps({"group": chunk.group, "tasks": chunk.tasks}, separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@contextmanager
def sigint_held() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for the duration of the block; raise KeyboardInterrupt after it if one came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def _group_key(backend: Any, group_id: str) -> str:
    key = backend.get_key_for_group(group_id)
    return key.decode() if isinstance(key, bytes) else str(key)


def groups_present(backend: Any, group_ids: list[str], *, renew: bool = True) -> dict[str, bool]:
    """Which group records still exist (renewing their expiry), one pipelined round trip."""
    if not group_ids:
        return {}
    client = backend.client
    expires = getattr(backend, "expires", None)
    pipe = client.pipeline(transaction=False)
    for gid in group_ids:
        key = _group_key(backend, gid)
        if renew and expires:
            pipe.expire(key, int(expires))
        else:
            pipe.exists(key)
    return {gid: bool(found) for gid, found in zip(group_ids, pipe.execute())}


@dataclass
class Plan:
    """What a run does: prompts to wait for (already published), prompts to submit (with task ids if re-sent)."""

    waiting: dict[str, int] = field(default_factory=dict)  # task id -> line
    task_group: dict[str, str] = field(default_factory=dict)  # task id -> group id
    lost: list[tuple[int, str]] = field(default_factory=list)  # (line, task id) of chunks Redis no longer holds
    new: list[int] = field(default_factory=list)  # lines never published


def plan_run(items: list[FilePrompt], done: set[int], chunks: list[Chunk], backend: Any) -> Plan:
    """Sort every unanswered prompt into: wait for it, submit it again (lost), or submit it (new)."""
    plan = Plan()
    present = groups_present(backend, sorted({c.group for c in chunks}), renew=True)
    recorded: set[int] = set()
    wanted = {it.line for it in items}
    for chunk in chunks:
        for task_id, line in chunk.tasks:
            if line in done or line in recorded or line not in wanted:
                continue
            recorded.add(line)
            if present.get(chunk.group):
                plan.waiting[task_id] = line
                plan.task_group[task_id] = chunk.group
            else:
                plan.lost.append((line, task_id))
    plan.new = [it.line for it in items if it.line not in done and it.line not in recorded]
    return plan


def publish(jobs: list[tuple[int, str, Job]], *, task: Any, queue: str, state: StateLog,
            describe: Callable[[Job], str] = Job.describe, app: Any,
            on_chunk: Callable[[int], None] | None = None) -> dict[str, str]:
    """Publish ``(line, task id, job)`` in chunks, each recorded in ``state`` first; returns task id -> group id."""
    from celery.result import AsyncResult, GroupResult
    from vine import barrier

    task_group: dict[str, str] = {}
    for start in range(0, len(jobs), CHUNK):
        part = jobs[start:start + CHUNK]
        gid = str(uuid.uuid4())
        state.append(Chunk(gid, [(tid, line) for line, tid, _ in part]))
        sigs = [task.s(job.to_wire()).set(queue=queue, task_id=tid, argsrepr=describe(job)) for _, tid, job in part]
        with sigint_held():  # a chunk is published and proven (its group record) as one step
            with app.producer_or_acquire() as producer:
                sent = [sig.apply_async(producer=producer, group_id=gid) for sig in sigs]
            # an empty barrier: the record is only saved, so its members must not wait for results
            saved = GroupResult(gid, [AsyncResult(tid, app=app) for _, tid, _ in part], app=app,
                                ready_barrier=barrier())
            saved.save()
        detach([*sent, *saved.results])
        for _, tid, _ in part:
            task_group[tid] = gid
        if on_chunk:
            on_chunk(len(part))
    return task_group


def detach(results: list[Any]) -> None:
    """Make result handles inert: nothing left for ``AsyncResult.__del__`` to do at exit (with Redis gone or the
    interpreter shutting down it would print a traceback per result)."""
    for res in results:
        res.backend = None


def lost_check(backend: Any, task_group: dict[str, str], pending: dict[str, int]) -> Callable[[], None]:
    """An ``on_interval`` hook raising :class:`BatchLost` when a chunk with unanswered prompts is gone."""
    last = [time.monotonic()]

    def check() -> None:
        now = time.monotonic()
        if now - last[0] < LOST_CHECK_SECONDS:
            return
        last[0] = now
        wanted = sorted({task_group[tid] for tid in pending if tid in task_group})
        try:
            present = groups_present(backend, wanted)
        except Exception as exc:  # noqa: BLE001 - unreachable is not lost: the next check tries again
            log.debug("lost check: %r", exc)
            return
        gone = {gid for gid, ok in present.items() if not ok}
        if gone:
            missing = sum(1 for tid in pending if task_group.get(tid) in gone)
            raise BatchLost(f"Redis no longer holds {missing} prompt(s) of this run (restarted without "
                            "persistence, flushed, or the results expired)")

    return check
