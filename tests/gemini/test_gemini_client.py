"""Client construction (timeout, no retries, endpoint from GOOGLE_GEMINI_BASE_URL) and the per-process cache.

The last tests drive the real SDK against a stdlib HTTP server on 127.0.0.1 (no internet): the leased
key goes in the header, errors come back classified, a hang becomes a transient timeout.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google import genai
from google.api_core import exceptions as core

from gemini_tasks.gemini import client as client_mod
from gemini_tasks.gemini.client import ClientCache, make_client
from gemini_tasks.gemini.api_core_errors import to_api_core
from gemini_tasks.gemini.classification import classify
from gemini_tasks.gemini.errors import error_message
from gemini_tasks.gemini.response import extract_text

KEY = "test-key-0123456789"


def options(c: genai.Client):
    return c._api_client._http_options  # the SDK's resolved options


def test_make_client_options(monkeypatch):
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    c = make_client(KEY, timeout_s=30)
    assert isinstance(c, genai.Client)
    assert options(c).timeout == 30_000
    assert options(c).api_version == "v1beta"
    assert options(c).retry_options is None
    assert "googleapis.com" in options(c).base_url
    assert not c.vertexai
    c.close()


def test_make_client_honours_the_sdk_base_url_variable(monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")  # must not switch us to Vertex
    c = make_client(KEY, timeout_s=0.25, api_version="v1")
    assert options(c).base_url.startswith("http://127.0.0.1:9")
    assert options(c).timeout == 250
    assert options(c).api_version == "v1"
    assert not c.vertexai


@pytest.mark.parametrize("key,timeout", [("", 10), ("  ", 10), (KEY, 0), (KEY, -1), (KEY, None)])
def test_make_client_rejects_bad_arguments(key, timeout):
    with pytest.raises(ValueError):
        make_client(key, timeout_s=timeout)


def test_cache_reuses_per_key_and_rebuilds_on_change(monkeypatch):
    closed = []
    cache = ClientCache()
    a = cache.get("GEMINI_API_KEY_1", KEY, timeout_s=10)
    monkeypatch.setattr(a, "close", lambda: closed.append("a"))
    assert cache.get("GEMINI_API_KEY_1", KEY, timeout_s=10) is a
    b = cache.get("GEMINI_API_KEY_2", KEY + "x", timeout_s=10)
    assert b is not a and len(cache) == 2
    rotated = cache.get("GEMINI_API_KEY_1", "rotated-secret-123", timeout_s=10)
    assert rotated is not a and closed == ["a"]
    assert cache.get("GEMINI_API_KEY_1", "rotated-secret-123", timeout_s=20) is not rotated
    cache.discard("GEMINI_API_KEY_2")
    assert len(cache) == 1
    cache.close_all()
    assert len(cache) == 0


def test_cache_never_stores_the_secret():
    cache = ClientCache()
    cache.get("GEMINI_API_KEY_1", KEY, timeout_s=10)
    assert KEY not in repr(cache._entries.keys())
    assert all(KEY not in entry.fingerprint for entry in cache._entries.values())
    cache.close_all()


def test_cache_builds_a_new_client_after_fork():
    cache = ClientCache()
    parent_client = cache.get("GEMINI_API_KEY_1", KEY, timeout_s=10)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            child_client = cache.get("GEMINI_API_KEY_1", KEY, timeout_s=10)
            again = cache.get("GEMINI_API_KEY_1", KEY, timeout_s=10)
            ok = child_client is not parent_client and again is child_client and len(cache) == 1
            cache.close_all()  # must not touch the parent's client
            os.write(write_fd, b"ok" if ok else b"bad")
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    assert os.read(read_fd, 10) == b"ok"
    os.close(read_fd)
    assert cache.get("GEMINI_API_KEY_1", KEY, timeout_s=10) is parent_client
    cache.close_all()


def test_module_level_cache():
    c = client_mod.get_client("GEMINI_API_KEY_T", KEY, timeout_s=5)
    assert client_mod.get_client("GEMINI_API_KEY_T", KEY, timeout_s=5) is c
    client_mod.close_all()
    assert client_mod.get_client("GEMINI_API_KEY_T", KEY, timeout_s=5) is not c
    client_mod.close_all()


# ------------------------------------------------------------------------------- against a local server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    script: list[tuple[int, dict, float]] = []
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server naming
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        type(self).seen.append({"path": self.path, "key": self.headers.get("x-goog-api-key"),
                                "server_timeout": self.headers.get("X-Server-Timeout")})
        status, payload, delay = type(self).script.pop(0)
        if delay:
            time.sleep(delay)
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_gemini(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    _Handler.script, _Handler.seen = [], []
    yield _Handler
    server.shutdown()
    server.server_close()


def test_real_sdk_round_trip_and_errors(fake_gemini):
    fake_gemini.script = [
        (200, {"candidates": [{"content": {"role": "model", "parts": [{"text": "Paris"}]}, "finishReason": "STOP"}]}, 0),
        (429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded. Please retry in 3s.",
                         "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                      "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
                                     {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]}}, 0),
        (400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "API key not valid. Please pass a valid API key.",
                         "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}, 0),
    ]
    c = make_client(KEY, timeout_s=5)
    assert extract_text(c.models.generate_content(model="gemini-2.5-flash", contents="Capital of France?")) == "Paris"
    seen = fake_gemini.seen[0]
    assert seen["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen["key"] == KEY and seen["server_timeout"] == "5"

    with pytest.raises(Exception) as info:
        c.models.generate_content(model="gemini-2.5-flash", contents="again")
    err = classify(info.value, secrets=[KEY])
    assert (err.kind, err.quota_kind, err.retry_after) == ("rate_limited", "day", 3.0)
    assert isinstance(to_api_core(err), core.ResourceExhausted)
    assert len(fake_gemini.seen) == 2  # the SDK did not retry on its own

    with pytest.raises(Exception) as info:
        c.models.generate_content(model="gemini-2.5-flash", contents="again")
    err = classify(info.value, secrets=[KEY])
    assert err.kind == "invalid_key"
    assert KEY not in error_message(err)
    c.close()


def test_hang_becomes_a_transient_timeout(fake_gemini):
    fake_gemini.script = [(200, {}, 1.5)]
    c = make_client(KEY, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        c.models.generate_content(model="gemini-2.5-flash", contents="hello")
    assert time.monotonic() - started < 1.4
    err = classify(info.value)
    assert (err.kind, err.status) == ("transient", "DEADLINE_EXCEEDED")
    assert isinstance(to_api_core(err), core.DeadlineExceeded)
    c.close()


def test_many_slots_share_several_clients_per_key_each_slot_keeping_its_own(monkeypatch):
    """2,000 slots: 8 clients per key of at most 254 connections (httpcore scans a pool per request); one slot
    always gets the same client, so its keep-alive connection is reused."""
    import threading

    from gemini_tasks.transport import pools
    from gemini_tasks.gemini.client import ClientCache, shard_layout

    assert shard_layout(None) == (1, None)
    assert shard_layout(8) == (1, 12)
    assert shard_layout(2000) == (8, 254)
    monkeypatch.setattr(pools, "_slots", 1000)
    cache = ClientCache()
    got: dict[int, list] = {}

    def slot(i: int) -> None:
        got[i] = [cache.get("GEMINI_API_KEY_1", "secret-one-abcdefgh", timeout_s=5) for _ in range(3)]

    threads = [threading.Thread(target=slot, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a is b is c for a, b, c in got.values())
    clients = {id(v[0]) for v in got.values()}
    assert len(clients) == 4 == len(cache)
    limits = next(iter(got.values()))[0]._api_client._httpx_client._transport._pool
    assert limits._max_connections == 254 and limits._max_keepalive_connections == 254
    cache.close_all()
