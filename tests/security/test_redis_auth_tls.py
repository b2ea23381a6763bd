"""Redis with a password, and over TLS (``rediss://``): the whole stack works through them.

The password travels only inside REDIS_URL (never in a task message, a result or a log line); a wrong
password fails at once with an authentication error instead of hanging.
"""

from __future__ import annotations

import time
import uuid

import pytest

from security_stack import celery_app_on, find_secrets, make_tls_files, start_worker, worker_env

SECRETS = {"GEMINI_API_KEY_R1": f"redis-auth-secret-1-{uuid.uuid4().hex}",
           "GEMINI_API_KEY_R2": f"redis-auth-secret-2-{uuid.uuid4().hex}"}
MODEL = "gemini-2.5-flash"
FAST = dict(worker_cooldown_seconds=0, api_call_interval=0, max_workers=4)


@pytest.fixture(scope="module")
def emulator():
    from gemini_tasks.emulator.runner import EmulatorThread

    emu = EmulatorThread().start()
    yield emu
    emu.stop()


@pytest.fixture
def client_env(monkeypatch):
    for name, secret in SECRETS.items():
        monkeypatch.setenv(name, secret)


def _run_workload(url: str, redis_url_for_keys: str | None = None) -> None:
    from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor, GeminiStreamingProcessor

    manager = AdvancedApiKeyManager(list(SECRETS), paid_keys="all", pool="auth" + uuid.uuid4().hex[:6],
                                    redis_url=redis_url_for_keys or url)
    results = GeminiParallelProcessor(manager, MODEL, **FAST).process_prompts(
        [{"prompt": f"through auth {i}"} for i in range(6)], timeout=60, progress=False)
    assert all(e is None and f"through auth {i}" in r for i, (_, r, e) in enumerate(results)), results
    sp = GeminiStreamingProcessor(manager, MODEL, **FAST)
    sp.start()
    try:
        _, response, error = sp.process_single({"prompt": "streamed through auth"}, timeout=30)
    finally:
        sp.stop()
    assert error is None and "streamed through auth" in response


def test_password_protected_redis_whole_stack(emulator, client_env):
    import redis

    from gemini_tasks.testing.local_redis import RedisServer

    password = "pw-" + uuid.uuid4().hex
    with RedisServer(password=password) as server:
        assert password in server.url
        with pytest.raises(redis.AuthenticationError):  # the server really demands it
            redis.Redis(port=server.port).ping()
        worker = start_worker(worker_env(server.url, emulator.url, SECRETS), concurrency=4, loglevel="DEBUG")
        worker.keep_log = True  # read after the worker stopped
        try:
            with celery_app_on(server.url):
                _run_workload(server.url)
        finally:
            worker.stop()
        log = worker.log_path.read_text(errors="replace")
        worker.log_path.unlink(missing_ok=True)
        assert "redis://:**@127.0.0.1" in log  # Celery's banner masks it
        assert find_secrets(log, [password]) == [], "the Redis password is in the worker log"


def test_wrong_password_fails_fast_with_a_clear_error(client_env):
    import redis

    from gemini_tasks import AdvancedApiKeyManager
    from gemini_tasks.testing.local_redis import RedisServer

    with RedisServer(password="right-" + uuid.uuid4().hex) as server:
        wrong = f"redis://:wrong@127.0.0.1:{server.port}/0"
        t0 = time.monotonic()
        with pytest.raises(redis.AuthenticationError):
            AdvancedApiKeyManager(list(SECRETS), pool="authfail", redis_url=wrong)
        assert time.monotonic() - t0 < 5


def test_empty_password_in_url_means_no_password(emulator, client_env):
    """docker-compose.yml builds ``redis://:${REDIS_PASSWORD:-}@redis:6379/0``: empty must mean "no AUTH"."""
    from gemini_tasks.testing.local_redis import RedisServer

    with RedisServer() as server:
        url = f"redis://:@127.0.0.1:{server.port}/0"
        worker = start_worker(worker_env(url, emulator.url, SECRETS), concurrency=2)
        try:
            with celery_app_on(url):
                _run_workload(url)
        finally:
            worker.stop()


def test_rediss_tls_whole_stack(emulator, client_env, tmp_path):
    """Broker, result backend and key manager over TLS (certificate verified against a private CA)."""
    import redis

    from gemini_tasks.testing.local_redis import RedisServer, free_port

    tls = make_tls_files(tmp_path)
    tls_port = free_port()
    server = RedisServer(extra_args=["--tls-port", str(tls_port), "--tls-cert-file", tls["cert"],
                                     "--tls-key-file", tls["key"], "--tls-ca-cert-file", tls["ca"],
                                     "--tls-auth-clients", "no"])
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - a redis-server built without TLS says so here
        pytest.skip(f"this redis-server has no TLS support (built without BUILD_TLS=yes): {exc}")
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required&ssl_ca_certs={tls['ca']}"
        assert redis.Redis.from_url(url).ping()
        with pytest.raises(redis.ConnectionError):  # a client that does not trust the CA is refused
            redis.Redis.from_url(f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required",
                                 socket_connect_timeout=3).ping()
        worker = start_worker(worker_env(url, emulator.url, SECRETS), concurrency=4)
        try:
            with celery_app_on(url):
                _run_workload(url)
            # every connection of the worker (broker, results, key manager) arrived on the TLS port
            admin = redis.Redis(port=server.port)
            clients = admin.client_list()
            admin.close()
            worker_conns = [c for c in clients if c.get("laddr", "").endswith(f":{tls_port}")]
            plain = [c for c in clients if c.get("laddr", "").endswith(f":{server.port}")]
            assert worker_conns, clients
            assert len(plain) == 1, plain  # only the admin connection above
        finally:
            worker.stop()
    finally:
        server.stop()
