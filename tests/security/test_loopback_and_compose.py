"""The emulator binds to loopback by default; the compose file makes Flower authenticate."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:  # 0A = LISTEN
                found.add(addr)
    return found


def _outward_ip() -> str | None:
    """This machine's address on its default route (no packet is sent), or None when there is none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def test_emulator_process_binds_loopback_by_default():
    from gemini_tasks.emulator.runner import EmulatorProcess

    with EmulatorProcess() as emu:
        assert emu.url.startswith("http://127.0.0.1:")
        port = int(emu.url.rsplit(":", 1)[1])
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, no 0.0.0.0, no ::
        ip = _outward_ip()
        if ip:
            with pytest.raises(OSError):
                socket.create_connection((ip, port), timeout=2).close()


def test_emulator_defaults_are_loopback():
    import inspect

    from gemini_tasks.emulator.cli import emulator
    from gemini_tasks.emulator.runner import EmulatorProcess, EmulatorThread

    host = next(p for p in emulator.params if p.name == "host")
    assert host.default == "127.0.0.1"
    for cls in (EmulatorProcess, EmulatorThread):
        assert inspect.signature(cls).parameters["host"].default == "127.0.0.1"


def test_compose_flower_requires_authentication():
    compose = ROOT / "docker-compose.yml"
    if not compose.exists():
        pytest.skip("docker-compose.yml is not written yet")
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load(compose.read_text())["services"]
    flower = services["flower"]
    command = flower["command"]
    command = command if isinstance(command, list) else command.split()
    auth = [arg for arg in command if str(arg).startswith(("--basic-auth", "--basic_auth", "--auth"))]
    env = flower.get("environment") or {}
    env_auth = {k: v for k, v in (env.items() if isinstance(env, dict) else []) if k.startswith("FLOWER_BASIC_AUTH")}
    assert auth or env_auth, "Flower must require authentication"
    # mandatory: compose refuses to start without credentials (${VAR:?...}), never an empty default
    text = " ".join(map(str, auth + list(env_auth.values())))
    assert ":?" in text, text
    # Flower publishes on loopback unless the operator says otherwise
    assert all(str(p).startswith("${FLOWER_BIND:-127.0.0.1}") for p in flower.get("ports", [])), flower["ports"]
