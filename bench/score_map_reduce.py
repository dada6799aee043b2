"""Scoring at Inception's sizes: the map's per-label scores and the reduce, against the former serial reduce.

    python bench/score_map_reduce.py [--labels 3] [--fake 1000] [--real 1300] [--dims 2048]
        [--logits 1008] [--reduce-labels 100 1000] [--per-chunk 10] [--kept 50]
        [--kept-large 1000] [--former-overall-labels 100] [--threads 1] [--work /tmp]

A stand-in for Inception-v3's outputs (no Inception weights here; real features take the same
time): per label, ``--fake`` generated and ``--real`` real random non-negative ``--dims``-d pool
features and ``--logits``-d logits of the generated ones, float32. Everything on the CPU with
``--threads`` threads (torch's and numpy's BLAS). Three parts, in one run:

1. Per label, for ``--labels`` labels, old and new in turn (which goes first alternates): the
   former reduce's per-label work, torch-fidelity's ``fid_features_to_statistics`` (both sides),
   ``fid_statistics_to_metric``, ``kid_features_to_metric`` (100 subsets of 1,000) and
   ``prc_features_to_metric(save_cpu_ram=True)`` with the arguments commit d305e40's
   ``metric_values`` gave them; against the map's scoring of one label, ``score_chunk`` of that
   label (FID, KID, precision/recall, the moments of both sides, the kept subsets), then its
   parts timed one by one (KID's include the inner products that precision/recall then reads). The largest relative difference of each metric between the two.
2. The former reduce's merged scoring (IS, FID, KID, precision/recall of all labels' features at
   once) at ``--former-overall-labels`` labels (0: skip), and a projection of the whole former
   reduce at each ``--reduce-labels``: per-label seconds x labels + the merged scoring, its
   covariances grown with the features.
3. The reduce now, at each ``--reduce-labels``: ``--per-chunk`` labels per chunk scores file,
   written with ``save_chunk_scores`` (rows of part 1's first label with other values, moments
   of a few hundred random rows rescaled to the chunk's counts, ``--kept`` kept features per
   label; and ``--kept-large`` at the smallest label count, 0: skip), then read and merged in a
   child process as ``wcgan merge-scores`` does (``load_chunk_score_files``, ``merge_scores``,
   ``write_metrics``): its seconds by phase, its wall clock with the interpreter's start, its
   CPU seconds (``os.wait4``), its own peak resident memory (``VmHWM``: wait4's would count the
   parent's too) and the files' size. The files go under ``--work`` (about 44 MB per chunk of
   10 labels at 50 kept, 32 MB of it the moments) and are deleted after each.

Seconds are wall clock and CPU seconds of the process: with one thread the CPU seconds are what
a quiet machine would take; on a shared one the wall clock is larger. The load average is printed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from wcgan.config import PRC_MAX_IMAGES, SCORE_SEED
from wcgan.data import sample_rows
from wcgan.feature_stats import (
    InnerProducts,
    Moments,
    frechet_distance,
    kernel_distance,
    precision_and_recall,
)
from wcgan.files import ChunkScores, Extractor, save_chunk_scores
from wcgan.labels import make_labels
from wcgan.metrics import LabelFeatures, score_chunk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--labels", type=int, default=3, help="labels timed old and new (part 1)")
parser.add_argument("--fake", type=int, default=1000, help="generated features per label")
parser.add_argument("--real", type=int, default=1300, help="real features per label")
parser.add_argument("--dims", type=int, default=2048, help="pool features' width (Inception-v3: 2,048)")
parser.add_argument("--logits", type=int, default=1008, help="logits' width (Inception-v3: 1,008)")
parser.add_argument("--reduce-labels", type=int, nargs="+", default=[100, 1000])
parser.add_argument("--per-chunk", type=int, default=10, help="labels per chunk scores file (K)")
parser.add_argument("--kept", type=int, default=50, help="kept features per label (overall_per_label)")
parser.add_argument(
    "--kept-large", type=int, default=1000, help="kept per label, at the smallest label count too (0: skip)"
)
parser.add_argument(
    "--former-overall-labels", type=int, default=100, help="labels of the former merged scoring (0: skip)"
)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--work", default=tempfile.gettempdir(), help="folder for the chunk files")
args = parser.parse_args()
torch.set_num_threads(args.threads)
threadpool_limits(args.threads)  # numpy's BLAS: torch-fidelity's covariances, eigenvalues, KID
repo = Path(__file__).resolve().parents[1]
extractor = Extractor("stand-in-2048", "none", "0" * 64)
seed = SCORE_SEED


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def timed(run):
    start = clock()
    result = run()
    return since(start), result


def features(index: int) -> LabelFeatures:
    """One label's stand-in features: non-negative like pooled ReLU outputs, the real ones
    shifted so that FID and KID are not near zero."""
    generator = torch.Generator().manual_seed(index)
    fake = torch.rand(args.fake, args.dims, generator=generator).square()
    real = torch.rand(args.real, args.dims, generator=generator).square() * 1.1 + 0.02
    logits = torch.randn(args.fake, args.logits, generator=generator) * 3
    return LabelFeatures(labels[index], extractor, real, fake, logits)


def former_label(label: LabelFeatures) -> tuple[dict, dict]:
    """d305e40's ``metric_values(fake, real, precision_recall=True)``: its torch-fidelity calls,
    each timed."""
    fake, real = label.fake_features, label.real_features
    seconds, values = {}, {}
    seconds["FID"], statistics = timed(lambda: [fid_features_to_statistics(f) for f in (fake, real)])
    fid_seconds, fid = timed(lambda: fid_statistics_to_metric(*statistics, verbose=False))
    seconds["FID"] = tuple(a + b for a, b in zip(seconds["FID"], fid_seconds, strict=True))
    seconds["KID"], kid = timed(
        lambda: kid_features_to_metric(
            fake, real, kid_subset_size=min(1000, len(fake), len(real)), rng_seed=seed, verbose=False
        )
    )
    seconds["PR"], prc = timed_precision_recall(fake, real)
    for name, value in (fid | kid | prc).items():
        values[name] = float(value)
    named = dict(
        zip(("fid", "kid_mean", "kid_std", "precision", "recall", "f_score"), values.values(), strict=True)
    )
    return seconds, named


def timed_precision_recall(fake: torch.Tensor, real: torch.Tensor) -> tuple[tuple[float, float], dict]:
    """torch-fidelity's precision/recall as d305e40 called it."""
    return timed(
        lambda: prc_features_to_metric(
            sample_rows(fake, PRC_MAX_IMAGES, seed),
            sample_rows(real, PRC_MAX_IMAGES, seed),
            save_cpu_ram=True,
            verbose=False,
        )
    )


