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
    node = re.search(r"worker (\S+) ready", r.stderr).group(1)
    assert "%" not in node and node.endswith("@" + os.uname().nodename), node
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", r.stderr)]
    assert len(pids) >= 3  # redis-server, emulator, worker
    time.sleep(0.5)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower(), \
            f"demo left process {pid} running"


# ------------------------------------------------------------------------------------------------ issue 12
def prompts_of(emu, tag: str) -> list[str]:
    calls = [e for e in emu.log() if e.get("endpoint") == "generateContent"]
    return [p["text"] for e in calls for p in e["parts"] if p["kind"] == "text" and tag in p["text"]]


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Exception ignored" not in text, text[-3000:]


@pytest.fixture
def volatile_stack(emulator, tmp_path, key_secrets):
    """A private redis-server without persistence and a worker subprocess on it (Redis can lose its data)."""
    KEY_SECRETS = key_secrets  # a fixture: ``from conftest import`` gets whichever folder's conftest came last

    from gemini_tasks.testing.local_fleet import WorkerProcess
    from gemini_tasks.testing.local_redis import RedisServer

    server = RedisServer(persistence=False).start()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEMINI_API_KEY", "CELERY_", "GEMINI_TASKS_")) and k != "REDIS_URL"}
    env.update(KEY_SECRETS)
    env.update({"REDIS_URL": server.url, "GOOGLE_GEMINI_BASE_URL": emulator.url, "PYTHONUNBUFFERED": "1",
                "GEMINI_TASKS_REQUEST_TIMEOUT": "5", "GEMINI_TASKS_VISIBILITY_TIMEOUT": "60",
                "GEMINI_TASKS_POOL": "v" + os.urandom(4).hex()})
    worker = WorkerProcess(env, concurrency=4)
    try:
        worker.start(timeout=60)
        yield server, env, worker
    finally:
        worker.stop()
        server.stop()


def test_submit_fails_clearly_when_redis_loses_the_batch_and_a_rerun_resubmits(volatile_stack, emu, tmp_path):
    server, env, _worker = volatile_stack
    tag = "lost-" + os.urandom(3).hex()
    n = 30
    src, out = tmp_path / "prompts.jsonl", tmp_path / "results.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"{tag} {i}", "metadata": {"i": i}}) + "\n" for i in range(n)))
    emu.configure(latency_seconds=0.3)
    args = ["submit", str(src), "-o", str(out), "--paid", "all", "--max-workers", "4", "--no-progress"]
    proc = subprocess.Popen(CLI + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 4):
        time.sleep(0.1)
    server.kill()  # a restart without persistence: queues, results and the key pool are gone
    server.start()
    lost_at = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("submit hung after Redis lost its data")
    assert time.monotonic() - lost_at < 30
    assert proc.returncode not in (0, None), stderr
    no_traceback(stderr)
    assert "no longer holds" in stderr and "Re-run" in stderr, stderr
    answered = len(out.read_text().splitlines())
    assert answered < n

    r = run_cli(args, env, timeout=120)
    assert r.returncode == 0, r.stderr
    no_traceback(r.stderr)
    assert "no longer in Redis" in r.stderr and "submitting them again" in r.stderr, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == list(range(1, n + 1))
    assert all(row["error"] is None and row["metadata"] == {"i": row["line"] - 1} for row in rows)
    sent = prompts_of(emu, tag)
    assert set(sent) == {f"{tag} {i}" for i in range(n)}
    assert len(sent) <= n + 4, "only the calls in flight when Redis lost its data may be made twice"


