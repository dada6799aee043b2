"""End to end: the real Snakemake workflow on tiny configs in temporary working directories."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import BIN, SNAKEFILE, TINY, env, merged, run_snakemake, save_png, write_config
from wcgan.atomic import load_torch
from wcgan.benchmarks import read_benchmarks, time_by_rule
from wcgan.labels import read_table

pytestmark = pytest.mark.e2e
RUN = Path("results") / "tiny"
# The shared tiny run: 7 labels in chunks of 3, the last chunk shorter.
CHUNKED = {"labels_per_job": 3, "data": {"labels": [str(digit) for digit in range(7)]}}
CHUNKS = {"c000-002": ["0", "1", "2"], "c003-005": ["3", "4", "5"], "c006-006": ["6"]}


def planned_jobs(workdir: Path, *targets: str) -> dict[str, int]:
    """The jobs a dry run would run, by rule."""
    result = run_snakemake(workdir, *targets, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    counts = re.findall(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, re.MULTILINE)
    return {rule: int(n) for rule, n in counts if rule != "total"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("tiny")
    write_config(workdir, merged(TINY, CHUNKED))
    result = run_snakemake(workdir, "--report", str(RUN / "report.html"), "--report-after-run")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


def copy_run(tiny_run, tmp_path: Path) -> Path:
    """A copy of the finished tiny run (outputs, metadata and times kept) to change freely."""
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_run[0], workdir, symlinks=True)
    return workdir


def test_tiny_run_makes_every_output(tiny_run):
    workdir, result = tiny_run
    run = workdir / RUN
    table = read_table(run / "labels.tsv")
    assert [(label.slug, chunk) for label, _, chunk in table] == [
        (slug, chunk) for chunk, slugs in CHUNKS.items() for slug in slugs
    ]
    assert [count for _, count, _ in table][:3] == [178, 182, 177]
    for chunk, slugs in CHUNKS.items():
        for path in (f"logs/train/{chunk}.log", f"benchmarks/train/{chunk}.tsv", f"logs/split/{chunk}.log",
                     f"features/{chunk}.pt"):  # fmt: skip
            assert (run / path).stat().st_size > 0, path
        log = (run / f"logs/train/{chunk}.log").read_text()
        for slug in slugs:
            for path in (f"shards/{chunk}/{slug}.pt", f"models/{chunk}/{slug}.pt", f"samples/{chunk}/{slug}.pt",
                         f"figures/samples/{slug}.png"):  # fmt: skip
                assert (run / path).stat().st_size > 0, path
            rows = (run / f"losses/{chunk}/{slug}.csv").read_text().splitlines()
            assert rows[0].startswith("iteration,seconds,critic_loss,wasserstein,penalty") and len(rows) == 13
            summary = json.loads((run / f"training/{chunk}/{slug}.json").read_text())
            assert summary["iterations"] == 12 and summary["threads"] == 1
            assert len(load_torch(run / f"samples/{chunk}/{slug}.pt", "samples")["images"]) == 40
        assert log.count("iter 12/12 (100%)") >= 1
    for path in ("classifier/classifier.pt", "figures/samples_merged.png", "figures/losses.png",
                 "figures/fid_per_label.png", "figures/grids_by_fid.png", "report.html",
                 "benchmarks/score.tsv"):  # fmt: skip
        assert (run / path).stat().st_size > 0, path
    # The report shows the ranked grids, not a grid per label (thousands would not open).
    report = (run / "report.html").read_text()
    assert f'"{RUN}/figures/grids_by_fid.png"' in report and f"{RUN}/figures/samples/" not in report
    assert json.loads((run / "classifier/report.json").read_text())["holdout_accuracy"] > 0.5
    table = (run / "scores/metrics.tsv").read_text().splitlines()
    header = table[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in table[1:]]
    assert [(r["scope"], r["label"]) for r in rows] == [("overall", "")] + [
        ("label", str(d)) for d in range(7)
    ]
    assert {r["extractor"] for r in rows} == {"wcgan-classifier"}
    assert rows[0]["n_fake"] == "280" and float(rows[0]["fid"]) > 0 and float(rows[0]["is_mean"]) >= 1
    assert "metrics (wcgan-classifier features)" in result.stdout
    by_rule = time_by_rule(read_benchmarks(run))
    # A job per chunk, not per label.
    assert by_rule.loc["train", "jobs"] == 3 and by_rule.loc["split", "jobs"] == 3
    assert by_rule.loc["features", "jobs"] == 3
    assert by_rule["total_s"].gt(0).all()


def parsed_rules(workdir: Path) -> dict[str, tuple[bool, bool, bool]]:
    """Rule name -> (runs a command, has a log, has a benchmark), as Snakemake parses the
    workflow with ``workdir``'s config: rules inside an ``if`` count only where it holds. The
    API lists rules with their directives only through its workflow object (``--lint json``
    reports missing logs, not missing benchmarks)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ResourceSettings

    with SnakemakeApi() as api:
        workflow = api.workflow(ResourceSettings(cores=1), snakefile=SNAKEFILE, workdir=workdir)
        return {
            rule.name: (not rule.norun, bool(rule.log), rule.benchmark is not None)
            for rule in workflow._workflow.rules
        }


