"""What the generators' moving average costs a chunk job, side by side in one run.

    python bench/ema_overhead.py [--labels 1 10] [--resolutions 8 32] [--iterations 40] [--repeats 3]

For each K and resolution, a chunk of K labels of random images trains on the CPU through the
pipeline's ``train_chunk`` from the same seeds, once with the moving average
(``train.ema_half_life_images`` at its default) and once without (0), alternating, ``--repeats``
times. Prints the CPU seconds per generator iteration of each and their ratio (with / without;
1.00: free). CPU seconds of this process, not wall clock: on a shared machine other jobs add wall
time but not this process's CPU time. The fastest repeat of each is compared.
"""

import argparse
import tempfile
import time

import torch

from wcgan.config import TrainConfig
from wcgan.data import Shard, TrainingSet
from wcgan.labels import Label
from wcgan.training import train_chunk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--labels", type=int, nargs="+", default=[1, 10])
parser.add_argument("--resolutions", type=int, nargs="+", default=[8, 32])
parser.add_argument("--iterations", type=int, default=40)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--width", type=int, default=16)
parser.add_argument("--images", type=int, default=256, help="images per label")
args = parser.parse_args()
torch.set_num_threads(1)


def cpu_seconds_per_iteration(sets: list[TrainingSet], half_life: float) -> float:
    config = TrainConfig(
        iterations=args.iterations,
        width=args.width,
        ema_half_life_images=half_life,
        checkpoint_seconds=3600,
        device="cpu",  # the default, auto, would take a GPU where there is one
    )
    with tempfile.TemporaryDirectory() as checkpoints:
        start = time.process_time()
        train_chunk(sets, config, checkpoints, threads=1, log=lambda _: None)
        return (time.process_time() - start) / args.iterations


print(f"{'K':>3} {'res':>4} | {'with EMA s/it':>13} {'without s/it':>12} | {'ratio':>5}")
default = TrainConfig.ema_half_life_images
for count in args.labels:
    for resolution in args.resolutions:
        generator = torch.Generator().manual_seed(0)
        sets = [
            TrainingSet.of_label(
                Shard(
                    torch.randint(
                        0,
                        256,
                        (args.images, 3, resolution, resolution),
                        dtype=torch.uint8,
                        generator=generator,
                    ),
                    Label(k, str(k), str(k)),
                    "random",
                )
            )
            for k in range(count)
        ]
        with_ema, without = [], []
        for _ in range(args.repeats):
            with_ema.append(cpu_seconds_per_iteration(sets, default))
            without.append(cpu_seconds_per_iteration(sets, 0.0))
        print(
            f"{count:>3} {resolution:>4} | {min(with_ema):>13.4f} {min(without):>12.4f} | "
            f"{min(with_ema) / min(without):>5.3f}"
        )
