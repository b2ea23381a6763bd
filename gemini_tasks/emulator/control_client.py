"""`EmulatorControl`: a stdlib-only client for the emulator's /_emulator/ control API.

Stdlib (urllib) on purpose: a test, a benchmark or another process can script the emulator
without importing aiohttp or the SDK.  Proxies are bypassed explicitly, since the emulator is
always local.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorControlError(RuntimeError):
    """The control API answered with an error (bad config field, malformed rule, ...)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"emulator control API answered {status}: {body}")
        self.status = status
        self.body = body


class EmulatorControl:
    """Script a running emulator: config, fault rules, request log, stats, reset."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            f"{self.base_url}/_emulator{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with _OPENER.open(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
            raise EmulatorControlError(exc.code, parsed) from None
        return json.loads(raw) if raw else None

    # -- config ---------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """Current config; key secrets are shown only as {label, project, blocked}."""
        return self._call("GET", "/config")

    def configure(self, **fields: Any) -> dict[str, Any]:
        """Merge top-level config fields (each given field replaces its old value)."""
        return self._call("POST", "/config", fields)

    # -- faults ---------------------------------------------------------------------------

    def add_fault(self, **rule: Any) -> int:
        """Add one rule, e.g. add_fault(action="status", status=503, times=2); returns its id."""
        return self._call("POST", "/faults", rule)["ids"][0]

    def add_faults(self, rules: list[dict[str, Any]]) -> list[int]:
        return self._call("POST", "/faults", {"rules": rules})["ids"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["rules"]

    def remove_fault(self, rule_id: int) -> bool:
        return bool(self._call("DELETE", f"/faults/{int(rule_id)}")["removed"])

    def clear_faults(self) -> int:
        return self._call("DELETE", "/faults")["removed"]

    # -- log, stats, files ----------------------------------------------------------------

    def log(self, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Request-log entries with seq > since, oldest first."""
        q = f"?since={int(since)}" + (f"&limit={int(limit)}" if limit else "")
        return self._call("GET", f"/log{q}")["entries"]

    def clear_log(self) -> int:
        """Drop log entries; returns the last sequence number (it keeps counting)."""
        return self._call("DELETE", "/log")["last_seq"]

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def clear_stats(self) -> dict[str, Any]:
        return self._call("DELETE", "/stats")

    def files(self) -> list[dict[str, Any]]:
        """Every stored file with owner project, size and sha256 (hex)."""
        return self._call("GET", "/files")["files"]

    def batches(self) -> list[dict[str, Any]]:
        """Every batch job: name, project, key label, model, state, request count, inline or file."""
        return self._call("GET", "/batches")["batches"]

    def reset(self, **config: Any) -> dict[str, Any]:
        """Back to start-up state (config, quota windows, files, faults, log), then apply `config`."""
        return self._call("POST", "/reset", config or None)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll /health until the emulator answers; raise TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if self._call("GET", "/health", timeout=1.0).get("ok"):
                    return
            except (OSError, EmulatorControlError, ValueError) as exc:
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"emulator at {self.base_url} not ready after {timeout}s: {last}")
