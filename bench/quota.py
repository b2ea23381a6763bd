"""Section 1: quota utilization against the physical limit and against what users would pick instead.

The emulator enforces a per-project quota (``quotas: {"*": {"*": {"rpm": q}}}``: every project gets q requests
per ``minute_seconds``, an exact sliding window of accepted requests). K projects with ``keys_per_project`` keys
each, W worker slots, N prompts, a fixed per-request latency. The physical limit is K*q requests per window.

Systems, each with its own keys and projects on the same emulator:

* ``gemini-tasks``: configured as its README tells a user for a known quota (``projects=``, ``project_limits=``,
  ``rate_window_seconds=``, paid keys with enough leases; ``GeminiParallelProcessor(worker_cooldown_seconds=0,
  api_call_interval=0, max_workers=W)``), real worker processes (``WorkerProcess``).
* ``plain Celery``: :mod:`bench.peers.plain_celery` (round-robin keys, ``rate_limit`` = quota / workers,
  ``autoretry_for`` 429 with ``retry_backoff``), real worker processes.
* ``LiteLLM Router``: :mod:`bench.peers.litellm_router` (one deployment per key with its rpm,
  usage-based-routing-v2, counters in Redis), W callers spread over the same number of processes.

Utilization is measured from the emulator's own log: the rate of accepted requests from the first answer to the
first answer of the last window's worth (index N - K*q), divided by the limit. A system that sends a window's
worth at once and then a window's worth every window scores exactly 100%, and so does one that sends evenly at
exactly the limit: the measure neither rewards the cold start (a sliding-window quota lets the first window's
worth through at once, so N / wall time would read above 100%) nor penalises a system that does not burst. Wall
time against the ideal wall time, 429s and the time-to-result percentiles (every prompt is submitted at t0) are
reported beside it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (  # noqa: E402
    MODEL, ROOT, WARM_MODEL, Section, emulator_log, fleet_env, fmt, key_secrets, md_table, pct, stack, use_env, workers,
)


@dataclass
class QuotaSpec:
    """One quota scenario; every system runs the same one."""

    window: float = 2.0          # the emulator's "minute"
    projects: int = 4            # K
    keys_per_project: int = 2
    quota: int = 20              # requests per project per window
    latency: float = 0.1         # seconds added to every request by the emulator
    slots: int = 16              # W worker slots (callers) per system
    procs: int = 2               # worker / caller processes per system
    rounds: int = 15             # N = rounds * K * q

    @property
    def limit_per_window(self) -> int:
        return self.projects * self.quota

    @property
    def n(self) -> int:
        return self.rounds * self.limit_per_window

    @property
    def limit_rps(self) -> float:
        return self.limit_per_window / self.window

    @property
    def ideal_wall(self) -> float:
        """The fastest the quota allows W slots to answer N from a cold start: a window's worth at once, then one
        every window; the last window's worth takes ceil(K*q / W) calls of ``latency`` per slot."""
        return (self.rounds - 1) * self.window + math.ceil(self.limit_per_window / self.slots) * self.latency

    @property
    def has_steady_rate(self) -> bool:
        """With few windows a steady rate depends on where a peer's stalls fall; only then is it reported."""
        return self.rounds >= 5

    @property
    def timeout(self) -> float:
        return 2 * self.ideal_wall + 30


@dataclass
class RunResult:
    system: str
    t0: float
    done_times: list[float] = field(default_factory=list)   # client-side, seconds after t0
    finished: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- systems


class System:
    """A system under test: ``prepare`` starts its processes, ``run`` submits N prompts at t0 and waits."""

    name = "?"
    tag = "?"

    def __init__(self, spec: QuotaSpec, redis_url: str = "", emu_url: str = "") -> None:
        self.spec = spec
        self.redis_url = redis_url
        self.emu_url = emu_url
        self.secrets = key_secrets(self.tag, spec.projects * spec.keys_per_project, start=1)
        self.key_project = {kid: f"{self.tag}-p{(i // spec.keys_per_project) + 1}"
                            for i, kid in enumerate(self.secrets)}
        self.prompts = [f"{self.tag} prompt {i}: write one line" for i in range(spec.n)]
        self._stack: list[Any] = []

    def emulator_keys(self) -> dict[str, dict[str, str]]:
        return {secret: {"label": f"{self.tag}:{kid}", "project": self.key_project[kid]}
                for kid, secret in self.secrets.items()}

    def prepare(self) -> None: ...

    def run(self, t0: float) -> RunResult: ...

    def close(self) -> None:
        while self._stack:
            cm = self._stack.pop()
            try:
                cm.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - shutting down must go on
                pass


