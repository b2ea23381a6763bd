"""Two checkouts of gemini-tasks measured side by side: each section run alternately from each tree, in one run.

The machine is shared and its load changes from minute to minute; measuring A, B, A, B... and comparing the
per-round ratios is what makes a before/after figure trustworthy. Each run is ``python -m bench.<section>``
with the tree as working directory and first on ``PYTHONPATH`` (so its workers import that tree's code too),
with this interpreter.

    python bench/ab.py --before /work/wt/capacity-base --after . --section overhead --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(tree: Path, section: str, quick: bool) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", f"bench.{section}", "--json", str(out)] + (["--quick"] if quick else [])
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=str(tree), env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: bench.{section} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    data = json.loads(out.read_text())
    out.unlink()
    data["wall_s"] = time.time() - t0
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, type=Path)
    ap.add_argument("--after", required=True, type=Path)
    ap.add_argument("--section", default="overhead")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, help="write every run's data here")
    args = ap.parse_args()
    runs: list[dict] = []
    for r in range(args.rounds):
        for label, tree in (("before", args.before), ("after", args.after)):
            print(f"round {r + 1}: {label} ({tree})", file=sys.stderr, flush=True)
            data = run(tree.resolve(), args.section, args.quick)
            runs.append({"round": r + 1, "label": label, "tree": str(tree), "data": data["data"]})
            print(data["markdown"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1, default=str))


if __name__ == "__main__":
    main()
