"""One-stage against two-stage training, side by side in one run.

    python bench/one_stage.py [--resolutions 8 32] [--critic-steps 1 5] [--iterations 4] [--repeats 3]
        [--device cpu]

For each resolution, loss and number of critic steps per generator step, one label of random
images trains on ``--device`` through the pipeline's ``train`` from the same seed (so the same
initial networks and batches) once per scheme, the two schemes alternating, ``--repeats`` times.
Prints seconds per generator iteration, real images per second through the critic, and the ratio
two-stage / one-stage of the seconds per generator iteration (above 1: one stage is faster).

An iteration's seconds are the wall-clock time between consecutive rows of the loss history.
Each run's first iteration (warm-up) is left out, and the fastest of the remaining iterations of
all repeats is shown: on a shared machine other jobs only ever add time, so the least disturbed
iteration is the closest to the true cost, and both schemes are judged alike. On a GPU the loop
queues work without waiting for it, so one row's time says little: there each run counts as the
mean of its iterations 2.., and the fastest run is shown (give it tens of iterations).

Runs start from freshly initialised networks, whose critic scores sit near 0: the hinge loss's
fakes are inside its margin, so one stage never needs to rescore them here (see
``wcgan.losses.GANLoss.one_stage_backward``); a trained hinge critic costs one stage a little more.
"""

import argparse
import tempfile

import torch

from wcgan.config import RECIPES, TRAINING_SCHEMES, TrainConfig
from wcgan.data import Shard, TrainingSet
from wcgan.labels import Label
from wcgan.training import resolve_device, train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--resolutions", type=int, nargs="+", default=[8, 32])
parser.add_argument("--losses", nargs="+", default=list(RECIPES), choices=list(RECIPES))
parser.add_argument("--critic-steps", type=int, nargs="+", default=[1, 5])
parser.add_argument(
    "--iterations",
    type=int,
    default=4,
    help="generator iterations per run (2 or more: the first is left out)",
)
parser.add_argument("--repeats", type=int, default=3, help="runs per scheme")
parser.add_argument("--width", type=int, default=16)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--channels", type=int, default=3)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
args = parser.parse_args()
device = resolve_device(args.device)


def iteration_seconds(shard: Shard, config: TrainConfig) -> list[float]:
    """Wall-clock seconds of each generator iteration but the first."""
    with tempfile.TemporaryDirectory() as checkpoints:
        result = train(
            TrainingSet.of_label(shard), config, checkpoints, threads=args.threads, log=lambda _: None
        )
    seconds = result.history[:, 1].diff()
    return seconds.tolist() if device.type == "cpu" else [seconds.mean().item()]


print(
    f"{'res':>4} {'loss':>9} {'n':>2} | {'two-stage s/it':>14} {'one-stage s/it':>14} | "
    f"{'two-stage img/s':>15} {'one-stage img/s':>15} | {'ratio':>5}",
    flush=True,
)
for resolution in args.resolutions:
    images = torch.randint(0, 256, (512, args.channels, resolution, resolution), dtype=torch.uint8)
    shard = Shard(images, Label(0, f"bench{resolution}", f"bench{resolution}"), "random")
    for loss in args.losses:
        for critic_steps in args.critic_steps:
            configs = {
                training: TrainConfig(
                    loss=loss,
                    training=training,
                    critic_steps=critic_steps,
                    iterations=args.iterations,
                    batch_size=args.batch_size,
                    width=args.width,
                    log_seconds=600.0,
                    checkpoint_seconds=600.0,
                    device=str(device),
                )
                for training in TRAINING_SCHEMES
            }
            times: dict[str, list[float]] = {training: [] for training in TRAINING_SCHEMES}
            for _ in range(args.repeats):
                for training, config in configs.items():  # alternate, so drift hits both alike
                    times[training] += iteration_seconds(shard, config)
            two, one = (min(times[t]) for t in ("two_stage", "one_stage"))
            images_per_iteration = args.batch_size * critic_steps
            print(
                f"{resolution:>4} {loss:>9} {critic_steps:>2} | {two:>14.4f} {one:>14.4f} | "
                f"{images_per_iteration / two:>15.0f} {images_per_iteration / one:>15.0f} | {two / one:>5.2f}",
                flush=True,
            )
where = f"CPU, {args.threads} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
timing = "iterations" if device.type == "cpu" else "run means of iterations 2.."
print(
    f"{where}, width {args.width}, batch {args.batch_size}, "
    f"fastest of {args.iterations - 1} iterations x {args.repeats} runs per scheme ({timing})"
)
