"""The fleet side of ``service_tier="batch"``: one Gemini Batch API job per part, driven by a step that a
Celery task runs again and again (it re-queues itself) until the job has ended and its answers are stored.

One step, with a key of the part's own project (a batch job belongs to the project of the key that made it):

* no job yet: build the part's requests (media paths uploaded through the Files API in that project; bytes
  and URLs as they are), send them inline, or as a JSONL file through the Files API when they are larger
  than the inline limit, create the job, and poll again later;
* a running job: ``batches.get``; record its progress (``batchStats``), poll again after ``poll_interval``;
* SUCCEEDED: read every inner answer (inline responses, or the JSONL output file) into one result per
  prompt, in input order, an inner error as that prompt's error string; a speech job's audio (TTS models
  take the Batch API) is stored in a blob and its result is the synchronous speech task's;
* FAILED / EXPIRED / CANCELLED (not by us): create a new job for the same prompts, up to
  ``max_resubmits`` times, then end each prompt with an error naming the job's end state;
* cancelled by the caller: cancel the remote job, end each prompt still open with a "Cancelled" error.

Plain functions: :mod:`gemini_tasks.worker.batch_tasks` adapts them to Celery.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, NoReturn

from celery.exceptions import Retry
from google.genai import _common, types
from google.genai import batches as sdk_batches

from gemini_tasks.gemini import content as media
from gemini_tasks.gemini import tts as tts_lib
from gemini_tasks.gemini.classification import classify
from gemini_tasks.gemini.client import get_client
from gemini_tasks.gemini.config import build_generate_config
from gemini_tasks.gemini.errors import (INVALID_KEY, PERSISTENT, RATE_LIMITED, TRANSIENT, CallError, GeminiCallFailed,
                                        error_message)
from gemini_tasks.gemini.response import extract_audio, extract_text, usage_dict
from gemini_tasks.gemini.validation import from_wire
from gemini_tasks.keys.redis_conn import get_redis
from gemini_tasks.keys.tier_batches import TierBatchRecord
from gemini_tasks.messages import Job, blobs
from gemini_tasks.worker.tier_calls import record_usage
from gemini_tasks.settings import get_settings
from gemini_tasks.worker.execution import worker_pool
from gemini_tasks.worker.uploads import ProjectUploads
from gemini_tasks.worker.worker_keys import held_secrets

log = logging.getLogger("gemini_tasks.batch")

END_FAILED = frozenset({"JOB_STATE_FAILED", "JOB_STATE_EXPIRED", "JOB_STATE_CANCELLED"})
DONE = "done"
#: steps without a key of the part's project on this worker before the part ends in an error
MAX_NO_KEY_STEPS = 30
#: transient errors creating or polling a job before the part ends in an error
MAX_TRANSIENT = 8

Requeue = Callable[[float], NoReturn]
#: stores an answer's audio and returns its blob reference (speech jobs: audio never enters the result record)
StoreAudio = Callable[[bytes], str]


def _state_name(state: Any) -> str:
    return getattr(state, "name", None) or str(state)


def _error_result(job: Job, message: str, kind: str) -> dict[str, Any]:
    return {"ok": False, "error": message, "kind": kind, "tier": "batch", "metadata": job.metadata}


def answer_result(job: Job, response: types.GenerateContentResponse, *, key_id: str,
                  batch_job: str, store_audio: StoreAudio | None = None) -> dict[str, Any]:
    """One inner answer as the generate (or speech) task's result (text or audio reference, usage, tier),
    or an error result. A speech answer's audio goes to a blob through ``store_audio``, as the synchronous
    speech task's does, and the result carries the same fields (``audio_ref``, ``mime_type``, format)."""
    out: dict[str, Any] = {"ok": True, "key_id": key_id, "model": job.model, "tier": "batch",
                           "batch_job": batch_job, "usage": usage_dict(response)}
    try:
        if job.kind == "speech":
            if store_audio is None:
                raise ValueError("a speech answer needs somewhere to store its audio")
            audio, mime = extract_audio(response)
            rate, channels, width, is_wav = tts_lib.parse_audio_mime(mime)
            out.update(audio_ref=store_audio(audio), mime_type=mime, bytes=len(audio), sample_rate=rate,
                       channels=channels, sample_width=width, is_wav=is_wav)
        elif job.policy.return_response:
            out["response"] = response.model_dump(mode="json", exclude_none=True)
            out["text"] = response.text
        else:
            out["text"] = extract_text(response, strip=job.policy.strip)
    except GeminiCallFailed as exc:
        return {**_error_result(job, error_message(exc.error), exc.error.kind), "usage": out["usage"]}
    out["metadata"] = job.metadata
    return out


