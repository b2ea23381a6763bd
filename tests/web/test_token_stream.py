"""Token streaming through real workers, Redis Streams and the emulator's spaced SSE chunks."""

from __future__ import annotations

import asyncio
import time

import pytest

FAST = dict(worker_cooldown_seconds=0, api_call_interval=0, max_workers=16)


@pytest.fixture
def sp(worker, manager):
    from gemini_tasks import GeminiStreamingProcessor

    proc = GeminiStreamingProcessor(manager, "gemini-2.5-flash", **FAST)
    proc.start()
    yield proc
    proc.stop()


def test_first_chunk_arrives_long_before_the_full_answer(sp, emu, redis_client):
    emu.configure(stream_chunks=6, stream_chunk_delay_seconds=0.3)
    prompt = {"prompt": "Tell me a long story about streams"}
    t0 = time.monotonic()
    cold = next(iter(sp.stream_single({"prompt": "warm up"}, timeout=30)))
    print(f"\ncold first chunk {(time.monotonic() - t0) * 1000:.0f} ms {cold!r}")
    t0 = time.monotonic()
    arrivals, chunks = [], []
    stream = sp.stream_single(prompt, timeout=30)
    for chunk in stream:
        arrivals.append(time.monotonic() - t0)
        chunks.append(chunk)
    first, full = arrivals[0], arrivals[-1]
    _, whole, error = sp.process_single(prompt, timeout=30)  # the same request, not streamed
    assert error is None and "".join(chunks) == whole
    assert len(chunks) == 6
    print(f"\nstream: first chunk after {first * 1000:.0f} ms, full answer after {full * 1000:.0f} ms "
          f"({len(chunks)} chunks, 0.3 s apart)")
    assert full - first >= 1.4  # 5 gaps of 0.3 s: the chunks came as the worker received them
    assert first < full / 3
    assert len([e for e in emu.log() if e.get("endpoint") == "streamGenerateContent" and "long story" in str(e)]) == 1
    # the text never went through the result backend, and the stream is gone once read to its end
    assert not redis_client.exists(f"celery-task-meta-{stream.task_id}")
    assert stream.usage["prompt_token_count"] > 0 and stream.text == whole
    from gemini_tasks.keys.token_streams import stream_key

    assert not redis_client.exists(stream_key(sp.key_manager.pool.prefix, stream.task_id))


def test_astream_single_yields_the_same_chunks(sp, emu):
    emu.configure(stream_chunks=4, stream_chunk_delay_seconds=0.1)

    async def scenario():
        stream = sp.astream_single({"prompt": "async streaming please"}, timeout=30)
        got = [chunk async for chunk in stream]
        return got, stream.usage

    chunks, usage = asyncio.run(scenario())
    assert len(chunks) == 4 and "async streaming please" in "".join(chunks)
    assert usage["prompt_token_count"] > 0


def test_errors_arrive_as_exceptions_with_their_kind(sp, emu):
    from gemini_tasks.client.token_stream import GeminiStreamError

    emu.add_fault(action="status", status=400, prompt_contains="BAD-REQUEST")
    emu.add_fault(action="blocked", reason="SAFETY", prompt_contains="BLOCK-ME")
    with pytest.raises(GeminiStreamError) as info:
        list(sp.stream_single({"prompt": "a BAD-REQUEST"}, timeout=30))
    assert info.value.kind == "persistent" and "persistent" in str(info.value).lower()
    with pytest.raises(GeminiStreamError) as info:
        list(sp.stream_single({"prompt": "please BLOCK-ME"}, timeout=30))
    assert info.value.kind == "blocked" and "SAFETY" in str(info.value)
    with pytest.raises(ValueError, match="image"):
        sp.stream_single({"prompt": "<image>"})
    with pytest.raises(ValueError, match="service_tier 'batch'"):
        sp.stream_single({"prompt": "x", "service_tier": "batch"})


def test_a_caller_that_goes_away_stops_the_call(sp, emu, redis_client):
    from gemini_tasks.keys.token_streams import decode_entry, stream_key

    emu.configure(stream_chunks=10, stream_chunk_delay_seconds=0.3)
    stream = sp.stream_single({"prompt": "a story I will not finish"}, timeout=30)
    first = next(stream)
    assert first
    stream.close()  # the caller goes away after the first chunk
    key = stream_key(sp.key_manager.pool.prefix, stream.task_id)
    deadline = time.monotonic() + 10
    kinds: list[str] = []
    while time.monotonic() < deadline:
        kinds = [decode_entry(f)[0] for _, f in redis_client.xrange(key)]
        if kinds and kinds[-1] in ("end", "error"):
            break
        time.sleep(0.1)
    assert kinds[-1] == "end", kinds
    assert 1 <= kinds.count("chunk") < 5, f"the worker kept streaming after the caller left: {kinds}"


def test_async_caller_cancelled_before_admission_never_reaches_the_api(worker, emu, fleet_env, pool_name):
    from gemini_tasks import GeminiStreamingProcessor
    from gemini_tasks.keys import AdvancedApiKeyManager

    emu.add_fault(action="latency", seconds=2, prompt_contains="SLOW")
    m = AdvancedApiKeyManager(["GEMINI_API_KEY_1"], paid_keys="all", pool=pool_name)
    proc = GeminiStreamingProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)
    proc.start()

    async def scenario():
        holder = asyncio.create_task(proc.aprocess_single({"prompt": "SLOW holder"}, timeout=30))
        await asyncio.sleep(0.5)

        async def consume():
            return [c async for c in proc.astream_single({"prompt": "GHOST stream"}, timeout=30)]

        ghost = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        ghost.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ghost
        assert (await holder)[2] is None
        await asyncio.sleep(2.0)

    try:
        asyncio.run(scenario())
    finally:
        proc.stop()
    assert [e for e in emu.log() if "GHOST" in str(e.get("parts"))] == []