def new_label(label: LabelFeatures) -> tuple[dict, dict]:
    """``score_chunk`` of the one label (what the map does per label), then its parts alone."""
    fake, real = label.fake_features, label.real_features
    seconds = {}
    seconds["total"], scores = timed(
        lambda: score_chunk([label], overall_per_label=args.kept, log=lambda _: None)
    )
    seconds["FID"], _ = timed(lambda: frechet_distance(fake, real))
    # KID computes the inner products that precision/recall then reads (metric_values)
    seconds["KID"], products = timed(lambda: InnerProducts.of(fake, real))
    kid_seconds, _ = timed(
        lambda: kernel_distance(
            fake, real, subset_size=min(1000, len(fake), len(real)), seed=seed, products=products
        )
    )
    seconds["KID"] = tuple(a + b for a, b in zip(seconds["KID"], kid_seconds, strict=True))
    seconds["PR"], _ = timed(
        lambda: precision_and_recall(
            sample_rows(fake, PRC_MAX_IMAGES, seed),
            sample_rows(real, PRC_MAX_IMAGES, seed),
            products=products,
        )
    )
    seconds["moments"], _ = timed(lambda: (Moments.of(fake), Moments.of(real)))
    return seconds, scores.rows[0]


def relative(new: float, old: float) -> float:
    return abs(new - old) / max(abs(old), 1e-300)


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


