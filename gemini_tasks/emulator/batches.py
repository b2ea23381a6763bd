"""The Batch API as google-genai speaks it (Gemini Developer API, not Vertex).

    POST   /{v}/models/{m}:batchGenerateContent  {"batch": {"displayName", "inputConfig":
             {"requests": {"requests": [{"request": GenerateContentRequest, "metadata": {...}}]}}
             or {"fileName": "files/ID"}}}                     -> the job (an Operation)
    GET    /{v}/batches/{id}                                 -> the job
    GET    /{v}/batches?pageSize=&pageToken=                 -> {"operations": [...], "nextPageToken"}
    POST   /{v}/batches/{id}:cancel                          -> {}
    DELETE /{v}/batches/{id}                                 -> {}
    GET    /{v}/files/{id}:download?alt=media                -> a generated file's bytes (files_api)

The job is an Operation: `name` "batches/ID", `metadata` (GenerateContentBatch: model, displayName,
state BATCH_STATE_*, create/update/endTime, batchStats, output), `done`, and when done `response`
(the output) or `error`.  A job belongs to the project of the key that created it: another
project's key gets 403 for get/cancel/delete and never sees it in list.

States advance with time, computed when a job is read: PENDING for `batch_pending_seconds`, then
RUNNING for `batch_run_seconds` (+ `batch_seconds_per_request` each), then SUCCEEDED, or the next
state queued in `batch_end_states` (FAILED, EXPIRED, CANCELLED) for scripted failures.  Answers
are computed when the job ends, exactly as generateContent would answer each request (same text,
same usage), with inner errors in place (bad contents, a file not ACTIVE or of another project,
fault rules with `"endpoint": "batch_request"`).  Inline jobs answer in
`output.inlinedResponses.inlinedResponses` in input order; file jobs write a generated JSONL file
(`output.responsesFile`), one `{"key", "response"|"error"}` line per input line, in input order.

Limits (real values as defaults): inline request body `batch_max_inline_mb` (20 MB), input file
`batch_max_file_mb` (2 GB), unfinished jobs per project `batch_max_jobs` (100; over it: 429
RESOURCE_EXHAUSTED), requests per job `batch_max_requests` (no limit), and enqueued tokens: the input
tokens of a project's unfinished jobs of one model may not exceed `batch_enqueued_tokens[model]` (Tier 1
figures of the rate-limits page); a create that would go over is refused with 429 RESOURCE_EXHAUSTED and
the generic quota message (what clients report for batch creates; Google documents no specific error).  Batch requests do not
count against the per-minute generateContent quotas.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import tts, wire
from .bodies import read_json_object
from .bounded import put_bounded, unused_id
from .content import summarize, text_tokens
from .faults import RequestFacts, _matches
from .files import StoredFile, advance
from .generate import _answer_text, _usage, json_response, model_and_caller
from .shared_state import Emulator

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
MAX_JOBS_KEPT = 10000


@dataclass(slots=True)
class Item:
    request: Any  # the GenerateContentRequest, normalised to snake_case (or None if unparsable)
    metadata: Any = None  # inline: echoed back
    key: str | None = None  # file input: echoed back
    error: dict[str, Any] | None = None  # known bad before running (unparsable line)


@dataclass(slots=True)
class BatchJob:
    id: str
    project: str
    key_label: str
    model: str
    display_name: str | None
    created: float
    items: list[Item]
    inline: bool
    host: str
    base: str  # scheme://host[/prefix]/{version} for generated file URIs
    planned_end: str = "SUCCEEDED"
    state: str = "PENDING"
    updated: float = 0.0
    ended: float | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    ok_count: int = 0
    failed_count: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    tokens: int = 0  # input tokens of its requests (what counts against the enqueued-token limit)

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    def to_json(self) -> dict[str, Any]:
        n = len(self.items)
        done = self.state in TERMINAL
        pending = 0 if done else n
        meta: dict[str, Any] = {
            "@type": BATCH_TYPE,
            "name": self.name,
            "model": f"models/{self.model}",
            "createTime": wire.rfc3339(self.created),
            "updateTime": wire.rfc3339(self.updated or self.created),
            "batchStats": {
                "requestCount": str(n),
                "successfulRequestCount": str(self.ok_count),
                "failedRequestCount": str(self.failed_count),
                "pendingRequestCount": str(pending),
            },
            "state": f"BATCH_STATE_{self.state}",
        }
        if self.display_name:
            meta["displayName"] = self.display_name
        if self.ended is not None:
            meta["endTime"] = wire.rfc3339(self.ended)
        out: dict[str, Any] = {"name": self.name, "metadata": meta}
        if done:
            out["done"] = True
            if self.output is not None:
                meta["output"] = self.output
                out["response"] = {"@type": OUTPUT_TYPE, **self.output}
            if self.error is not None:
                out["error"] = self.error
        return out


class BatchStore:
    def __init__(self) -> None:
        self.jobs: OrderedDict[str, BatchJob] = OrderedDict()
        self.created = 0

    def clear(self) -> None:
        self.jobs.clear()
        self.created = 0

    def new_id(self) -> str:
        return unused_id(self.jobs, 8)

    def add(self, job: BatchJob) -> None:
        put_bounded(self.jobs, job.id, job, MAX_JOBS_KEPT)
        self.created += 1

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "name": j.name,
                "project": j.project,
                "key_label": j.key_label,
                "model": j.model,
                "state": j.state,
                "requests": len(j.items),
                "inline": j.inline,
                "display_name": j.display_name,
                "tokens": j.tokens,
            }
            for j in self.jobs.values()
        ]


# ---- progression and answers -----------------------------------------------------------------


def advance_job(emu: Emulator, job: BatchJob, now: float) -> None:
    if job.state in TERMINAL:
        return
    cfg = emu.config
    run_at = job.created + cfg["batch_pending_seconds"]
    end_at = run_at + cfg["batch_run_seconds"] + cfg["batch_seconds_per_request"] * len(job.items)
    if now >= end_at:
        _finish(emu, job, end_at)
    elif now >= run_at and job.state == "PENDING":
        job.state = "RUNNING"
        job.updated = run_at


def _finish(emu: Emulator, job: BatchJob, at: float) -> None:
    job.updated = at
    job.ended = at
    if job.planned_end == "FAILED":
        job.state = "FAILED"
        job.error = {"code": 13, "message": "Batch job failed: an internal error has occurred."}
        return
    if job.planned_end in ("EXPIRED", "CANCELLED"):
        job.state = job.planned_end
        return
    results = [_answer(emu, job, item) for item in job.items]
    job.ok_count = sum(1 for r in results if "response" in r)
    job.failed_count = len(results) - job.ok_count
    if job.inline:
        inlined = []
        for item, r in zip(job.items, results, strict=True):
            if item.metadata is not None:
                r = {**r, "metadata": item.metadata}
            inlined.append(r)
        job.output = {"inlinedResponses": {"inlinedResponses": inlined}}
    else:
        lines = []
        for item, r in zip(job.items, results, strict=True):
            line = {"key": item.key, **r} if item.key is not None else r
            lines.append(json.dumps(line, separators=(",", ":")))
        data = ("\n".join(lines) + "\n").encode()
        fid = "batch-" + secrets.token_hex(8)
        import hashlib

        f = StoredFile(
            id=fid,
            project=job.project,
            key_label=job.key_label,
            display_name=f"{job.name} output",
            source_name=None,
            mime_type="application/jsonl",
            size=len(data),
            sha256=hashlib.sha256(data).digest(),
            uri=f"{job.base}/files/{fid}",
            created=at,
            state="ACTIVE",
            content=data,
            generated=True,
        )
        emu.files.add_file(f)
        job.output = {"responsesFile": f"files/{fid}"}
    job.state = "SUCCEEDED"


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": wire.STATUS_NAMES.get(code, "UNKNOWN")}}


def _answer(emu: Emulator, job: BatchJob, item: Item) -> dict[str, Any]:
    """One inner request, answered as generateContent would: {"response": ...} or {"error": ...}."""
    if item.error is not None:
        return {"error": item.error}
    req = item.request
    if not isinstance(req, dict):
        return _error(400, "Invalid request: expected a GenerateContentRequest object.")
    cfg = emu.config
    now = time.time()
    store = emu.files

    def file_size(fid: str) -> int | None:
        f = store.get(fid, now)
        return f.size if f is not None and f.project == job.project else None

    try:
        summary = summarize(req.get("contents"), job.host, file_size, cfg["echo_max_chars"])
        for ref in summary.file_refs:
            f = store.get(ref.file_id, now)
            if f is None or f.project != job.project:
                raise wire.file_denied(ref.file_id)
            advance(f, now, cfg["file_active_after_gets"], cfg["file_active_after_seconds"])
            if f.state != "ACTIVE":
                raise wire.file_not_active(ref.file_id)
        gen = req.get("generation_config") or {}
        if not isinstance(gen, dict):
            raise wire.ApiError(400, "Invalid value at 'generation_config': expected an object")
        modalities = [str(m).upper() for m in gen.get("response_modalities") or ()]
        voices: list[str] = []
        if "AUDIO" in modalities or gen.get("speech_config") is not None:
            voices = tts.validate_speech_config(gen.get("speech_config"), cfg["strict_voices"])
    except wire.ApiError as err:
        return {"error": err.body()["error"]}
    facts = RequestFacts(
        "batch_request", "POST", f"/{job.name}", job.model, job.key_label, job.project, summary.prompt_text
    )
    for rule in list(emu.faults.rules):
        if rule.action == "status" and rule.matchers.get("endpoint") == "batch_request" and _matches(rule, facts):
            rule.applied += 1
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    emu.faults.rules.remove(rule)
            return _error(int(rule.spec["status"]), str(rule.spec.get("message") or wire.DEFAULT_MESSAGES.get(
                int(rule.spec["status"]), "error")))
    emu.responses += 1
    rid = f"emu-{emu.responses:08x}"
    if "AUDIO" in modalities:
        chars = sum(len(t) for t in summary.texts)
        seconds = tts.duration_for(chars, cfg)
        data, _n = tts.synthesize(seconds, cfg["tts_mime"], voices)
        part: dict[str, Any] = {"inlineData": {"mimeType": cfg["tts_mime"], "data": data.decode("ascii")}}
        usage = _usage(summary, tts.audio_tokens(seconds), "AUDIO")
    else:
        text = _answer_text(job.model, summary, gen, cfg["echo_max_chars"])
        part = {"text": text}
        usage = _usage(summary, text_tokens(text))
    return {
        "response": {
            "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage,
            "modelVersion": job.model,
            "responseId": rid,
        }
    }


# ---- enqueued tokens ---------------------------------------------------------------------------

ENQUEUED_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)
HELP_DETAIL = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}],
}


def _enqueued_limit(table: dict[str, int | None], model: str) -> int | None:
    best = max((p for p in table if model.startswith(p)), key=len, default=None)
    return None if best is None else table[best]


def _job_tokens(emu: Emulator, items: list[Item], host: str, project: str, now: float) -> int:
    """Input tokens of a job's requests, counted as generateContent counts a prompt."""
    store = emu.files

    def file_size(fid: str) -> int | None:
        f = store.get(fid, now)
        return f.size if f is not None and f.project == project else None

    total = 0
    for item in items:
        if isinstance(item.request, dict):
            try:
                total += summarize(item.request.get("contents"), host, file_size, 0).prompt_tokens
            except wire.ApiError:
                continue  # answered with an inner error later
    return total