def test_every_rule_has_a_log_and_a_benchmark(tmp_path):
    rules = {}
    for generator in ("per_label", "conditional", "distributed"):  # each has its training rule
        write_config(tmp_path / generator, merged(TINY, {"train": {"generator": generator}}))
        rules.update(parsed_rules(tmp_path / generator))
    sources = [SNAKEFILE, *sorted((SNAKEFILE.parent / "rules").glob("*.smk"))]
    defined = {m for path in sources for m in re.findall(r"^\s*rule\s+(\w+)\s*:", path.read_text(), re.M)}
    assert defined <= set(rules), f"rules no config parsed: {sorted(defined - set(rules))}"
    for name, (runs, log, benchmark) in rules.items():
        assert not runs or (log and benchmark), f"rule {name} runs a command without log: and benchmark:"


def test_deleting_one_chunks_models_reruns_only_that_chunk(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path)
    run = workdir / RUN
    shutil.rmtree(run / "models/c003-005")
    before = {p: p.stat().st_mtime_ns for p in (run / "models").glob("*/*.pt")}
    assert planned_jobs(workdir) == {
        "train_chunk": 1, "features_chunk": 1, "score": 1, "plot_sample_grids": 1, "plot_merged_grid": 1,
        "plot_losses": 1, "plot_label_scores": 1, "plot_ranked_grids": 1, "all": 1,
    }  # fmt: skip
    result = run_snakemake(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert (run / "models/c003-005/4.pt").exists()
    # The chunk's finished checkpoint is reused, not retrained.
    assert "resumed from" in (run / "logs/train/c003-005.log").read_text()


def test_figures_target_regenerates_figures_without_retraining(tiny_run, tmp_path):
    workdir = copy_run(tiny_run, tmp_path)
    shutil.rmtree(workdir / RUN / "figures")
    jobs = planned_jobs(workdir, "figures")
    assert set(jobs) == {
        "plot_sample_grids",
        "plot_merged_grid",
        "plot_losses",
        "plot_label_scores",
        "plot_ranked_grids",
        "figures",
    }
    result = run_snakemake(workdir, "figures", "--report", str(RUN / "report2.html"), "--report-after-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / RUN / "figures/samples_merged.png").exists() and (
        workdir / RUN / "report2.html"
    ).exists()


SCALING = {
    "iterations": 8,
    "series": {"local": {"max_jobs": 2, "snakemake_args": []}},
    "projection_jobs": [10, 100],
}


def test_scaling_target_times_concurrent_label_jobs_and_replots_without_rerunning(tmp_path):
    write_config(tmp_path, merged(TINY, {"scaling": SCALING}))
    result = run_snakemake(tmp_path, "scaling", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    scaling = tmp_path / RUN / "scaling"
    summary = pd.read_csv(scaling / "summary.tsv", sep="\t")
    assert summary[["series", "n", "jobs"]].values.tolist() == [["local", 1, 1], ["local", 2, 2]]
    # Whether two jobs overlapped is the machine's load (tests/test_scaling.py checks the rule).
    assert summary["concurrent"].iloc[0] and summary["efficiency"].iloc[0] == 1.0
    assert (summary["efficiency"] > 0).all() and (summary["training_mean_s"] > 0).all()
    jobs = pd.read_csv(scaling / "jobs.tsv", sep="\t")
    assert (jobs["iterations"] == 8).all()
    assert (
        jobs[["launch", "startup", "training", "checkpoint", "shutdown"]].sum(axis=1) - jobs["time_s"]
    ).abs().max() < 1e-6
    # Each point is a run of its own on the first N labels, with iterations fixed and no time budget.
    point = yaml.safe_load((scaling / "local/n2/config.yaml").read_text())
    assert point["data"]["labels"] == ["0", "1"] and point["train"]["seconds"] is None
    assert sorted(p.name for p in (scaling / "local/n2/models").iterdir()) == ["c000-000", "c001-001"]
    projection = pd.read_csv(scaling / "projection.tsv", sep="\t")
    assert projection["n"].tolist() == [10, 100]
    figures = tmp_path / RUN / "figures/scaling"
    assert sorted(p.name for p in figures.glob("*.png")) == [
        "job_time_split.png",
        "projection.png",
        "weak_scaling.png",
    ]
    shutil.rmtree(figures)
    assert planned_jobs(tmp_path, "scaling") == {"plot_scaling": 1, "scaling": 1}
    # Settings that do not change a job's work leave the measurements standing.
    write_config(
        tmp_path,
        merged(TINY, {"scaling": SCALING, "figures": {"grid_samples": 4}, "train": {"iterations": 99}}),
    )
    assert "scaling_point" not in planned_jobs(tmp_path, "scaling")


def test_more_scaling_jobs_than_labels_is_one_clear_line(tmp_path):
    write_config(
        tmp_path, merged(TINY, {"scaling": {"series": {"local": {"max_jobs": 5, "snakemake_args": []}}}})
    )
    result = run_snakemake(tmp_path, "scaling", timeout=120)
    assert result.returncode != 0
    assert "scaling.series.local.max_jobs is 5, but the data set has only 3 chunks" in result.stderr
    assert not (tmp_path / "results").exists()


def test_one_stage_training_in_the_pipeline(tmp_path):
    write_config(tmp_path, merged(TINY, {"train": {"training": "one_stage", "loss": "hinge"}}))
    result = run_snakemake(tmp_path, str(RUN / "training/c000-000"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / RUN / "training/c000-000/0.json").read_text())
    assert summary["config"]["training"] == "one_stage" and summary["config"]["loss"] == "hinge"
    assert summary["iterations"] == 12
    assert len((tmp_path / RUN / "losses/c000-000/0.csv").read_text().splitlines()) == 13


def test_one_conditional_gan_for_all_labels_in_the_pipeline(tmp_path):
    train = {"generator": "conditional", "loss": "hinge", "iterations": 4, "snapshots": 2}
    write_config(tmp_path, merged(TINY, {"train": train}))
    assert planned_jobs(tmp_path).get("train_conditional") == 1
    result = run_snakemake(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / RUN / "training/conditional.json").read_text())
    assert summary["iterations"] == 3 * 4 and len(summary["labels"]) == 3  # the labels' budget together
    assert sorted(p.name for p in (tmp_path / RUN / "models").iterdir()) == ["conditional.pt"]
    # Its snapshot samples as a per-label run's: a file per label in its chunk's folder, which
    # the chunk's feature job scores.
    snapshots = sorted(
        p.relative_to(tmp_path / RUN / "snapshots") for p in (tmp_path / RUN / "snapshots").rglob("*")
    )
    assert [str(p) for p in snapshots if p.suffix == ".pt"] == [f"c00{i}-00{i}/{i}.pt" for i in range(3)]
    metrics = pd.read_csv(tmp_path / RUN / "scores/metrics.tsv", sep="\t")
    assert metrics["scope"].tolist() == ["overall", "label", "label", "label"]
    curve = pd.read_csv(tmp_path / RUN / "scores/curve.tsv", sep="\t")
    # The moving average's points, then the raw weights'; the scores drew from the average.
    assert curve["weights"].tolist() == ["ema", "ema", "raw", "raw"]
    assert curve["iterations"].tolist() == [6, 12, 6, 12]
    averaged = curve[curve["weights"] == "ema"]
    assert averaged["fid"].iloc[-1] == pytest.approx(metrics["fid"].iloc[0], rel=1e-4)
    assert curve["fid"].iloc[-1] != pytest.approx(metrics["fid"].iloc[0], rel=1e-4)
    assert (tmp_path / RUN / "figures/samples/2.png").exists()
    assert planned_jobs(tmp_path) == {}


def test_distributed_training_in_the_pipeline(tmp_path):
    train = {"generator": "distributed", "iterations": 2, "snapshots": 2}
    write_config(
        tmp_path, merged(TINY, {"train": train, "distributed": {"devices": 2, "partition": "by_label"}})
    )
    assert planned_jobs(tmp_path).get("train_distributed") == 1
    result = run_snakemake(tmp_path, "--cores", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / RUN / "training/distributed.json").read_text())
    assert summary["rounds"] == 3 * 2 and summary["world_size"] == 3  # the labels' rounds together
    assert summary["device_labels"] == [["0", "1"], ["2"]] and summary["bytes_per_round"] > 0
    curve = pd.read_csv(tmp_path / RUN / "scores/curve.tsv", sep="\t")
    # Three processes, each on a device of its own: device-seconds are three times the seconds.
    assert curve["iterations"].tolist() == [3, 6, 3, 6]
    assert curve["device_seconds"].iloc[-1] == pytest.approx(3 * summary["seconds"], rel=1e-4)
    assert pd.read_csv(tmp_path / RUN / "scores/metrics.tsv", sep="\t")["scope"].tolist()[0] == "overall"
    assert planned_jobs(tmp_path) == {}


