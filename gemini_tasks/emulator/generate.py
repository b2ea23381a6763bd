"""generateContent / streamGenerateContent / countTokens handlers.

The pipeline, in order: key -> body -> faults (and latency) -> validation (voices, files) -> quota
-> answer.  A request rejected before the quota step does not count against the quota; one that
gets a scripted 200-shaped fault (blocked, empty, ...) does, as the real API would charge it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from . import images, structured, tiers, tts, wire
from .bodies import read_json_object
from .content import Summary, instruction_text, summarize, text_tokens
from .auth import Identity
from .shared_state import Emulator
from .faults import RequestFacts, Rule
from .files import advance

_JSON_HEADERS = {"Content-Type": wire.JSON_CT}
MALFORMED_BODY = b'{"candidates": [{"content": {"role": "model", "parts": [{"text": "trunc'


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    h = dict(_JSON_HEADERS)
    if headers:
        h.update(headers)
    return web.Response(body=wire.dumps(obj), status=status, headers=h)


async def handle(
    emu: Emulator, request: web.Request, entry: dict[str, Any], version: str, model_path: str, method: str
) -> web.StreamResponse:
    model, ident = model_and_caller(emu, request, entry, model_path)
    req, gen = await _read_request(emu, request, entry)
    tier = tiers.parse_tier(req)
    entry["service_tier"] = tier
    entry["system_instruction"] = instruction_text(req.get("system_instruction"))
    summary = _summarize(emu, request, entry, req, ident.project)

    facts = RequestFacts(method, "POST", request.path, model, ident.label, ident.project, summary.prompt_text)
    facts.service_tier = tier
    rule = await emu.apply_faults(request, facts, entry)
    if method != "countTokens":
        rule, tier = await tiers.apply(emu, tier, rule, entry)

    modalities, voices = _check_modalities(emu, model, gen, method)
    _check_file_refs(emu, summary, ident.project)
    if method == "countTokens":
        return json_response({"totalTokens": summary.prompt_tokens, "promptTokensDetails": summary.tokens_details()})

    emu.check_quota(ident, model, summary.prompt_tokens)
    emu.responses += 1
    rid = f"emu-{emu.responses:08x}"
    stream = method == "streamGenerateContent"
    if rule is not None:
        return await _faulted(emu, request, rule, model, rid, summary, stream)
    if "AUDIO" in modalities:
        return await _speech(emu, request, entry, model, rid, summary, voices, stream, tier)
    if images.wants_image(model, modalities):
        body = images.answer(entry, model, rid, summary, gen, _usage)
        return await _sse(request, [body]) if stream else json_response(body)
    return await _text(emu, request, model, rid, summary, gen, tier, stream)


def model_and_caller(emu: Emulator, request: web.Request, entry: dict[str, Any], model_path: str) -> tuple[str, Identity]:
    """The bare model name of ``models/…`` and the caller (by its key), both recorded in the log entry."""
    model = wire.bare_model(model_path)
    entry["model"] = model
    return model, emu.authenticate(request, entry)


async def _read_request(emu: Emulator, request: web.Request,
                        entry: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The normalised request and its ``generation_config`` (which must be an object); the body's size is in the
    log entry even when it is refused as too large."""
    body, _size = await read_json_object(request, emu.config["max_request_mb"] * 1024 * 1024, entry)
    req = wire.normalize(body)
    gen = req.get("generation_config") or {}
    if not isinstance(gen, dict):
        raise wire.ApiError(400, "Invalid value at 'generation_config': expected an object")
    entry["generation_config"] = gen
    return req, gen


def _summarize(emu: Emulator, request: web.Request, entry: dict[str, Any], req: dict[str, Any],
               project: str) -> Summary:
    """The request's contents summed up (parts, fingerprint, tokens; files of ``project`` by their size)."""
    now = time.time()
    store = emu.files

    def file_size(fid: str) -> int | None:
        f = store.get(fid, now)
        return f.size if f is not None and f.project == project else None

    summary = summarize(req.get("contents"), request.host, file_size, emu.config["echo_max_chars"])
    entry["parts"] = summary.parts
    entry["fingerprint"] = summary.fingerprint
    entry["prompt_tokens"] = summary.prompt_tokens
    return summary