def test_ctrl_c_while_enqueuing_never_pays_twice(worker, emu, cli_env, tmp_path):
    tag = "intr-" + os.urandom(3).hex()
    n = 800
    src, out = tmp_path / "prompts.jsonl", tmp_path / "results.jsonl"
    src.write_text("".join(json.dumps(f"{tag} {i}") + "\n" for i in range(n)))
    args = ["submit", str(src), "-o", str(out), "--paid", "all", "--max-workers", "8", "--no-progress"]
    proc = subprocess.Popen(CLI + args, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(prompts_of(emu, tag)) < 10:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # while the batch is still being enqueued
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    no_traceback(stderr)
    assert "Re-run the same command" in stderr
    state = tmp_path / "results.jsonl.state.jsonl"
    assert state.exists() and len(state.read_text().splitlines()) <= -(-n // 200)
    assert state.stat().st_size < 100 * n, "the state file is linear in the batch"

    r = run_cli(args, cli_env, timeout=180)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == list(range(1, n + 1))
    sent = prompts_of(emu, tag)
    assert len(sent) == len(set(sent)) == n, f"{len(sent) - len(set(sent))} prompt(s) sent twice"
    assert not state.exists()


def test_metadata_line_keys_failed_rows_and_rerun_when_done(worker, emu, cli_env, tmp_path):
    tag = "meta-" + os.urandom(3).hex()
    src, out = tmp_path / "prompts.jsonl", tmp_path / "results.jsonl"
    metas = [{"line": "a"}, {"line": 1}, {"line": 99, "k": [1, 2]}, {}, {"id": "will fail"}]
    src.write_text("\n".join(json.dumps({"prompt": f"{tag} {i}", "metadata": m}) for i, m in enumerate(metas)) + "\n")
    emu.add_fault(action="status", status=400, prompt_contains=f"{tag} 4", times=5)
    args = ["submit", str(src), "-o", str(out), "--paid", "all", "--no-progress"]
    r = run_cli(args, cli_env)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3, 4, 5]
    assert [row["metadata"] for row in rows] == metas, "each row keeps its prompt's own metadata, failed ones too"
    assert rows[4]["error"] and "persistent" in rows[4]["error"].lower()
    assert all(row["error"] is None for row in rows[:4])
    for _ in range(2):  # everything done: a re-run does nothing, cleanly
        r = run_cli(args, cli_env)
        assert r.returncode == 0, r.stderr
        no_traceback(r.stderr)
        assert "all already answered" in r.stderr
        assert len(out.read_text().splitlines()) == 5
    assert len(prompts_of(emu, tag)) == 5


def test_validation_error_names_the_file_line(worker, emu, cli_env, tmp_path):
    tag = "bad-" + os.urandom(3).hex()
    src, out = tmp_path / "prompts.jsonl", tmp_path / "results.jsonl"
    lines = [json.dumps(f"{tag} ok {i}") for i in range(3)]
    lines.insert(1, "")  # a blank line: line numbers are the file's, not the list's
    lines.append(json.dumps({"prompt": f"{tag} <audio>", "audio_path": str(tmp_path / "missing.mp3")}))
    src.write_text("\n".join(lines) + "\n")
    r = run_cli(["submit", str(src), "-o", str(out), "--no-progress"], cli_env)
    assert r.returncode != 0
    no_traceback(r.stderr)
    assert f"{src}:5" in r.stderr and "prompts_data" not in r.stderr, r.stderr
    assert "missing.mp3" in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) <= 2, r.stderr
    time.sleep(0.5)
    assert prompts_of(emu, tag) == [], "nothing may be enqueued when a prompt is invalid"


def _one_line_error(r, *needles: str) -> None:
    assert r.returncode not in (0, None), r.stdout + r.stderr
    no_traceback(r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and r.stderr.rstrip().endswith(lines[0]), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_errors_are_one_line_with_the_redis_url_masked(cli_env, tmp_path):
    from gemini_tasks.testing.local_redis import free_port

    port = free_port()
    down = dict(cli_env, REDIS_URL=f"redis://:hunter2secret@127.0.0.1:{port}/0")
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps("hello") + "\n")
    for args in (["keys"], ["keys", "--json"], ["submit", str(src), "-o", str(tmp_path / "o.jsonl")],
                 ["tts", "hello", "-o", str(tmp_path / "x.wav")], ["collect", "some-batch"]):
        t0 = time.monotonic()
        r = run_cli(args, down, timeout=60)
        assert time.monotonic() - t0 < 20
        _one_line_error(r, f"redis://:**@127.0.0.1:{port}/0")
        assert "hunter2secret" not in r.stdout + r.stderr


def test_cli_errors_are_one_line_for_bad_keys_and_unknown_batches(worker, cli_env, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps("hello") + "\n")
    r = run_cli(["submit", str(src), "-o", str(tmp_path / "o.jsonl"), "--keys", "GEMINI_API_KEY_77"], cli_env)
    _one_line_error(r, "GEMINI_API_KEY_77")
    no_keys = {k: v for k, v in cli_env.items() if not k.startswith("GEMINI_API_KEY")}
    r = run_cli(["submit", str(src), "-o", str(tmp_path / "o.jsonl")], dict(no_keys, GEMINI_TASKS_POOL="empty" + os.urandom(3).hex()))
    _one_line_error(r, "No valid API keys found")
    r = run_cli(["tts", "hello", "-o", str(tmp_path / "x.wav")], dict(no_keys, GEMINI_TASKS_POOL="empty" + os.urandom(3).hex()))
    _one_line_error(r, "No valid API keys found")
    r = run_cli(["collect", "no-such-batch", "--timeout", "5"], cli_env)
    _one_line_error(r, "no-such-batch")


