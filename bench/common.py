"""Shared pieces of the benchmark sections: the machine, /proc readings, the local stack, and tables.

Every section runs against real processes on this machine: a private ``redis-server``, the Gemini emulator in
its own process (``EmulatorProcess``), and real Celery worker processes (``WorkerProcess``). Nothing here is
clever; it exists so that each section measures the same way (CPU and memory from ``/proc``, percentiles with
one definition, tables in one format).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# the stack's environment is the test suite's (gemini_tasks/testing); clean_env stays importable from here
from gemini_tasks.testing.environment import clean_environ as clean_env  # noqa: E402, F401
from gemini_tasks.testing.environment import stack_environ  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
MODEL = "gemini-2.5-flash"
#: warm-up calls use another model: quota windows are per (project, model), so warming never spends the quota
WARM_MODEL = "gemini-2.0-flash"
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network: LiteLLM must not fetch its price map


# ----------------------------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    versions = {}
    for dist in ("celery", "redis", "google-genai", "litellm", "kombu", "aiohttp"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001 - a missing optional package is reported as such
            versions[dist] = "not installed"
    try:
        redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    except (OSError, IndexError):
        redis_v = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gb": round(mem_gb, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": redis_v.replace("v=", ""),
        "versions": versions,
    }


def machine_line(m: dict[str, Any]) -> str:
    v = m["versions"]
    return (f"{m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB RAM, Linux {m['kernel']}, Python {m['python']}, "
            f"redis-server {m['redis_server']}, celery {v['celery']}, google-genai {v['google-genai']}, "
            f"litellm {v['litellm']}")


# ----------------------------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its threads included), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    """Direct children of a process (all of its threads' children)."""
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """A process and all of its descendants."""
    seen = [pid]
    i = 0
    while i < len(seen):
        seen += [c for c in children(seen[i]) if c not in seen]
        i += 1
    return seen


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid))


def status_kb(pid: int, field_name: str) -> int:
    """A ``VmRSS``/``VmHWM`` style field of /proc/<pid>/status in KiB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(pid: int) -> float:
    return sum(status_kb(p, "VmRSS") for p in tree(pid)) / 1024


def pss_kb(pid: int) -> int:
    """Proportional set size: pages shared between processes (a prefork parent and its children) are split
    between them, so a tree's sum is what the tree really costs."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_mb(pid: int) -> float:
    return sum(pss_kb(p) for p in tree(pid)) / 1024


