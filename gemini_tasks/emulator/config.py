"""Emulator configuration: defaults, validation, merging, and the redacted view.

Configuration is one flat dict so that a test in another process can change any field with one
POST.  Merging is shallow on purpose: posting `quotas` or `keys` replaces that field as a whole,
which keeps "what is configured now" obvious.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .wire import parse_duration

DEFAULT_CONFIG: dict[str, Any] = {
    # keys: {secret: {"label": "GEMINI_API_KEY_1", "project": "proj-a", "blocked": False}}
    # empty = every key accepted, each its own project.
    "keys": {},
    # quotas: {project_or_"*": {model_or_"*": {"rpm": N, "rpd": N, "tpm": N}}}
    "quotas": {},
    "minute_seconds": 60.0,
    "day_seconds": 86400.0,
    "day_retry_delay": "36s",
    "latency_seconds": 0.0,
    "latency_jitter_seconds": 0.0,
    "seed": 0,
    # streamGenerateContent: text answers come in this many SSE chunks, this far apart
    "stream_chunks": 4,
    "stream_chunk_delay_seconds": 0.05,
    # TTS
    "tts_seconds": None,  # fixed duration; None = proportional to the text
    "tts_seconds_per_char": 0.06,
    "tts_min_seconds": 0.5,
    "tts_mime": "audio/L16;codec=pcm;rate=24000",
    "strict_voices": True,
    # Files API
    "file_active_after_gets": 1,  # the Nth files.get answers ACTIVE; 0 = ACTIVE at upload
    "file_active_after_seconds": None,  # also require this age (seconds) before ACTIVE
    "file_fail_names": [],  # display names / upload file names / ids that end FAILED
    # responses and log
    "echo_max_chars": 200,
    "log_max": 100000,
    "max_request_mb": 100,  # generateContent body limit (real inline limit: 20 MB, raised to 100 MB)
    # service tiers (emulator/tiers.py)
    "flex_latency_seconds": 0.0,  # added to every Flex request (real: 1-15 minutes)
    "flex_latency_jitter_seconds": 0.0,
    "flex_shed_probability": 0.0,  # chance that a Flex request is shed
    "flex_shed_status": 503,  # a shed's answer: 503 UNAVAILABLE or 429 RESOURCE_EXHAUSTED (Google does not say)
    # Batch API (emulator/batches.py)
    "batch_pending_seconds": 0.2,  # PENDING this long after create
    "batch_run_seconds": 0.5,  # then RUNNING this long (+ per request) before it ends
    "batch_seconds_per_request": 0.0,
    "batch_max_inline_mb": 20,  # inline BatchGenerateContentRequest limit (real: 20 MB)
    "batch_max_file_mb": 2048,  # JSONL input file limit (real: 2 GB)
    "batch_max_jobs": 100,  # concurrent (unfinished) jobs per project (real: 100)
    "batch_max_requests": None,  # requests per job; None = no limit
    # input tokens a project may hold in unfinished jobs of one model (model prefix -> tokens, None = no limit;
    # longest prefix wins): the Tier 1 "Batch enqueued tokens" of ai.google.dev/gemini-api/docs/rate-limits
    # (read 2026-11-29); over it batches.create answers 429 RESOURCE_EXHAUSTED and no job is made
    "batch_enqueued_tokens": {
        "gemini-3-pro": 50_000_000,
        "gemini-3-flash": 3_000_000,
        "gemini-2.5-pro": 5_000_000,
        "gemini-2.5-flash": 3_000_000,
        "gemini-2.5-flash-lite": 10_000_000,
        "gemini-2.0-flash": 10_000_000,
    },
    "batch_end_states": [],  # the next jobs created end in these states, in order (FAILED, EXPIRED, ...)
}

_NUMBER_FIELDS = {
    "minute_seconds",
    "day_seconds",
    "latency_seconds",
    "latency_jitter_seconds",
    "stream_chunk_delay_seconds",
    "tts_seconds_per_char",
    "tts_min_seconds",
    "flex_latency_seconds",
    "flex_latency_jitter_seconds",
    "flex_shed_probability",
    "batch_pending_seconds",
    "batch_run_seconds",
    "batch_seconds_per_request",
}
_OPTIONAL_NUMBER_FIELDS = {"tts_seconds", "file_active_after_seconds", "batch_max_requests"}
_INT_FIELDS = {
    "seed",
    "stream_chunks",
    "file_active_after_gets",
    "echo_max_chars",
    "log_max",
    "max_request_mb",
    "batch_max_inline_mb",
    "batch_max_file_mb",
    "batch_max_jobs",
    "flex_shed_status",
}
_BATCH_END_STATES = frozenset({"SUCCEEDED", "FAILED", "EXPIRED", "CANCELLED"})


class ConfigError(ValueError):
    """A control-API request tried to set an unknown field or a value of the wrong shape."""


def _check_keys(keys: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(keys, dict):
        raise ConfigError("keys must be an object {secret: {label, project, blocked}}")
    out: dict[str, dict[str, Any]] = {}
    for secret, spec in keys.items():
        if spec is None:
            spec = {}
        if isinstance(spec, str):  # shorthand: {secret: "LABEL"}
            spec = {"label": spec}
        if not isinstance(spec, dict):
            raise ConfigError("each key spec must be an object")
        unknown = set(spec) - {"label", "project", "blocked"}
        if unknown:
            raise ConfigError(f"unknown key spec fields: {sorted(unknown)}")
        out[str(secret).strip()] = dict(spec)
    return out


def _check_quotas(quotas: Any) -> dict[str, dict[str, dict[str, int]]]:
    if not isinstance(quotas, dict):
        raise ConfigError("quotas must be {project_or_*: {model_or_*: {rpm, rpd, tpm}}}")
    out: dict[str, dict[str, dict[str, int]]] = {}
    for project, per_model in quotas.items():
        if not isinstance(per_model, dict):
            raise ConfigError(f"quotas[{project!r}] must be an object")
        out[project] = {}
        for model, limits in per_model.items():
            if not isinstance(limits, dict) or set(limits) - {"rpm", "rpd", "tpm"}:
                raise ConfigError(f"quotas[{project!r}][{model!r}] must hold only rpm/rpd/tpm")
            model_key = model[7:] if model.startswith("models/") else model
            out[project][model_key] = {k: int(v) for k, v in limits.items() if v is not None}
    return out


def _check_end_states(value: Any) -> list[str]:
    states = [str(v).upper().removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_") for v in value]
    bad = [v for v in states if v not in _BATCH_END_STATES]
    if bad:
        raise ConfigError(f"batch_end_states: unknown states {bad}; use {sorted(_BATCH_END_STATES)}")
    return states


def _check_enqueued_tokens(value: Any) -> dict[str, int | None]:
    if not isinstance(value, dict):
        raise ConfigError("batch_enqueued_tokens must be {model prefix: tokens or null}")
    return {str(k).removeprefix("models/"): (None if v is None else int(v)) for k, v in value.items()}


def _checked_duration(value: Any) -> Any:
    parse_duration(value)  # raises on a malformed duration; the value is kept as given
    return value


#: how the fields that are not plain numbers are checked and coerced
_COERCE: dict[str, Callable[[Any], Any]] = {
    "keys": _check_keys,
    "quotas": _check_quotas,
    "batch_enqueued_tokens": _check_enqueued_tokens,
    "day_retry_delay": _checked_duration,
    "file_fail_names": lambda value: [str(v) for v in value],
    "batch_end_states": _check_end_states,
    "strict_voices": bool,
    "tts_mime": str,
}


def _coerce(name: str, value: Any) -> Any:
    if name in _COERCE:
        return _COERCE[name](value)
    if name in _NUMBER_FIELDS:
        return float(value)
    if name in _OPTIONAL_NUMBER_FIELDS:
        return None if value is None else float(value)
    if name in _INT_FIELDS:
        return int(value)
    return value


def _check_ranges(config: dict[str, Any]) -> None:
    if config.get("minute_seconds", 1.0) <= 0 or config.get("day_seconds", 1.0) <= 0:
        raise ConfigError("minute_seconds and day_seconds must be positive")
    if not 0.0 <= config.get("flex_shed_probability", 0.0) <= 1.0:
        raise ConfigError("flex_shed_probability must be within 0..1")
    if config.get("flex_shed_status", 503) not in (429, 503):
        raise ConfigError("flex_shed_status must be 429 or 503")
    if "log_max" in config and config["log_max"] < 1:
        raise ConfigError("log_max must be >= 1")


def validate(fields: dict[str, Any]) -> dict[str, Any]:
    """Check and coerce a partial config; raise ConfigError on anything unknown or malformed."""
    if not isinstance(fields, dict):
        raise ConfigError("config must be a JSON object")
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in DEFAULT_CONFIG:
            raise ConfigError(f"unknown config field {name!r}")
        try:
            out[name] = _coerce(name, value)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad value for {name!r}: {exc}") from None
    _check_ranges(out)
    return out


def default_config() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_CONFIG)


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the control API shows it: key secrets replaced by their labels."""
    from .auth import identity_for  # local import: auth depends on this module's data only

    view = {k: copy.deepcopy(v) for k, v in config.items() if k != "keys"}
    view["keys"] = [
        {"label": ident.label, "project": ident.project, "blocked": ident.blocked}
        for ident in (identity_for(secret, spec) for secret, spec in config["keys"].items())
    ]
    return view
