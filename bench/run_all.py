"""Run every benchmark section and write ``bench/RESULTS.md`` and ``bench/plots/*.png``.

    python bench/run_all.py            # the full run (~12 minutes on 2 cores): bench/RESULTS.md, bench/plots/
    python bench/run_all.py --quick    # a smoke run (~3 minutes): shorter runs, no real-minute quota comparison;
                                       # written to bench/quick/ (not committed), never over the full report
    python bench/run_all.py --only quota,overhead --out /tmp/RESULTS.md

Each section runs in its own Python process (``python -m bench.<section> --json ...``): a Celery app binds its
broker at first use, and each section starts its own private Redis, emulator and workers. Sections print their
progress; the runner collects their markdown and data, draws the plots and writes the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402

from bench.common import BENCH, ROOT, machine, machine_line  # noqa: E402

#: where quick (smoke) runs write: beside the full report, never over it (git-ignored)
QUICK_RESULTS = BENCH / "quick" / "RESULTS.md"
SECTIONS = ["quota", "overhead", "scale", "keys", "memory"]
TITLES = {
    "quota": "1. Quota utilization: gemini-tasks, plain Celery, LiteLLM Router and the physical limit",
    "overhead": "2. Overhead of the fleet",
    "scale": "3. Scale: throughput as worker slots grow",
    "keys": "4. Key manager throughput",
    "memory": "5. Memory",
}


def run_section(name: str, quick: bool) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    cmd = [sys.executable, "-m", f"bench.{name}", "--json", out] + (["--quick"] if quick else [])
    t0 = time.time()
    click.echo(f"== {name}")
    proc = subprocess.run(cmd, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("  "):
            click.echo(line)
    if proc.returncode != 0:
        click.echo(proc.stderr[-3000:], err=True)
        return {"name": name, "markdown": f"**This section failed** (exit {proc.returncode}):\n\n```\n"
                f"{proc.stderr[-1500:]}\n```", "data": {}, "seconds": time.time() - t0, "failed": True}
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    click.echo(f"   done in {time.time() - t0:.0f} s")
    return data


def render(sections: dict[str, dict], quick: bool, started: datetime, seconds: float, plots: Path) -> str:
    from bench import analysis, report

    m = machine()
    lines = [
        "# gemini-tasks benchmarks",
        "",
        f"Measured by `python bench/run_all.py{' --quick' if quick else ''}` on {started:%Y-%m-%d %H:%M} UTC, "
        f"in {seconds / 60:.1f} minutes, on **{machine_line(m)}**. Every process (client, Celery workers, Redis, "
        "the Gemini emulator, the peers) ran on this one machine; every figure below was measured in this run, "
        "beside what it is compared with.",
        "",
    ]
    summary = analysis.summary(sections)
    if summary:
        lines += ["## Summary", "", *summary, ""]
    for name in SECTIONS:
        sec = sections.get(name)
        if sec is None:
            continue
        lines += [f"## {TITLES[name]}", ""]
        intro = analysis.intro(name)
        if intro:
            lines += [intro, ""]
        lines += [sec["markdown"], ""]
        if name == "quota" and not sec.get("failed"):
            for part in sec["data"]["parts"]:
                png = plots / f"quota_{part['key']}.png"
                report.plot_quota(part, png)
                lines += [f"![{part['title']}](plots/{png.name})", ""]
        if name == "scale" and not sec.get("failed"):
            png = plots / "scale_throughput.png"
            report.plot_scale(sec["data"], png)
            lines += [f"![throughput vs slots](plots/{png.name})", ""]
        notes = analysis.notes(name, sec, sections)
        if notes:
            lines += [*notes, ""]
    lines += ["## Not measured here, and caveats", "", *analysis.caveats(sections, quick), ""]
    return "\n".join(lines)


@click.command()
@click.option("--quick", is_flag=True, help="Smoke run: shorter runs, no real-minute quota comparison.")
@click.option("--only", default="", help=f"Comma-separated sections ({', '.join(SECTIONS)}).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the report (plots go to plots/ beside it)  [default: bench/RESULTS.md, with "
                   "--quick bench/quick/RESULTS.md]")
@click.option("--render-only", is_flag=True,
              help="Do not measure: re-render the report and plots from results.json beside --out.")
def main(quick: bool, only: str, out: Path | None, render_only: bool) -> None:
    """Run the benchmarks and write RESULTS.md plus plots."""
    if out is None:
        out = QUICK_RESULTS if quick else BENCH / "RESULTS.md"
    if quick and out.resolve() == (BENCH / "RESULTS.md").resolve():
        raise click.BadParameter("a quick run must not overwrite the full report bench/RESULTS.md", param_hint="--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    plots = out.parent / "plots"
    if render_only:
        saved = json.loads((out.parent / "results.json").read_text())
        started = datetime.fromisoformat(saved["started"])
        plots.mkdir(parents=True, exist_ok=True)
        out.write_text(render(saved["sections"], saved["quick"], started, saved.get("seconds", 0.0), plots))
        click.echo(f"re-rendered {out}")
        return
    wanted = [s.strip() for s in only.split(",") if s.strip()] or SECTIONS
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        raise click.BadParameter(f"unknown section(s): {', '.join(sorted(unknown))}", param_hint="--only")
    started = datetime.now(timezone.utc)
    t0 = time.time()
    sections = {name: run_section(name, quick) for name in SECTIONS if name in wanted}
    plots.mkdir(parents=True, exist_ok=True)
    seconds = time.time() - t0
    (out.parent / "results.json").write_text(json.dumps(
        {"machine": machine(), "quick": quick, "started": started.isoformat(), "seconds": seconds,
         "sections": sections}, default=str))
    out.write_text(render(sections, quick, started, seconds, plots))
    click.echo(f"wrote {out} in {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
