"""Comparing per-label schemes (snakemake compare): the same data set trained with several
losses at equal budgets, every variant scored with the same extractor and sample counts.

A variant (one scheme, one seed) is a run of its own, ``<run>/compare/<scheme>-s<seed>``, on the
outer run's labels and train section with ``loss`` and ``seed`` replaced and the loss-specific
options reset to null, so each scheme trains with its published recipe (a gradient-penalty
weight or a clip value set for the outer run's loss never reaches a loss it does not fit).

A label counts as collapsed when its FID is more than ``COLLAPSE_FACTOR`` times the median
per-label FID of its variant: a label that failed where the variant's others did not. The rule
is relative, so a scheme that fails on every label shows in its overall FID, not here.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from wcgan.errors import WcganError
from wcgan.tables import read_metrics

# Reset to null in every variant: each scheme takes its own recipe (wcgan.losses.RECIPES).
LOSS_OPTIONS = ("critic_steps", "optimizer", "lr", "betas", "gp_weight", "clip_value")
COLLAPSE_FACTOR = 3.0
OVERALL_METRICS = ("is_mean", "fid", "kid_mean", "precision", "recall")
SPREAD = ("mean", "std", "min", "max")
# What the table over seeds averages.
AGGREGATED = ("seconds", "iterations", *OVERALL_METRICS, "fid_label_mean", "collapsed")


def variant_name(scheme: str, seed: int) -> str:
    return f"{scheme}-s{seed}"


def parse_variant(path: str | os.PathLike) -> tuple[str, int]:
    """(scheme, seed) of a file in a variant's ``<scheme>-s<seed>`` folder."""
    scheme, _, seed = Path(path).parent.name.rpartition("-s")
    if not scheme or not seed.isdigit():
        raise WcganError(f"compare: '{path}' is not in a <scheme>-s<seed> folder")
    return scheme, int(seed)


def variant_config(base: Mapping[str, Any], run: str, labels: Sequence[str], scheme: str, seed: int) -> dict:
    """The config of one variant: the base run's data (on its labels, listed so the variant
    needs no label discovery), train section, sampling and resources, with ``loss`` = scheme,
    ``seed`` = seed and the loss options reset to the recipe. The budget stays the run's."""
    config = copy.deepcopy(dict(base))
    config["run"] = run
    config["data"]["labels"] = list(labels)
    train = config["train"]
    train["loss"], train["seed"] = scheme, seed
    for name in LOSS_OPTIONS:
        train[name] = None
    return config


def budget_table(run_dir: str | os.PathLike, slugs: Sequence[str], scheme: str) -> pd.DataFrame:
    """Per label of a variant: the budget it used, from ``training/<label>.json`` (iterations,
    and training seconds summed over resumed sessions)."""
    rows = []
    for slug in slugs:
        path = Path(run_dir) / "training" / f"{slug}.json"
        if not path.is_file():
            raise WcganError(f"compare: '{path}' is missing; did label '{slug}' train in this variant?")
        summary = json.loads(path.read_text(encoding="utf-8"))
        if summary["loss"] != scheme:
            raise WcganError(f"compare: '{path}' was trained with loss '{summary['loss']}', not '{scheme}'")
        rows.append(
            {
                "slug": slug,
                "label": summary["label"],
                "loss": summary["loss"],
                "iterations": int(summary["iterations"]),
                "seconds": float(summary["seconds"]),
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
    per_label = metrics[metrics["scope"] == "label"].set_index("label")["fid"]
    if len(overall) != 1 or per_label.empty:
        raise WcganError(
            f"compare: the metrics of {variant_name(scheme, seed)} have no overall or label rows"
        )
    collapsed = collapsed_labels(per_label)
    return {
        "scheme": scheme,
        "seed": seed,
        "labels": len(budget),
        "iterations": int(budget["iterations"].sum()),
        "seconds": float(budget["seconds"].sum()),
        "extractor": overall["extractor"].iloc[0],
        "extractor_weights": overall["extractor_weights"].iloc[0],
        **{name: float(overall[name].iloc[0]) for name in OVERALL_METRICS},
        **{f"fid_label_{stat}": float(per_label.agg(stat)) for stat in SPREAD},
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
        budget = pd.read_csv(budget_path, sep="\t", dtype={"slug": str, "label": str})
        variants.append((scheme, seed, budget, read_metrics(metrics_path)))
    return variants
