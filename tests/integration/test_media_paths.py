"""Media paths mean the caller's files (issue 12 item 5): resolved where the caller is, absolute before
enqueueing, and the worker checks it reads the same file (size, and SHA-256 when small).

The worker code runs for real (a direct task call, which runs it in this process with a working directory the
test can change, as a worker started elsewhere would have), against the real key manager and the emulator; the
batch case goes through the broker and a worker thread.
"""

from __future__ import annotations

import os

import pytest


def inline_audio_sizes(emu, marker):
    sizes = []
    for e in emu.log():
        if e.get("endpoint") != "generateContent" or not any(marker in (p.get("text") or "")
                                                             for p in e.get("parts") or []):
            continue
        sizes += [p["size"] for p in e.get("parts") or [] if p.get("kind") == "inline"]
    return sizes


@pytest.fixture
def two_dirs(tmp_path):
    app_dir, worker_dir = tmp_path / "app", tmp_path / "worker"
    app_dir.mkdir()
    worker_dir.mkdir()
    (app_dir / "audio1.mp3").write_bytes(b"ID3" + os.urandom(3000))
    (worker_dir / "audio1.mp3").write_bytes(b"ID3" + os.urandom(5000))  # another file of the same name
    return app_dir, worker_dir


def job_for(manager, prompt_data):
    from gemini_tasks.client.jobs import CallPolicy, generate_job

    return generate_job(prompt_data, model="gemini-2.5-flash", manager=manager,
                        policy=CallPolicy(worker_cooldown_seconds=0, api_call_interval=0))


def test_a_relative_path_is_the_file_in_the_callers_directory(fleet_env, emu, manager_factory, two_dirs,
                                                             monkeypatch):
    from gemini_tasks.worker.tasks import generate_batch

    app_dir, worker_dir = two_dirs
    m = manager_factory(2, paid_keys="all")
    monkeypatch.chdir(app_dir)
    job = job_for(m, {"prompt": "<audio> REL1", "audio_path": "audio1.mp3"})
    assert job["request"]["audio_path"] == str(app_dir / "audio1.mp3")
    monkeypatch.chdir(worker_dir)  # the worker runs elsewhere, next to a different audio1.mp3
    result = generate_batch(job)
    assert result["ok"]
    assert inline_audio_sizes(emu, "REL1") == [3003]  # the application's file, not the worker's


def test_relative_paths_in_a_batch_reach_the_worker_as_the_callers_files(worker, emu, manager_factory, two_dirs,
                                                                        monkeypatch):
    from gemini_tasks import GeminiParallelProcessor

    app_dir, _ = two_dirs
    monkeypatch.chdir(app_dir)
    proc = GeminiParallelProcessor(manager_factory(2, paid_keys="all"), "gemini-2.5-flash",
                                   worker_cooldown_seconds=0, api_call_interval=0)
    results = proc.process_prompts([{"prompt": "<audio> REL2", "audio_path": "audio1.mp3"}], progress=False)
    assert results[0][2] is None, results[0][2]
    assert inline_audio_sizes(emu, "REL2") == [3003]


@pytest.mark.parametrize("change", ["size", "content"])
def test_the_worker_refuses_a_different_file_at_the_same_path(fleet_env, emu, manager_factory, two_dirs,
                                                              monkeypatch, change):
    from gemini_tasks.messages import TaskFailed
    from gemini_tasks.worker.tasks import generate_batch

    app_dir, _ = two_dirs
    m = manager_factory(2, paid_keys="all")
    monkeypatch.chdir(app_dir)
    job = job_for(m, {"prompt": "<audio> CHANGED", "audio_path": "audio1.mp3"})
    # the file the worker finds is not the one validated: rewritten in between, or another host's copy
    (app_dir / "audio1.mp3").write_bytes(b"ID3" + os.urandom(3000 if change == "content" else 4000))
    with pytest.raises(TaskFailed) as info:
        generate_batch(job)
    message = str(info.value)
    assert message.startswith("Persistent input error") and "not the file the application sent" in message
    assert ("SHA-256" in message) if change == "content" else ("4003 bytes here, 3003" in message)
    assert inline_audio_sizes(emu, "CHANGED") == []  # nothing was sent
