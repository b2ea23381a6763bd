"""``GeminiSequentialProcessor``: the upstream library's newer (0.10) entry point, run by the same fleet.

Upstream replaced its parallel and streaming processors with one sequential processor: ``process_single`` and
``process_batch``, ``api_call_interval`` 4.0 s by default, ``api_call_retries``, ``return_response``. Here both
methods go to the fleet: ``process_single`` to the interactive queue (as ``GeminiStreamingProcessor``) and
``process_batch`` to the batch queue (as ``GeminiParallelProcessor.process_prompts``), under one processor
identity, so ``max_workers`` and the spacing gate bound both together. No ``start()`` is needed (upstream has
none). Upstream's IP-ban detection (``ip_ban_detection_threshold``, ``ip_ban_wait_seconds``) is accepted for
compatibility; the key manager's fleet-wide spacing gate and 429 accounting take its place.
"""

from __future__ import annotations

from typing import Any, Iterable

from gemini_tasks.client.processors import GeminiParallelProcessor, GeminiStreamingProcessor, ResultTuple
from gemini_tasks.keys.manager import AdvancedApiKeyManager


class GeminiSequentialProcessor(GeminiStreamingProcessor):
    """Upstream 0.10's processor: ``process_single`` / ``process_batch`` (and ``aprocess_single`` /
    ``aprocess_batch``) on the fleet."""

    def __init__(self, key_manager: AdvancedApiKeyManager, model_name: str, api_call_interval: float = 4.0,
                 api_call_retries: int = 3, return_response: bool = False, ip_ban_detection_threshold: int = 3,
                 ip_ban_wait_seconds: int = 300, *, worker_cooldown_seconds: float = 0.0, max_workers: int = 4,
                 max_wait_seconds: float = 3600.0, spacing_scope: str = "fleet", timeout: float | None = 300.0) -> None:
        super().__init__(key_manager, model_name, worker_cooldown_seconds=worker_cooldown_seconds,
                         api_call_interval=api_call_interval, max_workers=max_workers,
                         return_response=return_response, api_call_retries=api_call_retries,
                         max_wait_seconds=max_wait_seconds, spacing_scope=spacing_scope, strip=True)
        self.api_call_interval = api_call_interval
        self.api_call_retries = api_call_retries
        self.return_response = return_response
        self.ip_ban_detection_threshold = ip_ban_detection_threshold
        self.ip_ban_wait_seconds = ip_ban_wait_seconds
        self.timeout = timeout
        self._batch = GeminiParallelProcessor(key_manager, model_name)
        self._batch.policy = self.policy  # the same processor id: one max_workers budget for both queues
        self._running = True  # upstream has no start(): ready at once

    def process_single(self, prompt_data: dict[str, Any], timeout: float | None = None) -> ResultTuple:
        """One prompt: ``(metadata, text_or_response, error)``."""
        return super().process_single(prompt_data, timeout=self.timeout if timeout is None else timeout)

    async def aprocess_single(self, prompt_data: dict[str, Any], timeout: float | None = None) -> ResultTuple:
        return await super().aprocess_single(prompt_data, timeout=self.timeout if timeout is None else timeout)

    def process_batch(self, prompts_data: Iterable[dict[str, Any]], *, timeout: float | None = None,
                      progress: Any = None) -> list[ResultTuple]:
        """Many prompts: results in input order, failures in place (run in parallel by the fleet)."""
        from gemini_tasks.client.jobs import validate_batch
        from gemini_tasks.gemini.structured import attach_parsed

        prompts = validate_batch(prompts_data)
        results = self._batch.process_prompts(prompts, timeout=timeout, progress=progress)
        if not self.return_response:
            return results
        return [(m, attach_parsed(r, p.get("generation_config")) if r is not None else r, e)
                for (m, r, e), p in zip(results, prompts)]

    async def aprocess_batch(self, prompts_data: Iterable[dict[str, Any]], *, timeout: float | None = None,
                             progress: Any = None) -> list[ResultTuple]:
        return await self._batch.aprocess_prompts(prompts_data, timeout=timeout, progress=progress)
