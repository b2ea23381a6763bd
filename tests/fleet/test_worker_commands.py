"""Worker commands as operators run them: `gemini-tasks worker` and the image's entrypoint + health check."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gemini_tasks.testing.environment import entrypoint_environ

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ROOT / "workers"
CLI = [sys.executable, "-m", "gemini_tasks.ops.cli"]


def entrypoint_defaults() -> dict[str, tuple[int, int]]:
    """The entrypoint's per-pool (concurrency, prefetch) table, read from the script itself."""
    text = (WORKERS / "entrypoint.sh").read_text()
    found = re.findall(r"^\s+([a-z|]+)\)\s+default_concurrency=(\d+);\s+default_prefetch=(\d+)", text, re.M)
    return {pool.split("|")[0]: (int(c), int(p)) for pool, c, p in found}


@pytest.mark.parametrize("pool", ["threads", "gevent", "prefork", "solo"])
def test_cli_worker_defaults_match_the_entrypoint(pool):
    r = subprocess.run([*CLI, "worker", "-P", pool, "-Q", " batch , interactive", "--dry-run"], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    args = shlex.split(r.stdout)
    opt = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("-")}
    concurrency, prefetch = entrypoint_defaults()[pool]
    assert (int(opt["-c"]), int(opt["--prefetch-multiplier"])) == (concurrency, prefetch)
    assert opt["-Q"] == "batch,interactive"
    if pool == "gevent":
        assert prefetch == 4  # the stall workers/README.md measured with prefetch 1
    if pool == "prefork":
        assert concurrency <= 8  # 32 children would cost ~2.2 GiB


def _probe(url: str):
    from celery import Celery

    probe = Celery("probe", broker=url)
    probe.conf.update(accept_content=["json"], result_serializer="json")
    return probe


