"""Section 4: key manager throughput, by running ``bench/keys_throughput.py`` (owned by the key-manager work)
and turning its table into markdown. Admit+report pairs per second and Redis round trips per call, on a private
redis-server, with 1, 8 and 32 concurrent clients spread over processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import BENCH, ROOT, Section, md_table  # noqa: E402


def main(quick: bool = False) -> Section:
    t0 = time.time()
    cmd = [sys.executable, str(BENCH / "keys_throughput.py"), "--seconds", "2" if quick else "5"]
    r = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return Section("keys", f"`keys_throughput.py` failed:\n\n```\n{r.stderr[-2000:]}\n```", {}, time.time() - t0)
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    note = lines[0] if lines and lines[0].startswith("machine") else ""
    rows = [ln.split() for ln in lines if ln.split() and ln.split()[0].isdigit()]
    headers = ["clients", "pairs/s", "RTT/admit", "RTT/report", "redis µs/pair", "pair p50 ms", "pair p99 ms"]
    if rows and len(rows[0]) == len(headers) + 1:
        headers = ["candidate keys"] + headers
    intro = (f"`python bench/keys_throughput.py --seconds {cmd[-1]}` ({note.removeprefix('machine: ')}). A pair is "
             "one admission (one `EVALSHA`) and one report (one `EVALSHA`); RTT = Redis round trips counted on "
             "the client's connection; `redis µs/pair` is Redis's own CPU per pair.\n\n")
    if not rows or any(len(r) != len(headers) for r in rows):  # the script's format changed: show it as it is
        md = intro + "```\n" + r.stdout.strip() + "\n```"
    else:
        md = intro + md_table(headers, rows)
    return Section("keys", md, {"stdout": r.stdout, "rows": rows}, time.time() - t0)


if __name__ == "__main__":
    from bench.common import section_cli

    section_cli(main)