def test_dry_run_of_the_default_config(tmp_path):
    write_config(tmp_path, {})
    assert planned_jobs(tmp_path)["train_chunk"] == 2  # digits' 10 labels at labels_per_job 5


def test_imagenet_dry_run_plans_a_job_per_chunk_without_the_data(tmp_path):
    write_config(tmp_path, {})
    shutil.copy(SNAKEFILE.parents[1] / "config/imagenet1k.yaml", tmp_path / "imagenet1k.yaml")
    jobs = planned_jobs(tmp_path, "--configfile", "imagenet1k.yaml")
    assert jobs["split_chunk"] == 1000 and jobs["train_chunk"] == 1000 and jobs["features_chunk"] == 1000
    assert jobs["score"] == 1
    # About 3 x labels / K jobs plus a constant.
    jobs = planned_jobs(tmp_path, "--configfile", "imagenet1k.yaml", "--config", "labels_per_job=10")
    assert jobs["split_chunk"] == jobs["train_chunk"] == jobs["features_chunk"] == 100
    assert sum(jobs.values()) == 3 * 100 + 9
    # A chunk's commands name its folders, not each label's files: short at any K (Linux refuses
    # one argument, such as bash -c's command, over 128 KiB).
    result = run_snakemake(
        tmp_path, "-n", "-p", "--configfile", "imagenet1k.yaml", "--config", "labels_per_job=1000"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [line for line in result.stdout.splitlines() if line.startswith("Shell command: wcgan")]
    # Only a split names each label (1,000 wnids: 14 KB); the others name folders.
    assert len(commands) > 5 and max(map(len, commands)) < 32 * 1024
    assert max(len(c) for c in commands if "wcgan split" not in c) < 4000


def test_no_command_grows_with_the_labels(tmp_path):
    """ImageNet-21k's 21,841 labels at K = 1: the jobs that read every chunk get the kind's root
    and --chunks, so no shell command (Linux refuses one argument, such as bash -c's command,
    over 128 KiB) comes near the limit. One dry run (minutes: 65,531 jobs) for every rule."""
    data = {"source": "imagefolder", "root": str(tmp_path / "not-here"), "resolution": 32}
    labels = [f"n{index:08d}" for index in range(21841)]
    write_config(tmp_path, {"run": "in21k", "labels_per_job": 1, "data": {**data, "labels": labels}})
    result = run_snakemake(tmp_path, "-n", "-p", timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    longest: dict[str, int] = {}
    rule = None
    for line in result.stdout.splitlines():
        if match := re.fullmatch(r"(?:local)?rule (\w+):", line):
            rule = match.group(1)
        elif line.startswith("Shell command: wcgan "):
            longest[rule] = max(longest.get(rule, 0), len(line) - len("Shell command: "))
    every_chunk = {"label_table", "plot_sample_grids", "plot_merged_grid", "plot_losses", "score"}
    assert every_chunk | {"split_chunk", "train_chunk", "features_chunk"} <= longest.keys()
    too_long = {rule: length for rule, length in longest.items() if length > 4096}
    assert not too_long, f"commands over 4 KB, longest per rule: {too_long}"


def test_the_committed_rule_graph_is_the_workflows(tmp_path):
    write_config(tmp_path, {})
    result = run_snakemake(tmp_path, "--rulegraph")
    assert result.returncode == 0, result.stderr
    rules = set(re.findall(r'label = "(\w+)"', result.stdout))
    svg = (SNAKEFILE.parent / "report/rulegraph.svg").read_text()
    assert rules and rules == set(re.findall(r">(\w+)</text>", svg)), "regenerate it (docs/many-labels.md)"


def test_a_weights_path_with_shell_characters_reaches_the_command_as_one_word(tmp_path):
    weights = tmp_path / "my weights $(touch pwned); x.pth"
    weights.write_bytes(b"not read by a dry run")
    write_config(tmp_path, merged(TINY, {"metrics": {"inception_weights": str(weights)}}))
    result = run_snakemake(tmp_path, "-n", "-p", "--forceall")
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [line for line in result.stdout.splitlines() if "wcgan features" in line]
    assert commands
    for command in commands:
        words = shlex.split(command.split("Shell command: ", 1)[-1])
        assert words[words.index("--inception-weights") + 1] == str(weights)
    assert not (tmp_path / "pwned").exists()


def test_a_changed_class_folder_resplits_only_its_chunk(tmp_path, image_tree):
    data = {"source": "imagefolder", "root": str(image_tree), "labels": None}
    write_config(tmp_path, merged(TINY, {"labels_per_job": 2, "data": data}))
    table = str(RUN / "labels.tsv")
    result = run_snakemake(tmp_path, table)
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(tmp_path, table) == {}
    save_png(image_tree / "x+y" / "4.png", value=99)  # a new image in the second chunk's label
    assert planned_jobs(tmp_path, table) == {"split_chunk": 1, "label_table": 1}
    result = run_snakemake(tmp_path, table)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = {label.name: count for label, count, _ in read_table(tmp_path / table)}
    assert counts == {"Café": 4, "red car": 4, "x+y": 5}


def test_a_label_of_another_image_size_fails_only_its_chunk_at_the_datas_own_size(tmp_path, image_tree):
    # data.resolution null: the run's images are 8x8 (its first image's); one 16x16 image in x+y.
    save_png(image_tree / "x+y" / "9.png", size=(16, 16))
    data = {"source": "imagefolder", "root": str(image_tree), "labels": None, "resolution": None}
    write_config(tmp_path, merged(TINY, {"data": data, "train": {"iterations": 2}}))
    result = run_snakemake(tmp_path, "--keep-going", "models")
    assert result.returncode != 0
    models = sorted(p.parent.name for p in (tmp_path / RUN / "models").glob("*/*.pt"))
    assert len(models) == 2, result.stderr[-3000:]  # the two other chunks trained
    split_logs = "".join(p.read_text() for p in (tmp_path / RUN / "logs/split").glob("*.log"))
    assert "9.png' is 16x16 but the run's first image is 8x8; set data.resolution" in split_logs
    assert "label_table" not in result.stderr  # training never waits for every label's split


def test_dry_run_needs_no_data_when_labels_are_listed(tmp_path):
    data = {"source": "imagefolder", "root": str(tmp_path / "not-here"), "labels": ["cat", "dog", "red car"]}
    write_config(tmp_path, {"data": data, "labels_per_job": 1})
    jobs = planned_jobs(tmp_path)
    assert jobs["split_chunk"] == 3 and jobs["train_chunk"] == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train": {"foo": 1}}, "config key 'train': unknown key 'foo'"),
        ({"train": {"lr": "fast"}}, "config key 'train.lr': 'fast' is not of type"),
        ({"train": {"iterations": 0}}, "config key 'train.iterations': 0 is less than the minimum of 1"),
        (
            {"train": {"iterations": None, "seconds": None}},
            "train.iterations and train.seconds are both unset",
        ),
        (
            {"train": {"loss": "wgan-clip", "gp_weight": 5}},
            "train.gp_weight does not apply to loss 'wgan-clip'",
        ),
        ({"data": {"resolution": 28}}, "config key 'data.resolution': 28 is not one of"),
        ({"data": {"source": "mnist"}}, "config key 'data.source': 'mnist' is not one of"),
        (  # listed for data that is not here (a dry run's), so only the slugs can be checked
            {"data": {"source": "imagefolder", "root": "/nonexistent", "labels": ["Cat", "cat"]}},
            "rename one so every label has its own slug",
        ),
        (
            {"data": {"source": "imagefolder", "root": "/nonexistent"}},
            "data.root '/nonexistent' does not exist",
        ),
        (
            {"metrics": {"inception_weights": "/nonexistent.pth"}},
            "metrics.inception_weights '/nonexistent.pth' does not exist",
        ),
        (
            {"metrics": {"inception_weights": "/weights/{x}.pth"}},
            "metrics.inception_weights '/weights/{x}.pth' holds a brace, which Snakemake reads as a wildcard",
        ),
        (
            {"scaling": {"series": {"my cluster": {"max_jobs": 1, "snakemake_args": []}}}},
            "config key 'scaling.series'",
        ),
        ({"data": {"labels": []}}, "config key 'data.labels': [] should be non-empty"),
        ({"train": {"seconds": float("inf")}}, "config key 'train.seconds': inf is not a finite number"),
        (
            {"train": {"checkpoint_seconds": float("nan")}},
            "config key 'train.checkpoint_seconds': nan is not a finite",
        ),
        (
            {"resources": {"runtime_margin_minutes": float("inf")}},
            "config key 'resources.runtime_margin_minutes': inf is not a finite number",
        ),
        ({"run": "tiny\n"}, "config key 'run': 'tiny\\n' holds a control character"),
        (
            {"data": {"labels": ["0", "1", "eleven"]}},
            "data.labels lists 'eleven', a label data.source digits does not hold",
        ),
        ({"run": "tiny/compare/wgan-gp-s0"}, "run 'tiny/compare/wgan-gp-s0': a run name has no '/'"),
        ({"data": {"labels": ["0"]}}, "the data set has one label ('0'): scoring needs two or more"),
        ({"run": "tiny/scaling/local/n1"}, "a run name has no '/'"),
        ({"labels_per_job": 0}, "config key 'labels_per_job': 0 is less than the minimum of 1"),
        ({"labels_per_job": 1.5}, "config key 'labels_per_job': 1.5 is not of type 'integer'"),
        ({"labels_per_job": 4}, "labels_per_job must be between 1 and the number of labels (3), got 4"),
        ({"train": {"generator": "biggan"}}, "config key 'train.generator': 'biggan' is not one of"),
        (
            {"compare": {"options": {"cgan": {"clip_value": 0.01}}}},
            "compare.options.cgan.clip_value does not apply to loss 'hinge'",
        ),
        ({"compare": {"options": {"sngan": {}}}}, "config key 'compare.options'"),
        ({"distributed": {"schedule": "async"}}, "config key 'distributed.schedule': 'async' is not one of"),
        (
            {"train": {"generator": "distributed", "training": "one_stage"}},
            "train.training one_stage does not apply to train.generator distributed",
        ),
    ],
)
def test_bad_config_is_one_clear_line_before_anything_runs(tmp_path, overrides, message):
    write_config(tmp_path, merged(TINY, overrides))
    result = run_snakemake(tmp_path, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr, result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the GPU the run asks for")
def test_a_gpu_this_machine_lacks_stops_a_local_run_before_its_first_job(tmp_path):
    write_config(tmp_path, merged(TINY, {"train": {"device": "cuda"}}))
    result = run_snakemake(tmp_path, timeout=120)
    assert result.returncode != 0
    assert "train.device 'cuda' asked for a GPU, but this job has none" in result.stderr
    assert not (tmp_path / "results").exists()


def _training_pid(workdir: Path, chunk: str) -> int | None:
    marker = f"checkpoints/{chunk}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if (
            cwd == str(workdir)
            and "train" in cmdline
            and any(marker in arg for arg in cmdline)
            and any(arg.endswith("wcgan") or arg == "wcgan.cli" for arg in cmdline)
        ):
            return int(entry.name)
    return None


