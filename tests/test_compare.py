"""Comparing schemes: the variant configs, the budget and comparison tables, and the figures."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import default_config, merged
from wcgan.atomic import write_json
from wcgan.compare import (
    LOSS_OPTIONS,
    aggregate_seeds,
    budget_table,
    collapsed_labels,
    comparison_table,
    curve_end,
    curve_ends_table,
    curve_rows,
    label_table,
    read_variants,
    trained_units,
    variant_config,
)
from wcgan.config import TrainConfig, config_schema, describe_schema_error
from wcgan.errors import WcganError
from wcgan.figures import plot_compare_fid, save_compare_grid
from wcgan.labels import make_labels
from wcgan.layout import RunLayout
from wcgan.tables import write_metrics, write_tsv

SCHEMA = config_schema()
LABELS = ["a", "b", "c", "d"]


def metrics(fids: list[float], overall_fid: float = 5.0, extractor: str = "wcgan-classifier") -> list[dict]:
    common = {"extractor": extractor, "extractor_weights": "clf.pt", "extractor_accuracy": 0.9}
    rows = [
        {"scope": "overall", "label": "", "slug": "", "index": -1, **common, "n_fake": 40, "n_real": 40}
        | {"is_mean": 2.0, "fid": overall_fid, "kid_mean": 0.1, "precision": 0.8, "recall": 0.6}
    ]
    for index, (name, fid) in enumerate(zip(LABELS, fids, strict=True)):
        rows.append(
            {"scope": "label", "label": name, "slug": name, "index": index, **common, "n_fake": 10}
            | {"n_real": 10, "fid": fid, "kid_mean": 0.01, "precision": 0.9, "recall": 1 / (1 + fid)}
        )
    return rows


def budget(iterations: list[int], seconds: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"slug": LABELS, "labels": 1, "iterations": iterations, "device_seconds": seconds})


def write_variant(root: Path, name: str, fids: list[float], overall_fid: float, seconds: float) -> tuple:
    folder = root / name
    folder.mkdir(parents=True)
    write_tsv(budget([100] * 4, [seconds] * 4), folder / "budget.tsv")
    write_metrics(metrics(fids, overall_fid), folder / "metrics.tsv")
    return folder / "budget.tsv", folder / "metrics.tsv"


def test_variant_config_keeps_the_budget_and_resets_the_loss_options():
    base = default_config()
    base["train"].update(loss="wgan-clip", clip_value=0.05, lr=1e-3, seed=7, iterations=40, seconds=9.0)
    config = variant_config(base, "digits/compare/dcgan-s3", LABELS, "dcgan", 3, snapshots=4)
    train = config["train"]
    assert config["run"] == "digits/compare/dcgan-s3" and config["data"]["labels"] == LABELS
    assert (train["loss"], train["seed"], train["iterations"], train["seconds"]) == ("dcgan", 3, 40, 9.0)
    assert (train["generator"], train["snapshots"]) == ("per_label", 4)
    assert all(train[name] is None for name in LOSS_OPTIONS)
    TrainConfig.from_mapping(train)  # the clip value of the run's loss does not reach dcgan
    assert base["train"]["loss"] == "wgan-clip" and base["data"]["labels"] is None  # base untouched


def test_the_cgan_scheme_is_one_conditional_hinge_gan_with_the_labels_budget_together():
    config = variant_config(default_config(), "d/compare/cgan-s0", LABELS, "cgan", 0, {"lr": 1e-4})
    train = TrainConfig.from_mapping(config["train"])
    assert (train.generator, train.loss, train.lr) == ("conditional", "hinge", 1e-4)
    layout = RunLayout.of_config(config)
    assert trained_units(layout, LABELS, 1) == [
        ("conditional", "results/d/compare/cgan-s0/training/conditional.json")
    ]
    per_label = variant_config(default_config(), "d/compare/dcgan-s0", LABELS, "dcgan", 0)
    slugs = [label.slug for label in make_labels(LABELS)]
    chunks = ["c000-002"] * 3 + ["c003-003"]
    assert trained_units(RunLayout.of_config(per_label), LABELS, 3) == [
        (slug, f"results/d/compare/dcgan-s0/training/{chunk}/{slug}.json")
        for slug, chunk in zip(slugs, chunks, strict=True)
    ]
    together = train.for_labels(len(LABELS))
    assert (together.iterations, together.seconds) == (4 * train.iterations, 4 * train.seconds)


@pytest.mark.parametrize(
    ("scheme", "options", "message"),
    [
        ("sngan", {}, "compare scheme 'sngan' is unknown"),
        ("cgan", {"clip_value": 0.01}, "compare.options.cgan.clip_value does not apply to loss 'hinge'"),
        ("wgan-gp", {"width": 8}, "compare.options.wgan-gp.width is not a loss option"),
        ("dcgan", {"lr": -1.0}, "compare.options.dcgan.lr must be positive"),
    ],
)
def test_scheme_options_that_do_not_fit_are_one_line_naming_them(scheme, options, message):
    with pytest.raises(WcganError, match=message.replace(".", r"\.")):
        variant_config(default_config(), "d/compare/x-s0", LABELS, scheme, 0, options)


def test_budget_table_reads_the_training_summaries(tmp_path):
    units = [("a", f"{tmp_path}/training/c0-1/a.json"), ("b", f"{tmp_path}/training/c0-1/b.json")]
    # A chunk of two labels that trained 3 s together: each label's share is its device-seconds.
    for slug, path in units:
        summary = {"label": slug, "loss": "hinge", "iterations": 6, "seconds": 3.0, "device_seconds": 1.5}
        summary |= {"stopped_by": "iterations", "device": "cpu"}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_json(summary, Path(path))
    table = budget_table(units, "hinge")
    assert table["iterations"].tolist() == [6, 6] and table["device_seconds"].sum() == 3.0
    assert table["labels"].tolist() == [1, 1]
    conditional = {"slug": "conditional", "labels": [[0, "a", "a"], [1, "b", "b"]], "loss": "hinge"}
    conditional |= {
        "iterations": 12,
        "seconds": 3.5,
        "device_seconds": 3.5,
        "stopped_by": "seconds",
        "device": "cpu",
    }
    write_json(conditional, (tmp_path / "training" / "conditional.json"))
    one_job = budget_table([("conditional", f"{tmp_path}/training/conditional.json")], "hinge").iloc[0]
    assert (one_job["labels"], one_job["iterations"], one_job["device_seconds"]) == (2, 12, 3.5)
    with pytest.raises(WcganError, match="trained with loss 'hinge', not 'dcgan'"):
        budget_table(units[:1], "dcgan")
    with pytest.raises(WcganError, match="did 'c' train"):
        budget_table([("c", f"{tmp_path}/training/c0-1/c.json")], "hinge")


def test_collapsed_labels_are_those_above_three_times_the_median():
    fids = pd.Series([1.0, 2.0, 2.0, 6.0, 6.5], index=["a", "b", "c", "d", "e"])
    assert collapsed_labels(fids) == ["e"]  # median 2: 6.0 is not above 6, 6.5 is
    assert collapsed_labels(pd.Series([4.0, 4.0, 4.0])) == []
    assert collapsed_labels(pd.Series([], dtype=float)) == []


def test_comparison_row_has_the_exact_budget_the_spread_and_collapsed_labels():
    table = comparison_table(
        [
            (
                "wgan-gp",
                0,
                budget([10, 10, 10, 9], [0.1, 0.2, 0.3, 0.4]),
                pd.DataFrame(metrics([1, 2, 3, 20])),
            ),
            ("dcgan", 0, budget([10] * 4, [1.0] * 4), pd.DataFrame(metrics([2, 2, 2, 2], 7.0))),
        ]
    )
    gp, dc = table.to_dict("records")
    assert gp["iterations"] == 39 and gp["device_seconds"] == pytest.approx(1.0, abs=1e-12)
    assert gp["labels"] == 4 and gp["jobs"] == 4 and gp["extractor"] == "wcgan-classifier"
    assert gp["recall_label_min"] == pytest.approx(1 / 21) and dc["recall_label_min"] == pytest.approx(1 / 3)
    assert (gp["fid_label_mean"], gp["fid_label_min"], gp["fid_label_max"]) == (6.5, 1.0, 20.0)
    assert gp["fid_label_std"] == pytest.approx(pd.Series([1, 2, 3, 20]).std())
    assert (gp["collapsed"], gp["collapsed_labels"]) == (1, "d")
    assert (dc["collapsed"], dc["collapsed_labels"], dc["fid"]) == (0, "", 7.0)
    assert list(table.columns[:6]) == ["scheme", "seed", "labels", "jobs", "iterations", "device_seconds"]


def test_label_table_has_each_labels_fid_recall_and_collapse():
    variants = [("wgan-gp", 0, budget([1] * 4, [1.0] * 4), pd.DataFrame(metrics([1, 2, 3, 20])))]
    table = label_table(variants)
    assert table["label"].tolist() == LABELS and table["collapsed"].tolist() == [False, False, False, True]
    assert table["recall"].tolist() == pytest.approx([1 / 2, 1 / 3, 1 / 4, 1 / 21])


def test_curve_rows_sum_the_budget_of_every_job_at_each_point():
    job_a = [{"iteration": 5, "device_seconds": 1.0}, {"iteration": 10, "device_seconds": 2.5}]
    job_b = [{"iteration": 4, "device_seconds": 1.5}, {"iteration": 9, "device_seconds": 2.0}]
    rows = curve_rows([job_a, job_b])
    assert [(r["point"], r["share"], r["iterations"], r["device_seconds"]) for r in rows] == [
        (1, 0.5, 9, 2.5),
        (2, 1.0, 19, 4.5),
    ]
    with pytest.raises(WcganError, match="different numbers of snapshots"):
        curve_rows([job_a, job_b[:1]])


def test_curve_rows_count_a_generator_drawn_in_several_label_files_once():
    # A conditional GAN's three labels, a file each, and a per-label GAN: two generators.
    conditional = [{"iteration": 6, "device_seconds": 3.0, "generator": "models/conditional.pt"}]
    per_label = [{"iteration": 2, "device_seconds": 1.0, "generator": "models/c003-003/3.pt"}]
    rows = curve_rows([conditional, conditional, conditional, per_label])
    assert (rows[0]["iterations"], rows[0]["device_seconds"]) == (8, 4.0)
    # Files that name no generator (written before they did) are each a generator of its own.
    unnamed = [{"iteration": 6, "device_seconds": 3.0}]
    assert curve_rows([unnamed, unnamed])[0]["iterations"] == 12


def test_variants_scored_by_different_extractors_are_refused():
    variants = [
        ("wgan-gp", 0, budget([1] * 4, [1.0] * 4), pd.DataFrame(metrics([1, 1, 1, 1]))),
        ("dcgan", 0, budget([1] * 4, [1.0] * 4), pd.DataFrame(metrics([1, 1, 1, 1], extractor="inception"))),
    ]
    with pytest.raises(WcganError, match="different extractors"):
        comparison_table(variants)


def test_seeds_are_aggregated_per_scheme(tmp_path):
    paths = [
        write_variant(tmp_path, "wgan-gp-s0", [1, 1, 1, 1], 4.0, 1.0),
        write_variant(tmp_path, "wgan-gp-s1", [1, 1, 1, 1], 6.0, 3.0),
        write_variant(tmp_path, "dcgan-s0", [2, 2, 2, 9], 8.0, 1.0),
        write_variant(tmp_path, "dcgan-s1", [2, 2, 2, 2], 10.0, 1.0),
    ]
    table = comparison_table(read_variants(*zip(*paths, strict=True)))
    assert list(zip(table["scheme"], table["seed"], strict=True)) == [
        ("wgan-gp", 0),
        ("wgan-gp", 1),
        ("dcgan", 0),
        ("dcgan", 1),
    ]
    seeds = aggregate_seeds(table).set_index("scheme")
    assert list(seeds.index) == ["wgan-gp", "dcgan"] and seeds["seeds"].tolist() == [2, 2]
    assert seeds.loc["wgan-gp", "fid_mean"] == 5.0
    assert seeds.loc["wgan-gp", "fid_std"] == pytest.approx(2**0.5)
    assert seeds.loc["wgan-gp", "device_seconds_mean"] == 8.0  # 4 labels x 1 s and 4 x 3 s
    assert seeds.loc["dcgan", "collapsed_mean"] == 0.5


def test_mismatched_variant_tables_are_refused(tmp_path):
    budget_a, _ = write_variant(tmp_path, "wgan-gp-s0", [1, 1, 1, 1], 4.0, 1.0)
    _, metrics_b = write_variant(tmp_path, "dcgan-s0", [1, 1, 1, 1], 4.0, 1.0)
    with pytest.raises(WcganError, match="belong to different variants"):
        read_variants([budget_a], [metrics_b])


@pytest.mark.parametrize(
    ("compare", "message"),
    [
        ({"schemes": ["wgan-gp"]}, "config key 'compare.schemes': ['wgan-gp'] is too short"),
        ({"schemes": ["wgan-gp", "sngan"]}, "config key 'compare.schemes.1': 'sngan' is not one of"),
        ({"seeds": [0, 0]}, "config key 'compare.seeds': [0, 0] has non-unique elements"),
    ],
)
def test_bad_compare_sections_are_one_line_naming_the_key(compare, message):
    config = merged(default_config(), {"compare": compare})
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(config))
    assert len(errors) == 1
    text = describe_schema_error(errors[0])
    assert text.startswith(message) and "\n" not in text


def test_compare_grid_puts_schemes_side_by_side(tmp_path):
    def rows(value: int) -> list[tuple[str, torch.Tensor]]:
        return [
            (name, torch.full((3, 1, 8, 8), value + i, dtype=torch.uint8)) for i, name in enumerate("abc")
        ]

    out = tmp_path / "samples.png"
    save_compare_grid([("wgan-gp", rows(0)), ("dcgan", rows(100))], out, "3 samples per label")
    with Image.open(out) as image:
        width, height = image.size
    # Two blocks of 3 enlarged 8 px cells (x6) plus labels on the left; three rows.
    assert 2 * 3 * 48 < width < 1200 and 3 * 48 < height < 700
    with pytest.raises(ValueError, match="same labels"):
        save_compare_grid([("wgan-gp", rows(0)), ("dcgan", rows(0)[:2])], out)


def test_compare_fid_figure(tmp_path):
    comparison = pd.DataFrame(
        {"scheme": ["wgan-gp", "wgan-gp", "dcgan"], "seed": [0, 1, 0], "fid": [3.0, 4.0, 6.0]}
    ).assign(extractor="wcgan-classifier")
    label_fids = pd.DataFrame(
        {"scheme": ["wgan-gp"] * 4 + ["dcgan"] * 2, "fid": [1.0, 2.0, 3.0, 9.0, 5.0, 7.0]}
    )
    out = tmp_path / "fid.png"
    plot_compare_fid(comparison, label_fids, out)
    with Image.open(out) as image:
        assert 400 < image.size[0] < 1500 and 300 < image.size[1] < 800


def test_the_curve_ends_give_each_weights_last_scores_and_slope_over_seeds(tmp_path):
    def curve(seed: int, fids: dict[str, list[float]]) -> str:
        rows = [
            {"weights": weights, "point": k + 1, "iterations": 10 * (k + 1), "device_seconds": 50.0 * (k + 1),
             "is_mean": 2.0, "fid": fid, "kid_mean": 0.1, "precision": 0.5, "recall": 0.4 + seed}
            for weights, values in fids.items()
            for k, fid in enumerate(values)
        ]  # fmt: skip
        path = tmp_path / f"wgan-gp-s{seed}" / "curve.tsv"
        path.parent.mkdir()
        write_tsv(pd.DataFrame(rows), path)
        return str(path)

    paths = [
        curve(0, {"ema": [9.0, 4.0, 3.9], "raw": [9.0, 6.0, 4.0]}),
        curve(1, {"ema": [8.0, 4.2, 4.1], "raw": [8.0, 7.0, 5.0]}),
    ]
    table = curve_ends_table(paths).set_index("weights")
    assert table["seeds"].tolist() == [2, 2] and table["scheme"].tolist() == ["wgan-gp", "wgan-gp"]
    assert table.loc["ema", "fid_mean"] == pytest.approx(4.0) and table.loc[
        "raw", "fid_mean"
    ] == pytest.approx(4.5)
    assert table.loc["ema", "recall_std"] == pytest.approx(0.5**0.5)
    # The last segment: -0.1 FID over 50 device-seconds (2.5 %, flat), -2 over 50 (a third, falling).
    assert table.loc["ema", "fid_slope_per_100s_mean"] == pytest.approx(-0.2)
    assert table.loc["raw", "fid_slope_per_100s_mean"] == pytest.approx(-4.0)
    assert table["flattened"].tolist() == [True, False]
    old = curve_end(pd.DataFrame([{"iterations": 5, "device_seconds": 1.0, "is_mean": 1.0, "fid": 2.0,
                                   "kid_mean": 0.0, "precision": 1.0, "recall": 1.0}]))  # fmt: skip
    assert old["weights"].tolist() == ["raw"] and old["fid_slope_per_100s"].isna().all()
