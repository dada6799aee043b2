"""Scoring as map and reduce against the former serial ``score``, on many small labels.

    OMP_NUM_THREADS=1 python bench/score_map_reduce.py [--labels 100] [--samples 20] [--real 40]
        [--jobs 4] [--former 2df28d5] [--threads 1] [--repeats 3]

``--labels`` digits-like labels (label i: images of digit i mod 10, each label with its own
seeded noise) of ``--real`` real images and ``--samples`` generated ones (other images of the
digit, noised alike), 8 x 8, scored with a small classifier trained on them. Three ways, all on
the CPU in this process (so no interpreter start-up is counted):

- former: ``wcgan.metrics.score_run`` of commit ``--former`` (read from git), one
  ``torch_fidelity.calculate_metrics`` call for all labels merged and one per label, each building
  the extractor and sending its images through it (without the feature cache: a first run);
- map and reduce: ``--jobs`` map jobs (``wcgan features``: build the extractor, extract, write
  one features file per label), then the reduce (``wcgan merge-scores``: read them, score);
- one process: ``wcgan score`` as it is now (map and reduce without files).

Prints each one's seconds, the fastest of ``--repeats`` runs (on a shared machine other jobs only
ever add time); for the map jobs their sum (device-seconds) and the longest (the wall clock when
they run side by side). Then the largest relative difference of any metric between the former
table and the map-and-reduce one. ``OMP_NUM_THREADS`` bounds numpy's threads as ``--threads``
bounds torch's.
"""

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from wcgan.classifier import train_classifier
from wcgan.config import ClassifierConfig
from wcgan.data import Shard, load_label_images
from wcgan.labels import make_labels
from wcgan.metrics import (
    extract_label_features,
    load_label_feature_files,
    open_extractor,
    save_label_features,
    score_labels,
    score_run,
)
from wcgan.model_files import save_classifier
from wcgan.sources import DataSpec

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--labels", type=int, default=100)
parser.add_argument("--samples", type=int, default=20, help="generated images per label")
parser.add_argument("--real", type=int, default=40, help="real images per label")
parser.add_argument("--jobs", type=int, default=4, help="map jobs, each a chunk of the labels")
parser.add_argument("--former", default="2df28d5", help="commit of the former serial score")
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()
torch.set_num_threads(args.threads)
quiet = dict(log=lambda _: None)


def former_metrics_module():
    """``wcgan/metrics.py`` as it was at ``--former``, imported under another name."""
    repo = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{args.former}:src/wcgan/metrics.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spec = importlib.util.spec_from_loader("wcgan_former_metrics", loader=None)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    exec(compile(source, f"{args.former}:src/wcgan/metrics.py", "exec"), module.__dict__)
    return module


def noised(images: torch.Tensor, seed: int) -> torch.Tensor:
    noise = torch.randint(-40, 41, images.shape, generator=torch.Generator().manual_seed(seed))
    return (images.int() + noise).clamp(0, 255).to(torch.uint8)


digits = [load_label_images(DataSpec(), str(d)) for d in range(10)]
labels = make_labels([f"l{i:03d}" for i in range(args.labels)])
shards, samples = [], []
for label in labels:
    images = digits[label.index % 10]
    shards.append(Shard(noised(images[: args.real], label.index), label, "bench"))
    generated = images[args.real : args.real + args.samples]
    samples.append((noised(generated, 10_000 + label.index), label))

with tempfile.TemporaryDirectory() as work:
    work = Path(work)
    config = ClassifierConfig(epochs=2, width=8, batch_size=64)
    model, report = train_classifier(shards, config, torch.device("cpu"), **quiet)
    classifier = work / "classifier.pt"
    save_classifier(model, [label.name for label in labels], report, classifier)

    former = former_metrics_module()

    def former_score():
        return former.score_run(samples, shards, former.choose_extractor(None, classifier), **quiet)

    def map_job(part: slice) -> list[Path]:
        network = open_extractor(None, classifier)
        paths = []
        for features in extract_label_features(network, samples[part], shards[part], **quiet):
            paths.append(work / f"{features.label.slug}.pt")
            save_label_features(features, paths[-1])
        return paths

    def fastest(run) -> tuple[float, object]:
        seconds, result = [], None
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = run()
            seconds.append(time.perf_counter() - started)
        return min(seconds), result

    chunk = -(-args.labels // args.jobs)
    parts = [slice(first, first + chunk) for first in range(0, args.labels, chunk)]
    former_seconds, former_records = fastest(former_score)
    map_seconds, paths = zip(*(fastest(lambda part=part: map_job(part)) for part in parts), strict=True)
    files = [path for part_paths in paths for path in part_paths]
    reduce_seconds, records = fastest(lambda: score_labels(load_label_feature_files(files), **quiet))
    one_process_seconds, _ = fastest(
        lambda: score_run(samples, shards, open_extractor(None, classifier), **quiet)
    )

names = ("is_mean", "is_std", "fid", "kid_mean", "kid_std", "precision", "recall", "f_score")
differences = [
    abs(ours[name] - theirs[name]) / max(abs(theirs[name]), 1e-12)
    for ours, theirs in zip(records, former_records, strict=True)
    for name in names
    if name in theirs
]
print(
    f"{args.labels} labels x {args.samples} samples ({args.real} real), 8 x 8, classifier extractor, "
    f"{args.threads} thread(s), classifier hold-out accuracy {report['holdout_accuracy']:.3f}"
)
print(f"former serial score ({args.former}): {former_seconds:8.2f} s")
print(
    f"map ({len(map_seconds)} jobs) + reduce:    {sum(map_seconds):8.2f} s + {reduce_seconds:.2f} s "
    f"(longest map job {max(map_seconds):.2f} s)"
)
print(f"one process (wcgan score now):  {one_process_seconds:8.2f} s")
print(f"largest relative difference of a metric, former against map and reduce: {max(differences):.2e}")
sys.exit(0 if max(differences) < 1e-6 else 1)