labels = make_labels(
    [f"l{i:04d}" for i in range(max([*args.reduce_labels, args.former_overall_labels, args.labels]))]
)
print(
    f"stand-in features: {args.fake} generated, {args.real} real per label, {args.dims}-d "
    f"(+ {args.logits}-d logits), {args.threads} thread(s); load average {load()}",
    flush=True,
)

# --- part 1: per label ---------------------------------------------------------------------

old_seconds, new_seconds, differences, template = [], [], {}, None
for index in range(args.labels):
    label = features(index)
    order = ("old", "new") if index % 2 == 0 else ("new", "old")
    for which in order:
        if which == "old":
            seconds, old_values = former_label(label)
            old_seconds.append(seconds)
        else:
            seconds, new_values = new_label(label)
            new_seconds.append(seconds)
    template = template or new_values
    for name, old in old_values.items():
        differences[name] = max(differences.get(name, 0.0), relative(new_values[name], old))
    print(
        f"label {index}: old {sum(s[0] for s in old_seconds[-1].values()):.1f} s, "
        f"new {new_seconds[-1]['total'][0]:.2f} s (wall); load average {load()}",
        flush=True,
    )


def mean(rows: list[dict], key: str) -> tuple[float, float]:
    return tuple(sum(row[key][i] for row in rows) / len(rows) for i in (0, 1))


old_per_label = tuple(sum(mean(old_seconds, key)[i] for key in ("FID", "KID", "PR")) for i in (0, 1))
new_per_label = mean(new_seconds, "total")
print(f"\nPer label, mean of {args.labels} labels, seconds wall / CPU, {args.threads} thread(s):\n")
print("| part | former reduce (torch-fidelity) | map now (score_chunk) | ratio (CPU) |")
print("| --- | ---: | ---: | ---: |")
for key in ("FID", "KID", "PR"):
    old, new = mean(old_seconds, key), mean(new_seconds, key)
    print(f"| {key} | {old[0]:.2f} / {old[1]:.2f} | {new[0]:.2f} / {new[1]:.2f} | {old[1] / new[1]:.1f} |")
fid_kid_pr = tuple(sum(mean(new_seconds, key)[i] for key in ("FID", "KID", "PR")) for i in (0, 1))
moments = mean(new_seconds, "moments")
print(
    f"| FID + KID + PR | {old_per_label[0]:.2f} / {old_per_label[1]:.2f} | {fid_kid_pr[0]:.2f} / {fid_kid_pr[1]:.2f} | {old_per_label[1] / fid_kid_pr[1]:.1f} |"
)
print(f"| moments (both sides) | - | {moments[0]:.2f} / {moments[1]:.2f} | |")
print(
    f"| whole label | {old_per_label[0]:.2f} / {old_per_label[1]:.2f} | {new_per_label[0]:.2f} / "
    f"{new_per_label[1]:.2f} | {old_per_label[1] / new_per_label[1]:.1f} |"
)
print(
    f"\ngoal, FID + KID + PR at most 1 s per label: {'met' if fid_kid_pr[1] <= 1 else 'NOT met'} "
    f"({fid_kid_pr[1]:.2f} CPU s, {fid_kid_pr[0]:.2f} s wall)"
)
print(
    "largest relative difference, map now against the former reduce: "
    + ", ".join(f"{name} {value:.1e}" for name, value in differences.items())
)
print(f"load average {load()}", flush=True)

# --- part 2: the former reduce's merged scoring ----------------------------------------------