class GeminiTasks(System):
    name = "gemini-tasks"
    tag = "gt"

    def prepare(self) -> None:
        s = self.spec
        self.env = fleet_env(self.redis_url, self.emu_url, self.secrets)
        use_env(self.env)
        cm = workers(self.env, s.procs, s.slots // s.procs, queues="batch")
        cm.__enter__()
        self._stack.append(cm)
        from gemini_tasks import AdvancedApiKeyManager, GeminiParallelProcessor

        projects = sorted(set(self.key_project.values()))
        self.manager = AdvancedApiKeyManager(
            list(self.secrets), paid_keys="all", projects=self.key_project,
            project_limits={p: {"rpm": s.quota} for p in projects}, rate_window_seconds=s.window,
            key_settings={"paid": {"max_concurrent_leases": s.slots}}, pool=f"bench-{uuid.uuid4().hex[:6]}")
        self.processor = GeminiParallelProcessor(self.manager, MODEL, worker_cooldown_seconds=0,
                                                 api_call_interval=0, max_workers=s.slots)
        warm = GeminiParallelProcessor(self.manager, WARM_MODEL, worker_cooldown_seconds=0, api_call_interval=0,
                                       max_workers=s.slots)
        warm.process_prompts([{"prompt": f"warm {i}"} for i in range(2 * s.slots)], progress=False)

    def run(self, t0: float) -> RunResult:
        res = RunResult(self.name, t0)
        times = res.done_times

        def progress(done: int, total: int) -> None:
            times.append(time.time() - t0)

        try:
            out = self.processor.process_prompts([{"prompt": p} for p in self.prompts], progress=progress,
                                                 timeout=self.spec.timeout)
            errors = [e for _, _, e in out if e]
            res.extra["errors"] = len(errors)
            if errors:
                res.note = f"{len(errors)} error(s), first: {errors[0][:120]}"
        except TimeoutError as exc:
            res.finished = False
            res.note = str(exc)[:160]
        res.extra["pool_stats"] = self.manager.pool.status().stats
        return res


class PlainCelery(System):
    name = "plain Celery"
    tag = "cel"

    def prepare(self) -> None:
        s = self.spec
        broker = self.redis_url.rsplit("/", 1)[0] + "/1"
        per_worker = s.limit_rps / s.procs * getattr(self, "factor", 1.0)
        self.rate_limit = f"{per_worker:g}/s" if s.window < 60 else f"{per_worker * 60:g}/m"
        self.env = fleet_env(self.redis_url, self.emu_url, self.secrets, PLAIN_CELERY_BROKER=broker,
                             PLAIN_CELERY_RATE_LIMIT=self.rate_limit, PLAIN_CELERY_MODEL=MODEL)
        os.environ["PLAIN_CELERY_BROKER"] = broker
        cm = workers(self.env, s.procs, s.slots // s.procs, queues="plain", app="bench.peers.plain_celery")
        cm.__enter__()
        self._stack.append(cm)
        from celery import group

        from bench.peers import plain_celery

        group(plain_celery.generate.s(f"warm {i}", WARM_MODEL) for i in range(2 * s.slots)).apply_async(
            queue="plain").join_native(timeout=120, propagate=False)

    def run(self, t0: float) -> RunResult:
        from celery import group

        from bench.peers import plain_celery

        res = RunResult(self.name, t0, note=f"rate_limit={self.rate_limit} per worker")
        times = res.done_times
        g = group(plain_celery.generate.s(p) for p in self.prompts).apply_async(queue="plain")
        try:
            g.join_native(timeout=self.spec.timeout, propagate=False, interval=0.2,
                          callback=lambda tid, value: times.append(time.time() - t0))
        except Exception as exc:  # noqa: BLE001 - celery's TimeoutError
            res.finished = False
            res.note += "; stopped waiting"
            g.revoke()
            plain_celery.app.control.purge()  # nothing of this run may reach the next system's workers
        return res


class PlainCeleryTuned(PlainCelery):
    """The same plain Celery, with ``rate_limit`` doubled by hand: what a user might try after seeing Celery
    deliver about half of its configured rate."""

    name = "plain Celery, rate_limit x2"
    tag = "cel2"
    factor = 2.0


class LiteLLMRouter(System):
    name = "LiteLLM Router"
    tag = "ll"

    def prepare(self) -> None:
        import redis

        s = self.spec
        host, port = self.redis_url.split("//", 1)[1].split("/", 1)[0].split(":")
        run_id = uuid.uuid4().hex[:6]
        self.keys = {k: f"bench:ll:{run_id}:{k}" for k in ("prompts", "done", "go", "ready", "stats")}
        self.r = redis.Redis(host=host, port=int(port), db=2)
        self.r.rpush(self.keys["prompts"], *[json.dumps([i, p]) for i, p in enumerate(self.prompts)])
        spec = {
            "model": MODEL, "warm_model": WARM_MODEL, "api_base": self.emu_url + "/v1beta", "secrets": list(self.secrets.values()),
            "rpm_per_key": max(1, s.quota // s.keys_per_project) if s.window >= 60 else None,
            "redis_host": host, "redis_port": int(port), "db": 2, "threads": s.slots // s.procs,
            "prompts_key": self.keys["prompts"], "done_key": self.keys["done"], "go_key": self.keys["go"],
            "ready_key": self.keys["ready"], "stats_key": self.keys["stats"],
        }
        env = fleet_env(self.redis_url, self.emu_url, {}, LITELLM_LOCAL_MODEL_COST_MAP="True")
        self.procs = [subprocess.Popen([sys.executable, "-m", "bench.peers.litellm_router", json.dumps(spec)],
                                       cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       start_new_session=True)
                      for _ in range(s.procs)]
        deadline = time.time() + 120
        while int(self.r.get(self.keys["ready"]) or 0) < s.procs:
            if any(p.poll() is not None for p in self.procs) or time.time() > deadline:
                err = b"".join(p.stderr.read() for p in self.procs if p.poll() is not None)[-2000:]
                raise RuntimeError(f"LiteLLM callers did not start: {err.decode(errors='replace')}")
            time.sleep(0.1)

    def run(self, t0: float) -> RunResult:
        res = RunResult(self.name, t0)
        self.r.set(self.keys["go"], 1)
        deadline = t0 + self.spec.timeout
        n = self.spec.n
        while self.r.llen(self.keys["done"]) < n and time.time() < deadline:
            if all(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.2)
        if self.r.llen(self.keys["done"]) < n:
            res.finished = False
            res.note = "did not finish"
            self.r.delete(self.keys["prompts"])
        for p in self.procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
        done = [json.loads(x) for x in self.r.lrange(self.keys["done"], 0, -1)]
        res.done_times = sorted(d["t"] - t0 for d in done)
        caller_errors: dict[str, int] = {}
        samples: dict[str, str] = {}
        for x in self.r.lrange(self.keys["stats"], 0, -1):
            got = json.loads(x)
            for name, count in got["errors"].items():
                caller_errors[name] = caller_errors.get(name, 0) + count
            for name, text in got["samples"].items():
                samples.setdefault(name, text)
        res.extra["caller_errors"] = caller_errors
        res.extra["caller_error_samples"] = samples
        return res

    def close(self) -> None:
        for p in getattr(self, "procs", []):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 9)
                except ProcessLookupError:
                    pass
                p.wait(5)
        super().close()


SYSTEMS: dict[str, type[System]] = {"gemini-tasks": GeminiTasks, "plain-celery": PlainCelery,
                                    "plain-celery-x2": PlainCeleryTuned, "litellm": LiteLLMRouter}


# ----------------------------------------------------------------------------------------------- metrics


def metrics(spec: QuotaSpec, system: System, res: RunResult, log: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the tables need, from the emulator's log of this system's projects."""
    mine = [e for e in log if e.get("endpoint") == "generateContent" and e.get("model") == MODEL
            and str(e.get("project") or "").startswith(system.tag + "-")]
    ok = sorted(e["t"] - res.t0 for e in mine if e["status"] == 200)
    r429 = sum(1 for e in mine if e["status"] == 429)
    other = sum(1 for e in mine if e["status"] not in (200, 429))
    b = spec.n - spec.limit_per_window  # the first answer of the last window's worth
    steady = float("nan")
    partial = False
    if len(ok) > b > 0 and ok[b] > ok[0]:
        steady = b / (ok[b] - ok[0])
    elif len(ok) > 1 and ok[-1] > ok[0]:  # stopped before it got there: the rate over what it answered
        steady, partial = (len(ok) - 1) / (ok[-1] - ok[0]), True
    times = sorted(res.done_times)
    wall = times[-1] if times else float("nan")
    return {
        "system": system.name, "finished": res.finished and len(ok) >= spec.n,
        "ok": len(ok), "r429": r429, "other": other, "calls": len(mine),
        "r429_pct": 100.0 * r429 / max(1, len(mine)),
        "steady_rps": steady, "util_pct": 100.0 * steady / spec.limit_rps, "partial": partial,
        "wall": wall, "ideal_wall": spec.ideal_wall, "wall_util_pct": 100.0 * spec.ideal_wall / wall if times else 0,
        "raw_rps": len(ok) / wall if times else float("nan"),
        "p50": pct(times, 50), "p99": pct(times, 99),
        "note": res.note, "extra": res.extra, "ok_times": ok,
    }


# ----------------------------------------------------------------------------------------------- runner


def emulator_config(spec: QuotaSpec, systems: list[str]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for name in systems:  # every system's keys, each mapped to its own projects
        keys.update(SYSTEMS[name](spec).emulator_keys())
    return {"keys": keys, "quotas": {"*": {"*": {"rpm": spec.quota}}}, "minute_seconds": spec.window,
            "latency_seconds": spec.latency, "log_max": 200000}


def run_scenario(spec: QuotaSpec, systems: list[str], *, concurrent: bool, redis_server: Any, emu: Any,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``systems`` with ``spec`` on this stack (the emulator is reset to the spec's quota first);
    concurrently (same t0) or one after another.

    One stack per process: this process is a Celery client, and Celery binds its broker at first use.
    """
    emu.control.reset(**emulator_config(spec, systems))
    rows: list[dict[str, Any]] = []
    objs = [SYSTEMS[name](spec, redis_server.url, emu.url) for name in systems]
    try:
        if concurrent:
            for o in objs:
                log(f"  preparing {o.name}")
                o.prepare()
            results: dict[str, RunResult] = {}
            t0 = time.time() + 0.5
            threads = [threading.Thread(target=lambda o=o: results.__setitem__(o.name, _run_at(o, t0)))
                       for o in objs]
            log(f"  running {', '.join(o.name for o in objs)} together (N={spec.n} each)")
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            entries = emulator_log(emu.control)
            rows = [metrics(spec, o, results[o.name], entries) for o in objs]
        else:
            for o in objs:
                log(f"  {o.name}: preparing")
                o.prepare()
                seq = emu.control.stats()["last_seq"]
                t0 = time.time() + 0.2
                log(f"  {o.name}: running N={spec.n}")
                res = _run_at(o, t0)
                o.close()
                rows.append(metrics(spec, o, res, emulator_log(emu.control, since=seq)))
    finally:
        for o in objs:
            o.close()
    return {"spec": asdict(spec), "limit_rps": spec.limit_rps, "n": spec.n, "rows": rows,
            "concurrent": concurrent}


def _run_at(system: System, t0: float) -> RunResult:
    delay = t0 - time.time()
    if delay > 0:
        time.sleep(delay)
    return system.run(t0)


def table(result: dict[str, Any]) -> str:
    spec = QuotaSpec(**result["spec"])
    steady = spec.has_steady_rate
    rows = [["physical limit", fmt(spec.limit_rps, 2), "100.0", fmt(spec.ideal_wall), "100.0", "0", "0.00",
             "–", "–", f"{spec.projects} projects x {spec.quota} per {spec.window:g} s"]]
    for r in result["rows"]:
        rows.append([
            r["system"],
            (fmt(r["steady_rps"], 2) + (" (partial)" if r.get("partial") else "")) if steady else "–",
            fmt(r["util_pct"]) if steady else "–",
            fmt(r["wall"]) if r["finished"] else f"> {fmt(spec.timeout, 0)} ({r['ok']:,} of {spec.n:,} answered)",
            fmt(r["wall_util_pct"]) if r["finished"] else f"< {fmt(100 * spec.ideal_wall / spec.timeout)}",
            fmt(r["r429"]), fmt(r["r429_pct"], 2), fmt(r["p50"]), fmt(r["p99"]), r["note"] or "",
        ])
    return md_table(["system", "answered/s, steady", "% of limit, steady", "time for N s",
                     "% of limit, whole run (ideal time / time)", "429s", "% of calls 429", "p50 s", "p99 s",
                     "notes"], rows, align="lrrrrrrrrl")


SCALED_MINUTE = dict(window=5.0, projects=4, keys_per_project=2, quota=50, latency=0.1, slots=16, procs=2)
SHORT_WINDOW = dict(window=2.0, projects=4, keys_per_project=2, quota=20, latency=0.1, slots=16, procs=2, rounds=12)
REAL_MINUTE = dict(window=60.0, projects=4, keys_per_project=2, quota=60, latency=0.2, slots=16, procs=2, rounds=3)


def describe(spec: QuotaSpec, concurrent: bool) -> str:
    how = "all together on the same emulator, from the same t0" if concurrent else "one after another"
    return (f"{spec.projects} projects x {spec.keys_per_project} keys, quota {spec.quota} requests per project per "
            f"{spec.window:g} s window (limit {spec.limit_per_window} per window = {spec.limit_rps:.2f} req/s), "
            f"emulator latency {spec.latency * 1000:.0f} ms, W = {spec.slots} slots per system "
            f"({spec.procs} processes x {spec.slots // spec.procs}), N = {spec.n:,} prompts per system "
            f"({spec.rounds} windows' worth), run {how}.")


def main(quick: bool = False) -> Section:
    t_start = time.time()
    scaled = dict(SCALED_MINUTE, window=3.0, quota=30, rounds=4) if quick else dict(SCALED_MINUTE, rounds=7)
    plan = [("scaled", f"Scaled minute ({scaled['window']:g} s window)", QuotaSpec(**scaled),
             ["gemini-tasks", "plain-celery"] + ([] if quick else ["plain-celery-x2"]), False)]
    if not quick:
        plan += [
            ("short", f"A shorter window ({SHORT_WINDOW['window']:g} s), gemini-tasks alone",
             QuotaSpec(**SHORT_WINDOW), ["gemini-tasks"], False),
            ("real", "Real minute (60 s window), all three systems side by side",
             QuotaSpec(**REAL_MINUTE), ["gemini-tasks", "plain-celery", "litellm"], True),
        ]
    parts: list[dict[str, Any]] = []
    with stack(emulator_config(plan[0][2], ["gemini-tasks"])) as (redis_server, emu):
        for key, title, spec, systems, concurrent in plan:
            print(f"  {title}: {describe(spec, concurrent)}", flush=True)
            parts.append({"title": title, "key": key, "desc": describe(spec, concurrent),
                          **run_scenario(spec, systems, concurrent=concurrent, redis_server=redis_server,
                                         emu=emu)})
    md = []
    for part in parts:
        md += [f"#### {part['title']}", "", part["desc"], "", table(part), ""]
    return Section("quota", "\n".join(md).strip(), {"parts": parts}, time.time() - t_start)


if __name__ == "__main__":
    from bench.common import section_cli

    section_cli(main)