def inner_error_result(job: Job, error: Any) -> dict[str, Any]:
    """An inner request's error (``{"code", "message", "status"}``) as that prompt's error result."""
    data = error if isinstance(error, dict) else (error.model_dump() if hasattr(error, "model_dump") else {})
    code = data.get("code")
    code = int(code) if isinstance(code, (int, float, str)) and str(code).isdigit() else None
    kind = TRANSIENT if code is None or code >= 500 or code == 429 else PERSISTENT
    err = CallError(kind=kind, code=code, status=data.get("status"), message=str(data.get("message") or ""))
    return _error_result(job, error_message(err), kind)


# ---- building a part's requests ----------------------------------------------------------------------------


def build_requests(jobs: dict[int, Job], client: Any, pool: Any, project: str
                   ) -> tuple[list[tuple[int, types.InlinedRequest]], dict[int, dict[str, Any]]]:
    """The part's inlined requests (index, request), and error results for prompts that cannot be sent."""
    requests: list[tuple[int, types.InlinedRequest]] = []
    failed: dict[int, dict[str, Any]] = {}
    for idx, job in sorted(jobs.items()):
        if job.speech is not None:  # text in, audio out: the speech task's config (gemini/tts.py)
            requests.append((idx, types.InlinedRequest(
                contents=[types.Content(role="user", parts=[types.Part(text=job.speech.prompt)])],
                config=tts_lib.config_for(job.speech.to_wire()), metadata={"i": str(idx)})))
            continue
        try:
            request = from_wire(job.request or {})
            config = build_generate_config(request.get("generation_config"))
            items = media.plan_media(request)
            paths = {str(i.value) for i in items if i.source == "path"}
            for path in paths:
                if not os.access(path, os.R_OK):
                    raise GeminiCallFailed(CallError(
                        kind=PERSISTENT, status="LOCAL_ERROR",
                        message=f"path {path!r} is not readable on worker host {socket.gethostname()}"))
            resolver = ProjectUploads(pool.client, pool.prefix, project, client, paths)
            parts = media.build_contents(request, resolver)
        except GeminiCallFailed as exc:
            failed[idx] = _error_result(job, error_message(exc.error), exc.error.kind)
            continue
        requests.append((idx, types.InlinedRequest(contents=[types.Content(role="user", parts=parts)],
                                                   config=config, metadata={"i": str(idx)})))
    return requests, failed


def wire_request(client: Any, request: types.InlinedRequest) -> dict[str, Any]:
    """The JSON the Batch API receives for one inlined request (the SDK's own converter)."""
    converted = sdk_batches._InlinedRequest_to_mldev(client._api_client, request)
    return _common.encode_unserializable_types(_common.convert_to_dict(converted))


def create_job(client: Any, model: str, requests: list[tuple[int, types.InlinedRequest]], *, inline_limit: int,
               display_name: str) -> tuple[types.BatchJob, str, str | None]:
    """Create the Batch API job: inline below ``inline_limit`` bytes, else a JSONL file; (job, mode, file)."""
    wire = [(idx, wire_request(client, req)) for idx, req in requests]
    size = sum(len(json.dumps(w)) for _, w in wire)
    if size <= inline_limit:
        job = client.batches.create(model=model, src=[req for _, req in requests],
                                    config={"display_name": display_name})
        return job, "inline", None
    lines = "".join(json.dumps({"key": str(idx), "request": w["request"]}) + "\n" for idx, w in wire)
    uploaded = client.files.upload(file=io.BytesIO(lines.encode()),
                                   config=types.UploadFileConfig(mime_type="jsonl", display_name=display_name))
    deadline = time.monotonic() + 300
    while _state_name(uploaded.state) not in ("ACTIVE", "FileState.ACTIVE"):
        if _state_name(uploaded.state) in ("FAILED", "FileState.FAILED") or time.monotonic() > deadline:
            raise GeminiCallFailed(CallError(kind=TRANSIENT, status="FAILED_PRECONDITION",
                                             message=f"batch input file {uploaded.name} did not become ACTIVE"))
        time.sleep(0.5)
        uploaded = client.files.get(name=uploaded.name)
    job = client.batches.create(model=model, src=uploaded.name, config={"display_name": display_name})
    return job, "file", uploaded.name