def _check_modalities(emu: Emulator, model: str, gen: dict[str, Any], method: str) -> tuple[list[str], list[str]]:
    """The response modalities asked for and the voices of a speech request; a TTS model asked for anything but
    audio is refused as the API refuses it."""
    modalities = [str(m).upper() for m in gen.get("response_modalities") or ()]
    audio = "AUDIO" in modalities
    voices: list[str] = []
    if audio or gen.get("speech_config") is not None:
        voices = tts.validate_speech_config(gen.get("speech_config"), emu.config["strict_voices"])
    if "tts" in model and not audio and method != "countTokens":
        mods = ", ".join(modalities) or "TEXT"
        raise wire.ApiError(
            400,
            f"The requested combination of response modalities ({mods}) is not supported by the model. "
            f"models/{model} accepts the following combination of response modalities:\n* AUDIO\n",
        )
    return modalities, voices


def _check_file_refs(emu: Emulator, summary: Summary, project: str) -> None:
    """Every Files API file the request names belongs to ``project`` and is ACTIVE (each read advances it)."""
    now = time.time()
    cfg = emu.config
    for ref in summary.file_refs:
        f = emu.files.get(ref.file_id, now)
        if f is None or f.project != project:
            raise wire.file_denied(ref.file_id)
        advance(f, now, cfg["file_active_after_gets"], cfg["file_active_after_seconds"])
        if f.state != "ACTIVE":
            raise wire.file_not_active(ref.file_id)


async def _text(emu: Emulator, request: web.Request, model: str, rid: str, summary: Summary, gen: dict[str, Any],
                tier: str, stream: bool) -> web.StreamResponse:
    """A text answer (with thoughts when asked for): one body, or chunks spaced as the real API streams them."""
    cfg = emu.config
    text = _answer_text(model, summary, gen, cfg["echo_max_chars"])
    usage = _usage(summary, text_tokens(text))
    usage["serviceTier"] = tier
    thoughts = structured.thought_parts(gen, summary.fingerprint)
    if thoughts:
        usage["thoughtsTokenCount"] = sum(text_tokens(t["text"]) for t in thoughts)
    if stream:
        pieces = _split(text, max(1, int(cfg["stream_chunks"])))
        chunks = [_text_chunk(p, model, rid) for p in pieces]
        chunks[0]["candidates"][0]["content"]["parts"][:0] = thoughts
        chunks[-1]["candidates"][0]["finishReason"] = "STOP"
        chunks[-1]["usageMetadata"] = usage
        return await _sse(request, chunks, delay=float(cfg["stream_chunk_delay_seconds"]))
    return json_response(
        {
            "candidates": [
                {"content": {"role": "model", "parts": [*thoughts, {"text": text}]}, "finishReason": "STOP",
                 "index": 0}
            ],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": rid,
        }
    )


# ---------------------------------------------------------------------------------------------


def _echo(summary: Summary, limit: int) -> str:
    joined = " ".join(summary.texts)
    head = " ".join(joined[: limit * 2].split())
    echo = head if len(head) <= limit else head[: max(0, limit - 3)] + "..."
    if summary.media_notes:
        echo += " [+" + ", ".join(summary.media_notes) + "]"
    return echo


def _answer_text(model: str, summary: Summary, gen: dict[str, Any], limit: int) -> str:
    """Deterministic and self-identifying: the same request always gets the same text."""
    echo = _echo(summary, limit)
    if str(gen.get("response_mime_type", "")).lower() == "application/json":
        return structured.json_answer(
            gen, {"emulator": True, "model": model, "fingerprint": summary.fingerprint, "echo": echo}, echo)
    return f"[emulator] {model} {summary.fingerprint} :: {echo}"


def _usage(summary: Summary, candidate_tokens: int, modality: str | None = None) -> dict[str, Any]:
    p = summary.prompt_tokens
    usage: dict[str, Any] = {
        "promptTokenCount": p,
        "candidatesTokenCount": candidate_tokens,
        "totalTokenCount": p + candidate_tokens,
        "promptTokensDetails": summary.tokens_details(),
    }
    if modality:
        usage["candidatesTokensDetails"] = [{"modality": modality, "tokenCount": candidate_tokens}]
    return usage


def _split(text: str, n: int = 3) -> list[str]:
    if len(text) < 2 * n:
        return [text]
    step = -(-len(text) // n)
    return [text[i : i + step] for i in range(0, len(text), step)]


def _text_chunk(text: str, model: str, rid: str) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
        "modelVersion": model,
        "responseId": rid,
    }