def test_training_killed_mid_run_resumes_on_rerun(tmp_path):
    write_config(tmp_path, merged(TINY, {"train": {"iterations": 600, "checkpoint_seconds": 0.1}}))
    target = str(RUN / "training/c000-000")  # only label 0's chunk's training: what this test is about
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--cores", "2", target]
    first = subprocess.Popen(
        command, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    checkpoints = tmp_path / RUN / "checkpoints" / "c000-000"
    deadline = time.monotonic() + 240
    killed = None
    while time.monotonic() < deadline and killed is None:
        found = list(checkpoints.glob("*.pt")) if checkpoints.exists() else []
        pid = _training_pid(tmp_path, "c000-000")
        if found and pid and load_torch(found[0], "checkpoint")["count"] > 0:
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.05)
    output, _ = first.communicate(timeout=300)
    assert killed is not None, output[-3000:]
    assert first.returncode != 0
    assert not (tmp_path / RUN / "models/c000-000/0.pt").exists()
    reached = load_torch(next(checkpoints.glob("*.pt")), "checkpoint")["count"]
    assert 0 < reached < 600

    second = run_snakemake(tmp_path, target)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads((tmp_path / RUN / "training/c000-000/0.json").read_text())
    assert summary["iterations"] == 600
    assert summary["resumed_from_iteration"] >= reached > 0
    assert (
        f"at iteration {summary['resumed_from_iteration']} "
        in (tmp_path / RUN / "logs/train/c000-000.log").read_text()
    )