def read_results(client: Any, batch: types.BatchJob, jobs: dict[int, Job], key_id: str,
                 store_audio: StoreAudio | None = None) -> dict[int, dict[str, Any]]:
    """Every inner answer of a SUCCEEDED job, by prompt index; a prompt with no answer gets an error."""
    out: dict[int, dict[str, Any]] = {}
    dest = batch.dest
    name = batch.name or "?"
    if dest is not None and dest.inlined_responses is not None:
        order = sorted(jobs)
        for pos, item in enumerate(dest.inlined_responses):
            meta = item.metadata or {}
            idx = int(meta["i"]) if isinstance(meta, dict) and str(meta.get("i", "")).isdigit() else \
                (order[pos] if pos < len(order) else None)
            if idx is None or idx not in jobs:
                continue
            if item.error is not None or item.response is None:
                out[idx] = inner_error_result(jobs[idx], item.error.model_dump() if item.error else {})
            else:
                out[idx] = answer_result(jobs[idx], item.response, key_id=key_id, batch_job=name,
                                         store_audio=store_audio)
    elif dest is not None and dest.file_name:
        data = client.files.download(file=dest.file_name)
        for line in data.decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            key = str(row.get("key", ""))
            if not key.isdigit() or int(key) not in jobs:
                continue
            idx = int(key)
            if "response" in row and row["response"] is not None:
                resp = types.GenerateContentResponse._from_response(
                    response=sdk_batches._GenerateContentResponse_from_mldev(row["response"]), kwargs={})
                out[idx] = answer_result(jobs[idx], resp, key_id=key_id, batch_job=name, store_audio=store_audio)
            else:
                out[idx] = inner_error_result(jobs[idx], row.get("error") or row.get("status") or {})
    for idx, job in jobs.items():
        out.setdefault(idx, _error_result(job, f"Persistent API error: batch job {name} returned no answer for "
                                          "this prompt", PERSISTENT))
    return out


# ---- the step ------------------------------------------------------------------------------------------------


def _pick_key(part: dict[str, Any]) -> tuple[str, str] | None:
    secrets = held_secrets(part.get("keys") or [])
    bad = set(part.get("bad_keys") or [])
    for key_id, secret in secrets.items():
        if key_id not in bad:
            return key_id, secret
    return None


def _close_part(record: TierBatchRecord, n: int, part: dict[str, Any], jobs: dict[int, Job],
                message: str, kind: str, **fields: Any) -> dict[str, Any]:
    open_idx = [i for i in part["indices"] if i not in record.results(part["indices"])]
    record.put_results({i: _error_result(jobs[i], message, kind) for i in open_idx if i in jobs})
    record.update_part(n, state=DONE, **fields)
    return {"state": DONE, "error": message}


def step(group_id: str, n: int, requeue: Requeue) -> dict[str, Any]:
    """Advance part ``n`` of a batch-tier group by one step; re-queues itself (``requeue``) until done."""
    settings = get_settings()
    record = TierBatchRecord(get_redis(settings.keys_redis_url), group_id)
    meta = record.meta()
    if meta is None:
        log.warning("batch %s is gone (expired or never saved); part %d stops", group_id, n)
        return {"state": "gone"}
    part = record.part(n)
    if part.get("state") == DONE:
        return {"state": DONE}
    jobs = {i: Job.from_wire(meta["jobs"][str(i)]) for i in part["indices"]}  # decoded once, typed below
    poll = float(meta.get("poll_interval", 30.0))
    picked = _pick_key(part)
    if picked is None:
        return _without_key(record, n, part, jobs, poll, requeue)
    key_id, secret = picked
    client = get_client(key_id, secret, timeout_s=settings.request_timeout, api_version=settings.api_version)
    pool = worker_pool(meta["pool"]["pool"])
    job_name = part.get("job")
    if record.cancelled():
        return _cancel(record, n, part, jobs, client)
    try:
        if not job_name:
            return _create(record, n, part, meta, jobs, client, pool, key_id, requeue)
        batch = client.batches.get(name=job_name)
    except Retry:
        raise
    except GeminiCallFailed as exc:
        return _on_error(record, n, part, jobs, exc.error, key_id, poll, requeue)
    except Exception as exc:  # noqa: BLE001 - every failure is classified
        return _on_error(record, n, part, jobs, classify(exc, secrets=[secret]), key_id, poll, requeue)

    state = _state_name(batch.state)
    stats = {"state": state, "updated": time.time()}
    if not batch.done and state not in END_FAILED and state != "JOB_STATE_SUCCEEDED":
        record.update_part(n, job_state=state, stats=stats, transient=0)
        requeue(poll)
    if state == "JOB_STATE_SUCCEEDED":
        return _store_answers(record, n, part, meta, jobs, client, batch, pool, key_id, stats)
    return _resubmit_or_end(record, n, part, meta, jobs, state, requeue)


