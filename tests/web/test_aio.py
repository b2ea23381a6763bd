"""``aprocess_single`` / ``aprocess_prompts`` / ``agenerate_speech`` through real workers, Redis and the emulator."""

from __future__ import annotations

import asyncio
import time

import pytest

FAST = dict(worker_cooldown_seconds=0, api_call_interval=0, max_workers=16)


def test_aprocess_single_answers_and_keeps_metadata(worker, emu, manager):
    from gemini_tasks import GeminiStreamingProcessor

    sp = GeminiStreamingProcessor(manager, "gemini-2.5-flash", **FAST)

    async def scenario():
        with pytest.raises(RuntimeError, match="start"):
            await sp.aprocess_single({"prompt": "hi"})
        sp.start()
        try:
            return await asyncio.gather(*(sp.aprocess_single({"prompt": f"async q{i}", "metadata": {"i": i}},
                                                             timeout=30) for i in range(5)))
        finally:
            sp.stop()

    results = asyncio.run(scenario())
    for i, (meta, text, error) in enumerate(results):
        assert error is None and f"async q{i}" in text and meta["i"] == i and meta["task_id"]


def _one_key_processor(fleet_env, pool_name):
    from gemini_tasks import GeminiStreamingProcessor
    from gemini_tasks.keys import AdvancedApiKeyManager

    m = AdvancedApiKeyManager(["GEMINI_API_KEY_1"], paid_keys="all", pool=pool_name)
    return GeminiStreamingProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_request_the_caller_gave_up_on_never_reaches_the_api(worker, emu, fleet_env, pool_name, how):
    # one key, one lease: the SLOW request holds it for 2 s, so the second waits for admission
    emu.add_fault(action="latency", seconds=2, prompt_contains="SLOW")
    sp = _one_key_processor(fleet_env, pool_name)
    sp.start()

    async def scenario():
        slow = asyncio.create_task(sp.aprocess_single({"prompt": "SLOW holder"}, timeout=30))
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        if how == "timeout":
            with pytest.raises(TimeoutError, match="timed out after 1"):
                await sp.aprocess_single({"prompt": "GHOST request"}, timeout=1)
        else:
            ghost = asyncio.create_task(sp.aprocess_single({"prompt": "GHOST request"}, timeout=30))
            await asyncio.sleep(0.5)
            ghost.cancel()
            with pytest.raises(asyncio.CancelledError):
                await ghost
        gave_up = time.monotonic() - t0
        assert (await slow)[2] is None
        await asyncio.sleep(2.5)  # the key is free again: a ghost would be called now
        return gave_up

    try:
        gave_up = asyncio.run(scenario())
    finally:
        sp.stop()
    assert gave_up < 2.0
    calls = [e for e in emu.log() if "GHOST" in str(e.get("parts"))]
    assert calls == [], f"a request its caller gave up on still reached the API: {calls}"


def test_aprocess_single_bad_input_raises_before_enqueueing(worker, emu, manager):
    from gemini_tasks import GeminiStreamingProcessor

    sp = GeminiStreamingProcessor(manager, "gemini-2.5-flash", **FAST)
    sp.start()
    try:
        with pytest.raises(ValueError, match="image"):
            asyncio.run(sp.aprocess_single({"prompt": "look at <image>"}))
        with pytest.raises(ValueError, match="timeout"):
            asyncio.run(sp.aprocess_single({"prompt": "x"}, timeout=-1))
        assert sp.get_queue_size() == 0
    finally:
        sp.stop()
    assert emu.log() == []


def _live_results() -> int:
    import gc

    from celery.result import AsyncResult

    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, AsyncResult))


def test_aprocess_prompts_in_input_order_with_failures_in_place(worker, emu, manager):
    from gemini_tasks import GeminiParallelProcessor

    emu.add_fault(action="status", status=400, prompt_contains="BAD-REQUEST")
    before = _live_results()
    proc = GeminiParallelProcessor(manager, "gemini-2.5-flash", **FAST)
    prompts = [{"prompt": f"batch q{i}", "metadata": {"i": i}} for i in range(10)]
    prompts[4]["prompt"] = "a BAD-REQUEST"
    seen: list[tuple[int, int]] = []
    results = asyncio.run(proc.aprocess_prompts(prompts, timeout=60, progress=lambda d, t: seen.append((d, t))))
    assert [m["i"] for m, _, _ in results] == list(range(10))
    for i, (_, text, error) in enumerate(results):
        if i == 4:
            assert text is None and "persistent" in error.lower()
        else:
            assert error is None and f"batch q{i}" in text
    assert seen[-1] == (10, 10)
    # nothing of the batch stays in memory (no result object is left registered for joining)
    assert _live_results() <= before
    with pytest.raises(ValueError, match=r"prompts_data\[1\]"):
        asyncio.run(proc.aprocess_prompts([{"prompt": "ok"}, {"prompt": 3}]))


def test_agenerate_speech_writes_the_wav_without_blocking(worker, emu, manager, tmp_path):
    import wave

    from gemini_tasks import GeminiTTSProcessor

    tts = GeminiTTSProcessor(manager, timeout=30)
    out = tmp_path / "hello.wav"

    async def scenario():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        pcm = await tts.agenerate_speech("Hello from the event loop", voice="Puck", output_file=str(out))
        dialogue = await tts.agenerate_multi_speaker_dialogue([("A", "Hi."), ("B", "Hello.")],
                                                              {"A": "Kore", "B": "Puck"})
        t.cancel()
        return pcm, dialogue, ticks

    pcm, dialogue, ticks = asyncio.run(scenario())
    assert pcm and dialogue and ticks > 3
    with wave.open(str(out)) as w:
        assert w.getframerate() == 24000 and w.getnframes() * 2 == len(pcm)
    with pytest.raises(ValueError, match="voice"):
        asyncio.run(tts.agenerate_speech("x", voice="NoSuchVoice"))