def test_compare_target_trains_and_scores_each_scheme_alike(tmp_path):
    bad = tmp_path / "bad"
    write_config(bad, merged(TINY, {"compare": {"schemes": ["wgan-gp"]}}))
    result = run_snakemake(bad, "compare", timeout=120)
    assert result.returncode != 0
    assert "config key 'compare.schemes': ['wgan-gp'] is too short" in result.stderr, result.stderr
    assert not (bad / "results").exists()

    workdir = tmp_path / "good"
    compare = {"schemes": ["wgan-gp", "cgan"], "seeds": [0], "snapshots": 2, "snakemake_args": []}
    write_config(workdir, merged(TINY, {"train": {"iterations": 6}, "compare": compare}))
    result = run_snakemake(workdir, "compare", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(workdir / RUN / "compare/comparison.tsv", sep="\t")
    assert list(zip(table["scheme"], table["seed"], strict=True)) == [("wgan-gp", 0), ("cgan", 0)]
    assert {"device_seconds", "iterations", "is_mean", "fid", "kid_mean", "precision", "recall"} <= set(
        table.columns
    )
    assert {"fid_label_mean", "fid_label_std", "fid_label_min", "fid_label_max", "collapsed"} <= set(
        table.columns
    )
    # Equal budgets: three label jobs of 6 iterations, or one conditional job of 3 x 6.
    assert table["iterations"].tolist() == [18, 18] and table["jobs"].tolist() == [3, 1]
    assert table["labels"].tolist() == [3, 3] and (table["device_seconds"] > 0).all()
    assert table["extractor"].tolist() == ["wcgan-classifier"] * 2
    assert table["extractor_weights"].nunique() == 1
    labels = pd.read_csv(workdir / RUN / "compare/labels.tsv", sep="\t")
    assert len(labels) == 6 and labels["recall"].between(0, 1).all()
    # Each variant is a run of its own, with its scheme's recipe, scored against this run's shards.
    variant = yaml.safe_load((workdir / RUN / "compare/cgan-s0/config.yaml").read_text())
    assert variant["run"] == "tiny/compare/cgan-s0"
    assert (variant["train"]["generator"], variant["train"]["loss"]) == ("conditional", "hinge")
    summary = json.loads((workdir / RUN / "compare/cgan-s0/training/conditional.json").read_text())
    assert summary["config"]["loss"] == "hinge" and summary["iterations"] == 18
    assert [len(summary["labels"]), len(summary["snapshots"])] == [3, 2]
    curve = pd.read_csv(workdir / RUN / "compare/cgan-s0/curve.tsv", sep="\t")
    assert curve["iterations"].tolist() == [9, 18, 9, 18] and curve["precision"].notna().all()
    per_label_curve = pd.read_csv(workdir / RUN / "compare/wgan-gp-s0/curve.tsv", sep="\t")
    assert per_label_curve["iterations"].tolist() == [9, 18, 9, 18]
    # The moving average's last point is the final generator the scores drew from: the same FID.
    averaged = curve[curve["weights"] == "ema"]
    assert averaged["device_seconds"].is_monotonic_increasing
    assert averaged["fid"].iloc[-1] == pytest.approx(table["fid"].iloc[1], rel=1e-4)
    ends = pd.read_csv(workdir / RUN / "compare/curve_ends.tsv", sep="\t").set_index(["scheme", "weights"])
    assert ends.loc[("cgan", "ema"), "fid_mean"] == pytest.approx(averaged["fid"].iloc[-1])
    assert ends.loc[("cgan", "raw"), "iterations_mean"] == 18 and len(ends) == 2 * len(table)
    assert not (workdir / RUN / "models").exists()  # the run itself trains nothing
    figures = workdir / RUN / "figures/compare"
    for name in ("samples.png", "fid.png", "fid_budget.png"):
        assert (figures / name).stat().st_size > 0
    assert planned_jobs(workdir, "compare") == {}
