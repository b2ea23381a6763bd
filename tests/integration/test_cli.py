"""The ``gemini-tasks`` command, run as a real subprocess against the real stack."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "gemini_tasks.ops.cli"]


def run_cli(args, env, **kw):
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


@pytest.fixture
def cli_env(fleet_env, pool_name):
    env = dict(os.environ)
    env["GEMINI_TASKS_POOL"] = pool_name
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_prompts(path: Path, n: int) -> None:
    lines = [json.dumps({"prompt": f"cli prompt {i}", "metadata": {"id": i}}) for i in range(n - 1)]
    lines.append(json.dumps(f"a bare string prompt {n - 1}"))
    path.write_text("\n".join(lines) + "\n")


def test_submit_writes_every_result_in_order(worker, emu, cli_env, tmp_path):
    src, out = tmp_path / "prompts.jsonl", tmp_path / "results.jsonl"
    write_prompts(src, 7)
    r = run_cli(["submit", str(src), "-o", str(out), "--paid", "all", "--no-progress"], cli_env)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == list(range(1, 8))
    assert all(row["error"] is None and f"prompt {i}" in row["response"] for i, row in enumerate(rows))
    assert not (tmp_path / "results.jsonl.state.json").exists()
    # a second run has nothing to do
    r = run_cli(["submit", str(src), "-o", str(out), "--paid", "all", "--no-progress"], cli_env)
    assert "7 done" in r.stderr and len(out.read_text().splitlines()) == 7


def test_submit_resumes_after_an_interruption_without_paying_twice(worker, emu, cli_env, tmp_path):
    src, out = tmp_path / "prompts.jsonl", tmp_path / "results.jsonl"
    write_prompts(src, 12)
    emu.configure(latency_seconds=0.4)
    proc = subprocess.Popen(CLI + ["submit", str(src), "-o", str(out), "--paid", "all", "--max-workers", "2",
                                   "--no-progress"], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    partial = len(out.read_text().splitlines())
    assert 3 <= partial < 12
    r = run_cli(["submit", str(src), "-o", str(out), "--paid", "all", "--no-progress"], cli_env)
    assert r.returncode == 0, r.stderr
    assert re.search(r"still in flight from an earlier run", r.stderr)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == list(range(1, 13))
    assert all(row["error"] is None for row in rows)
    calls = [e for e in emu.log() if e.get("endpoint") == "generateContent"]
    prompts = [p["text"] for e in calls for p in e["parts"] if p["kind"] == "text"]
    assert len(prompts) == len(set(prompts)) == 12, "a prompt was sent twice after resuming"


def test_collect_by_group_id_and_keys_json(worker, emu, cli_env, manager_factory):
    from gemini_tasks import GeminiParallelProcessor

    m = manager_factory(4, paid_keys="all", pool=cli_env["GEMINI_TASKS_POOL"])
    handle = GeminiParallelProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0,
                                     api_call_interval=0).submit([{"prompt": f"c{i}"} for i in range(3)])
    r = run_cli(["collect", handle.group_id, "--timeout", "30"], cli_env)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [f"c{i}" in row["response"] for i, row in enumerate(rows)] == [True] * 3
    r = run_cli(["keys", "--json"], cli_env)
    status = json.loads(r.stdout)
    assert set(status) == {f"GEMINI_API_KEY_{i}" for i in range(1, 5)}
    assert sum(s["admissions"] for s in status.values()) == 3
    for secret in (v for k, v in cli_env.items() if k.startswith("GEMINI_API_KEY")):
        assert secret not in r.stdout


def test_demo_runs_with_nothing_configured_and_leaves_no_process(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEMINI_API_KEY", "REDIS_URL", "CELERY_", "GOOGLE_GEMINI_BASE_URL", "GEMINI_TASKS"))}
    r = subprocess.run(CLI + ["demo", "--output-dir", str(tmp_path)], env=env, capture_output=True, text=True,
                       timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "demo finished" in r.stderr and "started a private redis-server" in r.stderr
    wav = tmp_path / "gemini-tasks-demo.wav"
    assert wav.exists() and wav.stat().st_size > 1000
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", r.stderr)]
    assert len(pids) >= 3  # redis-server, emulator, worker
    time.sleep(0.5)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower(), \
            f"demo left process {pid} running"