def test_keys_table_fits_80_columns_without_cutting_key_ids(worker, emu, cli_env, manager_factory):
    from gemini_tasks import GeminiParallelProcessor

    m = manager_factory(4, paid_keys="all", pool=cli_env["GEMINI_TASKS_POOL"],
                        projects={f"GEMINI_API_KEY_{i}": "a-rather-long-project-name" for i in range(1, 5)})
    emu.add_fault(action="status", status=429, quota_kind="minute", times=1)
    GeminiParallelProcessor(m, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0,
                            max_wait_seconds=30).process_prompts([{"prompt": "table"}], progress=False)
    r = run_cli(["keys"], dict(cli_env, COLUMNS="80"))
    assert r.returncode == 0, r.stderr
    assert "TEMPORARILY_EXHAUSTED" in r.stdout  # the longest state is in the table
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    for i in range(1, 5):
        assert re.search(rf"^GEMINI_API_KEY_{i}\s", r.stdout, re.MULTILINE), r.stdout
    assert "a-rather-long-project-name" in r.stdout
    assert re.search(r"^GEMINI_API_KEY_1\s+explicit\s+\S+", r.stdout, re.MULTILINE), r.stdout  # who set what


def test_keys_watch_refreshes_one_table_in_place(worker, cli_env, manager_factory):
    import pty

    manager_factory(2, pool=cli_env["GEMINI_TASKS_POOL"])
    master, slave = pty.openpty()
    proc = subprocess.Popen(CLI + ["keys", "--watch", "0.2"], env=dict(cli_env, COLUMNS="100", TERM="xterm"),
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 6
    try:
        while time.monotonic() < deadline:
            import select

            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        os.close(master)
    text = out.decode(errors="replace")
    refreshes = text.count("\x1b[2K")  # rich's Live erases the previous table before drawing the next
    assert text.count("GEMINI_API_KEY_1") >= 3, text[-2000:]
    assert refreshes >= 2 and "\x1b[" in text and "A" in text, "the table is redrawn in place, not appended"
    assert proc.returncode in (0, -signal.SIGINT, 130)
    assert "Traceback" not in text


def test_fingerprint_conflict_points_to_an_option_that_exists(worker, cli_env, manager_factory, tmp_path):
    manager_factory(2, paid_keys="all", pool=cli_env["GEMINI_TASKS_POOL"])  # registers this host's secrets
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps("hello") + "\n")
    rotated = dict(cli_env, GEMINI_API_KEY_1="a-rotated-secret-0123456789")
    r = run_cli(["submit", str(src), "-o", str(tmp_path / "o.jsonl"), "--keys", "2"], rotated)
    _one_line_error(r, "GEMINI_API_KEY_1", "replace_fingerprints=True")
    assert "--replace" not in r.stderr and "a-rotated-secret" not in r.stderr
    # the option named is real: a manager built with it takes the rotated secret
    os.environ["GEMINI_API_KEY_1"], saved = "a-rotated-secret-0123456789", os.environ["GEMINI_API_KEY_1"]
    try:
        manager_factory(2, paid_keys="all", pool=cli_env["GEMINI_TASKS_POOL"], replace_fingerprints=True)
    finally:
        os.environ["GEMINI_API_KEY_1"] = saved


def test_rerun_after_results_expired_submits_the_missing_again(worker, emu, cli_env, tmp_path, redis_client):
    """The CLI was killed; by the time it is re-run, Redis has expired the run's results (result_expires)."""
    from gemini_tasks.celery_app import app

    tag = "exp-" + os.urandom(3).hex()
    n = 12
    src, out = tmp_path / "prompts.jsonl", tmp_path / "results.jsonl"
    src.write_text("".join(json.dumps(f"{tag} {i}") + "\n" for i in range(n)))
    emu.configure(latency_seconds=0.3)
    args = ["submit", str(src), "-o", str(out), "--paid", "all", "--max-workers", "2", "--no-progress"]
    proc = subprocess.Popen(CLI + args, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    written = len(out.read_text().splitlines())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(set(prompts_of(emu, tag))) < n:
        time.sleep(0.2)  # the fleet finishes the batch meanwhile
    state = [json.loads(line) for line in (tmp_path / "results.jsonl.state.jsonl").read_text().splitlines()]
    for chunk in state:  # what result_expires does a day later: group record and results gone
        redis_client.delete(app.backend.get_key_for_group(chunk["group"]),
                            *[app.backend.get_key_for_task(tid) for tid, _ in chunk["tasks"]])
    r = run_cli(args, cli_env)
    assert r.returncode == 0, r.stderr
    no_traceback(r.stderr)
    assert f"{n - written} prompt(s) submitted earlier are no longer in Redis" in r.stderr, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == list(range(1, n + 1))
    assert all(row["error"] is None and f"{tag} {row['line'] - 1}" in row["response"] for row in rows)
    # sent again under their own task ids: the workers' done markers answer them, Gemini is not paid twice
    assert len(prompts_of(emu, tag)) == n
