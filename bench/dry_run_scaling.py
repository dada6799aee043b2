"""Time a dry run (snakemake -n) of the workflow at 10, 100, 1,000 and 10,000 labels.

    python bench/dry_run_scaling.py [--labels 10 100 1000 10000] [--repeats 2]

Each size gets a working folder whose config lists synthetic labels of a class-per-folder data
set that is not there (as on a login node without data) at a fixed resolution, and times
``snakemake -n --quiet rules`` end to end (Python start-up included), best of the repeats.
Prints seconds, jobs in the DAG, and milliseconds per label, side by side.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--labels", type=int, nargs="+", default=[10, 100, 1000, 10000])
parser.add_argument("--repeats", type=int, default=2)
args = parser.parse_args()

default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
rows = []
for n in args.labels:
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        config = dict(default, run=f"synthetic{n}")
        config["data"] = dict(
            default["data"],
            source="imagefolder",
            root="/data/not-here",
            resolution=32,
            labels=[f"class{i:05d}" for i in range(n)],
        )
        (workdir / "config").mkdir()
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        command = [
            str(BIN / "snakemake"),
            "--snakefile",
            str(REPO / "workflow" / "Snakefile"),
            "-n",
            "--quiet",
            "rules",
        ]
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
            best = min(best, time.perf_counter() - start)
            if result.returncode != 0:
                sys.exit(result.stderr[-2000:])
        jobs = int(re.search(r"^total\s+(\d+)$", result.stdout + result.stderr, re.MULTILINE).group(1))
        rows.append((n, best, jobs))

print(f"{'labels':>8} {'jobs':>7} {'dry run s':>10} {'ms/label':>9}")
for n, seconds, jobs in rows:
    print(f"{n:>8} {jobs:>7} {seconds:>10.2f} {1000 * seconds / n:>9.2f}")
if len(rows) > 1:
    (n0, s0, _), (n1, s1, _) = rows[-2], rows[-1]
    print(f"growth from {n0} to {n1} labels: x{s1 / s0:.1f} time for x{n1 / n0:.0f} labels")
