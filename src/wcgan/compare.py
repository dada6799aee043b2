"""Comparing schemes (snakemake compare): the same data set trained several ways at equal
budgets, every variant scored with the same extractor and sample counts.

A scheme is a generator layout and a loss (``SCHEMES``): the per-label W-CGAN with the gradient
penalty or weight clipping, per-label DC-CGAN (its predecessor), per-label hinge, ``cgan``:
one class-conditional GAN for all labels (conditional batch norm, projection critic with
spectral normalisation, hinge loss), and ``distributed``: that conditional GAN with WGAN-GP
trained by a server and local critics on ``distributed.devices`` devices (``wcgan.distributed``).
A single job gets the per-label budget times the number of labels (``TrainConfig.for_labels``;
its seconds shared among its processes), so every scheme has the same device-seconds.

A variant (one scheme, one seed) is a run of its own, ``<run>/compare/<scheme>-s<seed>``, on the
outer run's labels and train section with the generator, ``loss`` and ``seed`` replaced and the
loss-specific options reset to null, so each scheme trains with its published recipe (a
gradient-penalty weight or a clip value set for the outer run's loss never reaches a loss it
does not fit); ``compare.options.<scheme>`` sets them per scheme instead. Every variant keeps
``compare.snapshots`` generator snapshots, scored into its quality-against-compute curve.

Device-seconds are the training seconds of every job summed, each job holding one device (a GPU,
or ``resources.train_threads`` CPU threads).

A label counts as collapsed when its FID is more than ``COLLAPSE_FACTOR`` times the median
per-label FID of its variant: a label that failed where the variant's others did not. The rule
is relative, so a scheme that fails on every label shows in its overall FID, not here.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from wcgan.atomic import read_json
from wcgan.config import TrainConfig, read_run_config
from wcgan.errors import WcganError
from wcgan.labels import make_chunks, make_labels
from wcgan.layout import RunLayout
from wcgan.tables import read_checked_csv, read_metrics

# Reset to null in every variant: each scheme takes its own recipe (wcgan.config.RECIPES).
LOSS_OPTIONS = ("critic_steps", "optimizer", "lr", "betas", "gp_weight", "clip_value")
# scheme -> (train.generator, train.loss)
SCHEMES: dict[str, tuple[str, str]] = {
    "wgan-gp": ("per_label", "wgan-gp"),
    "wgan-clip": ("per_label", "wgan-clip"),
    "dcgan": ("per_label", "dcgan"),
    "hinge": ("per_label", "hinge"),
    "cgan": ("conditional", "hinge"),
    "distributed": ("distributed", "wgan-gp"),
}
COLLAPSE_FACTOR = 3.0
# A FID curve whose last segment moved it by less than this share has flattened.
FLAT_CHANGE = 0.05
OVERALL_METRICS = ("is_mean", "fid", "kid_mean", "precision", "recall")
SPREAD = ("mean", "std", "min", "max")
# What the table over seeds averages.
AGGREGATED = (
    "device_seconds",
    "iterations",
    *OVERALL_METRICS,
    "fid_label_mean",
    "recall_label_min",
    "collapsed",
)


def variant_name(scheme: str, seed: int) -> str:
    return f"{scheme}-s{seed}"


def parse_variant(path: str | os.PathLike) -> tuple[str, int]:
    """(scheme, seed) of a file in a variant's ``<scheme>-s<seed>`` folder."""
    scheme, _, seed = Path(path).parent.name.rpartition("-s")
    if not scheme or not seed.isdigit():
        raise WcganError(f"compare: '{path}' is not in a <scheme>-s<seed> folder")
    return scheme, int(seed)


def variant_train(
    train: Mapping[str, Any], scheme: str, seed: int, options: Mapping[str, Any], snapshots: int
) -> dict[str, Any]:
    """The train section of a scheme's variant: the run's, with the scheme's generator and loss,
    ``seed``, ``snapshots``, and the loss options reset to the recipe, then ``options`` (the
    scheme's ``compare.options``) applied. The per-label budget stays the run's. Checked here,
    so a bad option fails when the DAG is built, naming ``compare.options.<scheme>``."""
    if scheme not in SCHEMES:
        raise WcganError(f"compare scheme '{scheme}' is unknown (known: {', '.join(SCHEMES)})")
    unknown = sorted(set(options) - set(LOSS_OPTIONS))
    if unknown:
        raise WcganError(
            f"compare.options.{scheme}.{unknown[0]} is not a loss option ({', '.join(LOSS_OPTIONS)})"
        )
    section = dict(train)
    section["generator"], section["loss"] = SCHEMES[scheme]
    section.update(dict.fromkeys(LOSS_OPTIONS), seed=seed, snapshots=snapshots)
    section.update(options)
    TrainConfig.from_mapping(section, f"compare.options.{scheme}")
    return section


