"""A finished run's FID next to that of untrained generators, scored the same way.

    python bench/untrained_baseline.py [results/digits]

For every label, a generator with the run's architecture and seed but no training (its
initial weights) draws as many samples as the run's; all labels' samples are merged and scored
with the run's extractor and real images, exactly as the run's ``score`` step does. Prints the
trained run's overall metrics (from ``scores/metrics.tsv``), the untrained ones, and their ratio.
"""

import dataclasses
import json
import sys
from pathlib import Path

from wcgan.config import TrainConfig
from wcgan.data import TrainingSet
from wcgan.files import load_samples, load_shard
from wcgan.labels import read_table
from wcgan.metrics import CLASSIFIER_EXTRACTOR, open_extractor, score_run
from wcgan.sampling import sample_label
from wcgan.tables import read_metrics
from wcgan.training import initial_networks

TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}

run = Path(sys.argv[1] if len(sys.argv) > 1 else "results/digits")
trained = read_metrics(run / "scores/metrics.tsv").set_index("scope").loc["overall"]
samples, shards = [], []
for label, _, chunk in read_table(run / "labels.tsv"):
    summary = json.loads((run / "training" / chunk / f"{label.slug}.json").read_text())
    config = TrainConfig.from_mapping({k: v for k, v in summary["config"].items() if k in TRAIN_FIELDS})
    shard = load_shard(run / "shards" / chunk / f"{label.slug}.pt")
    untrained, _ = initial_networks(
        config, TrainingSet.of_label(shard)
    )  # the run's architecture and initial weights
    n = len(load_samples(run / "samples" / chunk / f"{label.slug}.pt")[0])
    samples.append((sample_label(untrained.eval(), label, n), label))
    shards.append(shard)
if int(trained["n_real"]) != sum(len(shard.images) for shard in shards):
    sys.exit("the run scored a subset of the real images (metrics.max_real_per_label); not supported here")
weights = trained["extractor_weights"]
classifier = trained["extractor"] == CLASSIFIER_EXTRACTOR
network = open_extractor(None if classifier else weights, weights if classifier else None)
baseline = score_run(samples, shards, network, log=lambda _: None)[0]  # the overall row
print(f"run {run}: {int(trained['n_fake'])} samples, extractor {trained['extractor']}")
print(f"{'metric':>10} {'trained':>10} {'untrained':>10} {'untrained/trained':>18}")
for metric in ("fid", "kid_mean", "is_mean", "precision", "recall"):
    t, u = float(trained[metric]), baseline[metric]
    print(f"{metric:>10} {t:>10.4g} {u:>10.4g} {u / t if t else float('inf'):>18.1f}")
