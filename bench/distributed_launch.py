"""Distributed training as Slurm tasks against the same layout under torchrun, side by side.

    . .venv/bin/activate && scripts/slurm-local.sh up   # SLURM_NODE_CPUS=6 for 4 devices on 2 cores
    python bench/distributed_launch.py [--devices 2 4] [--launchers torchrun srun]
        [--iterations 30] [--width 16] [--repeats 2]

On the digits (labels 0..9, 8x8; iid partition, serial schedule, one thread per process), runs
``wcgan train-distributed --launch L`` for each device count and launcher with the same budget
(``--iterations`` per label: 10 x that many rounds), ``--repeats`` times in alternation, and
prints per configuration the median of: rounds per second, the launch's wall clock (start-up and
writing included), the server's seconds per round split into compute (its generator step) and
communication (time inside collectives, waiting for the devices included), the devices' compute
and communication per round, and the bytes per round, beside the bytes that the formula
predicts from the networks' sizes:

    bytes per round = D x (8 + |G| + |Dc|)          broadcast: the command header, G and the critic
                    + D x (|Dc| + 4 x (3 + 2 D))    reduce: each device's weighted critic, its loss
                                                    means and every device's two timings

where D is the device count and |G|, |Dc| the bytes of the generator's and critic's parameters
and buffers. The last lines give the srun/torchrun ratio of rounds per second per device count,
and what the measured bytes per round cost on a network between nodes (10 and 100 Gbit/s,
bandwidth alone) against the round's time here. srun without an allocation makes one per launch
(its queue and start-up are in the wall clock, not in the rounds per second). On one machine
both launchers talk over loopback TCP (gloo): the difference between them is the launch, not the
network.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wcgan.config import TrainConfig
from wcgan.data import Shard, TrainingSet, load_label_images
from wcgan.files import save_shard
from wcgan.labels import make_labels
from wcgan.sources import DataSpec
from wcgan.training import initial_networks

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--devices", type=int, nargs="+", default=[2, 4])
parser.add_argument("--launchers", nargs="+", default=["torchrun", "srun"], choices=["torchrun", "srun"])
parser.add_argument("--iterations", type=int, default=30, help="per label: 10 x this many rounds")
parser.add_argument("--width", type=int, default=16)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--repeats", type=int, default=2)
args = parser.parse_args()


def predicted_bytes(data: TrainingSet, devices: int) -> int:
    generator, critic = initial_networks(TrainConfig(generator="conditional", width=args.width), data)

    def size(module):
        return sum(t.nbytes for t in module.state_dict().values())

    return devices * (8 + size(generator) + size(critic)) + devices * (size(critic) + 4 * (3 + 2 * devices))


def launch(launcher: str, devices: int, shards: list[str], out: Path) -> dict:
    command = [
        sys.executable, "-m", "wcgan.cli", "train-distributed", "--launch", launcher, "--shard", *shards,
        "--model-out", str(out / "model.pt"), "--losses-out", str(out / "losses.csv"),
        "--summary-out", str(out / "summary.json"), "--checkpoint-dir", str(out / "checkpoints"),
        f"--devices={devices}", "--partition=iid", "--schedule=serial", f"--iterations={args.iterations}",
        f"--width={args.width}", f"--batch-size={args.batch_size}", "--device=cpu", "--threads=1",
        "--log-seconds=60", "--checkpoint-seconds=600",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{launcher} with {devices} devices failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    compute, communication = summary["compute_seconds_per_round"], summary["communication_seconds_per_round"]
    return {
        "rounds_per_s": summary["rounds_per_second"],
        "wall_s": wall,
        "server_compute_ms": 1000 * compute["server"],
        "server_comm_ms": 1000 * communication["server"],
        "device_compute_ms": 1000 * compute["devices"],
        "device_comm_ms": 1000 * communication["devices"],
        "bytes_per_round": summary["bytes_per_round"],
        "seconds_per_round": summary["seconds_per_round"],
    }


with tempfile.TemporaryDirectory() as work:
    work = Path(work)
    shards, all_shards = [], []
    for label in make_labels([str(d) for d in range(10)]):
        shard = Shard(load_label_images(DataSpec(), label.name), label, "digits")
        save_shard(shard, work / f"{label.slug}.pt")
        shards.append(str(work / f"{label.slug}.pt"))
        all_shards.append(shard)
    data = TrainingSet.of_labels(all_shards)
    runs: dict[tuple[int, str], list[dict]] = {}
    for repeat in range(args.repeats):
        for devices in args.devices:
            for launcher in args.launchers:  # alternating, so drift in the machine's load hits both
                out = work / f"{launcher}-{devices}-{repeat}"
                runs.setdefault((devices, launcher), []).append(launch(launcher, devices, shards, out))
                print(
                    f"done: {launcher}, {devices} devices, repeat {repeat + 1}", file=sys.stderr, flush=True
                )

    columns = ["rounds_per_s", "wall_s", "server_compute_ms", "server_comm_ms", "device_compute_ms",
               "device_comm_ms", "bytes_per_round"]  # fmt: skip
    print(f"digits 8x8, 10 labels, width {args.width}, batch {args.batch_size}, {10 * args.iterations} rounds, "
          f"iid, serial, medians of {args.repeats}")  # fmt: skip
    print("\t".join(["devices", "launcher", *columns, "predicted_bytes"]))
    medians = {}
    for (devices, launcher), results in sorted(runs.items()):
        medians[devices, launcher] = {
            c: statistics.median(r[c] for r in results) for c in [*columns, "seconds_per_round"]
        }
        row = [f"{medians[devices, launcher][c]:.4g}" for c in columns]
        print("\t".join([str(devices), launcher, *row, str(predicted_bytes(data, devices))]))
    for devices in args.devices:
        if {"srun", "torchrun"} <= set(args.launchers):
            ratio = medians[devices, "srun"]["rounds_per_s"] / medians[devices, "torchrun"]["rounds_per_s"]
            print(f"{devices} devices: srun / torchrun rounds per second = {ratio:.2f}")
        here = medians[devices, args.launchers[0]]
        for gbit in (10, 100):
            network_ms = 1000 * here["bytes_per_round"] * 8 / (gbit * 1e9)
            print(
                f"{devices} devices across nodes at {gbit} Gbit/s: >= {network_ms:.3f} ms of transfer per round "
                f"(bandwidth alone) against {1000 * here['seconds_per_round']:.1f} ms per round here"
            )