def variant_config(
    base: Mapping[str, Any],
    run: str,
    labels: Sequence[str],
    scheme: str,
    seed: int,
    options: Mapping[str, Any] | None = None,
    snapshots: int = 0,
) -> dict:
    """The config of one variant: the base run's data (on its labels, listed so the variant
    needs no label discovery), sampling and resources, and its train section
    (``variant_train``)."""
    config = copy.deepcopy(dict(base))
    config["run"] = run
    config["parent_run"] = run.split("/")[0]
    config["data"]["labels"] = list(labels)
    config["train"] = variant_train(config["train"], scheme, seed, options or {}, snapshots)
    return config


def trained_units(layout: RunLayout, labels: Sequence[str], labels_per_job: int) -> list[tuple[str, str]]:
    """A run's trained units and their summaries: each label's, or the one of a conditional or
    distributed generator."""
    if not layout.per_label:
        return [(layout.generator, layout.trained("training"))]
    chunks = make_chunks(make_labels(list(labels)), labels_per_job)
    return [
        (label.slug, layout.trained_file("training", chunk.name, label.slug))
        for chunk in chunks
        for label in chunk.labels
    ]


def budget_table(units: Sequence[tuple[str, str]], loss: str) -> pd.DataFrame:
    """Per trained unit of a variant (``trained_units``): the budget it used, from its summary
    (iterations, and its device-seconds: training seconds summed over resumed sessions, times
    the processes of a distributed job, or the label's share of its chunk's job)."""
    rows = []
    for unit, summary_path in units:
        path = Path(summary_path)
        if not path.is_file():
            raise WcganError(f"compare: '{path}' is missing; did '{unit}' train in this variant?")
        summary = read_json(path, "training summary")
        if summary["loss"] != loss:
            raise WcganError(f"compare: '{path}' was trained with loss '{summary['loss']}', not '{loss}'")
        rows.append(
            {
                "slug": unit,
                "labels": len(summary.get("labels", [unit])),
                "loss": summary["loss"],
                "iterations": int(summary["iterations"]),
                "device_seconds": float(summary["device_seconds"]),
                "stopped_by": summary["stopped_by"],
                "device": summary["device"],
            }
        )
    return pd.DataFrame(rows)


def collapsed_labels(label_fid: pd.Series, factor: float = COLLAPSE_FACTOR) -> list:
    """The index entries (labels) whose FID exceeds ``factor`` times the median of them all."""
    values = label_fid.dropna()
    if values.empty:
        return []
    return values.index[values > factor * values.median()].tolist()


def variant_row(scheme: str, seed: int, budget: pd.DataFrame, metrics: pd.DataFrame) -> dict[str, Any]:
    """One row of ``comparison.tsv``: the budget used, the overall scores, the per-label FID
    spread and the collapsed labels of one variant."""
    overall = metrics[metrics["scope"] == "overall"]
    label_rows = metrics[metrics["scope"] == "label"].set_index("label")
    if len(overall) != 1 or label_rows.empty:
        raise WcganError(
            f"compare: the metrics of {variant_name(scheme, seed)} have no overall or label rows"
        )
    per_label = label_rows["fid"]
    collapsed = collapsed_labels(per_label)
    return {
        "scheme": scheme,
        "seed": seed,
        "labels": int(budget["labels"].sum()),
        "jobs": len(budget),
        "iterations": int(budget["iterations"].sum()),
        "device_seconds": float(budget["device_seconds"].sum()),
        "extractor": overall["extractor"].iloc[0],
        "extractor_weights": overall["extractor_weights"].iloc[0],
        **{name: float(overall[name].iloc[0]) for name in OVERALL_METRICS},
        **{f"fid_label_{stat}": float(per_label.agg(stat)) for stat in SPREAD},
        "recall_label_min": float(label_rows["recall"].min()),
        "recall_label_mean": float(label_rows["recall"].mean()),
        "collapsed": len(collapsed),
        "collapsed_labels": ",".join(map(str, collapsed)),
    }


