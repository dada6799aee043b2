"""Labels per job: K per-label GANs trained as one batched network, side by side in one run.

    python bench/labels_per_job.py [--ks 1 2 4 8 16] [--nets 8:16 32:32 32:64] [--device cpu] [--quick]

For each network size (resolution:width) and chunk size K, K labels of random images train
WGAN-GP (its recipe: 5 critic steps) through the pipeline's ``train_chunk``, batch 64, for a few
generator iterations, once per way of evaluating the K networks (``--stacks``: looped, one
network after the other; vectorized, one vmapped call). Prints label-iterations per second
(K generator iterations of the chunk count K) and the ratio to K = 1 at the same size: above 1,
a job of K labels gives each label more iterations per device-second than a job of its own.

An iteration's seconds are the wall-clock time between consecutive rows of the loss history
(each label's share times K). The first iteration (warm-up) is left out and the rest averaged;
on a GPU the loop does not wait for the device between iterations, so give it enough
iterations that the queue's start and end do not matter (``--iterations``). On a GPU each cell
also shows the run's peak device memory per label (``torch.cuda.max_memory_allocated`` / K,
the labels' uint8 images included), what sizes K for a card.
"""

import argparse
import tempfile
import time

import torch

from wcgan.config import TrainConfig
from wcgan.data import Shard, TrainingSet
from wcgan.labels import Label
from wcgan.training import resolve_device, train_chunk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="labels per job")
parser.add_argument(
    "--nets", nargs="+", default=["8:16", "32:32", "32:64"], help="network sizes, resolution:width"
)
parser.add_argument(
    "--iterations", type=int, default=4, help="generator iterations per run (the first left out)"
)
parser.add_argument(
    "--iterations-per-net",
    nargs="+",
    default=["32:64=3"],
    help="resolution:width=N overrides --iterations for the slow sizes",
)
parser.add_argument(
    "--ks-per-net",
    nargs="+",
    default=[],
    help="resolution:width=K1,K2,... overrides --ks for the slow sizes (a CPU's 32:64 takes ~10 s per label-iteration)",
)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--channels", type=int, default=3)
parser.add_argument("--images", type=int, default=256, help="images per label")
parser.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda")
parser.add_argument("--threads", type=int, default=1, help="CPU threads")
parser.add_argument(
    "--stacks",
    nargs="+",
    default=["looped", "vectorized"],
    choices=["looped", "vectorized"],
    help="how the K networks are evaluated (wcgan.networks.NetworkStack), each measured",
)
parser.add_argument("--quick", action="store_true", help="K 1, 2, 4 at 8:16 only, 3 iterations")
args = parser.parse_args()
if args.quick:
    args.ks, args.nets, args.iterations, args.iterations_per_net, args.ks_per_net = (
        [1, 2, 4],
        ["8:16"],
        3,
        [],
        [],
    )
iterations_of = {net: int(n) for net, n in (item.split("=") for item in args.iterations_per_net)}
ks_of = {net: [int(k) for k in ks.split(",")] for net, ks in (item.split("=") for item in args.ks_per_net)}
device = resolve_device(args.device)


def label_iterations_per_second(
    resolution: int, width: int, k: int, iterations: int, stack: str
) -> tuple[float, float]:
    """Label-iterations per second, and peak device MiB per label (0 on the CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sets = [
        TrainingSet.of_label(
            Shard(
                torch.randint(
                    0, 256, (args.images, args.channels, resolution, resolution), dtype=torch.uint8
                ),
                Label(i, f"bench{i}", f"bench{i}"),
                "random",
            )
        )
        for i in range(k)
    ]
    config = TrainConfig(
        loss="wgan-gp",
        iterations=iterations,
        batch_size=args.batch_size,
        width=width,
        log_seconds=600.0,
        checkpoint_seconds=600.0,
        device=args.device,
    )
    with tempfile.TemporaryDirectory() as checkpoints:
        (first, *_) = train_chunk(
            sets,
            config,
            checkpoints,
            threads=args.threads,
            vectorized=stack == "vectorized",
            log=lambda _: None,
        )
    seconds = first.history[:, 1] * k  # the chunk's wall clock at each iteration
    peak = torch.cuda.max_memory_allocated(device) / 2**20 / k if device.type == "cuda" else 0.0
    return k * (len(seconds) - 1) / (seconds[-1] - seconds[0]).item(), peak


memory = f" {'MiB/label':>9}" if device.type == "cuda" else ""
columns = " ".join(f"{stack + ' it/s':>15} {'vs K=1':>7}{memory}" for stack in args.stacks)
print(f"{'res':>4} {'width':>5} {'K':>3} | {columns}", flush=True)
start = time.monotonic()
for net in args.nets:
    resolution, width = (int(x) for x in net.split(":"))
    baseline: dict[str, float] = {}
    for k in ks_of.get(net, args.ks):
        cells = []
        for stack in args.stacks:  # alternate, so drift on a shared machine hits both alike
            rate, peak = label_iterations_per_second(
                resolution, width, k, iterations_of.get(net, args.iterations), stack
            )
            baseline.setdefault(stack, rate)  # K = 1 calls the network directly either way
            cells.append(
                f"{rate:>15.2f} {rate / baseline[stack]:>7.2f}" + (f" {peak:>9.1f}" if memory else "")
            )
        print(f"{resolution:>4} {width:>5} {k:>3} | {' '.join(cells)}", flush=True)
where = (
    f"{torch.get_num_threads()} CPU threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
)
print(
    f"{device} ({where}), WGAN-GP, batch {args.batch_size}, {args.channels} channels, "
    f"mean of iterations 2.. per run; {time.monotonic() - start:.0f} s in all"
)