def _wait_node(probe, node: str, proc, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        stats = probe.control.inspect(destination=[node], timeout=1).stats() or {}
        if node in stats:
            return stats[node]
    raise AssertionError(f"worker {node} never answered (exit {proc.poll()})")


def _stop(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_cli_worker_trims_queue_names(fleet, tmp_path):
    from gemini_tasks.testing.local_redis import RedisServer

    with RedisServer() as server:
        env = dict(fleet.env, REDIS_URL=server.url)
        node = f"trim-{os.urandom(3).hex()}@{os.uname().nodename}"
        proc = subprocess.Popen([*CLI, "worker", "-Q", "batch, interactive", "-c", "2", "-n", node, "-l", "WARNING",
                                 "--without-gossip", "--without-mingle"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        probe = _probe(server.url)
        try:
            _wait_node(probe, node, proc)
            queues = probe.control.inspect(destination=[node], timeout=2).active_queues()[node]
            assert sorted(q["name"] for q in queues) == ["batch", "interactive"]
        finally:
            _stop(proc)
            probe.close()


def _start_entrypoint(env: dict[str, str]) -> subprocess.Popen:
    """workers/entrypoint.sh with ``env``, in a process group of its own (``_stop`` ends it)."""
    return subprocess.Popen(["sh", str(WORKERS / "entrypoint.sh")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, cwd=str(ROOT))


def _recorded_node(tmp_path: Path, timeout: float = 30) -> str:
    """The node name the entrypoint recorded for the health check (in ``$TMPDIR``), once it is written."""
    node_file = tmp_path / "gemini-tasks-worker-node"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (node_file.exists() and node_file.read_text().strip()):
        time.sleep(0.1)
    return node_file.read_text().strip()


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(WORKERS / "healthcheck.sh")], env=env, capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT), check=False)


HEAVY = pytest.mark.skipif(os.environ.get("GEMINI_TASKS_HEAVY") != "1", reason="heavy variant: set GEMINI_TASKS_HEAVY=1")


# CI starts one custom name; the other forms (Celery's %n/%h/%d expansions) are the heavy variants
@pytest.mark.parametrize("worker_name", ["batch-1", pytest.param("b-%n@%h", marks=HEAVY),
                                         pytest.param("q%d-%n", marks=HEAVY)])
def test_entrypoint_custom_worker_name_passes_the_health_check(tmp_path, worker_name):
    from gemini_tasks.testing.local_redis import RedisServer

    with RedisServer() as server:
        env = entrypoint_environ(tmp_path, REDIS_URL=server.url, WORKER_NAME=worker_name, WORKER_CONCURRENCY="2",
                                 WORKER_QUEUES="batch, interactive", WORKER_LOGLEVEL="WARNING",
                                 HEALTHCHECK_PING_TIMEOUT="3")
        proc = _start_entrypoint(env)
        probe = _probe(server.url)
        try:
            node = _recorded_node(tmp_path)
            assert "%" not in node and "@" in node, node
            _wait_node(probe, node, proc)  # Celery's own node name is the recorded one
            queues = probe.control.inspect(destination=[node], timeout=2).active_queues()[node]
            assert sorted(q["name"] for q in queues) == ["batch", "interactive"]
            r = healthcheck(env)
            assert r.returncode == 0, r.stderr
        finally:
            _stop(proc)
            probe.close()
        assert healthcheck(env).returncode == 1, "a stopped worker is unhealthy"


def test_entrypoint_solo_worker_is_healthy_during_a_long_call(fleet, fleet_emu, pool_name, tmp_path):
    from gemini_tasks.testing.local_redis import RedisServer

    with RedisServer() as server:
        env = entrypoint_environ(tmp_path, **{k: v for k, v in fleet.env.items() if k.startswith("GEMINI_API_KEY")},
                                 REDIS_URL=server.url, GOOGLE_GEMINI_BASE_URL=fleet.emulator.url, WORKER_POOL="solo",
                                 WORKER_LOGLEVEL="WARNING", HEALTHCHECK_PING_TIMEOUT="2",
                                 GEMINI_TASKS_REQUEST_TIMEOUT="30")
        proc = _start_entrypoint(env)
        probe = _probe(server.url)
        try:
            _wait_node(probe, _recorded_node(tmp_path), proc)
            assert healthcheck(env).returncode == 0
            fleet_emu.configure(latency_seconds=12)
            client_env = dict(fleet.env, REDIS_URL=server.url)
            spec = {"pool": pool_name, "model": "gemini-2.5-flash", "prompts": [{"prompt": "a long call"}],
                    "timeout": 60}
            done: list = []
            client = threading.Thread(target=lambda: done.append(subprocess.run(
                [sys.executable, str(Path(__file__).parent / "fleet_client.py")], input=json.dumps(spec), text=True,
                capture_output=True, env=client_env, timeout=90, cwd=str(ROOT), check=False)))
            client.start()
            time.sleep(4)  # the client starts and enqueues; the worker is then inside the 12 s call
            busy = healthcheck(env)
            assert busy.returncode == 0, busy.stderr
            assert "busy" in busy.stderr, "the ping was answered: the call was not under way"
            client.join(90)
            assert done and done[0].returncode == 0, done[0].stderr[-2000:] if done else "client hung"
            assert json.loads(done[0].stdout.strip().splitlines()[-1])[0]["error"] is None
        finally:
            _stop(proc)
            probe.close()


def test_plain_celery_worker_runs_what_the_readme_says(fleet):
    """README: plain `celery -A gemini_tasks worker` = the app's settings, prefork with one child per core."""
    from gemini_tasks.testing.local_redis import RedisServer

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "Plain `celery -A gemini_tasks worker` works too" in readme
    assert "prefork with one child per CPU core" in readme
    with RedisServer() as server:
        env = dict(fleet.env, REDIS_URL=server.url)
        node = f"plain-{os.urandom(3).hex()}@{os.uname().nodename}"
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "gemini_tasks", "worker", "-n", node,
                                 "-l", "WARNING"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, cwd=str(ROOT))
        probe = _probe(server.url)
        try:
            stats = _wait_node(probe, node, proc)
            assert stats["pool"]["implementation"] == "celery.concurrency.prefork:TaskPool"
            assert stats["pool"]["max-concurrency"] == os.cpu_count()
            conf = probe.control.inspect(destination=[node], timeout=2).conf()[node]
            assert conf["task_acks_late"] is True and conf["worker_prefetch_multiplier"] == 1
            queues = probe.control.inspect(destination=[node], timeout=2).active_queues()[node]
            assert sorted(q["name"] for q in queues) == ["batch", "interactive"]
        finally:
            _stop(proc)
            probe.close()
