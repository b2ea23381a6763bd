"""The application side of a fleet test, run as a subprocess: a JSON spec on stdin, one JSON line on stdout.

It uses only the public API, as an application would: ``AdvancedApiKeyManager`` + ``GeminiParallelProcessor``.
Spec: ``{"pool", "model", "keys": 4, "paid": "all", "processor": {...}, "prompts": [...], "timeout": 60}``.
A prompt may carry ``"audio_bytes_pattern": N``: N bytes of ``bytes(range(256))`` repeated, sent inline.
Output: one dict per prompt: ``metadata``, ``text``, ``error``, ``usage`` (when ``return_response``).
"""

from __future__ import annotations

import json
import sys


def pattern_bytes(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def main() -> None:
    spec = json.load(sys.stdin)
    from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor

    manager = AdvancedApiKeyManager(spec.get("keys", 4), paid_keys=spec.get("paid", "all"), pool=spec["pool"])
    options = {"worker_cooldown_seconds": 0, "api_call_interval": 0, "max_workers": 8, **spec.get("processor", {})}
    proc = GeminiParallelProcessor(manager, spec["model"], **options)
    prompts = []
    for item in spec["prompts"]:
        item = dict(item)
        n = item.pop("audio_bytes_pattern", None)
        if n:
            item["audio_bytes"] = pattern_bytes(int(n))
            item.setdefault("audio_mime_type", "audio/mp3")
        prompts.append(item)
    results = proc.process_prompts(prompts, timeout=spec.get("timeout", 60), progress=False)
    out = []
    for meta, response, error in results:
        usage = None
        if response is not None and not isinstance(response, str):
            um = response.usage_metadata
            usage = {"prompt_token_count": um.prompt_token_count, "candidates_token_count": um.candidates_token_count}
            response = response.text
        out.append({"metadata": meta, "text": response, "error": error, "usage": usage})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