def _without_key(record: TierBatchRecord, n: int, part: dict[str, Any], jobs: dict[int, Job], poll: float,
                 requeue: Requeue) -> dict[str, Any]:
    """No key of the part's project on this worker: poll again (another worker may hold one), or end the part
    after :data:`MAX_NO_KEY_STEPS` such steps."""
    tries = int(part.get("no_key", 0)) + 1
    if tries >= MAX_NO_KEY_STEPS:
        return _close_part(record, n, part, jobs, f"Fatal: no worker holds a usable key of project "
                           f"{part['project']!r} ({', '.join(part['keys'])}); a batch job must be made and read "
                           "with a key of its own project", "no_usable_keys")
    record.update_part(n, no_key=tries)
    requeue(poll)


def _cancel(record: TierBatchRecord, n: int, part: dict[str, Any], jobs: dict[int, Job],
            client: Any) -> dict[str, Any]:
    """The caller cancelled: cancel the remote job (best effort) and end every prompt still open."""
    job_name = part.get("job")
    if job_name:
        try:
            client.batches.cancel(name=job_name)
        except Exception as exc:  # noqa: BLE001 - best effort: the job may have ended already
            log.info("batch %s part %d: cancel of %s: %r", record.group_id, n, job_name, exc)
    return _close_part(record, n, part, jobs, "Cancelled: the caller cancelled the batch", "cancelled",
                       job_state="CANCELLED_BY_CALLER")


def _store_answers(record: TierBatchRecord, n: int, part: dict[str, Any], meta: dict[str, Any],
                   jobs: dict[int, Job], client: Any, batch: Any, pool: Any, key_id: str,
                   stats: dict[str, Any]) -> dict[str, Any]:
    """A SUCCEEDED job: every answer read and stored (its usage counted first), the JSONL input deleted."""
    job_name = part.get("job")
    results = read_results(client, batch, jobs, key_id,
                           store_audio=lambda data: blobs.put(pool.client, pool.prefix, data, ttl=record.ttl))
    if part.get("input_file"):  # the JSONL input counts against the project's Files storage until deleted
        try:  # before the answers are stored: a caller that has them sees the input gone
            client.files.delete(name=part["input_file"])
        except Exception as exc:  # noqa: BLE001 - best effort: it expires on its own after 48 h
            log.info("batch %s part %d: could not delete %s: %r", record.group_id, n, part["input_file"], exc)
    for value in results.values():  # counted before the answers are visible, like a synchronous call's
        if value.get("ok"):
            record_usage(pool, model=meta["model"], tier="batch", usage=value.get("usage"))
    record.put_results(results)
    record.update_part(n, state=DONE, job_state="JOB_STATE_SUCCEEDED", stats=stats)
    log.info("batch %s part %d: job %s SUCCEEDED, %d answers stored", record.group_id, n, job_name, len(results))
    return {"state": DONE, "job": job_name, "answers": len(results)}


def _resubmit_or_end(record: TierBatchRecord, n: int, part: dict[str, Any], meta: dict[str, Any],
                     jobs: dict[int, Job], state: str, requeue: Requeue) -> dict[str, Any]:
    """A job that ended without answers (FAILED, EXPIRED, CANCELLED): made again for the same prompts up to
    ``max_resubmits`` times, then every prompt ends with an error naming the end state."""
    job_name = part.get("job")
    attempts = int(part.get("attempts", 1))
    if attempts <= int(meta.get("max_resubmits", 2)):
        log.warning("batch %s part %d: job %s ended %s; re-submitting (attempt %d)", record.group_id, n, job_name,
                    state, attempts + 1)
        record.update_part(n, job=None, job_state=state, ended=(part.get("ended") or []) + [[job_name, state]])
        requeue(0)
    short = state.removeprefix("JOB_STATE_")
    return _close_part(record, n, part, jobs, f"Persistent API error: batch job {job_name} ended {short} "
                       f"({attempts} job(s) tried for these prompts)", PERSISTENT, job_state=state)


