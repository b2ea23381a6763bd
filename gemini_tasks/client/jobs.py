"""Client side: turning the original API's arguments into validated, JSON-safe job messages.

Everything a user can get wrong is checked here, before anything is enqueued, with an error that names
the problem (and, in a batch, the index of the prompt).
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

from gemini_tasks.gemini.content import plan_media
from gemini_tasks.gemini.media_files import CHECKS_KEY, file_checks, resolve_paths
from gemini_tasks.gemini.errors import InvalidPromptError
from gemini_tasks.gemini.tiers import check_fallback, check_tier
from gemini_tasks.gemini.validation import to_wire, validate_prompt
from gemini_tasks.keys.manager import AdvancedApiKeyManager


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class CallPolicy:
    """The processor settings that travel with each job (the original's constructor arguments)."""

    worker_cooldown_seconds: float = 20.0
    api_call_interval: float = 2.0
    max_workers: int = 4
    api_call_retries: int = 3
    max_wait_seconds: float = 3600.0
    spacing_scope: str = "fleet"
    return_response: bool = False
    strip: bool = True
    #: the default tier of this processor's prompts (a prompt's own "service_tier" overrides it)
    service_tier: str = "standard"
    #: seconds after which a Flex request that keeps being shed is sent at standard tier (None: never)
    flex_fallback_after: float | None = None
    #: base of the exponential backoff (full jitter) between tries of a shed Flex request
    flex_retry_backoff: float = 2.0
    processor_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        _non_negative("worker_cooldown_seconds", self.worker_cooldown_seconds)
        _non_negative("api_call_interval", self.api_call_interval)
        _non_negative("max_wait_seconds", self.max_wait_seconds)
        if isinstance(self.max_workers, bool) or not isinstance(self.max_workers, int) or self.max_workers < 1:
            raise ValueError(f"max_workers must be a whole number >= 1, got {self.max_workers!r}")
        if isinstance(self.api_call_retries, bool) or not isinstance(self.api_call_retries, int) \
                or self.api_call_retries < 1:
            raise ValueError(f"api_call_retries must be a whole number >= 1, got {self.api_call_retries!r}")
        object.__setattr__(self, "service_tier", check_tier(self.service_tier))
        object.__setattr__(self, "flex_fallback_after", check_fallback(self.flex_fallback_after))
        _non_negative("flex_retry_backoff", self.flex_retry_backoff)
        if self.spacing_scope not in ("fleet", "host"):
            raise ValueError(f"spacing_scope must be 'fleet' or 'host', got {self.spacing_scope!r}")

    def to_job(self) -> dict[str, Any]:
        return {
            "processor_id": self.processor_id, "max_workers": self.max_workers,
            "worker_cooldown": self.worker_cooldown_seconds, "api_call_interval": self.api_call_interval,
            "spacing_scope": self.spacing_scope, "retries": self.api_call_retries,
            "max_wait": self.max_wait_seconds, "return_response": self.return_response, "strip": self.strip,
            "flex_fallback_after": self.flex_fallback_after, "shed_backoff": self.flex_retry_backoff,
        }


def check_manager(key_manager: Any) -> AdvancedApiKeyManager:
    if not isinstance(key_manager, AdvancedApiKeyManager):
        raise TypeError(f"key_manager must be an AdvancedApiKeyManager, got {type(key_manager).__name__}")
    return key_manager


def check_model(model_name: Any) -> str:
    if not isinstance(model_name, str) or not model_name.strip() or any(c in model_name for c in "?&") \
            or ".." in model_name:
        raise ValueError(f"model_name must be a Gemini model id such as 'gemini-2.5-flash', got {model_name!r}")
    return model_name.strip()


def generate_job(prompt_data: Any, *, model: str, manager: AdvancedApiKeyManager, policy: CallPolicy,
                 deadline: float | None = None, where: str = "prompt_data") -> dict[str, Any]:
    """One validated generation job. Raises InvalidPromptError naming ``where`` and the field."""
    tier = prompt_tier(prompt_data, policy, where)
    if isinstance(prompt_data, dict) and "service_tier" in prompt_data:
        prompt_data = {k: v for k, v in prompt_data.items() if k != "service_tier"}
    try:
        validate_prompt(prompt_data)
    except InvalidPromptError as exc:
        raise InvalidPromptError(f"{where}: {exc}") from None
    metadata = prompt_data.get("metadata") or {}
    # paths mean the caller's files: absolute from here on, with what was validated for the worker to check
    prompt_data = resolve_paths(prompt_data)
    request = to_wire({k: v for k, v in prompt_data.items() if k != "metadata"})
    checks = file_checks(prompt_data)
    if checks:
        request[CHECKS_KEY] = checks
    return {
        "v": 1, "kind": "generate", "model": model, "pool": manager.spec(), "policy": policy.to_job(),
        "request": request, "metadata": copy.deepcopy(metadata), "deadline": deadline, "tier": tier,
    }


def require_sync_tier(job: dict[str, Any]) -> dict[str, Any]:
    """A single (streaming) request cannot use the asynchronous Batch API: ValueError before enqueueing."""
    if job.get("tier") == "batch":
        raise ValueError("service_tier 'batch' is asynchronous (the Gemini Batch API): use it with "
                         "GeminiParallelProcessor; a single request takes 'standard', 'flex' or 'priority'")
    return job


def prompt_tier(prompt_data: Any, policy: CallPolicy, where: str = "prompt_data") -> str:
    """The tier of one prompt: its own ``service_tier`` key, else the processor's. ValueError if unknown."""
    if isinstance(prompt_data, dict) and prompt_data.get("service_tier") is not None:
        return check_tier(prompt_data["service_tier"], f"{where}: service_tier")
    return policy.service_tier


def describe_job(job: dict[str, Any]) -> str:
    """A short, secret-free, bytes-free description for Flower's task list (argsrepr)."""
    meta = json.dumps(job.get("metadata") or {}, default=str)[:200]
    if job["kind"] == "speech":
        spec = job["speech"]
        who = spec.get("voice") or ",".join(f"{s}={v}" for s, v in spec.get("speakers") or [])
        return f"speech model={job['model']} voice={who} text={spec['prompt'][:80]!r} metadata={meta}"
    req = job["request"]
    prompt = (req.get("prompt") or "")[:80]
    try:
        from gemini_tasks.gemini.validation import from_wire

        items = [i.label for i in plan_media(from_wire(req))]
    except Exception:  # noqa: BLE001 - a description must never fail a submission
        items = []
    media = f" media=[{'; '.join(items)[:200]}]" if items else ""
    return f"generate model={job['model']} prompt={prompt!r}{media} metadata={meta}"


def validate_batch(prompts_data: Iterable[Any]) -> list[Any]:
    if isinstance(prompts_data, (str, bytes, dict)):
        raise TypeError("prompts_data must be a list of prompt dicts")
    items = list(prompts_data)
    return items