def comparison_table(variants: Sequence[tuple[str, int, pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """``comparison.tsv``: one row per (scheme, seed). Variants scored by different extractors
    cannot be compared, which is an error."""
    table = pd.DataFrame([variant_row(*variant) for variant in variants])
    extractors = table[["extractor", "extractor_weights"]].astype(str).drop_duplicates()
    if len(extractors) > 1:
        raise WcganError(
            f"compare: the variants were scored with different extractors ({extractors.values.tolist()})"
        )
    return table


def aggregate_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each scheme (``<column>_mean``, ``<column>_std``), in the
    table's scheme order."""
    groups = table.groupby("scheme", sort=False)
    out = groups[list(AGGREGATED)].agg(["mean", "std"])
    out.columns = [f"{column}_{stat}" for column, stat in out.columns]
    out.insert(0, "seeds", groups.size())
    return out.reset_index()


def curve_end(curve: pd.DataFrame) -> pd.DataFrame:
    """Per generator weights of a variant's curve (its ``curve.tsv``): the last point's budget
    and scores, and over the last segment FID's relative change and its slope (FID per 100
    device-seconds); NaN where the curve has one point."""
    rows = []
    curve = curve.assign(weights=curve.get("weights", "raw"))  # a curve from before the average
    for weights, points in curve.groupby("weights", sort=False):
        last = points.iloc[-1]
        row = {
            "weights": weights,
            **{key: last[key] for key in ("device_seconds", "iterations", *OVERALL_METRICS)},
        }
        row["fid_last_change"] = row["fid_slope_per_100s"] = float("nan")
        if len(points) > 1:
            before = points.iloc[-2]
            row["fid_last_change"] = (last["fid"] - before["fid"]) / before["fid"]
            row["fid_slope_per_100s"] = (
                100 * (last["fid"] - before["fid"]) / (last["device_seconds"] - before["device_seconds"])
            )
        rows.append(row)
    return pd.DataFrame(rows)


def curve_ends_table(curves: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """``curve_ends.tsv``: per scheme and generator weights, the mean and std over seeds of each
    variant's curve end (``curve_end``), and whether FID has flattened: its mean change over the
    last segment is below ``FLAT_CHANGE``."""
    frames = []
    for path in curves:
        scheme, seed = parse_variant(path)
        frames.append(curve_end(read_checked_csv(path, "FID curve")).assign(scheme=scheme, seed=seed))
    table = pd.concat(frames, ignore_index=True)
    groups = table.groupby(["scheme", "weights"], sort=False)
    ended = ["device_seconds", "iterations", *OVERALL_METRICS, "fid_last_change", "fid_slope_per_100s"]
    out = groups[ended].agg(["mean", "std"])
    out.columns = [f"{column}_{stat}" for column, stat in out.columns]
    out.insert(0, "seeds", groups.size())
    out["flattened"] = out["fid_last_change_mean"].abs() < FLAT_CHANGE
    return out.reset_index()


def read_variants(
    budgets: Sequence[str | os.PathLike], metrics: Sequence[str | os.PathLike]
) -> list[tuple[str, int, pd.DataFrame, pd.DataFrame]]:
    """(scheme, seed, budget, metrics) of each variant, from ``<scheme>-s<seed>/budget.tsv`` and
    ``<scheme>-s<seed>/metrics.tsv`` given in the same order."""
    if len(budgets) != len(metrics):
        raise WcganError(f"compare: {len(budgets)} budget tables but {len(metrics)} metrics tables")
    variants = []
    for budget_path, metrics_path in zip(budgets, metrics, strict=True):
        name = Path(budget_path).parent.name
        if Path(metrics_path).parent.name != name:
            raise WcganError(f"compare: '{budget_path}' and '{metrics_path}' belong to different variants")
        scheme, seed = parse_variant(budget_path)
        budget = read_checked_csv(budget_path, "budget table", dtype={"slug": str, "label": str})
        variants.append((scheme, seed, budget, read_metrics(metrics_path)))
    return variants


def label_table(variants: Sequence[tuple[str, int, pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """``labels.tsv``: per variant and label, FID, recall (how much of the label's real images
    the samples cover) and precision, and whether the label collapsed."""
    frames = []
    for scheme, seed, _, metrics in variants:
        rows = metrics.loc[
            metrics["scope"] == "label", ["label", "slug", "fid", "kid_mean", "precision", "recall"]
        ]
        collapsed = set(collapsed_labels(rows.set_index("label")["fid"]))
        frames.append(rows.assign(scheme=scheme, seed=seed, collapsed=rows["label"].isin(collapsed)))
    table = pd.concat(frames, ignore_index=True)
    return table[["scheme", "seed", "label", "slug", "fid", "kid_mean", "precision", "recall", "collapsed"]]


def curve_rows(points_per_unit: Sequence[Sequence[dict]]) -> list[dict[str, Any]]:
    """The budget used at each snapshot point of a variant, over all its generators, for the
    points of each of the generators' weights in turn: ``points_per_unit`` holds each snapshot
    file's points (``wcgan.files.load_snapshot_samples``; a point without ``weights``, of a file
    from before the moving average, is of the raw ones), the same in every file. The files of
    one generator's labels (a conditional GAN's) name it, and its budget counts once; a file
    that names none is a generator of its own."""
    series = {tuple(point.get("weights", "raw") for point in points) for points in points_per_unit}
    counts = sorted({len(points) for points in points_per_unit})
    if len(counts) != 1:
        raise WcganError(f"compare: the training jobs kept different numbers of snapshots {counts}")
    if len(series) != 1:
        raise WcganError("compare: some training jobs kept the moving average's snapshots, others not")
    (weights,) = series
    generators = {
        points[0].get("generator", k) if points else k: points for k, points in enumerate(points_per_unit)
    }.values()
    totals, seen = Counter(weights), Counter()
    rows = []
    for k, kind in enumerate(weights):
        seen[kind] += 1
        rows.append(
            {
                "weights": kind,
                "point": seen[kind],
                "share": seen[kind] / totals[kind],
                "iterations": sum(int(points[k]["iteration"]) for points in generators),
                "device_seconds": sum(float(points[k]["device_seconds"]) for points in generators),
            }
        )
    return rows


@dataclass(frozen=True)
class FigureData:
    """What the compare figures show: the comparison table, every variant's per-label FID and
    FID-against-budget curve (each row with its scheme and seed), and per variant a row of
    samples for each label shown, with the grid's title."""

    comparison: pd.DataFrame
    label_fids: pd.DataFrame
    curves: pd.DataFrame
    sample_rows: list[tuple[str, list[tuple[str, Any]]]]
    title: str


def figure_data(
    comparison: str | os.PathLike,
    metrics: Sequence[str | os.PathLike],
    curves: Sequence[str | os.PathLike],
    variants: Sequence[str | os.PathLike],
    per_label: int,
    max_labels: int,
) -> FigureData:
    """The compare figures' data from compare-report's table, each variant's metrics.tsv and
    curve.tsv, and the samples of the ``variants``' runs: ``per_label`` samples of at most
    ``max_labels`` labels, evenly spread over the label order."""
    from wcgan.figures import evenly_spread
    from wcgan.files import load_samples

    def tagged(path: str | os.PathLike, table: pd.DataFrame) -> pd.DataFrame:
        scheme, seed = parse_variant(path)
        return table.assign(scheme=scheme, seed=seed)

    label_fids = []
    for path in metrics:
        table = read_metrics(path)
        label_fids.append(tagged(path, table.loc[table["scope"] == "label", ["label", "fid"]]))
    blocks = []
    for run_dir in map(Path, variants):
        config = read_run_config(run_dir / "config.yaml")
        labels = make_labels(config["data"]["labels"])
        chunk_of = {
            label.slug: chunk.name
            for chunk in make_chunks(labels, config["labels_per_job"])
            for label in chunk.labels
        }
        shown = [labels[i].slug for i in evenly_spread(len(labels), max_labels)]
        layout = RunLayout(str(run_dir))
        samples = [load_samples(layout.chunk_file("samples", chunk_of[slug], slug)) for slug in shown]
        blocks.append((run_dir.name, [(label.name, images[:per_label]) for images, label in samples]))
    title = f"{per_label} samples per label" + (
        f"; {len(shown)} of {len(labels)} labels, evenly spaced in label order"
        if len(shown) < len(labels)
        else ""
    )
    return FigureData(
        read_checked_csv(comparison, "comparison table"),
        pd.concat(label_fids, ignore_index=True),
        pd.concat([tagged(path, read_checked_csv(path, "FID curve")) for path in curves], ignore_index=True),
        blocks,
        title,
    )
