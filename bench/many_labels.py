"""The whole pipeline on many labels: wall time, job count and job-seconds per stage.

    python bench/many_labels.py --labels 1000 --per-job 50     # the goal: at most 10 minutes here
    python bench/many_labels.py --labels 100 --per-job 1       # one job per label, for comparison

Generates a class-per-folder data set of N labels (8x8 RGB PNGs, 12 per label) in a scratch
folder and runs ``snakemake --profile profiles/local`` on it with a minimal budget (5 iterations
per label, 20 samples per label, classifier 1 epoch), then reads the run's Snakemake benchmark
files. Prints the elapsed time, the jobs, each stage's job-seconds and share, and training's share
of all job-seconds (the rest is per-process overhead and the other stages).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from wcgan.benchmarks import read_benchmarks, time_by_rule

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--labels", type=int, default=1000)
parser.add_argument("--per-job", type=int, default=50, help="labels_per_job (K)")
parser.add_argument("--images", type=int, default=12, help="images per label")
parser.add_argument("--cores", type=int, default=2)
parser.add_argument("--keep", help="run in this folder and keep it (default: a scratch folder)")
args = parser.parse_args()


def make_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    for label in range(args.labels):
        folder = root / f"class{label:05d}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 256, 3)  # a colour per label, so labels differ
        for i in range(args.images):
            pixels = np.clip(base + rng.normal(0, 40, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


def run(workdir: Path) -> None:
    make_data(workdir / "data")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(run="many", labels_per_job=args.per_job)
    config["data"].update(source="imagefolder", root=str(workdir / "data"))
    config["train"].update(iterations=5, seconds=None, width=8, z_dim=16, batch_size=16, log_seconds=60)
    config["sampling"]["per_label"] = 20
    config["metrics"]["classifier"].update(epochs=1, width=8)
    (workdir / "config").mkdir()
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    command = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
        "--profile",
        str(REPO / "profiles" / "local"),
        "--cores",
        str(args.cores),
        "--quiet",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stderr[-3000:])
    table = time_by_rule(read_benchmarks(workdir / "results" / "many"))
    total = table["total_s"].sum()
    print(f"{args.labels} labels, labels_per_job {args.per_job}, {args.cores} cores")
    print(
        f"elapsed {elapsed:.0f} s ({elapsed / 60:.1f} min), {int(table['jobs'].sum())} jobs, {total:.0f} job-seconds"
    )
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"training's share of the job-seconds: {table.loc['train', 'total_s'] / total:.0%}")


if args.keep:
    folder = Path(args.keep)
    folder.mkdir(parents=True)
    run(folder)
else:
    with tempfile.TemporaryDirectory() as scratch:
        run(Path(scratch))