former_overall = None
if args.former_overall_labels:
    n = args.former_overall_labels
    parts = [features(index) for index in range(n)]
    fake = torch.cat([part.fake_features for part in parts])
    real = torch.cat([part.real_features for part in parts])
    logits = torch.cat([part.fake_logits for part in parts])
    del parts
    seconds = {}
    seconds["IS"], _ = timed(lambda: isc_features_to_metric(logits, splits=10, rng_seed=seed))
    seconds["FID statistics"], statistics = timed(
        lambda: [fid_features_to_statistics(f) for f in (fake, real)]
    )
    seconds["FID"], _ = timed(lambda: fid_statistics_to_metric(*statistics, verbose=False))
    seconds["KID"], _ = timed(
        lambda: kid_features_to_metric(fake, real, kid_subset_size=1000, rng_seed=seed, verbose=False)
    )
    seconds["PR"], _ = timed_precision_recall(fake, real)
    del fake, real, logits, statistics
    former_overall = (n, seconds)
    print(
        f"\nformer merged scoring of {n} labels ({n * args.fake} generated, {n * args.real} real), "
        "seconds wall / CPU: "
        + ", ".join(f"{key} {value[0]:.1f} / {value[1]:.1f}" for key, value in seconds.items())
        + f"; load average {load()}",
        flush=True,
    )

# --- part 3: the reduce now ------------------------------------------------------------------

CHILD = """
import json, resource, sys, time
start = time.perf_counter()
import torch
torch.set_num_threads({threads})
from threadpoolctl import threadpool_limits
threadpool_limits({threads})
from wcgan.cli import files_in
from wcgan.metrics import load_chunk_score_files, merge_scores
from wcgan.tables import write_metrics
imported = time.perf_counter()
chunks = load_chunk_score_files(files_in([sys.argv[1]]))
loaded = time.perf_counter()
rows = merge_scores(chunks, log=lambda _: None)
merged = time.perf_counter()
write_metrics(rows, sys.argv[2])
write = time.perf_counter() - merged
# This process's own peak: getrusage and wait4 would also count the parent's, whose memory
# the child shares until exec.
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
print(json.dumps(dict(start=imported - start, read=loaded - imported, merge=merged - loaded,
                      write=write, rows=len(rows), peak=int(status[0]) * 1024)))
"""


def chunk_moments(count: int, rows: int, chunk: int) -> Moments:
    """Moments of ``rows`` random non-negative rows rescaled to ``count``: a positive
    semi-definite covariance, timed like any other."""
    generator = torch.Generator().manual_seed(10_000 + chunk)
    base = Moments.of(torch.rand(rows, args.dims, generator=generator).square())
    scale = count / rows
    return Moments(count, base.total * scale, base.outer * scale)


