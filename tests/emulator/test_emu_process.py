"""The emulator as a separate process: CLI banner, SDK traffic, control API across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from emu_helpers import MODEL
from google import genai
from google.genai import errors, types

from gemini_tasks.emulator.runner import EmulatorProcess, EmulatorStartError


def test_subprocess_emulator_scripted_from_this_process():
    config = {"keys": {"sk-1": {"label": "GEMINI_API_KEY_1", "project": "p"}}}
    with EmulatorProcess(config=config, extra_args=["--minute-seconds", "1.5"]) as emu:
        assert emu.url.startswith("http://127.0.0.1:")
        ctl = emu.control
        ctl.wait_ready(5)
        assert ctl.config()["minute_seconds"] == 1.5

        client = genai.Client(
            api_key="sk-1", http_options=types.HttpOptions(base_url=emu.url, api_version="v1beta", timeout=5000)
        )
        assert client.models.generate_content(model=MODEL, contents="across processes").text.endswith(
            ":: across processes"
        )
        ctl.configure(quotas={"p": {"*": {"rpm": 1}}})
        with pytest.raises(errors.ClientError) as ei:
            client.models.generate_content(model=MODEL, contents="second")
        assert ei.value.code == 429
        ctl.add_fault(action="status", status=503, times=1)
        ctl.configure(quotas={})
        with pytest.raises(errors.ServerError):
            client.models.generate_content(model=MODEL, contents="third")

        log = ctl.log()
        assert [e["status"] for e in log] == [200, 429, 503]
        assert {e["key_label"] for e in log} == {"GEMINI_API_KEY_1"}
        assert ctl.stats()["by_status"] == {"200": 1, "429": 1, "503": 1}
        client.close()
        pid = emu.pid
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(pid, 0)


def test_start_failure_kills_the_child(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"no_such_field": 1}')
    emu = EmulatorProcess(extra_args=["--config", str(bad)], start_timeout=10)
    with pytest.raises(EmulatorStartError) as ei:
        emu.start()
    assert "no_such_field" in str(ei.value)  # the child's stderr is in the message
    assert emu.proc is not None and emu.proc.poll() is not None


def test_module_entry_point_prints_banner():
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemini_tasks.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        t0 = time.monotonic()
        line = proc.stdout.readline()
        assert line.startswith("emulator listening on http://127.0.0.1:")
        assert time.monotonic() - t0 < 10
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()
