"""What ``gemini-tasks submit`` costs the client: bytes it writes and CPU it spends, by batch size.

    python bench/cli_submit.py                       # 2,000 and 10,000 prompts, the current command
    python bench/cli_submit.py --cli path/to/cli.py  # the same with another version of the command (before/after)

A private redis-server, the emulator (its own process, no latency) and one threads worker (32 slots) answer
every prompt; the command runs in a wrapper process that reports, at its exit, the bytes it passed to
``write()`` (``wchar`` of ``/proc/self/io``: files and terminal, not sockets) and its user+system CPU. The
output file and the state file are the only files the command writes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402

from bench.common import fleet_env, fmt, key_secrets, md_table, stack, workers  # noqa: E402

WRAPPER = r"""
import atexit, json, os, resource, runpy, sys
def report():
    io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["GT_BENCH_REPORT"], "w") as fh:
        json.dump({"wchar": int(io["wchar"]), "cpu_s": ru.ru_utime + ru.ru_stime, "max_rss_kb": ru.ru_maxrss}, fh)
atexit.register(report)
cli = sys.argv.pop(1)
sys.argv[0] = cli
if cli.endswith(".py"):
    runpy.run_path(cli, run_name="__main__")
else:
    runpy.run_module(cli, run_name="__main__", alter_sys=True)
"""


def run_one(env: dict[str, str], cli: str, n: int, work: Path) -> dict:
    src, out = work / f"prompts-{n}.jsonl", work / f"results-{n}.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"bench prompt {i}", "metadata": {"i": i}}) + "\n"
                           for i in range(n)))
    report = work / f"report-{n}.json"
    cmd = [sys.executable, "-c", WRAPPER, cli, "submit", str(src), "-o", str(out), "--paid", "all",
           "--max-workers", "32", "--no-progress"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env={**env, "GT_BENCH_REPORT": str(report), "GEMINI_TASKS_POOL": f"b{n}"},
                          capture_output=True, text=True, timeout=1800, check=False)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    data = json.loads(report.read_text())
    rows = out.read_text().splitlines()
    assert len(rows) == n, (len(rows), n)
    return {"n": n, "wall_s": wall, "output_bytes": out.stat().st_size, **data}


def run_interrupted(env: dict[str, str], cli: str, n: int, after_s: float, work: Path, control: Any) -> dict:
    """SIGINT the command ``after_s`` seconds after the first call (while it is still enqueuing), re-run it, count
    the Gemini calls of both runs."""
    from bench.common import emulator_log

    src, out = work / f"int-prompts-{n}.jsonl", work / f"int-results-{n}.jsonl"
    tag = f"int{n}"
    src.write_text("".join(json.dumps(f"{tag} prompt {i}") + "\n" for i in range(n)))
    since = control.clear_log()
    cmd = [sys.executable, "-c", WRAPPER, cli, "submit", str(src), "-o", str(out), "--paid", "all",
           "--max-workers", "32", "--no-progress"]
    run_env = {**env, "GT_BENCH_REPORT": str(work / "int-report.json"), "GEMINI_TASKS_POOL": f"i{n}"}
    proc = subprocess.Popen(cmd, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not control.log(since=since, limit=1):
        time.sleep(0.05)  # the first call: the command is enqueuing now
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    _, first_err = proc.communicate(timeout=600)
    answered_first = len(out.read_text().splitlines()) if out.exists() else 0
    second = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=1800, check=False)
    if second.returncode != 0:
        raise RuntimeError(second.stderr[-3000:])
    calls = [e for e in emulator_log(control, since) if e.get("endpoint") == "generateContent"
             and any(tag in p.get("text", "") for p in e.get("parts", []) if p.get("kind") == "text")]
    texts = [p["text"] for e in calls for p in e["parts"] if p.get("kind") == "text"]
    return {"n": n, "after_s": after_s, "first_exit": proc.returncode, "answered_first": answered_first,
            "calls": len(texts), "distinct": len(set(texts)), "rows": len(out.read_text().splitlines()),
            "first_stderr_tail": first_err.strip().splitlines()[-1] if first_err.strip() else ""}


@click.command()
@click.option("--cli", default="gemini_tasks.ops.cli", show_default=True, help="module or .py file of the command")
@click.option("--sizes", default="2000,10000", show_default=True)
@click.option("--label", default="current")
@click.option("--interrupt-after", type=float, default=None,
              help="also: SIGINT a 2,000-prompt run this many seconds after its first call, re-run it, count the calls")
def main(cli: str, sizes: str, label: str, interrupt_after: float | None) -> None:
    secrets = key_secrets("cli", 4)
    results = []
    with stack({"latency_seconds": 0}) as (redis_server, emu):
        env = fleet_env(redis_server.url, emu.url, secrets)
        with workers(env, 1, 32, queues="batch"), tempfile.TemporaryDirectory(prefix="gt-cli-bench-") as tmp:
            if interrupt_after is not None:
                r = run_interrupted(env, cli, 2000, interrupt_after, Path(tmp), emu.control)
                click.echo(f"  {label}: 2,000 prompts, SIGINT {interrupt_after:g} s after the first call (exit {r['first_exit']}, "
                           f"{r['answered_first']} answered), re-run: {r['calls']} calls for {r['distinct']} "
                           f"distinct prompts, {r['rows']} rows; first run said: {r['first_stderr_tail']}")
            for n in (int(x) for x in sizes.split(",") if x):
                results.append(run_one(env, cli, n, Path(tmp)))
                r = results[-1]
                click.echo(f"  {label} n={n}: wrote {r['wchar'] / 1e6:.1f} MB, {r['cpu_s']:.1f} s CPU, "
                           f"{r['wall_s']:.1f} s wall")
    click.echo(md_table(["command", "prompts", "bytes written", "output file", "client CPU s", "wall s",
                         "client peak RSS MB"],
                        [[label, f"{r['n']:,}", f"{r['wchar'] / 1e6:.1f} MB", f"{r['output_bytes'] / 1e6:.2f} MB",
                          fmt(r["cpu_s"]), fmt(r["wall_s"]), fmt(r["max_rss_kb"] / 1024, 0)] for r in results]))


if __name__ == "__main__":
    main()
