"""The metrics exporter as operators run it (a subprocess): one command, and quick answers with Redis down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

EXPORTER = [sys.executable, "-m", "gemini_tasks.ops.metrics"]
CLI_METRICS = [sys.executable, "-m", "gemini_tasks.ops.cli", "metrics"]


def samples_of(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def up_by_pool(samples) -> dict[str, float]:
    return {labels["pool"]: v for labels, v in samples.get("gemini_tasks_pool_up", [])}


class Exporter:
    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        from gemini_tasks.testing.local_redis import free_port

        self.port = free_port()
        self.proc = subprocess.Popen([*cmd, "--port", str(self.port), "--addr", "127.0.0.1"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited: {self.proc.stderr.read()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/nothing", timeout=1)
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
                continue
            return
        raise AssertionError("exporter did not start")

    def scrape(self) -> tuple[float, dict]:
        t0 = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as resp:
            text = resp.read().decode()
            assert resp.status == 200
        return time.monotonic() - t0, samples_of(text)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def exporters():
    started: list[Exporter] = []

    def start(cmd, env):
        started.append(Exporter(cmd, env))
        return started[-1]

    yield start
    for exp in started:
        exp.stop()


@pytest.mark.parametrize("pool_arg", ["all", "default"])
def test_redis_down_or_hung_scrape_answers_quickly_with_pool_up_0(fleet, exporters, pool_arg):
    from gemini_tasks.testing.local_redis import RedisServer, free_port

    env = dict(fleet.env)
    refused = exporters([*EXPORTER, "--pool", pool_arg, "--redis-url", f"redis://:pw@127.0.0.1:{free_port()}/0"],
                        env)
    hung_server = RedisServer().start()
    try:
        hung = exporters([*EXPORTER, "--pool", pool_arg, "--redis-url", hung_server.url], env)
        os.kill(hung_server.proc.pid, signal.SIGSTOP)  # accepts connections, never answers
        for exp in (refused, hung):
            for _ in range(2):
                took, samples = exp.scrape()
                assert took < 5.0, f"a scrape took {took:.1f}s with Redis unreadable"
                up = up_by_pool(samples)
                assert up and set(up.values()) == {0.0}, up
                assert samples["gemini_tasks_redis_up"][0][1] == 0
                if pool_arg == "default":
                    assert up == {"default": 0.0}
    finally:
        os.kill(hung_server.proc.pid, signal.SIGCONT)
        hung_server.stop()


def test_gemini_tasks_metrics_is_the_exporter_all_lists_and_unknown_pools(fleet, fleet_emu, pool_name, exporters):
    results = fleet.run_client({"pool": pool_name, "prompts": [{"prompt": "count me"}]})
    assert results[0]["error"] is None
    env = dict(fleet.env)
    every = exporters([*CLI_METRICS, "--pool", "all"], env)
    _, samples = every.scrape()
    up = up_by_pool(samples)
    assert up.get(pool_name) == 1 and "all" not in up
    assert samples["gemini_tasks_redis_up"][0][1] == 1

    unknown = "nosuch" + pool_name
    listed = exporters([*CLI_METRICS, "--pool", f"{pool_name}, {unknown}"], env)
    _, samples = listed.scrape()
    assert up_by_pool(samples) == {pool_name: 1.0, unknown: 0.0}
    keys = {labels["pool"]: v for labels, v in samples["gemini_tasks_pool_keys"]}
    assert keys == {pool_name: 4.0, unknown: 0.0}

    env_default = dict(env, GEMINI_TASKS_METRICS_POOLS=f"{unknown},{pool_name}")
    same = exporters(EXPORTER, env_default)
    _, samples = same.scrape()
    assert up_by_pool(samples) == {pool_name: 1.0, unknown: 0.0}
