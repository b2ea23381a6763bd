"""Helpers for the security tests: a stack of real processes, a Flower process, a Redis MONITOR recorder,
TLS certificates, and a scanner that looks for secrets in everything it is given.

A small copy of the chaos suite's stack on purpose (test directories do not import each other).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FLOWER_USER, FLOWER_PASSWORD = "sec-operator", "sec-flower-" + uuid.uuid4().hex[:12]


@contextlib.contextmanager
def celery_app_on(url: str, **ssl: Any) -> Iterator[Any]:
    """Point the process-wide Celery app at ``url`` (and optional SSL options), then restore it."""
    from gemini_tasks.celery_app import app

    names = ("broker_url", "result_backend", "broker_use_ssl", "redis_backend_use_ssl")
    saved = {name: app.conf.get(name) for name in names}

    def forget() -> None:
        pool, app._pool = app._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.force_close_all()
        if "amqp" in app.__dict__:
            app.__dict__["amqp"]._producer_pool = None
        backend = app._backend_cache or getattr(app._local, "backend", None)
        consumer = getattr(backend, "result_consumer", None)
        if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
            with contextlib.suppress(Exception):  # AsyncResults outliving the stack: nothing to unsubscribe
                consumer.stop()
            consumer._pubsub = None
            consumer.subscribed_to.clear()
        app._backend_cache = None
        app._local = threading.local()

    app.conf.update(broker_url=url, result_backend=url, **ssl)
    forget()
    try:
        yield app
    finally:
        app.conf.update(saved)
        forget()


def worker_env(redis_url: str, emulator_url: str, secrets: dict[str, str], **extra: str) -> dict[str, str]:
    env = {name: "" for name in os.environ if name.startswith("GEMINI_API_KEY")}
    env.update(secrets)
    env.update({"REDIS_URL": redis_url, "CELERY_BROKER_URL": "", "CELERY_RESULT_BACKEND": "",
                "GEMINI_TASKS_KEYS_REDIS_URL": "", "GOOGLE_GEMINI_BASE_URL": emulator_url,
                "GEMINI_TASKS_REQUEST_TIMEOUT": "5", "GEMINI_TASKS_VISIBILITY_TIMEOUT": "30",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    env.update(extra)
    return env


def start_worker(env: dict[str, str], **kw: Any) -> Any:
    from gemini_tasks.testing.local_fleet import WorkerProcess

    worker = WorkerProcess(env, **kw)
    return worker.start(timeout=60)


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
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="redis-monitor", daemon=True)

    def _run(self) -> None:
        with self.client.monitor() as m:
            self._ready.set()
            while not self._stop.is_set():
                try:
                    self.lines.append(m.next_command()["command"])
                except redis.TimeoutError:
                    continue  # an idle or loaded moment: keep listening
                except (redis.ConnectionError, ValueError):
                    return

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
class Flower:
    """A real Flower process with basic auth, asked over its HTTP API."""

    def __init__(self, env: dict[str, str]) -> None:
        from gemini_tasks.testing.local_redis import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "gemini_tasks", "flower", f"--port={self.port}",
             "--address=127.0.0.1", f"--basic-auth={FLOWER_USER}:{FLOWER_PASSWORD}", "--inspect_timeout=2000"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=str(ROOT))

    def get(self, path: str, auth: tuple[str, str] | None = (FLOWER_USER, FLOWER_PASSWORD)) -> tuple[int, str]:
        req = urllib.request.Request(self.url + path)
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=10) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"flower exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.get("/healthcheck", auth=None)[0] == 200:
                    return
            time.sleep(0.3)
        raise AssertionError(f"flower did not start:\n{self.log_tail()}")

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


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
