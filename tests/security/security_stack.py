"""Helpers for the security tests: a stack of real processes, a Flower process, a Redis MONITOR recorder,
TLS certificates, and a scanner that looks for secrets in everything it is given.

The stack's parts are the shared ones (:mod:`gemini_tasks.testing`), with this suite's settings.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable

import redis

from gemini_tasks.testing.app_config import celery_app_on  # noqa: F401 - for the tests
from gemini_tasks.testing.environment import stack_environ
from gemini_tasks.testing.flower import Flower as _Flower
from gemini_tasks.testing.local_fleet import WorkerProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FLOWER_USER, FLOWER_PASSWORD = "sec-operator", "sec-flower-" + uuid.uuid4().hex[:12]


def worker_env(redis_url: str, emulator_url: str, secrets: dict[str, str], **extra: str) -> dict[str, str]:
    """The whole environment of this suite's workers and Flower: calls of at most 5 s, a 30 s visibility timeout."""
    return stack_environ(redis_url, emulator_url, secrets, request_timeout=5, visibility_timeout=30, **extra)


def start_worker(env: dict[str, str], **kw: Any) -> Any:
    """A worker subprocess with exactly ``env``, started (it answered a ping)."""
    return WorkerProcess(env, inherit_env=False, **kw).start(timeout=60)


def Flower(env: dict[str, str]) -> Any:  # noqa: N802 - the shared Flower with this suite's credentials
    return _Flower(env, user=FLOWER_USER, password=FLOWER_PASSWORD)


# -- scanning ------------------------------------------------------------------------------------------
def needles(secrets: Iterable[str]) -> list[bytes]:
    """What to look for: each secret, its distinctive middle (a truncated or wrapped copy), and base64."""
    out: list[bytes] = []
    for s in secrets:
        raw = s.encode()
        out += [raw, raw[len(raw) // 4: len(raw) // 4 + 16], base64.b64encode(raw)[:20]]
    return out


def find_secrets(haystack: bytes | str, secrets: Iterable[str]) -> list[str]:
    data = haystack.encode(errors="replace") if isinstance(haystack, str) else haystack
    return [n.decode(errors="replace") for n in needles(secrets) if n in data]


def redis_dump(client: redis.Redis) -> dict[bytes, bytes]:
    """Every key: its name, its DUMP (RDB encoding) and its logical value by type (DUMP may compress)."""
    out: dict[bytes, bytes] = {}
    for name in client.scan_iter(count=1000):
        parts = [name, client.dump(name) or b""]
        kind = client.type(name)
        if kind == b"string":
            parts.append(client.get(name) or b"")
        elif kind == b"hash":
            parts += [b for kv in client.hgetall(name).items() for b in kv]
        elif kind == b"list":
            parts += client.lrange(name, 0, -1)
        elif kind == b"set":
            parts += list(client.smembers(name))
        elif kind == b"zset":
            parts += [m for m, _ in client.zrange(name, 0, -1, withscores=True)]
        elif kind == b"stream":
            parts += [json.dumps(client.xrange(name), default=repr).encode()]
        out[name] = b"\n".join(parts)
    return out


class Monitor:
    """Records every command Redis executes (MONITOR) from a background thread: broker messages as they are
    published and acknowledged, results as they are stored and published, key-manager scripts and replies."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.lines: list[str] = []
        #: why recording ended early (None while it records): shown by the test when nothing was recorded
        self.error: str | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="redis-monitor", daemon=True)

    def _run(self) -> None:
        try:
            with self.client.monitor() as m:
                self._ready.set()
                while not self._stop.is_set():
                    try:
                        got = m.next_command()
                    except redis.TimeoutError:
                        continue  # an idle or loaded moment: keep listening
                    except (ValueError, AttributeError, TypeError) as exc:  # one line redis-py cannot parse
                        self.error = f"unparsed line: {type(exc).__name__}: {exc}"
                        continue
                    if got is not None:
                        self.lines.append(got["command"])
        except Exception as exc:  # noqa: BLE001 - the test reports it with what was recorded
            if not self._stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"

    def start(self) -> "Monitor":
        self.thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.client.ping()  # a command to unblock next_command
        self.thread.join(5)
        self.client.close()


# -- Flower ----------------------------------------------------------------------------------------------
# -- TLS -------------------------------------------------------------------------------------------------
def make_tls_files(directory: Path) -> dict[str, str]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost (the ``cryptography`` package)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def write_key(key: Any, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gemini-tasks test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key(key, paths["key"])
    return {k: str(v) for k, v in paths.items()}
