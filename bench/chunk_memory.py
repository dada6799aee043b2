"""Peak memory of a chunk job against K and resolution, images as uint8 against the former float32.

    python bench/chunk_memory.py [--ks 1 10 50] [--resolutions 32 64] [--images 1300]
        [--former d305e40] [--width 8] [--iterations 2]

For each resolution, ``max(--ks)`` labels of ``--images`` random RGB images each are written as
shards (``wcgan.files.save_shard``, what ``wcgan split`` writes); then for each K the first K
train as one chunk through ``wcgan train`` (WGAN-GP, batch 64, ``--iterations`` generator
iterations, a few samples per label), once with this tree's package and once with commit
``--former``'s (read from git), the two in turn at each point. Each job's peak resident memory
is the kernel's account of the finished process (``os.wait4``). Prints both, their ratio, the
uint8 images' bytes and ``wcgan.memory.training_memory``'s estimate beside what this tree
measured. CPU only: a GPU job's device memory is not measured here.
"""

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import torch

from wcgan.config import TrainConfig
from wcgan.data import Shard
from wcgan.files import save_shard
from wcgan.labels import make_labels
from wcgan.memory import training_memory

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--ks", type=int, nargs="+", default=[1, 10, 50], help="labels per job")
parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
parser.add_argument("--images", type=int, default=1300, help="images per label")
parser.add_argument("--former", default="d305e40", help="commit whose loop holds the images as float32")
parser.add_argument("--width", type=int, default=8)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--iterations", type=int, default=2)
parser.add_argument("--threads", type=int, default=1)
args = parser.parse_args()
repo = Path(__file__).resolve().parents[1]
config = TrainConfig(width=args.width, batch_size=args.batch_size, iterations=args.iterations)


def former_tree(work: Path) -> Path:
    """The package of ``--former``, unpacked from git."""
    archive = subprocess.run(
        ["git", "archive", args.former, "src"], cwd=repo, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(work / "former", filter="data")
    return work / "former" / "src"


def peak_mb(source: Path, shards: list[Path], out: Path) -> float:
    """Peak resident MB of one ``wcgan train`` of ``shards`` with the package in ``source``."""
    command = [
        sys.executable, "-c", "from wcgan.cli import main; raise SystemExit(main())", "train",
        "--shard", *map(str, shards), "--checkpoint-dir", str(out / "checkpoints"),
        "--model-out", str(out / "models"), "--losses-out", str(out / "losses"),
        "--summary-out", str(out / "training"), "--samples-out", str(out / "samples"),
        "--samples", "16", "--threads", str(args.threads), "--iterations", str(args.iterations),
        "--width", str(args.width), "--batch-size", str(args.batch_size), "--device", "cpu",
    ]  # fmt: skip
    for folder in ("models", "losses", "training", "samples"):
        (out / folder).mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": str(args.threads)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{source}: wcgan train failed:\n{stderr.decode()[-2000:]}")
    return usage.ru_maxrss / 1000  # kB on Linux


with tempfile.TemporaryDirectory() as work:
    work = Path(work)
    sources = {"float32 (former)": former_tree(work), "uint8": repo / "src"}
    labels = make_labels([f"l{i:03d}" for i in range(max(args.ks))])
    rows = []
    for resolution in args.resolutions:
        files = []
        for label in labels:
            images = torch.randint(
                0, 256, (args.images, 3, resolution, resolution), dtype=torch.uint8,
                generator=torch.Generator().manual_seed(label.index),
            )  # fmt: skip
            files.append(work / f"r{resolution}" / f"{label.slug}.pt")
            files[-1].parent.mkdir(exist_ok=True)
            save_shard(Shard(images, label, "bench"), files[-1])
        for k in args.ks:
            peaks = {
                name: peak_mb(source, files[:k], work / f"run-{resolution}-{k}-{n}")
                for n, (name, source) in enumerate(sources.items())
            }
            estimate = training_memory(config, k, k * args.images, 3, resolution)
            rows.append((resolution, k, estimate.images / 1e6, *peaks.values(), estimate.total / 1e6))
            before, after = peaks.values()
            print(
                f"{resolution:>4} px K={k:<3} images {estimate.images / 1e6:7.0f} MB | peak former "
                f"{before:7.0f} MB, uint8 {after:7.0f} MB (x{before / after:.2f}) | estimate "
                f"{estimate.total / 1e6:7.0f} MB ({estimate.describe()})",
                flush=True,
            )

print(
    f"\nwcgan train, {args.images} RGB images per label, width {args.width}, batch {args.batch_size}, "
    f"{args.iterations} iterations, {args.threads} thread(s), CPU; peak resident MB of the job\n"
)
print(
    "| resolution | K | uint8 images (MB) | float32 loop (MB) | uint8 loop (MB) | ratio | estimate (MB) | estimate / uint8 |"
)
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for resolution, k, images, before, after, estimate in rows:
    print(
        f"| {resolution} | {k} | {images:.0f} | {before:.0f} | {after:.0f} | {before / after:.2f} "
        f"| {estimate:.0f} | {estimate / after:.2f} |"
    )
