"""Client side: turning the original API's arguments into validated job messages (:mod:`gemini_tasks.messages`).

Everything a user can get wrong is checked here, before anything is enqueued, with an error that names
the problem (and, in a batch, the index of the prompt).
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

from gemini_tasks.gemini.media_files import CHECKS_KEY, file_checks, resolve_paths
from gemini_tasks.gemini.errors import InvalidPromptError
from gemini_tasks.gemini.tiers import check_tier
from gemini_tasks.gemini.validation import to_wire, validate_prompt
from gemini_tasks.keys.manager import AdvancedApiKeyManager
from gemini_tasks.messages.job import CallPolicy, Job, PoolSpec  # CallPolicy: importable from here too


def check_manager(key_manager: Any) -> AdvancedApiKeyManager:
    if not isinstance(key_manager, AdvancedApiKeyManager):
        raise TypeError(f"key_manager must be an AdvancedApiKeyManager, got {type(key_manager).__name__}")
    return key_manager


def check_model(model_name: Any) -> str:
    if not isinstance(model_name, str) or not model_name.strip() or any(c in model_name for c in "?&") \
            or ".." in model_name:
        raise ValueError(f"model_name must be a Gemini model id such as 'gemini-2.5-flash', got {model_name!r}")
    return model_name.strip()


def build_generate_job(prompt_data: Any, *, model: str, manager: AdvancedApiKeyManager, policy: CallPolicy,
                       deadline: float | None = None, where: str = "prompt_data") -> Job:
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
    return Job(kind="generate", model=model, pool=PoolSpec.from_wire(manager.spec()), policy=policy,
               request=request, metadata=copy.deepcopy(metadata), deadline=deadline, tier=tier)


def generate_job(prompt_data: Any, *, model: str, manager: AdvancedApiKeyManager, policy: CallPolicy,
                 deadline: float | None = None, where: str = "prompt_data") -> dict[str, Any]:
    """:func:`build_generate_job` in wire form, for a caller that sends (or runs) the message itself."""
    return build_generate_job(prompt_data, model=model, manager=manager, policy=policy, deadline=deadline,
                              where=where).to_wire()


def require_sync_tier(job: Job) -> Job:
    """A single (streaming) request cannot use the asynchronous Batch API: ValueError before enqueueing."""
    if job.tier == "batch":
        raise ValueError("service_tier 'batch' is asynchronous (the Gemini Batch API): use it with "
                         "GeminiParallelProcessor; a single request takes 'standard', 'flex' or 'priority'")
    return job


def prompt_tier(prompt_data: Any, policy: CallPolicy, where: str = "prompt_data") -> str:
    """The tier of one prompt: its own ``service_tier`` key, else the processor's. ValueError if unknown."""
    if isinstance(prompt_data, dict) and prompt_data.get("service_tier") is not None:
        return check_tier(prompt_data["service_tier"], f"{where}: service_tier")
    return policy.service_tier


def validate_batch(prompts_data: Iterable[Any]) -> list[Any]:
    if isinstance(prompts_data, (str, bytes, dict)):
        raise TypeError("prompts_data must be a list of prompt dicts")
    items = list(prompts_data)
    return items
