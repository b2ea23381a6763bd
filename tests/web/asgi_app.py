"""The README's web example: a FastAPI app that awaits the fleet (served by uvicorn in tests/web)."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from gemini_tasks import AdvancedApiKeyManager, GeminiStreamingProcessor


@asynccontextmanager
async def lifespan(app: FastAPI):
    keys = AdvancedApiKeyManager("all", paid_keys="all", pool=os.environ.get("WEB_POOL", "default"))
    processor = GeminiStreamingProcessor(keys, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                                         max_workers=64)
    processor.start()
    app.state.processor = processor
    yield
    processor.stop()


app = FastAPI(lifespan=lifespan)


@app.post("/ask")
async def ask(body: dict) -> dict:
    # awaits the answer without blocking the event loop: other requests are served meanwhile
    metadata, text, error = await app.state.processor.aprocess_single({"prompt": body["prompt"]}, timeout=60)
    return {"answer": text, "error": error}


@app.post("/ask-blocking")
async def ask_blocking(body: dict) -> dict:
    # what not to do (the seed's example): a blocking call inside ``async def`` stalls every other request
    metadata, text, error = app.state.processor.process_single({"prompt": body["prompt"]}, timeout=60)
    return {"answer": text, "error": error}


@app.post("/stream")
async def stream(body: dict) -> StreamingResponse:
    # text as the model writes it; a client that disconnects closes the stream, which cancels the call
    async def chunks():
        async with app.state.processor.astream_single({"prompt": body["prompt"]}, timeout=60) as text:
            async for chunk in text:
                yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/health")
async def health() -> dict:
    return {"ok": True}