# ----------------------------------------------------------------------------------------------- numbers


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` is one character per column, ``l`` or ``r`` (default: l then r)."""
    rows = [[str(c) for c in r] for r in rows]
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- the stack


def key_secrets(tag: str, n: int, start: int = 1) -> dict[str, str]:
    """``GEMINI_API_KEY_i`` -> a fake secret the emulator will map to a project (never a real key)."""
    return {f"GEMINI_API_KEY_{i}": f"bench-{tag}-{i:03d}-abcdefghijklmnop" for i in range(start, start + n)}


def fleet_env(redis_url: str, emulator_url: str, secrets: dict[str, str], **extra: str) -> dict[str, str]:
    """The whole environment of a benchmark's worker and caller processes (the test stack's: calls of at most
    30 s, a 600 s visibility timeout)."""
    return stack_environ(redis_url, emulator_url, secrets, request_timeout=30, visibility_timeout=600, **extra)


def use_env(env: dict[str, str]) -> None:
    """Make this process a gemini-tasks client of ``env``'s stack (before gemini_tasks.celery_app is imported)."""
    for k in list(os.environ):
        if k not in env:
            del os.environ[k]
    os.environ.update(env)
    from gemini_tasks.settings import get_settings

    get_settings.cache_clear()
    if "gemini_tasks.celery_app" in sys.modules:
        from gemini_tasks.celery_app import app

        app.conf.update(broker_url=env["REDIS_URL"], result_backend=env["REDIS_URL"])


@contextmanager
def stack(emulator_config: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """A private redis-server and the emulator (its own process); both stopped by PID on exit."""
    from gemini_tasks.emulator.runner import EmulatorProcess
    from gemini_tasks.testing.local_redis import RedisServer

    cfg = {"log_max": 200000, **emulator_config}
    with RedisServer() as redis_server, EmulatorProcess(config=cfg) as emu:
        yield redis_server, emu


@contextmanager
def workers(env: dict[str, str], n: int, concurrency: int, *, pool: str = "threads", queues: str = "batch",
            app: str | None = None) -> Iterator[list[Any]]:
    """``n`` real Celery worker processes; ``app`` names another Celery app than gemini_tasks."""
    from gemini_tasks.testing.local_fleet import WorkerProcess

    started: list[Any] = []
    try:
        for _ in range(n):
            w = _OtherAppWorker(env, app, queues=queues, pool=pool, concurrency=concurrency) if app else \
                WorkerProcess(env, queues=queues, pool=pool, concurrency=concurrency)
            started.append(w.start(timeout=60))
        yield started
    finally:
        for w in started:
            w.stop(timeout=10)


def _other_app_worker_cls():
    from gemini_tasks.testing.local_fleet import WorkerProcess

    class OtherAppWorker(WorkerProcess):
        """A WorkerProcess for a Celery app other than gemini_tasks (the plain-Celery peer)."""

        def __init__(self, env: dict[str, str], app: str, **kw: Any) -> None:
            super().__init__(env, **kw)
            self.app_name = app

        def args(self) -> list[str]:
            a = super().args()
            a[a.index("gemini_tasks")] = self.app_name
            return a

        def wait_ready(self, timeout: float = 30.0) -> None:
            import importlib

            self.await_ping(importlib.import_module(self.app_name).app, timeout)

    return OtherAppWorker


def _OtherAppWorker(env: dict[str, str], app: str, **kw: Any) -> Any:  # noqa: N802 - a factory, named like the class
    return _other_app_worker_cls()(env, app, **kw)


# ----------------------------------------------------------------------------------------------- emulator log


def emulator_log(control: Any, since: int = 0) -> list[dict[str, Any]]:
    """Every request-log entry after ``since`` (paged)."""
    out: list[dict[str, Any]] = []
    while True:
        page = control.log(since=since, limit=20000)
        if not page:
            return out
        out += page
        since = page[-1]["seq"]
        if len(page) < 20000:
            return out


@dataclass
class Section:
    """What a section hands back to the runner: markdown for RESULTS.md and raw data for plots."""

    name: str
    markdown: str
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "markdown": self.markdown, "data": self.data,
                           "seconds": self.seconds}, default=str)


@dataclass
class Fleet:
    """A running gemini-tasks stack: Redis, emulator, worker processes, and a key manager in this process."""

    redis: Any
    emulator: Any
    env: dict[str, str]
    secrets: dict[str, str]
    workers: list[Any] = field(default_factory=list)
    manager: Any = None

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid]

    @contextmanager
    def fleet(self, *, procs: int = 2, concurrency: int = 8, queues: str = "batch", pool: str = "threads",
              max_leases: int = 256) -> Iterator["Fleet"]:
        """``procs`` gemini-tasks worker processes on this stack, and a fresh key pool of paid keys that allow
        ``max_leases`` calls each (no project limits)."""
        import uuid

        with workers(self.env, procs, concurrency, queues=queues, pool=pool) as ws:
            from gemini_tasks import AdvancedApiKeyManager

            mgr = AdvancedApiKeyManager(list(self.secrets), paid_keys="all", pool=f"bench-{uuid.uuid4().hex[:6]}",
                                        key_settings={"paid": {"max_concurrent_leases": max_leases}})
            yield Fleet(self.redis, self.emulator, self.env, self.secrets, ws, mgr)


@contextmanager
def gt_stack(emulator_config: dict[str, Any], *, n_keys: int = 4) -> Iterator[Fleet]:
    """A private Redis + emulator, with this process made a gemini-tasks client of them.

    One per process: Celery's app binds its broker and result backend at first use, so a section that needs
    several set-ups reconfigures the emulator (``control.reset(...)``) and starts new workers instead.
    """
    with stack(emulator_config) as (rs, emu):
        secrets = key_secrets("gt", n_keys)
        env = fleet_env(rs.url, emu.url, secrets)
        use_env(env)
        yield Fleet(rs, emu, env, secrets)


class CpuMeter:
    """CPU seconds used between ``start()`` and ``stop()`` by process trees (``trees``) and single processes.

    This process is the parent of every worker, Redis and the emulator, so it must be measured alone
    (``singles``), never as a tree.
    """

    def __init__(self, trees: dict[str, int], singles: dict[str, int] | None = None) -> None:
        self.trees = trees
        self.singles = singles or {}
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        out = {name: tree_cpu(pid) for name, pid in self.trees.items()}
        out.update({name: cpu_seconds(pid) for name, pid in self.singles.items()})
        return out

    def start(self) -> "CpuMeter":
        self.before = self._read()
        return self

    def stop(self) -> dict[str, float]:
        after = self._read()
        self.used = {k: after[k] - self.before.get(k, 0.0) for k in after}
        return self.used


def section_cli(main: Any) -> None:
    """``python -m bench.<section> [--quick] [--json PATH]``: run one section, print its markdown."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write the section (markdown + data) here")
    args = ap.parse_args()
    sec = main(quick=args.quick)
    print(sec.markdown)
    if args.json:
        Path(args.json).write_text(sec.to_json())
