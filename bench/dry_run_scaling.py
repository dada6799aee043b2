"""Time a dry run (snakemake -n) of the workflow at many labels and labels_per_job (K).

    python bench/dry_run_scaling.py [--cases 10000:10 100000:100 10000:1 ...] [--repeats 2]

Each case is LABELS:K. The default cases are the goals (10,000 labels at K = 10 in at most 5 s,
100,000 at K = 100 in at most 15 s) with K = 1 beside them.
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
parser.add_argument(
    "--cases", nargs="+", default=["1000:1", "1000:10", "10000:1", "10000:10", "100000:100"], help="LABELS:K"
)
parser.add_argument("--repeats", type=int, default=2)
args = parser.parse_args()

default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
rows = []
for case in args.cases:
    n, per_job = (int(part) for part in case.split(":"))
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        config = dict(default, run=f"synthetic{n}", labels_per_job=per_job)
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
        rows.append((n, per_job, best, jobs))

print(f"{'labels':>8} {'K':>5} {'jobs':>7} {'dry run s':>10} {'ms/label':>9}")
for n, per_job, seconds, jobs in rows:
    print(f"{n:>8} {per_job:>5} {jobs:>7} {seconds:>10.2f} {1000 * seconds / n:>9.3f}")
