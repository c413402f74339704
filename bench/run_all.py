"""Run every benchmark in bench/ and collect what they print into one results file.

    python bench/run_all.py [--out bench/results/latest.md] [--only ingest vocab ...]

Each bench is a script of its own (run it directly for its options); this runner uses their
defaults, so a full run takes a while on a small machine (the ingest bench alone renders a
10-minute 720p video). The results file records the machine and the date.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("ingest", "asr", "vocab", "train", "query", "service")  # bench_<name>.py


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "latest.md")
    ap.add_argument("--only", nargs="+", choices=BENCHES, help="run only these")
    args = ap.parse_args()
    names = args.only or BENCHES
    lines = [f"# vbsearch benchmarks, {time.strftime('%Y-%m-%d %H:%M')}",
             f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}", ""]
    failed = 0
    for name in names:
        script = HERE / f"bench_{name}.py"
        print(f"==> {script.name}", flush=True)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        took = time.perf_counter() - t
        print(proc.stdout)
        lines += [f"## {script.name} ({took:.0f} s, exit {proc.returncode})", "", "```", proc.stdout.strip(), "```", ""]
        if proc.returncode != 0:
            failed += 1
            print(proc.stderr[-2000:], file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"results written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
