"""The deployment files: docker-compose.yml's structure, the image, the entrypoint (run for real), .env.example.

There is no Docker engine on CI machines, so the compose file is checked as data (and with
``docker compose config`` / ``docker-compose config`` when a client is installed), and the entrypoint runs
directly against a private Redis with this virtualenv's ``celery``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gemini_tasks.testing.environment import entrypoint_environ

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ROOT / "workers"
yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def test_services_and_scalable_workers(compose):
    services = compose["services"]
    assert {"redis", "worker-interactive", "worker-batch", "flower", "metrics", "emulator"} <= set(services)
    for name in ("worker-interactive", "worker-batch"):
        svc = services[name]
        assert "container_name" not in svc, f"{name}: a fixed container name breaks --scale"
        assert "ports" not in svc, f"{name}: a fixed host port breaks --scale"
        assert svc["build"]["dockerfile"] == "workers/Dockerfile"
        profile = "interactive" if "interactive" in name else "batch"
        assert svc["env_file"] == [".env", f"workers/{profile}.env"], "secrets from .env, then the queue profile"
        assert env_file(WORKERS / f"{profile}.env")["WORKER_QUEUES"] == profile
        assert svc["environment"]["REDIS_URL"].endswith("@redis:6379/0")
        grace = int(str(svc["stop_grace_period"]).rstrip("s"))
        assert grace > int(env_file(WORKERS / f"{profile}.env")["WORKER_SOFT_SHUTDOWN_TIMEOUT"])
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"


def test_redis_is_durable_and_never_evicts(compose):
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert "requirepass" in command and "$$REDIS_PASSWORD" in command, "optional password, from the environment"
    assert redis["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD:-}"
    assert any(v.startswith("redis-data:") for v in redis["volumes"]) and "redis-data" in compose["volumes"]
    assert all(p.startswith("${REDIS_BIND:-127.0.0.1}:") for p in redis["ports"]), "loopback by default"


def test_flower_requires_basic_auth_from_env(compose):
    flower = compose["services"]["flower"]
    assert not [a for a in flower["command"] if "auth" in a], "no credentials on a command line (ps shows them)"
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == \
        "${FLOWER_USER:?set FLOWER_USER in .env}:${FLOWER_PASSWORD:?set FLOWER_PASSWORD in .env}"
    assert "env_file" not in flower, "Flower reads FLOWER_* variables as options; it gets only what it needs"
    assert flower["command"][:4] == ["celery", "-A", "gemini_tasks", "flower"]
    assert all(p.startswith("${FLOWER_BIND:-127.0.0.1}:") for p in flower["ports"])


def test_offline_emulator_profile_and_metrics(compose):
    emulator = compose["services"]["emulator"]
    assert emulator["profiles"] == ["offline"]
    assert emulator["command"][-4:] == ["--host", "0.0.0.0", "--port", "8765"]
    example = (ROOT / ".env.example").read_text()
    assert "# GOOGLE_GEMINI_BASE_URL=http://emulator:8765" in example and "# COMPOSE_PROFILES=offline" in example
    metrics = compose["services"]["metrics"]
    assert metrics["command"][:3] == ["python", "-m", "gemini_tasks.ops.metrics"]
    assert "env_file" not in metrics, "the exporter needs Redis, not the keys"
    for name in ("redis", "worker-interactive", "worker-batch", "flower", "metrics"):
        assert "profiles" not in compose["services"][name]


def test_no_secret_in_compose_image_or_example():
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"AIza[0-9A-Za-z_-]{10,}", text)
    assert "GEMINI_API_KEY" not in text, "keys reach the workers only through .env"
    for name, svc in yaml.safe_load(text)["services"].items():
        for var, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", var):
                assert re.fullmatch(r"\$\{[A-Z_]+(:?-)?\}", str(value)), f"{name}: literal {var}"
            if "://" in str(value) and "@" in str(value):
                assert re.search(r"://:\$\{[A-Z_]+:?-?\}@", str(value)), f"{name}: password in {var} must be ${{...}}"
    example = env_file(ROOT / ".env.example")
    keys = {k: v for k, v in example.items() if k.startswith("GEMINI_API_KEY")}
    assert keys and all(v.startswith("replace-with-") for v in keys.values())
    assert not re.search(r"AIza", (ROOT / ".env.example").read_text())
    assert example["FLOWER_PASSWORD"].startswith("change-me")
    assert ".env" in (ROOT / ".gitignore").read_text().split()

    dockerfile = (WORKERS / "Dockerfile").read_text()
    assert dockerfile.splitlines()[[i for i, line in enumerate(dockerfile.splitlines())
                                    if line.startswith("FROM")][0]] == "FROM python:3.11-slim"
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M), "non-root user"
    assert "pip install ." in dockerfile
    assert not re.search(r"^COPY\s+\.\s", dockerfile, re.M), "copy named files only: never the whole context (.env)"
    assert not re.search(r"^(ENV|ARG)\s+.*(KEY|PASSWORD|SECRET)", dockerfile, re.M)
    ignore = (WORKERS / "Dockerfile.dockerignore").read_text().split()
    assert "**/.env" in ignore


def test_compose_client_accepts_the_file(tmp_path):
    """``docker compose config`` (v2 plugin) or ``docker-compose config`` (v1), when a client is installed."""
    candidates = []
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    if not candidates:
        pytest.skip("no docker compose client installed (the structure tests above still ran)")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copytree(WORKERS, tmp_path / "workers")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    for cmd in candidates:
        ok = subprocess.run([*cmd, "-f", "docker-compose.yml", "config", "-q"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        # without Flower credentials the file refuses to load
        (tmp_path / ".env").write_text("\n".join(line for line in (ROOT / ".env.example").read_text().splitlines()
                                                 if not line.startswith("FLOWER_PASSWORD")))
        bad = subprocess.run([*cmd, "-f", "docker-compose.yml", "config", "-q"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and "FLOWER_PASSWORD" in bad.stderr
        shutil.copy(ROOT / ".env.example", tmp_path / ".env")


# ------------------------------------------------------------------------------------------ the entrypoint


def test_entrypoint_runs_other_commands_and_drops_empty_variables(tmp_path):
    env = entrypoint_environ(tmp_path, GOOGLE_GEMINI_BASE_URL="", GEMINI_TASKS_POOL="")
    out = subprocess.run(["sh", str(WORKERS / "entrypoint.sh"), "python", "-c",
                          "import os; print(sorted(k for k in ('GOOGLE_GEMINI_BASE_URL', 'GEMINI_TASKS_POOL') "
                          "if k in os.environ))"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    bad = subprocess.run(["sh", str(WORKERS / "entrypoint.sh")], env={**env, "WORKER_POOL": "eventlet"},
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 64 and "WORKER_POOL" in bad.stderr


def test_entrypoint_starts_a_named_worker_with_soft_shutdown(tmp_path):
    """The real thing: defaults from the environment, a unique node name, -E, soft shutdown, clean SIGTERM."""
    from celery import Celery

    from gemini_tasks.testing.local_redis import RedisServer

    server = RedisServer().start()
    env = entrypoint_environ(tmp_path, REDIS_URL=server.url, WORKER_QUEUES="batch,interactive", WORKER_CONCURRENCY="3",
                             WORKER_SOFT_SHUTDOWN_TIMEOUT="7", WORKER_LOGLEVEL="WARNING")
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen(["sh", str(WORKERS / "entrypoint.sh")], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=str(ROOT))
    probe = Celery("probe", broker=server.url)
    probe.conf.update(accept_content=["json"], result_serializer="json")
    try:
        node_file = tmp_path / "gemini-tasks-worker-node"
        deadline = time.monotonic() + 60
        while not node_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        node = node_file.read_text().strip()
        assert re.fullmatch(r"batch-[0-9a-f]{6}@" + re.escape(os.uname().nodename), node), node
        conf = None
        while time.monotonic() < deadline and proc.poll() is None:
            replies = probe.control.inspect(destination=[node], timeout=1).conf() or {}
            if node in replies:
                conf = replies[node]
                break
        assert conf is not None, (tmp_path / "worker.log").read_text()[-3000:]
        assert conf["worker_soft_shutdown_timeout"] == 7.0
        assert conf["worker_send_task_events"] is True
        assert conf["worker_prefetch_multiplier"] == 1
        stats = probe.control.inspect(destination=[node], timeout=2).stats()[node]
        assert stats["pool"]["max-concurrency"] == 3
        assert stats["pool"]["implementation"] == "celery.concurrency.thread:TaskPool"
        queues = probe.control.inspect(destination=[node], timeout=2).active_queues()[node]
        assert sorted(q["name"] for q in queues) == ["batch", "interactive"]
        # the shell exec'd celery: SIGTERM reaches the worker itself, which stops cleanly
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        probe.close()
        server.stop()