def _check_limits(emu: Emulator, project: str, model: str, items: list[Item], host: str, entry: dict[str, Any],
                  now: float) -> int:
    """429 when the project already runs `batch_max_jobs` jobs or the new job's input tokens would take its
    enqueued tokens for `model` over the limit; returns the new job's tokens."""
    cfg = emu.config
    for job in emu.batches.jobs.values():
        if job.project == project:
            advance_job(emu, job, now)
    running = sum(1 for j in emu.batches.jobs.values() if j.project == project and j.state not in TERMINAL)
    if running >= cfg["batch_max_jobs"]:
        raise wire.ApiError(
            429,
            f"Too many concurrent batch jobs: the limit is {cfg['batch_max_jobs']} per project. "
            "Wait for a job to finish, then retry.",
        )
    tokens = _job_tokens(emu, items, host, project, now)
    entry["batch_tokens"] = tokens
    limit = _enqueued_limit(cfg["batch_enqueued_tokens"], model)
    if limit is not None:
        enqueued = sum(j.tokens for j in emu.batches.jobs.values()
                       if j.project == project and j.model == model and j.state not in TERMINAL)
        entry["enqueued_tokens"] = enqueued
        if enqueued + tokens > limit:
            raise wire.ApiError(429, ENQUEUED_MESSAGE, "RESOURCE_EXHAUSTED", [HELP_DETAIL])
    return tokens


