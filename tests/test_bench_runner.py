"""bench/run_all.py: a quick run never overwrites the full report, leaves nothing in the temp dir, and its prose
cites only the run's own numbers."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_writes_beside_the_full_report_and_cleans_up(tmp_path):
    full = ROOT / "bench" / "RESULTS.md"
    before = hashlib.sha256(full.read_bytes()).hexdigest()
    quick = ROOT / "bench" / "quick" / "RESULTS.md"
    quick.unlink(missing_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp_path))  # every temp file of the run (worker logs, ...) lands here
    r = subprocess.run([sys.executable, "bench/run_all.py", "--quick", "--only", "overhead"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert hashlib.sha256(full.read_bytes()).hexdigest() == before, "a quick run overwrote bench/RESULTS.md"
    assert quick.exists() and "Quick mode" in quick.read_text()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not [name for name in left if name.startswith("gemini-tasks-worker-")], left
    bad = subprocess.run([sys.executable, "bench/run_all.py", "--quick", "--out", str(full)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0 and "must not overwrite" in bad.stderr


def test_quota_prose_cites_only_the_runs_numbers():
    sys.path.insert(0, str(ROOT))
    from bench import analysis

    row = {"system": "gemini-tasks", "util_pct": 91.3, "wall_util_pct": 88.7, "r429": 0}
    celery = {"system": "plain Celery", "util_pct": 47.1, "wall_util_pct": 40.2, "r429": 3, "steady_rps": 4.0}
    part = {"key": "scaled", "title": "quick", "rows": [row, celery],
            "spec": {"window": 3.0, "rounds": 4, "quota": 30, "projects": 4, "procs": 2, "latency": 0.1}}
    text = "\n".join(analysis.notes("quota", {"data": {"parts": [part]}}, {}))
    cited = set(re.findall(r"(\d+(?:\.\d+)?)%", text))
    ceiling = f"{100 * 3.0 / 3.1:.1f}"
    allowed = {"91.3", "88.7", "47.1", "40.2", ceiling, f"{100 / 1.02:.1f}", "2", "5"}
    assert cited <= allowed, f"figures not from this run: {sorted(cited - allowed)}"
    assert ceiling in text and "95.2" not in text and "1.97" not in text