def write_chunks(folder: Path, n_labels: int, kept: int) -> tuple[float, int]:
    start = time.perf_counter()
    folder.mkdir(parents=True)
    base = [chunk_moments(args.per_chunk * args.fake, 300, c) for c in range(4)]
    for first in range(0, n_labels, args.per_chunk):
        chunk = labels[first : first + args.per_chunk]
        generator = torch.Generator().manual_seed(first)
        rows = [
            {
                key: (value * (1 + 0.001 * label.index) if isinstance(value, float) else value)
                for key, value in template.items()
            }
            for label in chunk
        ]
        fake = base[(first // args.per_chunk) % 4]
        real = base[(first // args.per_chunk + 1) % 4]
        kept_fake = [torch.rand(kept, args.dims, generator=generator).square() for _ in chunk]
        kept_real = [torch.rand(kept, args.dims, generator=generator).square() * 1.1 + 0.02 for _ in chunk]
        kept_logits = [torch.randn(kept, args.logits, generator=generator) * 3 for _ in chunk]
        scores = ChunkScores(
            extractor,
            chunk,
            rows,
            Moments(len(chunk) * args.fake, fake.total, fake.outer),
            Moments(
                len(chunk) * args.real, real.total * args.real / args.fake, real.outer * args.real / args.fake
            ),
            kept_fake,
            kept_logits,
            kept_real,
        )
        save_chunk_scores(scores, folder / f"c{first:05d}.pt")
    size = sum(path.stat().st_size for path in folder.iterdir())
    return time.perf_counter() - start, size


def reduce(folder: Path) -> dict:
    """``wcgan merge-scores`` of ``folder`` in a child process: its phases, wall clock, CPU
    seconds (``os.wait4``) and peak resident memory (its VmHWM)."""
    command = [
        sys.executable,
        "-c",
        CHILD.format(threads=args.threads),
        str(folder),
        str(folder / "metrics.tsv"),
    ]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = status
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"merge-scores failed:\n{out[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]) | {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
    }


def expected_bytes(n_labels: int, kept: int) -> tuple[int, int]:
    """What the reduce holds: the kept subsets (labels x kept x (2 D + C) float32) and, as it
    folds the chunks one at a time, two chunks' two D x D and two D float64 moments."""
    return n_labels * kept * (2 * args.dims + args.logits) * 4, 2 * 2 * (args.dims**2 + args.dims) * 8


work = Path(tempfile.mkdtemp(prefix="score-bench-", dir=args.work))
results = []
try:
    cases = [(n, args.kept) for n in args.reduce_labels]
    if args.kept_large:
        cases.append((min(args.reduce_labels), args.kept_large))
    for n_labels, kept in cases:
        folder = work / f"{n_labels}-{kept}"
        write_seconds, size = write_chunks(folder, n_labels, kept)
        result = reduce(folder)
        results.append((n_labels, kept, size, result))
        print(
            f"reduce of {n_labels} labels, {kept} kept per label, K = {args.per_chunk}: "
            f"{result['wall']:.1f} s (files written in {write_seconds:.0f} s, {size / 1e9:.2f} GB); "
            f"load average {load()}",
            flush=True,
        )
        shutil.rmtree(folder)
finally:
    shutil.rmtree(work, ignore_errors=True)

print(
    f"\nThe reduce now (merge-scores: read every chunk file, merge, write the table), K = {args.per_chunk} "
    f"labels per chunk file, {args.threads} thread(s); seconds wall (CPU):\n"
)
print(
    "| labels | kept per label | chunk files | on disk (GB) | start + read + merge + write (s) | "
    "whole (s) | peak memory (GB) | kept + moments (GB) |"
)
print("| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
for n_labels, kept, size, result in results:
    kept_bytes, moment_bytes = expected_bytes(n_labels, kept)
    phases = " + ".join(f"{result[key]:.1f}" for key in ("start", "read", "merge", "write"))
    print(
        f"| {n_labels} | {kept} | {-(-n_labels // args.per_chunk)} | {size / 1e9:.2f} | {phases} | "
        f"{result['wall']:.1f} ({result['cpu']:.1f}) | {result['peak'] / 1e9:.2f} | "
        f"{kept_bytes / 1e9:.2f} + {moment_bytes / 1e9:.2f} |"
    )
now = {n: result for n, kept, _, result in results if kept == args.kept}
goal = now.get(1000)
if goal:
    print(
        f"\ngoal, the reduce of 1,000 labels in at most 2 minutes: {'met' if goal['wall'] <= 120 else 'NOT met'} "
        f"({goal['wall']:.1f} s wall, {goal['cpu']:.1f} CPU s)"
    )

if former_overall:
    n0, seconds = former_overall
    grows = ("IS", "FID statistics")  # linear in the features; the rest: fixed subsets, D x D

    def projected(n: int) -> float:
        merged = sum(value[1] * (n / n0 if key in grows else 1) for key, value in seconds.items())
        return n * old_per_label[1] + merged

    print(
        f"\nThe former reduce (d305e40's score_labels), PROJECTED from CPU seconds: {old_per_label[1]:.1f} s per "
        f"label x labels + the merged scoring measured at {n0} labels "
        f"({sum(value[1] for value in seconds.values()):.0f} s; IS and the covariances grown with the features)\n"
    )
    print("| labels | former reduce, projected CPU (s) | reduce now, measured CPU (wall) (s) | ratio (CPU) |")
    print("| ---: | ---: | ---: | ---: |")
    for n in args.reduce_labels:
        if n in now:
            print(
                f"| {n} | {projected(n):.0f} ({projected(n) / 3600:.2f} h) | {now[n]['cpu']:.1f} "
                f"({now[n]['wall']:.1f}) | {projected(n) / now[n]['cpu']:.0f} |"
            )
print(f"\nload average {load()}")
