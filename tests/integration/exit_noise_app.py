"""An application that gives up on a request (TimeoutError) or loses a batch (BatchLost), then exits.

Run by tests/integration/test_exit_noise.py as its own process, against a Redis no worker consumes.
"""

from __future__ import annotations

import sys
import threading

import redis

from gemini_tasks import (
    AdvancedApiKeyManager,
    GeminiParallelProcessor,
    GeminiStreamingProcessor,
)
from gemini_tasks.client.processors import BatchLost
from gemini_tasks.settings import get_settings

manager = AdvancedApiKeyManager(2, paid_keys="all")
if sys.argv[1] == "timeout":
    sp = GeminiStreamingProcessor(manager, "gemini-2.5-flash")
    sp.start()
    for i in range(3):
        try:
            sp.process_single({"prompt": f"nobody answers {i}"}, timeout=0.5)
        except TimeoutError:
            print("timed out", flush=True)
else:
    proc = GeminiParallelProcessor(manager, "gemini-2.5-flash")
    # Redis loses everything (a restart without persistence) while the batch is being waited for
    threading.Timer(1.0, redis.Redis.from_url(get_settings().redis_url).flushall).start()
    try:
        proc.process_prompts([{"prompt": f"prompt {i}"} for i in range(200)], progress=False)
    except BatchLost:
        print("lost", flush=True)