async def _sse(request: web.Request, chunks: list[dict[str, Any]], error: dict | None = None,
               delay: float = 0.0) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    try:
        for i, chunk in enumerate(chunks):
            if i and delay > 0:
                await asyncio.sleep(delay)
            await resp.write(b"data: " + wire.dumps(chunk) + b"\r\n\r\n")
    except ConnectionResetError:  # the client stopped reading (a cancelled stream): nothing more to send
        return resp
    if error is not None:
        await resp.write(b"data: " + wire.dumps(error) + b"\r\n\r\n")
    await resp.write_eof()
    return resp


async def _speech(
    emu: Emulator,
    request: web.Request,
    entry: dict[str, Any],
    model: str,
    rid: str,
    summary: Summary,
    voices: list[str],
    stream: bool,
    tier: str = "standard",
) -> web.StreamResponse:
    cfg = emu.config
    chars = sum(len(t) for t in summary.texts)
    seconds = tts.duration_for(chars, cfg)
    mime = cfg["tts_mime"] if not stream else "audio/L16;codec=pcm;rate=24000"
    entry["audio_seconds"] = seconds
    entry["voices"] = voices
    usage = _usage(summary, tts.audio_tokens(seconds), "AUDIO")
    usage["serviceTier"] = tier
    if stream:
        # Streaming TTS sends raw PCM in ~1 s pieces; the last chunk carries finishReason/usage.
        rate = tts.DEFAULT_RATE
        pcm = tts.pcm(seconds, rate, tts.period_for(voices))
        step = rate * 2
        chunks: list[dict[str, Any]] = []
        for i in range(0, max(1, len(pcm)), step):
            part = {"inlineData": {"mimeType": mime, "data": wire.b64(pcm[i : i + step])}}
            chunks.append(
                {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
                 "modelVersion": model, "responseId": rid}
            )  # fmt: skip
        chunks[-1]["candidates"][0]["finishReason"] = "STOP"
        chunks[-1]["usageMetadata"] = usage
        entry["audio_bytes"] = len(pcm)
        return await _sse(request, chunks)
    data, n_bytes = tts.synthesize(seconds, mime, voices)
    entry["audio_bytes"] = n_bytes
    head = (
        b'{"candidates":[{"content":{"role":"model","parts":[{"inlineData":{"mimeType":'
        + wire.dumps(mime)
        + b',"data":"'
    )
    tail = (
        b'"}}]},"finishReason":"STOP","index":0}],"usageMetadata":'
        + wire.dumps(usage)
        + b',"modelVersion":'
        + wire.dumps(model)
        + b',"responseId":'
        + wire.dumps(rid)
        + b"}"
    )
    return web.Response(body=b"".join((head, data, tail)), headers=_JSON_HEADERS)


async def _faulted(
    emu: Emulator, request: web.Request, rule: Rule, model: str, rid: str, summary: Summary, stream: bool
) -> web.StreamResponse:
    """200-shaped faults: malformed JSON, blocked prompt, safety stop, empty candidate, stream error."""
    action = rule.action
    usage = {"promptTokenCount": summary.prompt_tokens, "totalTokenCount": summary.prompt_tokens}
    if action == "malformed":
        return web.Response(body=MALFORMED_BODY, headers=_JSON_HEADERS)
    if action == "stream_error":
        err = emu.status_error(rule, model, request)
        if not stream:
            raise err
        n = int(rule.spec.get("after_chunks", 1))
        text = f"[emulator] {model} {summary.fingerprint} :: partial answer before an error"
        chunks = [_text_chunk(p, model, rid) for p in _split(text, max(1, n))][:n]
        return await _sse(request, chunks, error=err.body())
    if action == "blocked":
        body: dict[str, Any] = {
            "promptFeedback": {
                "blockReason": rule.spec.get("reason", "SAFETY"),
                "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH"}],
            },
            "usageMetadata": usage,
        }
    elif action == "safety_finish":
        body = {
            "candidates": [
                {
                    "finishReason": rule.spec.get("reason", "SAFETY"),
                    "index": 0,
                    "safetyRatings": [
                        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
                    ],
                }
            ],
            "usageMetadata": usage,
        }
    elif action == "empty":
        body = {
            "candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}],
            "usageMetadata": usage,
        }
    else:  # file_failed and anything else not meaningful here: answer normally
        text = f"[emulator] {model} {summary.fingerprint} :: {_echo(summary, 200)}"
        body = {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": _usage(summary, text_tokens(text)),
        }
    body["modelVersion"] = model
    body["responseId"] = rid
    if stream:
        return await _sse(request, [body])
    return json_response(body)