def _create(record: TierBatchRecord, n: int, part: dict[str, Any], meta: dict[str, Any],
            jobs: dict[int, Job], client: Any, pool: Any, key_id: str, requeue: Requeue) -> dict[str, Any]:
    poll = float(meta.get("poll_interval", 30.0))
    budget = int(meta.get("enqueued_tokens") or 0)
    mine = int(part.get("tokens") or 0)
    if budget and mine > budget:  # only a single prompt can be over it (plan_parts): the API would never take it
        return _close_part(record, n, part, jobs, f"Persistent API error: this prompt is estimated at {mine} input "
                           f"tokens, over the Batch API's enqueued-token budget of {budget} for {meta['model']} "
                           "(batch_options['enqueued_tokens'])", PERSISTENT)
    if budget and mine + _enqueued_elsewhere(record, meta, n, part["project"]) > budget:
        requeue(poll)  # the project's other jobs of this batch hold the budget: create once one has ended
    if not record.claim_create(n, 600):
        requeue(poll)  # another copy of this step is creating the job right now
    try:
        todo = {i: j for i, j in jobs.items() if i not in record.results(part["indices"])}
        requests, failed = build_requests(todo, client, pool, part["project"])
        record.put_results(failed)
        if not requests:
            record.update_part(n, state=DONE)
            return {"state": DONE, "answers": 0}
        batch, mode, input_file = create_job(
            client, meta["model"], requests, inline_limit=int(meta.get("inline_limit", 19_000_000)),
            display_name=f"gemini-tasks {record.group_id} part {n}")
        record.update_part(n, job=batch.name, job_state=_state_name(batch.state), mode=mode, input_file=input_file,
                           key_id=key_id, attempts=int(part.get("attempts", 0)) + 1, transient=0,
                           created=time.time())
        log.info("batch %s part %d: job %s created (%d requests, %s) with %s", record.group_id, n, batch.name,
                 len(requests), mode, key_id)
    finally:
        record.release_create(n)
    requeue(poll)
    raise AssertionError("unreachable")  # requeue never returns


def _enqueued_elsewhere(record: TierBatchRecord, meta: dict[str, Any], n: int, project: str) -> int:
    """Estimated tokens this batch's other parts in ``project`` hold of its budget: every unfinished earlier
    part (made or about to be made: parts are created in order, so two steps running at once never both
    take the budget) and every later part whose job exists."""
    total = 0
    for k in range(int(meta.get("parts", 0))):
        if k == n:
            continue
        other = record.part(k)
        if other.get("project") != project or other.get("state") == DONE:
            continue
        if k < n or other.get("job"):
            total += int(other.get("tokens") or 0)
    return total


def _on_error(record: TierBatchRecord, n: int, part: dict[str, Any], jobs: dict[int, Job],
              err: CallError, key_id: str, poll: float, requeue: Requeue) -> dict[str, Any]:
    log.warning("batch %s part %d key %s: %s", record.group_id, n, key_id, error_message(err))
    if err.kind == INVALID_KEY:
        record.update_part(n, bad_keys=sorted(set(part.get("bad_keys") or []) | {key_id}))
        requeue(0)
    if err.kind == RATE_LIMITED:  # e.g. too many concurrent batch jobs in the project: wait, never give up
        requeue(max(poll, float(err.retry_after or 0), 5.0))
    if err.kind == TRANSIENT:
        tries = int(part.get("transient", 0)) + 1
        if tries < MAX_TRANSIENT:
            record.update_part(n, transient=tries)
            requeue(min(300.0, poll * 2 ** (tries - 1)))
    if part.get("job") and err.code in (403, 404):  # the job vanished (deleted elsewhere): make a new one
        record.update_part(n, job=None)
        requeue(0)
    return _close_part(record, n, part, jobs, error_message(err), err.kind)
