"""Training throughput per resolution and where the time goes, measured side by side in one run.

    python bench/train_throughput.py [--resolutions 8 16 32 64] [--iterations 30] [--width 16]

For each resolution, one label of random images trains for a fixed number of generator
iterations (WGAN-GP recipe: 5 critic steps, batch 64) through the same ``train`` the
pipeline runs, with phase timing on (the GPU is synchronized around each phase when present).
Prints generator iterations/s, real images/s through the critic, and each phase's share of the
training time: data, critic (forward and backward of the Wasserstein term, optimizer step),
penalty (the gradient penalty's double backward), generator, checkpoint, logging.
"""

import argparse
import tempfile

import torch

from wcgan.config import TrainConfig
from wcgan.data import Shard, TrainingSet
from wcgan.labels import Label
from wcgan.training import train

PHASES = ("data", "critic", "penalty", "generator", "checkpoint", "logging")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--resolutions", type=int, nargs="+", default=[8, 16, 32, 64])
parser.add_argument("--iterations", type=int, default=30)
parser.add_argument("--width", type=int, default=16)
parser.add_argument("--channels", type=int, default=3)
parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
parser.add_argument("--device", default="auto")
args = parser.parse_args()

rows = []
for resolution in args.resolutions:
    images = torch.randint(0, 256, (512, args.channels, resolution, resolution), dtype=torch.uint8)
    shard = Shard(images, Label(0, f"bench{resolution}", f"bench{resolution}"), "random")
    config = TrainConfig(
        iterations=args.iterations,
        width=args.width,
        log_seconds=5.0,  # the pipeline's default cadence
        checkpoint_seconds=60.0,
        device=args.device,
    )
    with tempfile.TemporaryDirectory() as checkpoints:
        result = train(
            TrainingSet.of_label(shard),
            config,
            checkpoints,
            threads=args.threads,
            profile=True,
            log=lambda _: None,
        )
    summary = result.summary
    phases = summary["phase_seconds"]
    total = sum(phases.values())
    rows.append(
        (
            resolution,
            summary["generator_iterations_per_second"],
            summary["critic_real_images_per_second"],
            *(100 * phases.get(p, 0.0) / total for p in PHASES),
        )
    )
    device, threads = summary["device"], summary["threads"]

print(
    f"device {device}, {threads} threads, width {args.width}, batch 64, 5 critic steps, {args.iterations} iterations"
)
header = f"{'res':>5} {'G it/s':>8} {'critic img/s':>13} " + " ".join(f"{p + ' %':>12}" for p in PHASES)
print(header)
for resolution, its, imgs, *shares in rows:
    print(f"{resolution:>5} {its:>8.2f} {imgs:>13.0f} " + " ".join(f"{s:>12.1f}" for s in shares))
base = rows[0]
print("throughput relative to the first resolution (G it/s ratio):")
print("  " + ", ".join(f"{r[0]}x{r[0]}: {r[1] / base[1]:.3f}" for r in rows))
