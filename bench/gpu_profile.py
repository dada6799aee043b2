"""Where a GPU training iteration's time goes: how busy the device is, and its costliest operations.

    python bench/gpu_profile.py [--resolution 64] [--width 64] [--iterations 20] [--labels 1]

One chunk of ``--labels`` labels of random images trains (WGAN-GP recipe, batch 64) through the
pipeline's ``train_chunk`` twice: once plain, for the wall-clock rate, then under
``torch.profiler`` with CUDA activity. Prints label-iterations per second, the device's busy
share of the profiled wall time (the sum of its kernels' times over the wall clock: well under 1
means the host's launches, not the GPU's arithmetic, set the pace), the count of kernels per
label-iteration, and the operations that take the most device time. cuDNN's autotuner is on, as
in every training job (``wcgan.runner.prepare_process``).
"""

import argparse
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

from wcgan.config import TrainConfig
from wcgan.data import Shard, TrainingSet
from wcgan.labels import Label
from wcgan.training import train_chunk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--resolution", type=int, default=64)
parser.add_argument("--width", type=int, default=64)
parser.add_argument("--labels", type=int, default=1)
parser.add_argument("--iterations", type=int, default=20)
parser.add_argument("--top", type=int, default=15)
args = parser.parse_args()
sets = [
    TrainingSet.of_label(
        Shard(
            torch.randint(0, 256, (512, 3, args.resolution, args.resolution), dtype=torch.uint8),
            Label(i, f"bench{i}", f"bench{i}"),
            "random",
        )
    )
    for i in range(args.labels)
]
config = TrainConfig(
    iterations=args.iterations, width=args.width, log_seconds=600.0, checkpoint_seconds=600.0, device="cuda"
)


def run() -> float:
    """Wall seconds of a whole chunk run, the device drained at its end."""
    with tempfile.TemporaryDirectory() as checkpoints:
        start = time.perf_counter()
        train_chunk(sets, config, checkpoints, threads=1, log=lambda _: None)
        torch.cuda.synchronize()
        return time.perf_counter() - start


run()  # warm-up: CUDA context, cuDNN handles
wall = run()
label_iterations = args.labels * args.iterations
print(
    f"{args.resolution} px, width {args.width}, {args.labels} label(s), {args.iterations} iterations, "
    f"{label_iterations / wall:.2f} label-it/s ({wall:.2f} s)"
)
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
    profiled_wall = run()
events = profiler.key_averages()
kernels = [e for e in profiler.events() if e.device_type == torch.autograd.DeviceType.CUDA]
busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e6
print(
    f"profiled: {profiled_wall:.2f} s wall, device busy {busy:.2f} s ({busy / profiled_wall:.0%}), "
    f"{len(kernels) / label_iterations:.0f} kernels per label-iteration"
)
print(events.table(sort_by="device_time_total", row_limit=args.top, max_name_column_width=60))
