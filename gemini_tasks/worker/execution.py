"""What a worker does with one job: admit, call Gemini with the leased key, report, retry or answer.

This is plain Python so it can be tested without Celery; :mod:`gemini_tasks.worker.tasks` only adapts it. The
loop keeps two budgets apart: rate-limit waits (a key cooling down, a 429, the spacing gate) never spend
the error-retry budget, which only transient failures (5xx, timeouts, resets) consume.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, NoReturn

from celery.utils.time import get_exponential_backoff_interval
from google.genai import types
from redis.exceptions import NoScriptError

from gemini_tasks.messages import DEADLINE_GRACE, Job, TaskFailed, blobs  # noqa: F401 - TaskFailed for callers
from gemini_tasks.worker import async_calls, settle
from gemini_tasks.gemini import content as media
from gemini_tasks.gemini import media_files
from gemini_tasks.gemini import tts as tts_lib
from gemini_tasks.gemini.client import get_client
from gemini_tasks.gemini.config import build_generate_config
from gemini_tasks.gemini.errors import (
    BLOCKED,
    INVALID_KEY,
    PERSISTENT,
    RATE_LIMITED,
    TRANSIENT,
    CallError,
    GeminiCallFailed,
    error_message,
)
from gemini_tasks.gemini.classification import classify
from gemini_tasks.gemini.response import extract_audio, extract_text, usage_dict
from gemini_tasks.gemini.tokens import estimate_tokens, media_tokens
from gemini_tasks.gemini.validation import from_wire
from gemini_tasks.keys import names
from gemini_tasks.keys.admission import Interrupted, WaitTooLong, acquire
from gemini_tasks.keys.calls import record_call
from gemini_tasks.keys.keeper import lease_keeper
from gemini_tasks.keys.pool import AdmitPolicy, Cancelled, KeyPool, Lease, NoUsableKeys, Wait
from gemini_tasks.keys.redis_conn import get_redis
from gemini_tasks.settings import get_settings
from gemini_tasks.worker import tier_calls
from gemini_tasks.worker.stopping import WorkerStopping, stoppable_sleep, worker_stopping
from gemini_tasks.worker.tier_calls import record_usage
from gemini_tasks.worker.uploads import ProjectUploads
from gemini_tasks.worker.worker_keys import held_secrets, pool_watcher

log = logging.getLogger("gemini_tasks")

OUTCOME_OF = {RATE_LIMITED: "rate_limited", INVALID_KEY: "invalid_key", TRANSIENT: "transient",
              PERSISTENT: "persistent", BLOCKED: "success"}
#: a worker that cannot be admitted before its caller's deadline says so this long before it, so the caller
#: gets the cause of the wait rather than a bare timeout
REPLY_MARGIN = 0.5
#: the longest wait (for a key, or a backoff) a batch job sleeps in its worker slot; a longer one re-queues it
SLOT_SLEEP_SECONDS = 5.0
#: full-jitter exponential backoff between tries after a transient error: base and ceiling
ERROR_BACKOFF_SECONDS = 1.0
ERROR_BACKOFF_MAX_SECONDS = 60.0


@dataclass
class JobContext:
    """What the execution needs from its runner (a Celery task, or a test)."""

    task_id: str
    #: re-queue this job after ``countdown`` seconds (does not return); the job carries its own state.
    #: None when there is no broker to re-queue to (a task function called directly): the wait is slept
    requeue: Callable[[Job, float], NoReturn] | None
    owner: str = ""
    #: seconds the done marker (a second copy of the result, read by a redelivered copy) is kept; the task
    #: layer passes the result backend's ``result_expires``, so one setting bounds both in Redis memory
    result_ttl: float = 24 * 3600


_pools: dict[tuple[str, str, int], KeyPool] = {}


def worker_pool(pool_name: str) -> KeyPool:
    """This process's view of a pool (built once: a KeyPool registers its scripts, hashing each); the first use
    announces the keys this host holds (and keeps watching the pool, announcing again after Redis lost its
    state)."""
    url = get_settings().keys_redis_url
    pool = _pools.get((pool_name, url, os.getpid()))
    if pool is None:
        pool = _pools[(pool_name, url, os.getpid())] = KeyPool(get_redis(url), pool_name)
    pool_watcher().add(pool)
    return pool


def _fail(message: str, kind: str, job: Job, error: CallError | None = None,
          key_id: str | None = None) -> NoReturn:
    """End the request with an error; ``key_id`` names the key of the failing call, when one was made."""
    raise TaskFailed(message, {"kind": kind, "key_id": key_id, "metadata": job.metadata,
                               "error": error.to_dict() if error else None})


def read_job(wire: Any) -> Job:
    """The job a task received, decoded once (:meth:`Job.from_wire`: a field missing from an older client's
    message reads as the message's default, an unknown key is ignored). A message that is not a job ends the
    request with ``bad_input``."""
    try:
        return Job.from_wire(wire)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        meta = wire.get("metadata") if isinstance(wire, dict) else None
        raise TaskFailed(f"Persistent input error: not a job message ({type(exc).__name__}: {str(exc)[:200]})",
                         {"kind": "bad_input", "key_id": None, "metadata": meta if isinstance(meta, dict) else {},
                          "error": None}) from None


def admit_policy(job: Job, ctx: JobContext, lease_ttl: float, tokens: int = 0) -> AdmitPolicy:
    """The key manager's view of this job's processor settings (every one read from the typed message)."""
    p = job.policy
    return AdmitPolicy(
        model=job.model,
        owner=ctx.owner or f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}",
        processor_id=p.processor_id,
        max_workers=p.max_workers,
        worker_cooldown=p.worker_cooldown_seconds,
        api_call_interval=p.api_call_interval,
        spacing_scope=socket.gethostname() if p.spacing_scope == "host" else "fleet",
        lease_ttl=lease_ttl,
        rate_window=job.pool.rate_window,
        cancel_id=ctx.task_id if job.deadline else "",
        tokens=tokens,
    )


class _Requeue(Exception):
    """The next admission is far enough away that the slot is better given back: re-queue in ``countdown`` s."""

    def __init__(self, countdown: float, reason: str) -> None:
        super().__init__(countdown, reason)
        self.countdown = countdown
        self.reason = reason


def describe_wait(wait: Wait, policy: AdmitPolicy) -> str:
    """The real cause of a wait, in words that name the setting responsible."""
    reason = wait.reason
    if reason == "worker_cooldown":
        return (f"worker_cooldown: this processor's own worker_cooldown_seconds={policy.worker_cooldown:g} (each of "
                f"its max_workers={policy.max_workers} slots rests that long after a call)")
    if reason == "max_workers":
        return f"max_workers: this processor's max_workers={policy.max_workers} calls are all in flight"
    if reason == "spacing":
        return f"spacing: api_call_interval={policy.api_call_interval:g}s between calls"
    if reason == "cooldown":
        return "cooldown: every key is resting after its last call (key_cooldown_seconds)"
    if reason == "exhausted":
        return "exhausted: every key is rate-limited (benched after a 429)"
    if reason == "quota":
        return "quota: the project's configured limits (rpm/rpd/tpm) are used up for now"
    if reason == "leased":
        return "leased: every key is in use by other calls"
    return reason


def _admit(pool: KeyPool, secrets: dict[str, str], policy: AdmitPolicy, job: Job, *, first_seen: float) -> Lease:
    """One lease for this job, sleeping through waits in the slot while that is the better use of it.

    Waiting for a key is never an error and never spends a retry budget. A job with a caller waiting on it
    (``deadline``) sleeps as long as its caller's timeout allows and fails with the "timeout" kind, naming the
    cause, only when the next admission is known to come after it. Other jobs sleep through short waits and
    re-queue (:class:`_Requeue`) for long ones; they give up only at ``max_wait_seconds`` ("exhausted").
    """
    deadline = job.deadline
    if deadline is not None:
        answer_by = deadline - DEADLINE_GRACE - REPLY_MARGIN
        try:
            return acquire(pool, secrets, policy, max_sleep=float("inf"),
                           deadline=time.monotonic() + (answer_by - time.time()), sleep=stoppable_sleep,
                           should_stop=worker_stopping)
        except WaitTooLong as too_long:
            left = max(0.0, answer_by - time.time())
            _fail(f"Timed out waiting for a key: the next admission is in {too_long.wait.seconds:.1f}s, after this "
                  f"request's timeout ({left:.1f}s left); cause: {describe_wait(too_long.wait, policy)}",
                  "timeout", job)
    max_wait = job.policy.max_wait_seconds
    # max_wait bounds the short waits slept in the slot too (a 429 storm of 1-second benches), not only the
    # long ones that re-queue: a wait that would end past it is handed to WaitTooLong
    budget = max_wait - (time.time() - first_seen)
    try:
        return acquire(pool, secrets, policy, max_sleep=SLOT_SLEEP_SECONDS,
                       deadline=time.monotonic() + max(0.0, budget), sleep=stoppable_sleep,
                       should_stop=worker_stopping)
    except WaitTooLong as too_long:
        wait = too_long.wait
        waited = time.time() - first_seen
        if waited + wait.seconds > max_wait:
            _fail(f"All keys exhausted or cooling down: gave up after waiting {waited:.0f}s "
                  f"(max_wait_seconds={max_wait:g}); the next key is free in {wait.seconds:.1f}s; cause: "
                  f"{describe_wait(wait, policy)}", "exhausted", job)
        from gemini_tasks.celeryconfig import MAX_COUNTDOWN

        raise _Requeue(min(wait.seconds, MAX_COUNTDOWN), wait.reason) from None


def _finish(pool: KeyPool, report: dict[str, Any], metrics: dict[str, Any] | None,
            marker: tuple[str, str, int] | None) -> None:
    """Report a success, write the done marker and count the call's metrics in one round trip (they were four).

    The report and the marker must land: a Redis error is raised (for :mod:`settle` to retry the whole step;
    the report is fenced by its lease, the marker is a plain SET). A metrics write may fail quietly.
    """
    pipe = pool.client.pipeline(transaction=False)
    pool.report(pipe=pipe, **report)  # reply 0
    if marker is not None:
        pipe.set(marker[0], marker[1], ex=marker[2])  # reply 1
    if metrics is not None:
        record_call(pool, pipe=pipe, **metrics["call"])
        record_usage(pool, pipe=pipe, **metrics["usage"])
    replies = pipe.execute(raise_on_error=False)
    if isinstance(replies[0], NoScriptError):  # Redis lost its scripts (a restart): the plain call loads it
        pool.report(**report)
    elif isinstance(replies[0], Exception):
        raise replies[0]
    if marker is not None and isinstance(replies[1], Exception):
        raise replies[1]


def _log_call(level: int, ctx: JobContext, lease: Lease, job: Job, outcome: str, latency: float,
              usage: dict[str, Any] | None, note: str) -> None:
    """The one line a call writes: task, key id, model, outcome, latency, tokens in/out (and a note)."""
    tokens = ""
    if usage:
        tokens = f" tokens={usage.get('prompt_token_count') or 0}/{usage.get('candidates_token_count') or 0}"
    log.log(level, "call task=%s key=%s model=%s outcome=%s latency=%.3fs%s%s", ctx.task_id, lease.key_id,
            job.model, outcome, latency, tokens, f": {note}" if note else "")


def _content_note(job: Job, result: dict[str, Any]) -> str:
    """The start of the prompt and of the answer, for GEMINI_TASKS_LOG_CONTENT=1 only."""
    spec = job.speech or job.image
    prompt = (job.request or {}).get("prompt") or (spec.prompt if spec is not None else "") or ""
    answer = result.get("text")
    note = f"prompt={prompt[:200]!r}"
    if isinstance(answer, str):
        note += f" answer={answer[:200]!r}"
    return note


def run_with_key(job: Job, ctx: JobContext, call: Callable[[Any, Lease, KeyPool], dict[str, Any]],  # noqa: C901 - over the limit before it was set; split when next changed
                 *, lease_ttl: float, tokens: int = 0,
                 deliver: Callable[[dict[str, Any], Lease, KeyPool], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The admission -> call -> report loop shared by generation and speech.

    ``call`` makes the paid request; whatever fails inside it is a Gemini outcome (classified, maybe retried).
    ``deliver`` runs after the answer, outside that classification: a failure there never calls Gemini again.
    """
    settings = get_settings()
    pool = worker_pool(job.pool.pool)
    done_key = names.done_key(pool.prefix, ctx.task_id)
    finished = pool.client.get(done_key)
    if finished:  # a redelivered copy of a job that already succeeded: do not pay twice
        log.info("task %s already answered; returning the stored result", ctx.task_id)
        return json.loads(finished)

    state = job.state
    if state.first_seen is None:
        state.first_seen = time.time()
    first_seen = state.first_seen
    p = job.policy
    deadline = job.deadline
    secrets = held_secrets(job.pool.keys)
    if not secrets:
        _fail(f"No usable API keys on this worker ({socket.gethostname()}): it holds none of "
              f"{', '.join(job.pool.keys)}; give the worker those variables in its environment or .env",
              "no_usable_keys", job)
    # leases are short and renewed while the call runs (keys/keeper.py): a dead worker's keys come back within
    # one lease TTL, and a call of any length (uploads, Flex) keeps its key; ``lease_ttl`` is not a bound any more
    keeper = lease_keeper()
    policy = admit_policy(job, ctx, keeper.ttl, tokens)
    # build the SDK clients before asking for a lease, so the call leaves right after admission (the
    # quota windows count from admission; the first construction of a client takes ~0.1 s)
    for key_id, secret in secrets.items():
        get_client(key_id, secret, timeout_s=settings.request_timeout, api_version=settings.api_version)

    attempts = 0
    while True:
        if attempts:  # before another attempt: did another worker answer meanwhile? (this one was cut off)
            finished = pool.client.get(done_key)
            if finished:
                log.info("task %s answered by another worker while this one retried; not calling again",
                         ctx.task_id)
                return json.loads(finished)
        attempts += 1
        if worker_stopping() and ctx.requeue is not None:  # a stop hands back what has not started its call
            log.info("task %s: worker stopping; handed back before its call", ctx.task_id)
            ctx.requeue(job, 0)
        if deadline is not None and time.time() >= deadline:
            _fail("Cancelled: the caller stopped waiting before a key was free; no call was made", "cancelled", job)
        try:
            lease = _admit(pool, secrets, policy, job, first_seen=first_seen)
        except (WorkerStopping, Interrupted):
            if ctx.requeue is None:
                raise
            log.info("task %s: worker stopping; handed back before its call", ctx.task_id)
            ctx.requeue(job, 0)
        except _Requeue as again:
            if ctx.requeue is None:  # called directly (no broker): wait here instead
                time.sleep(again.countdown)
                continue
            log.debug("task %s: next admission in %.1fs (%s); re-queued", ctx.task_id, again.countdown,
                     again.reason)
            ctx.requeue(job, again.countdown)
        except NoUsableKeys as exc:
            if pool_watcher().recover(pool):  # Redis lost the pool: its keys are announced again, try once more
                continue
            _fail(f"Fatal: {exc}", "no_usable_keys", job)
        except Cancelled:
            _fail("Cancelled: the caller stopped waiting; no call was made", "cancelled", job)

        started = time.perf_counter()
        try:
            client: Any = get_client(lease.key_id, secrets[lease.key_id], timeout_s=settings.request_timeout,
                                     api_version=settings.api_version)
            if async_calls.enabled():  # generate_content waits on this process's event loop, not in this thread
                client = async_calls.on_loop(client, lease.key_id, secrets[lease.key_id],
                                             timeout_s=settings.request_timeout, api_version=settings.api_version)
            with keeper.hold(pool, lease):
                result = call(client, lease, pool)
        except Exception as exc:  # noqa: BLE001 - every failure is classified and reported
            err = exc.error if isinstance(exc, GeminiCallFailed) else classify(exc, secrets=secrets.values())
            shed = tier_calls.shed_error(job, err)
            # a shed is the API's Flex capacity, not the key's quota: reported as transient, never benches the key
            outcome = OUTCOME_OF[TRANSIENT] if shed else OUTCOME_OF[err.kind]
            settle.best_effort(f"reporting the outcome ({outcome}) to the key manager",
                               lambda: pool.report(lease, outcome, retry_after=None if shed else err.retry_after,
                                                   quota_kind=err.quota_kind, worker_cooldown=policy.worker_cooldown),
                               task_id=ctx.task_id)
            record_call(pool, model=job.model, latency_s=time.perf_counter() - started, usage=None,
                        outcome="shed" if shed else err.kind)
            _log_call(logging.WARNING, ctx, lease, job, "shed" if shed else err.kind, time.perf_counter() - started,
                      None, error_message(err))
            if shed:  # a shed Flex request: retried on Flex with backoff, outside the error-retry budget
                backoff = tier_calls.on_shed(job)
                waited = time.time() - first_seen
                if waited + backoff > p.max_wait_seconds:
                    _fail(f"Flex request shed {state.shed} times: gave up after {waited:.0f}s (set "
                          "flex_fallback_after to fall back to the standard tier)", TRANSIENT, job, err, lease.key_id)
                if backoff > SLOT_SLEEP_SECONDS and deadline is None and ctx.requeue is not None:
                    ctx.requeue(job, backoff)
                time.sleep(backoff)
                continue
            if err.kind == RATE_LIMITED:
                # a 429 benched the key: waiting for another is a wait like any other, bounded by max_wait only
                state.rate_limited += 1
                waited = time.time() - first_seen
                if waited >= p.max_wait_seconds:
                    _fail(f"All keys exhausted: gave up after waiting {waited:.0f}s (max_wait_seconds="
                          f"{p.max_wait_seconds:g}) and {state.rate_limited} rate-limited calls "
                          f"({error_message(err)})", "exhausted", job, err, lease.key_id)
                continue
            if err.kind == INVALID_KEY:
                continue  # the key is quarantined (FAILED_INIT); another one takes the request
            if err.kind == TRANSIENT:
                state.errors += 1
                attempts = p.api_call_retries
                if state.errors >= attempts:
                    _fail(f"{error_message(err)} (failed after {state.errors} attempt"
                          f"{'' if state.errors == 1 else 's'})", TRANSIENT, job, err,
                          lease.key_id)
                backoff = get_exponential_backoff_interval(
                    factor=ERROR_BACKOFF_SECONDS, retries=state.errors - 1,
                    maximum=ERROR_BACKOFF_MAX_SECONDS, full_jitter=True)
                if backoff > SLOT_SLEEP_SECONDS and deadline is None and ctx.requeue is not None:
                    ctx.requeue(job, backoff)
                time.sleep(backoff)
                continue
            _fail(error_message(err), err.kind, job, err, lease.key_id)
        # Gemini has answered (and been paid): from here on nothing may cost the answer or call again
        latency = time.perf_counter() - started
        usage = result.get("usage")
        report = {"lease": lease, "outcome": "success", "worker_cooldown": policy.worker_cooldown,
                  "prompt_tokens": (usage or {}).get("prompt_token_count")}
        metrics = {"call": {"model": job.model, "latency_s": latency, "usage": usage, "outcome": "success"},
                   "usage": {"model": job.model, "tier": result.get("tier") or "standard", "usage": usage,
                             "fallback": bool(result.get("fallback")), "requested": result.get("tier_requested"),
                             "reported": result.get("reported_tier")}}
        if deliver is not None:  # slow delivery (an audio blob): free the key first, in its own round trip
            settle.best_effort("reporting the success to the key manager",
                               functools.partial(_finish, pool, report, metrics, None), task_id=ctx.task_id)
            result = deliver(result, lease, pool)
        # who answered comes first: Flower shows a result's repr cut at 1024 characters, and answers are long
        result = {"ok": True, "key_id": lease.key_id, "model": job.model,
                  "latency_s": round(latency, 4), "task_id": ctx.task_id,
                  **result, "metadata": job.metadata}
        marker = (done_key, json.dumps(result), max(1, int(ctx.result_ttl)))
        if deliver is None:
            settle.best_effort("reporting the success and writing the done marker",
                               functools.partial(_finish, pool, report, metrics, marker), task_id=ctx.task_id)
        else:
            settle.best_effort("writing the done marker",
                               functools.partial(pool.client.set, marker[0], marker[1], ex=marker[2]),
                               task_id=ctx.task_id)
        _log_call(logging.INFO, ctx, lease, job, "success", latency, result.get("usage"),
                  _content_note(job, result) if settings.log_content else "")
        return result


def _check_paths_here(request: dict[str, Any], job: Job,
                      checks: dict[str, Any]) -> list[media.MediaItem]:
    """Every path readable here and the very file the caller validated (size, and SHA-256 when small)."""
    items = media.plan_media(request)
    for item in items:
        if item.source != "path":
            continue
        path = str(item.value)
        if not os.access(path, os.R_OK):
            _fail(f"Persistent input error: {item.kind}_path {path!r} is not readable on worker host "
                  f"{socket.gethostname()}. Paths must be on storage shared by the application and the workers "
                  f"(same path on every host); otherwise pass {item.kind}_bytes or {item.kind}_url.",
                  "bad_input", job)
        expected = checks.get(path)
        problem = media_files.mismatch(path, expected) if expected else None
        if problem:
            _fail(f"Persistent input error: {item.kind}_path {path!r} on worker host {socket.gethostname()} is not "
                  f"the file the application sent: {problem}. Paths must name the same file on every host (shared "
                  f"storage); otherwise pass {item.kind}_bytes or {item.kind}_url.", "bad_input", job)
    return items


def execute_generate(job: Job, ctx: JobContext,
                     respond: Callable[[Any, Any, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Text generation (with audio/video parts) for one prompt.

    ``respond(client, contents, config)``, when given, makes the call instead (token streaming,
    :mod:`gemini_tasks.worker.token_stream`) and returns the result's fields.
    """
    if job.request is None:
        raise ValueError(f"execute_generate needs a generate job, got a {job.kind} job")
    request = from_wire(job.request)
    config = build_generate_config(request.get("generation_config"))
    items = _check_paths_here(request, job, job.request.get(media_files.CHECKS_KEY) or {})
    prompt_bytes = len((request.get("prompt") or "").encode())
    upload_paths = set(media.choose_uploads(items, text_bytes=prompt_bytes))
    settings = get_settings()

    # without uploads the request does not depend on the key: build it before admission
    prebuilt = None if upload_paths else media.build_contents(request)

    def call(client: Any, lease: Lease, pool: KeyPool) -> dict[str, Any]:
        uploaded = reused = 0
        contents = prebuilt
        if contents is None:
            project = pool.client.hget(names.key_hash(pool.prefix, lease.key_id), "proj") or b""
            project = (project.decode() if isinstance(project, bytes) else project) or lease.key_id
            resolver = ProjectUploads(pool.client, pool.prefix, project, client, upload_paths)
            contents = media.build_contents(request, resolver)
            uploaded, reused = resolver.uploaded, resolver.reused
            pool.mark_sent(lease)  # uploads took time: count the call in the quota window from now
        call_cfg = tier_calls.call_config(config, tier_calls.current_tier(job), settings.request_timeout)
        if respond is not None:
            return {"uploads": uploaded, "uploads_reused": reused, **respond(client, contents, call_cfg)}
        response, tier_fields = tier_calls.generate(client, job, contents=contents, config=call_cfg)
        out: dict[str, Any] = {"usage": usage_dict(response), "uploads": uploaded, "uploads_reused": reused,
                               **tier_fields}
        if job.policy.return_response:
            out["response"] = response.model_dump(mode="json", exclude_none=True)
            out["text"] = response.text
        else:
            out["text"] = extract_text(response, strip=job.policy.strip)
        return out

    ttl = tier_calls.lease_seconds(job, settings.request_timeout) + (600 if upload_paths else 0)
    if prebuilt is not None:
        tokens = estimate_tokens(prebuilt)
    else:  # files still to upload: estimate from the text and the files' sizes
        tokens = estimate_tokens([types.Part(text=request.get("prompt") or "")]) + sum(
            media_tokens(item.mime_type, item.size) for item in items)
    return run_with_key(job, ctx, call, lease_ttl=ttl, tokens=tokens)


def execute_speech(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Text-to-speech: one voice or a two-speaker dialogue. Audio goes to a blob, not the result backend."""
    spec = job.speech
    if spec is None:
        raise ValueError(f"execute_speech needs a speech job, got a {job.kind} job")
    if not spec.speakers and not spec.voice:
        _fail("Persistent input error: a speech job names neither a voice nor speakers", "bad_input", job)
    config = tts_lib.config_for(spec.to_wire())
    prompt = spec.prompt
    settings = get_settings()

    def call(client: Any, lease: Lease, pool: KeyPool) -> dict[str, Any]:
        call_cfg = tier_calls.call_config(config, tier_calls.current_tier(job), settings.request_timeout)
        response, tier_fields = tier_calls.generate(client, job, contents=prompt, config=call_cfg)
        audio, mime = extract_audio(response)
        del response  # the base64 body and its decoded copy are large; keep one copy alive
        rate, channels, width, is_wav = tts_lib.parse_audio_mime(mime)
        return {"audio": audio, "mime_type": mime, "bytes": len(audio), "sample_rate": rate,
                "channels": channels, "sample_width": width, "is_wav": is_wav, **tier_fields}

    def deliver(result: dict[str, Any], lease: Lease, pool: KeyPool) -> dict[str, Any]:
        # the audio was paid for: storing it is retried, never the call
        audio = result.pop("audio")
        try:
            ref = settle.with_budget("storing the audio", lambda: blobs.put(pool.client, pool.prefix, audio),
                                     task_id=ctx.task_id)
        except Exception as exc:  # noqa: BLE001 - reported as a storage error, never as a Gemini error
            _fail(f"Storage error: the audio was generated but could not be stored for delivery "
                  f"({type(exc).__name__}: {str(exc)[:200]}); no second call was made", "storage", job,
                  key_id=lease.key_id)
        return {"audio_ref": ref, **result}

    return run_with_key(job, ctx, call, lease_ttl=tier_calls.lease_seconds(job, settings.request_timeout),
                        tokens=estimate_tokens([types.Part(text=prompt)]), deliver=deliver)
