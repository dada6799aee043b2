"""Distributed training with local critics against per-label and central GANs, at equal device-seconds.

    . .venv/bin/activate && python bench/distributed.py
    python bench/distributed.py [--seconds 6 | --iterations N] [--snapshots 5]
        [--devices 2 4] [--schedules serial parallel] [--partitions iid by_label]
        [--samples 100] [--classifier FILE] [--out results/bench-distributed]

The default run trains for about 41 x ``--seconds`` (250 s) and spends about 15 s more starting
each of its eight torchrun launches: some 7 to 10 minutes on 2 cores.

On the digits (labels 0..9, 8x8), under one budget per label (``--seconds``, default 6, or
``--iterations``), trains:

- one conditional GAN through ``wcgan train-distributed --launch torchrun`` (gloo, one thread per
  process) for every combination of schedule (serial, parallel), partition (iid, by_label) and
  device count (a server and that many device processes);
- the per-label scheme: one WGAN-GP per label through ``wcgan.training.train``, one after another;
- the central conditional GAN through ``wcgan.training.train``.

The budget is per label, as on the command line of ``wcgan train-distributed``
(``TrainConfig.for_labels``): with seconds, every configuration spends the device-seconds of ten
per-label jobs (the distributed ones run their devices + 1 processes for 10 x seconds / (devices + 1)
seconds of wall clock); with iterations, every configuration makes 10 x iterations generator
updates (rounds) instead. Every run keeps ``--snapshots`` generator copies at even shares of its
budget, the last at the end.

Measures, per configuration: FID of all labels merged against every real image at each snapshot
point, against wall-clock seconds (for the per-label scheme: its ten runs' seconds added, as they
run one after another), against rounds (generator updates; per-label: all ten GANs' added) and
against device-seconds (processes x wall clock); and, from the distributed runs' summaries, the
server's seconds per round, split into compute and communication (time inside collectives,
waiting for the other side included) on the server and on the devices (mean over devices), and
the bytes the collectives carry per round. Prints one table and writes ``curves.tsv``
(configuration, point, rounds, seconds, device_seconds, fid), ``table.tsv`` and ``fid.png`` (FID
against seconds, rounds and device-seconds) under ``--out``.

FID uses the features of a small classifier trained on the same digits (as the pipeline does
when no Inception weights are given), so the numbers compare configurations with each other,
not with published figures. With more processes than cores the processes share cores: timings
and device-seconds show that contention, not what separate machines would do.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch

from wcgan.classifier import train_classifier
from wcgan.compare import curve_rows
from wcgan.config import PARTITIONS, SCHEDULES, ClassifierConfig, TrainConfig
from wcgan.data import Shard, TrainingSet, load_label_images
from wcgan.files import load_snapshot_samples, save_classifier, save_shard, save_snapshot_samples
from wcgan.labels import make_labels
from wcgan.metrics import open_extractor, score_snapshots
from wcgan.sampling import snapshot_samples
from wcgan.sources import DataSpec
from wcgan.training import train

plt.switch_backend("Agg")
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument(
    "--seconds", type=float, help="wall-clock budget per label (default 6 without --iterations)"
)
parser.add_argument("--iterations", type=int, help="generator updates per label")
parser.add_argument("--snapshots", type=int, default=5, help="FID points per run, the last at the end")
parser.add_argument("--devices", type=int, nargs="+", default=[2, 4])
parser.add_argument("--schedules", nargs="+", default=["serial", "parallel"])
parser.add_argument("--partitions", nargs="+", default=["iid", "by_label"])
parser.add_argument(
    "--lr", type=float, default=5e-4, help="both networks' rate: 5x WGAN-GP's 1e-4, so a short run moves FID"
)
parser.add_argument("--width", type=int, default=8)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--z-dim", type=int, default=32)
parser.add_argument("--samples", type=int, default=100, help="samples per label and point for FID")
parser.add_argument("--classifier", help="wcgan classifier file for FID (default: train one on the digits)")
parser.add_argument("--out", default="results/bench-distributed", help="folder for the tables and figure")
args = parser.parse_args()
if args.seconds is None and args.iterations is None:
    args.seconds = 6.0

start = time.monotonic()
torch.set_num_threads(1)  # as every distributed process (--threads 1)
labels = make_labels([str(digit) for digit in range(10)])
shards = [Shard(load_label_images(DataSpec(), label.name), label, "digits") for label in labels]
options = dict(
    iterations=args.iterations,
    seconds=args.seconds,
    snapshots=args.snapshots,
    width=args.width,
    batch_size=args.batch_size,
    z_dim=args.z_dim,
    lr=args.lr,
    device="cpu",
)
options = {key: value for key, value in options.items() if value is not None}
nan = float("nan")


def distributed(schedule: str, partition: str, devices: int, paths: list[str], out: Path):
    """One launch (torchrun --standalone); its summary and its snapshot points."""
    command = [
        sys.executable, "-m", "wcgan.cli", "train-distributed", "--launch", "torchrun", "--shard", *paths,
        "--model-out", str(out / "model.pt"), "--losses-out", str(out / "losses.csv"),
        "--summary-out", str(out / "summary.json"), "--checkpoint-dir", str(out / "checkpoints"),
        "--snapshots-out", str(out / "snapshots.pt"), "--samples", str(args.samples), "--threads=1",
        *(f"--{key.replace('_', '-')}={value}" for key, value in options.items()),
        f"--devices={devices}", f"--partition={partition}", f"--schedule={schedule}",
    ]  # fmt: skip
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{schedule} {partition} {devices} devices failed:\n{done.stderr[-4000:]}")
    return json.loads((out / "summary.json").read_text()), load_snapshot_samples(out / "snapshots.pt")


def in_process(data: TrainingSet, config: TrainConfig, out: Path):
    """One ``train`` run; its summary and its snapshot points."""
    result = train(data, config, out, log=lambda _: None)
    points = snapshot_samples(result.snapshots, result.generator, data.labels, args.samples, 0)
    save_snapshot_samples(points, out / "snapshots.pt")
    return result.summary, load_snapshot_samples(out / "snapshots.pt")


with tempfile.TemporaryDirectory() as work:
    work = Path(work)
    paths = [str(work / f"{label.slug}.pt") for label in labels]
    for shard, path in zip(shards, paths, strict=True):
        save_shard(shard, path)
    if args.classifier:
        classifier = args.classifier
    else:
        config = ClassifierConfig(epochs=3, width=8)
        model, report = train_classifier(shards, config, torch.device("cpu"), log=lambda _: None)
        classifier = str(work / "classifier.pt")
        save_classifier(model, [label.name for label in labels], report, classifier)
    network = open_extractor(None, classifier)

    rows, curves = [], []

    def record(name: str, schedule: str, partition: str, devices: int | None, summaries, units) -> None:
        """Score a configuration's snapshot points (``units``: each training job's) and add its
        curve and its table row (timings from a distributed run's summary, else NaN)."""
        fids = [s["fid"] for s in score_snapshots(units, shards, network, log=lambda _: None)]
        for row, fid in zip(curve_rows(units), fids, strict=True):
            k = row["point"] - 1
            seconds = sum(float(points[k]["seconds"]) for points in units)
            curves.append((name, row["point"], row["iterations"], seconds, row["device_seconds"], fid))
        rounds, seconds = sum(s["iterations"] for s in summaries), sum(s["seconds"] for s in summaries)
        facts = summaries[0]
        compute = facts.get("compute_seconds_per_round", {"server": nan, "devices": nan})
        communication = facts.get("communication_seconds_per_round", {"server": nan, "devices": nan})
        rows.append(
            {
                "configuration": name,
                "schedule": schedule,
                "partition": partition,
                "devices": devices,
                "rounds": rounds,
                "seconds": seconds,
                "s_per_round": facts.get("seconds_per_round", seconds / rounds),
                "srv_compute": compute["server"],
                "srv_comm": communication["server"],
                "dev_compute": compute["devices"],
                "dev_comm": communication["devices"],
                "bytes_per_round": facts.get("bytes_per_round", 0),
                "fid": fids[-1],
                "device_seconds": curves[-1][4],
            }
        )
        print(f"done: {name} ({time.monotonic() - start:.0f} s since start)", file=sys.stderr, flush=True)

    for devices in args.devices:
        for partition in args.partitions:
            for schedule in args.schedules:
                name = f"{schedule} {partition} {devices}"
                summary, points = distributed(
                    schedule, partition, devices, paths, work / name.replace(" ", "-")
                )
                record(name, schedule, partition, devices, [summary], [points])

    runs = [
        in_process(TrainingSet.of_label(s), TrainConfig(**options), work / "per-label" / s.label.slug)
        for s in shards
    ]
    record("per-label", "-", "-", None, *zip(*runs, strict=True))
    config = TrainConfig(generator="conditional", **options).for_labels(len(shards))
    summary, points = in_process(TrainingSet.of_labels(shards), config, work / "central")
    record("central", "-", "-", None, [summary], [points])

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
table = pd.DataFrame(rows).astype({"devices": "Int64"})
curves = pd.DataFrame(
    curves, columns=["configuration", "point", "rounds", "seconds", "device_seconds", "fid"]
)
table.to_csv(out / "table.tsv", sep="\t", index=False, float_format="%.6g")
curves.to_csv(out / "curves.tsv", sep="\t", index=False, float_format="%.6g")

budget = " and ".join(
    ([f"{args.seconds:g} s"] if args.seconds else [])
    + ([f"{args.iterations} iterations"] if args.iterations else [])
)
print(
    f"digits 0-9 ({sum(len(s.images) for s in shards)} images, 8x8), WGAN-GP, budget {budget} per label, "
    f"lr {args.lr:g}, width {args.width}, batch {args.batch_size}, 5 critic steps per device and round, "
    f"{os.cpu_count()} cores, 1 thread per process; FID on {args.samples} samples per label"
)
shown = table.drop(columns=["schedule", "partition", "devices", "seconds"])
print(shown.to_string(index=False, float_format=lambda x: f"{x:.4g}", na_rep="-"))
print(
    "s_per_round: the server's seconds per round (per-label, central: seconds / generator updates); "
    "comm: time inside collectives (waiting included); dev: mean over devices"
)

# One line per configuration: colour by schedule and partition, line style by device count.
fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), sharey=True, layout="constrained")
colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
pairs = [(s, p) for s in SCHEDULES for p in PARTITIONS]  # the same colours in every run
styles = dict(zip(sorted(args.devices), ["-", "--", ":", "-."] * len(args.devices), strict=False))
for row in rows:
    name = row["configuration"]
    run = curves[curves["configuration"] == name]
    if name in ("per-label", "central"):
        look = dict(color="black" if name == "per-label" else "grey", linestyle="-", lw=2)
    else:
        color = colors[pairs.index((row["schedule"], row["partition"])) % len(colors)]
        look = dict(color=color, linestyle=styles[row["devices"]], lw=1.3)
        name = f"{row['schedule']} {row['partition']}, {row['devices']} devices"
    for axis, x in zip(axes, ["seconds", "rounds", "device_seconds"], strict=True):
        axis.plot(run[x], run["fid"], marker="o", ms=3, label=name, **look)
for axis, xlabel in zip(
    axes,
    ["wall-clock seconds (per-label: its runs' added)", "rounds (generator updates)", "device-seconds"],
    strict=True,
):
    axis.set_xlabel(xlabel)
    axis.grid(alpha=0.3)
axes[0].set_ylabel("FID, all labels merged (classifier features)")
if (curves["fid"] > 0).all() and curves["fid"].max() > 20 * curves["fid"].min():
    axes[0].set_yscale("log")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=5, fontsize=8)
fig.suptitle(f"digits 0-9, budget {budget} per label: FID at {args.snapshots} points per run", fontsize=10)
fig.savefig(out / "fid.png", dpi=110)
print(f"wrote {out / 'table.tsv'}, {out / 'curves.tsv'}, {out / 'fid.png'}")
