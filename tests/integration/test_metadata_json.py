"""Metadata comes back exactly as given, or is refused with a ValueError before anything is enqueued."""

from __future__ import annotations

import os

import pytest


def _sent(emu, tag):
    return [e for e in emu.log() if e.get("endpoint") == "generateContent"
            and any(tag in p.get("text", "") for p in e["parts"] if p["kind"] == "text")]


@pytest.mark.parametrize("metadata, named", [
    ({"pair": (1, 2)}, "tuple"),
    ({1: "one"}, "key 1"),
    ({"nested": [{"ok": True}, {2: "x"}]}, "metadata['nested'][1]"),
    ({"t": ("a",)}, "metadata['t']"),
])
def test_metadata_that_json_would_change_is_refused_before_enqueueing(worker, emu, manager_factory, metadata,
                                                                      named):
    from gemini_tasks import GeminiParallelProcessor

    tag = "mj-" + os.urandom(3).hex()
    proc = GeminiParallelProcessor(manager_factory(2, paid_keys="all"), "gemini-2.5-flash",
                                   worker_cooldown_seconds=0, api_call_interval=0)
    with pytest.raises(ValueError) as err:
        proc.process_prompts([{"prompt": f"{tag} fine"}, {"prompt": f"{tag} x", "metadata": metadata}],
                             progress=False)
    assert "prompts_data[1]" in str(err.value) and "metadata" in str(err.value) and named in str(err.value)
    assert _sent(emu, tag) == []


def test_json_safe_metadata_comes_back_unchanged(worker, emu, manager_factory):
    from gemini_tasks import GeminiParallelProcessor

    tag = "mk-" + os.urandom(3).hex()
    metadata = {"id": 7, "tags": ["a", "b"], "nested": {"x": [1.5, None, True, {"y": "z"}]}, "line": "l"}
    proc = GeminiParallelProcessor(manager_factory(2, paid_keys="all"), "gemini-2.5-flash",
                                   worker_cooldown_seconds=0, api_call_interval=0)
    emu.add_fault(action="status", status=400, prompt_contains=f"{tag} fails", times=5)
    results = proc.process_prompts([{"prompt": f"{tag} ok", "metadata": metadata},
                                    {"prompt": f"{tag} fails", "metadata": metadata}], progress=False)
    assert [m for m, _, _ in results] == [metadata, metadata]
    assert results[0][2] is None and results[1][2] is not None