# ---- handlers ----------------------------------------------------------------------------------


def _owned(emu: Emulator, job_id: str, project: str) -> BatchJob:
    job = emu.batches.jobs.get(job_id)
    if job is None or job.project != project:
        raise wire.ApiError(403, "The caller does not have permission", "PERMISSION_DENIED")
    return job


async def _caller_job(emu: Emulator, request: web.Request, entry: dict[str, Any], job_id: str,
                      endpoint: str) -> BatchJob:
    """The job ``job_id`` of the caller's project (403 otherwise), after the faults scripted for ``endpoint``."""
    ident = emu.authenticate(request, entry)
    entry["batch"] = f"batches/{job_id}"
    facts = RequestFacts(endpoint, request.method, request.path, None, ident.label, ident.project)
    await emu.apply_faults(request, facts, entry)
    return _owned(emu, job_id, ident.project)


def _file_items(emu: Emulator, file_name: str, project: str) -> list[Item]:
    fid = str(file_name).removeprefix("files/")
    now = time.time()
    f = emu.files.get(fid, now)
    if f is None or f.project != project:
        raise wire.file_denied(fid)
    cfg = emu.config
    advance(f, now, cfg["file_active_after_gets"], cfg["file_active_after_seconds"])
    if f.state != "ACTIVE":
        raise wire.file_not_active(fid)
    if f.size > cfg["batch_max_file_mb"] * 1024 * 1024:
        raise wire.ApiError(400, f"Input file files/{fid} exceeds the {cfg['batch_max_file_mb']} MB limit.")
    if f.content is None:
        raise wire.ApiError(400, f"Input file files/{fid} is not a JSON Lines file.")
    items: list[Item] = []
    for n, line in enumerate(f.content.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            items.append(Item(None, error={"code": 400, "message": f"Line {n}: invalid JSON.",
                                           "status": "INVALID_ARGUMENT"}))  # fmt: skip
            continue
        if not isinstance(obj, dict):
            items.append(Item(None, error={"code": 400, "message": f"Line {n}: expected an object.",
                                           "status": "INVALID_ARGUMENT"}))  # fmt: skip
            continue
        key = obj.get("key")
        items.append(Item(wire.normalize(obj.get("request")), key=None if key is None else str(key)))
    return items


async def create(
    emu: Emulator, request: web.Request, entry: dict[str, Any], prefix: str, version: str, model_path: str
) -> web.StreamResponse:
    model, ident = model_and_caller(emu, request, entry, model_path)
    cfg = emu.config
    inline_limit = cfg["batch_max_inline_mb"] * 1024 * 1024
    body, size = await read_json_object(request, max(inline_limit, 1 << 20) + (1 << 20))
    entry["bytes_in"] = size
    await emu.apply_faults(
        request, RequestFacts("batches.create", "POST", request.path, model, ident.label, ident.project), entry
    )
    batch = body.get("batch")
    if not isinstance(batch, dict):
        raise wire.ApiError(400, "* BatchGenerateContentRequest.batch: batch is not specified\n")
    display_name = batch.get("displayName") or batch.get("display_name")
    input_config = batch.get("inputConfig") or batch.get("input_config") or {}
    if not isinstance(input_config, dict):
        raise wire.ApiError(400, "Invalid value at 'batch.input_config': expected an object")
    file_name = input_config.get("fileName") or input_config.get("file_name")
    inline = input_config.get("requests")
    if (file_name is None) == (inline is None):
        raise wire.ApiError(400, "* GenerateContentBatch.input_config: exactly one of requests or file_name is required\n")
    if inline is not None:
        if size > inline_limit:
            raise wire.ApiError(400, f"Request payload size exceeds the limit: {inline_limit} bytes.")
        raw_items = inline.get("requests") if isinstance(inline, dict) else None
        if not isinstance(raw_items, list):
            raise wire.ApiError(400, "Invalid value at 'batch.input_config.requests': expected {requests: [...]}")
        items = []
        for it in raw_items:
            if not isinstance(it, dict):
                items.append(Item(None, error={"code": 400, "message": "expected an InlinedRequest object",
                                               "status": "INVALID_ARGUMENT"}))  # fmt: skip
                continue
            items.append(Item(wire.normalize(it.get("request")), metadata=it.get("metadata")))
    else:
        items = _file_items(emu, str(file_name), ident.project)
    if not items:
        raise wire.ApiError(400, "* GenerateContentBatch.input_config: the batch has no requests\n")
    max_requests = cfg["batch_max_requests"]
    if max_requests is not None and len(items) > max_requests:
        raise wire.ApiError(400, f"A batch may hold at most {int(max_requests)} requests; got {len(items)}.")
    now = time.time()
    tokens = _check_limits(emu, ident.project, model, items, request.host, entry, now)
    planned = "SUCCEEDED"
    if cfg["batch_end_states"]:
        planned = cfg["batch_end_states"].pop(0)
    job = BatchJob(
        id=emu.batches.new_id(),
        project=ident.project,
        key_label=ident.label,
        model=model,
        display_name=str(display_name) if display_name else None,
        created=now,
        items=items,
        inline=inline is not None,
        host=request.host,
        base=f"{request.scheme}://{request.host}{prefix}/{version}",
        planned_end=planned,
        updated=now,
        tokens=tokens,
    )
    emu.batches.add(job)
    entry["batch"] = job.name
    entry["batch_requests"] = len(items)
    advance_job(emu, job, now)
    return json_response(job.to_json())


async def get(emu: Emulator, request: web.Request, entry: dict[str, Any], job_id: str) -> web.StreamResponse:
    job = await _caller_job(emu, request, entry, job_id, "batches.get")
    advance_job(emu, job, time.time())
    entry["batch_state"] = job.state
    return json_response(job.to_json())


async def list_jobs(emu: Emulator, request: web.Request, entry: dict[str, Any]) -> web.StreamResponse:
    ident = emu.authenticate(request, entry)
    await emu.apply_faults(
        request, RequestFacts("batches.list", "GET", request.path, None, ident.label, ident.project), entry
    )
    try:
        size = min(1000, max(1, int(request.query.get("pageSize", "50"))))
        start = int(request.query.get("pageToken") or 0)
    except ValueError:
        raise wire.ApiError(400, "Invalid pageSize or pageToken.") from None
    now = time.time()
    mine = [j for j in reversed(emu.batches.jobs.values()) if j.project == ident.project]
    page = mine[start : start + size]
    for j in page:
        advance_job(emu, j, now)
    body: dict[str, Any] = {"operations": [j.to_json() for j in page]} if page else {}
    if start + size < len(mine):
        body["nextPageToken"] = str(start + size)
    return json_response(body)


async def cancel(emu: Emulator, request: web.Request, entry: dict[str, Any], job_id: str) -> web.StreamResponse:
    job = await _caller_job(emu, request, entry, job_id, "batches.cancel")
    now = time.time()
    advance_job(emu, job, now)
    if job.state not in TERMINAL:
        job.state = "CANCELLED"
        job.updated = job.ended = now
    entry["batch_state"] = job.state
    return json_response({})


async def delete(emu: Emulator, request: web.Request, entry: dict[str, Any], job_id: str) -> web.StreamResponse:
    await _caller_job(emu, request, entry, job_id, "batches.delete")
    del emu.batches.jobs[job_id]
    return json_response({})
