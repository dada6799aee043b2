"""Time a dry run (snakemake -n) of the workflow at many labels and labels_per_job (K).

    python bench/dry_run_scaling.py [--cases 10000:10 100000:100 10000:1 ...] [--repeats 3]
    python bench/dry_run_scaling.py --cases 10000:10 --vs eb32881   # this tree beside a commit
    python bench/dry_run_scaling.py --train '{"generator": "conditional", "snapshots": 3}'

Each case is LABELS:K. The default cases are the goals (10,000 labels at K = 10 in at most 5 s,
100,000 at K = 100 in at most 15 s) with K = 1 beside them.
Each size gets a working folder whose config lists synthetic labels of a class-per-folder data
set that is not there (as on a login node without data) at a fixed resolution, and times
``snakemake -n --quiet rules`` end to end (Python start-up included), the median of the repeats.
With ``--vs REF`` the same dry runs of the commit REF (checked out in a temporary git worktree,
its own package on PYTHONPATH) alternate with this tree's, so that a machine whose speed drifts
slows both alike; the ratio REF / this tree is the median of the pairs' ratios.
With ``--floor`` a workflow of the same chunks that does nothing (a split, a training and a
feature rule per chunk, each with a log and a benchmark, and one rule reading every chunk; no
config, params or resources) alternates with them too: Snakemake's own cost for that many jobs,
which no change to this workflow's code can go below.
Prints seconds, jobs in the DAG, and milliseconds per job, side by side.
"""

import argparse
import json
import os
import re
import statistics
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
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--vs", metavar="REF", help="also time the commit REF, alternating with this tree")
parser.add_argument("--floor", action="store_true", help="also time a do-nothing workflow of the same chunks")
parser.add_argument(
    "--train", type=json.loads, default={}, help="train settings as JSON, e.g. '{\"snapshots\": 3}'"
)
args = parser.parse_args()


def write_config(repo: Path, workdir: Path, n: int, per_job: int) -> None:
    """``repo``'s default config with ``n`` listed labels of a data set that is not there."""
    default = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    config = dict(default, run=f"synthetic{n}", labels_per_job=per_job)
    config["data"] = dict(
        default.get("data") or {},
        source="imagefolder",
        root="/data/not-here",
        resolution=32,
        labels=[f"class{i:05d}" for i in range(n)],
    )
    config["train"] = dict(default.get("train") or {}, **args.train)
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


FLOOR_SNAKEFILE = """
CHUNKS = [f"chunk{{i:05d}}" for i in range({chunks})]


rule all:
    input:
        expand("features/{{chunk}}.pt", chunk=CHUNKS),
        "labels.tsv",


rule label_table:
    input:
        expand("shards/{{chunk}}", chunk=CHUNKS),
    output:
        "labels.tsv",
    log:
        "logs/label_table",
    benchmark:
        "benchmarks/label_table"
    shell:
        "touch {{output}}"


rule split_chunk:
    output:
        directory("shards/{{chunk}}"),
    log:
        "logs/split/{{chunk}}",
    benchmark:
        "benchmarks/split/{{chunk}}"
    shell:
        "mkdir {{output}}"


rule train_chunk:
    input:
        "shards/{{chunk}}",
    output:
        directory("samples/{{chunk}}"),
    log:
        "logs/train/{{chunk}}",
    benchmark:
        "benchmarks/train/{{chunk}}"
    shell:
        "mkdir {{output}}"


rule features_chunk:
    input:
        "shards/{{chunk}}",
        "samples/{{chunk}}",
    output:
        "features/{{chunk}}.pt",
    log:
        "logs/features/{{chunk}}",
    benchmark:
        "benchmarks/features/{{chunk}}"
    shell:
        "touch {{output}}"
"""


def write_floor(workdir: Path, n: int, per_job: int) -> Path:
    """A do-nothing workflow with the chunks of ``n`` labels at ``per_job``; its Snakefile."""
    workdir.mkdir(parents=True)
    snakefile = workdir / "Snakefile"
    snakefile.write_text(FLOOR_SNAKEFILE.format(chunks=-(-n // per_job)))
    return snakefile


def dry_run(snakefile: Path, workdir: Path, package: Path | None) -> tuple[float, int]:
    """Seconds of one dry run of ``snakefile`` in ``workdir`` (``package``'s wcgan on the path),
    and its number of jobs."""
    command = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(snakefile),
        "-n",
        "--quiet",
        "rules",
    ]
    environment = {**os.environ, "PYTHONPATH": str(package or "")}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stderr[-2000:])
    return seconds, int(re.search(r"^total\s+(\d+)$", result.stdout + result.stderr, re.MULTILINE).group(1))


with tempfile.TemporaryDirectory() as scratch:
    trees = {"this tree": REPO}
    if args.vs:
        other = Path(scratch) / "vs"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(other), args.vs], check=True
        )
        trees = {args.vs: other, **trees}
    try:
        rows = []
        for case in args.cases:
            n, per_job = (int(part) for part in case.split(":"))
            workdirs = {name: Path(scratch) / f"{case}-{i}".replace(":", "_") for i, name in enumerate(trees)}
            runs = {}
            for name, repo in trees.items():
                write_config(repo, workdirs[name], n, per_job)
                runs[name] = (repo / "workflow" / "Snakefile", workdirs[name], repo / "src")
            if args.floor:
                floor = Path(scratch) / f"{case}-floor".replace(":", "_")
                runs["floor"] = (write_floor(floor, n, per_job), floor, None)
            times: dict[str, list[float]] = {name: [] for name in runs}
            jobs = {}
            for _ in range(args.repeats):
                for name, run in runs.items():  # alternating: REF, this tree, floor, REF, ...
                    seconds, jobs[name] = dry_run(*run)
                    times[name].append(seconds)
            rows.append((n, per_job, jobs, times))
    finally:
        if args.vs:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(other)], check=True)

names = list(rows[0][3])
print(
    f"{'labels':>8} {'K':>5} "
    + " ".join(f"{name + ' jobs':>14} {name + ' s':>14} {'ms/job':>7}" for name in names),
    end="",
)
print(f" {'ratio':>6}" if args.vs else "")
for n, per_job, jobs, times in rows:
    medians = {name: statistics.median(times[name]) for name in names}
    line = f"{n:>8} {per_job:>5} " + " ".join(
        f"{jobs[name]:>14} {medians[name]:>14.2f} {1000 * medians[name] / jobs[name]:>7.2f}" for name in names
    )
    if args.vs:
        ratio = statistics.median(a / b for a, b in zip(times[names[0]], times[names[1]], strict=True))
        line += f" {ratio:>6.2f}"
    print(line)
