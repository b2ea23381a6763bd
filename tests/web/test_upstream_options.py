"""Upstream 0.10's options through the stack: thinking_config, structured output, api_call_retries."""

from __future__ import annotations

import asyncio

import pydantic


class Recipe(pydantic.BaseModel):
    name: str
    minutes: int
    steps: list[str]


def _last_call(emu, text: str) -> dict:
    return [e for e in emu.log() if e.get("endpoint") == "generateContent" and text in str(e.get("parts"))][-1]


def test_thinking_config_is_passed_through(worker, emu, manager):
    from gemini_tasks import GeminiSequentialProcessor

    proc = GeminiSequentialProcessor(manager, "gemini-3-flash-preview", api_call_interval=0, return_response=True)
    thinking = {"thinking_level": "high", "include_thoughts": True}
    meta, response, error = proc.process_single({"prompt": "think hard", "metadata": {"task_id": "t1"},
                                                 "generation_config": {"thinking_config": thinking}})
    assert error is None and meta["task_id"] == "t1"
    # the SDK sends the level as its enum name
    assert _last_call(emu, "think hard")["generation_config"]["thinking_config"] == {"thinking_level": "HIGH",
                                                                                     "include_thoughts": True}
    thoughts = [p for p in response.candidates[0].content.parts if p.thought]
    assert len(thoughts) == 1 and "thinking_level=HIGH" in thoughts[0].text
    assert response.text.startswith("[emulator]")  # the SDK's .text skips thought parts
    assert response.usage_metadata.thoughts_token_count > 0

    proc2 = GeminiSequentialProcessor(manager, "gemini-2.5-flash", api_call_interval=0)
    _, text, error = proc2.process_single({"prompt": "budgeted", "generation_config": {
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": False}}})  # camelCase, as REST docs write it
    assert error is None and text.startswith("[emulator]")
    assert _last_call(emu, "budgeted")["generation_config"]["thinking_config"] == {"thinking_budget": 1024,
                                                                                   "include_thoughts": False}


def test_structured_output_gives_response_parsed(worker, emu, manager):
    from gemini_tasks import GeminiSequentialProcessor, GeminiStreamingProcessor

    proc = GeminiSequentialProcessor(manager, "gemini-2.5-flash", api_call_interval=0, return_response=True)
    by_model = {"prompt": "a soup recipe",
                "generation_config": {"response_mime_type": "application/json", "response_schema": Recipe}}
    _, response, error = proc.process_single(by_model)
    assert error is None and isinstance(response.parsed, Recipe) and "a soup recipe" in response.parsed.name

    by_json_schema = {"prompt": "a cake recipe", "generation_config": {
        "response_mime_type": "application/json", "response_json_schema": Recipe.model_json_schema()}}
    results = proc.process_batch([by_model, by_json_schema])
    assert isinstance(results[0][1].parsed, Recipe)
    assert isinstance(results[1][1].parsed, dict) and set(results[1][1].parsed) == {"name", "minutes", "steps"}

    sp = GeminiStreamingProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                  return_response=True)
    sp.start()
    try:
        _, response, error = asyncio.run(sp.aprocess_single(by_model, timeout=30))
    finally:
        sp.stop()
    assert error is None and isinstance(response.parsed, Recipe)
    sent = _last_call(emu, "a soup recipe")["generation_config"]
    assert sent["response_mime_type"] == "application/json" and sent["response_schema"]["properties"]


def test_api_call_retries_bounds_transient_errors(worker, emu, manager):
    from gemini_tasks import GeminiSequentialProcessor

    emu.add_fault(action="status", status=503, prompt_contains="FLAKY", times=2)
    proc = GeminiSequentialProcessor(manager, "gemini-2.5-flash", api_call_interval=0, api_call_retries=3)
    _, text, error = proc.process_single({"prompt": "FLAKY but fine"})
    assert error is None and "FLAKY but fine" in text
    emu.add_fault(action="status", status=503, prompt_contains="BROKEN")
    one_try = GeminiSequentialProcessor(manager, "gemini-2.5-flash", api_call_interval=0, api_call_retries=1)
    _, text, error = one_try.process_single({"prompt": "BROKEN"})
    assert text is None and error.startswith("Transient error") and "1 attempt" in error
    assert len([e for e in emu.log() if "BROKEN" in str(e.get("parts"))]) == 1
