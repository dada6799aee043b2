# Config validation, the label table and the few functions the rules share. The logic lives in
# the wcgan package; what is imported here is torch-free, so dry runs stay fast.
import gc
import json
import os
import shlex
import sys
from pathlib import Path

import yaml

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from wcgan.cli import format_options
from wcgan.cluster import check_labels_per_job, check_resources, check_slurm_gpu_request
from wcgan.compare import SCHEMES, variant_name, variant_train
from wcgan.config import (
    INCEPTION_DOWNLOAD,
    DistributedConfig,
    TrainConfig,
    coerce_strings,
    describe_schema_error,
    scheduler_minutes,
    training_jobs,
)
from wcgan.errors import WcganError
from wcgan.labels import SLUG_PATTERN, make_labels
from wcgan.scaling import scaling_points
from wcgan.sources import DataSpec, check_root, label_names
from wcgan.tables import format_metrics, missing_models

# Building the DAG of thousands of labels allocates millions of small objects; Python's default
# collector thresholds rescan them over and over (a dry run of 10,000 labels took 15% longer).
gc.freeze()
gc.set_threshold(100_000, 50, 100)

SCHEMA = Path(workflow.basedir) / "schemas" / "config.schema.yaml"
config.update(coerce_strings(config, yaml.safe_load(SCHEMA.read_text())))
try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError as error:
    raise WorkflowError(describe_schema_error(error.__context__)) from None


def _or_workflow_error(make, *args):
    """Call into the package; its one-line errors become Snakemake's."""
    try:
        return make(*args)
    except WcganError as error:
        raise WorkflowError(str(error)) from None


RESULTS = f"results/{config['run']}"
DATA = config["data"]
SPEC = _or_workflow_error(DataSpec.from_mapping, DATA)
LABELS = _or_workflow_error(lambda: make_labels(label_names(SPEC)))
LABEL_BY_SLUG = {label.slug: label for label in LABELS}
SLUGS = [label.slug for label in LABELS]
TRAIN = _or_workflow_error(TrainConfig.from_mapping, config["train"])
DIST = _or_workflow_error(DistributedConfig.from_mapping, config["distributed"])
# The training jobs: one per label, or the one job of a conditional or distributed generator.
GENERATOR = TRAIN.generator
TRAINED = training_jobs(GENERATOR, SLUGS)
INCEPTION_WEIGHTS = config["metrics"]["inception_weights"]


def _resource_values(resources):
    """Plain values of the resources a profile or the command line sets."""
    return {
        name: resource.raw if resource.is_evaluable() else resource.value
        for name, resource in (resources or {}).items()
    }


DEFAULT_RESOURCES = _resource_values(workflow.resource_settings.default_resources)
RULE_RESOURCES = {
    name: _resource_values(resources)
    for name, resources in workflow.resource_settings.overwrite_resources.items()
}
_or_workflow_error(check_resources, DEFAULT_RESOURCES, RULE_RESOURCES, TRAIN)
if (
    INCEPTION_WEIGHTS not in (None, INCEPTION_DOWNLOAD)
    and not Path(INCEPTION_WEIGHTS).is_file()
):
    raise WorkflowError(
        f"metrics.inception_weights '{INCEPTION_WEIGHTS}' does not exist"
    )


wildcard_constraints:
    label=SLUG_PATTERN,


def per_label(pattern):
    """Expand a path pattern with a {label} wildcard over every label of the run."""
    return expand(pattern, label=SLUGS)


def data_options():
    return format_options({k: v for k, v in DATA.items() if k != "labels"})


def shape_gate():
    """With data.resolution null, labels keep their own image sizes, which must agree: then
    training waits for labels.tsv, whose job checks them all (ancient: a rewritten table
    retrains nothing). A set resolution makes every shard the same shape, and the gate, which
    costs Snakemake time quadratic in the labels, is left out."""
    if DATA["resolution"] is not None:
        return []
    return ancient(f"{RESULTS}/labels.tsv")


def per_trained(pattern):
    """Expand a path pattern with a {label} wildcard over the training jobs' names."""
    return expand(pattern, label=TRAINED)


# Scheduler time limit (minutes) of a training job, from its budget.
TRAIN_RUNTIME = scheduler_minutes(
    (
        TRAIN
        if GENERATOR == "per_label"
        else TRAIN.for_labels(
            len(LABELS), DIST.processes if GENERATOR == "distributed" else 1
        )
    ),
    config["resources"]["runtime_margin_minutes"],
    config["resources"]["runtime_minutes_without_seconds"],
)


# --- training jobs (rules/train.smk) ---


def training_outputs(name, samples):
    """What the training job called ``name`` writes; with train.snapshots also the samples of
    every snapshot point."""
    outputs = {
        "model": f"{RESULTS}/models/{name}.pt",
        "losses": f"{RESULTS}/losses/{name}.csv",
        "summary": f"{RESULTS}/training/{name}.json",
        "samples": samples,
    }
    if TRAIN.snapshots:
        outputs["snapshots"] = f"{RESULTS}/snapshots/{name}.pt"
    return outputs


def training_params(name):
    sections = [config["train"]]
    if GENERATOR == "distributed":
        sections.append(config["distributed"])
    options = " ".join(format_options(section) for section in sections)
    return {
        "checkpoints": f"{RESULTS}/checkpoints/{name}",
        "options": options,
        # Per process: a distributed job runs DIST.processes of them.
        "threads": config["resources"]["train_threads"],
        "samples": config["sampling"]["per_label"],
        "samples_seed": config["sampling"]["seed"],
        "snapshots": lambda wildcards, output: (
            f"--snapshots-out {output.snapshots}" if TRAIN.snapshots else ""
        ),
    }


def training_command(launch):
    """The shell command of a training job: ``launch`` is ``wcgan train`` or a torchrun launch
    of ``wcgan train-distributed``."""
    return (
        f"{launch} --shard {{input.shards}} --model-out {{output.model}}"
        " --losses-out {output.losses} --summary-out {output.summary}"
        " --samples-out {output.samples} --samples {params.samples}"
        " --samples-seed {params.samples_seed} {params.snapshots}"
        " --checkpoint-dir {params.checkpoints} --threads {params.threads}"
        " {params.options} 2> {log}"
    )


def extractor_input():
    """The file the feature extractor reads: the run's classifier or local Inception weights."""
    if INCEPTION_WEIGHTS is None:
        return f"{RESULTS}/classifier/classifier.pt"
    return [] if INCEPTION_WEIGHTS == INCEPTION_DOWNLOAD else INCEPTION_WEIGHTS


def extractor_option(wildcards, input):
    if INCEPTION_WEIGHTS is None:
        return f"--classifier {input.extractor}"
    return f"--inception-weights {INCEPTION_WEIGHTS}"


def score_options():
    limit = config["metrics"]["max_real_per_label"]
    return f"--cache-root {RESULTS}/cache/fidelity" + (
        f" --max-real-per-label {limit}" if limit else ""
    )


def get_final_output():
    """The metrics, the figures and every generator: the ensemble is a deliverable, so a
    deleted model is retrained (resumed) even when its samples still exist."""
    curve = [f"{RESULTS}/scores/curve.tsv"] if TRAIN.snapshots else []
    return [
        f"{RESULTS}/scores/metrics.tsv",
        *curve,
        *get_figures(),
        *per_trained(f"{RESULTS}/models/{{label}}.pt"),
    ]


def get_figures():
    return [
        f"{RESULTS}/figures/samples",
        f"{RESULTS}/figures/samples_merged.png",
        f"{RESULTS}/figures/losses.png",
        f"{RESULTS}/figures/fid_per_label.png",
    ]


# --- weak scaling (rules/scaling.smk) ---


def scaling_max_jobs(settings):
    if settings["max_jobs"] is not None:
        return settings["max_jobs"]
    cores = (os.cpu_count() or 1) // config["resources"]["train_threads"]
    return max(1, min(cores, len(LABELS)))


SCALING = config["scaling"]
SCALING_DIR = f"{RESULTS}/scaling"
SCALING_POINTS = [
    (series, jobs)
    for series, settings in SCALING["series"].items()
    for jobs in _or_workflow_error(scaling_points, scaling_max_jobs(settings))
]


def scaling_base_config():
    """What changes a point's work; other settings (figures, metrics, the main run's budget,
    which a point replaces) leave its measurements standing."""
    train = {
        k: v for k, v in config["train"].items() if k not in ("iterations", "seconds")
    }
    resources = {k: config["resources"][k] for k in ("train_threads", "train_mem_mb")}
    return {
        "data": DATA,
        "train": train,
        "sampling": config["sampling"],
        "resources": resources,
    }


def scaling_point_table(series, jobs):
    return f"{SCALING_DIR}/{series}/n{jobs}.tsv"


def previous_scaling_point(wildcards):
    """The point before this one: points run in sequence. Checked here, when a DAG has scaling
    jobs, not at parse time: a point's own run has fewer labels than the series asks for.
    """
    for series, settings in SCALING["series"].items():
        if scaling_max_jobs(settings) > len(LABELS):
            raise WorkflowError(
                f"scaling.series.{series}.max_jobs is {settings['max_jobs']}, but the data set "
                f"has only {len(LABELS)} labels"
            )
    index = SCALING_POINTS.index((wildcards.series, int(wildcards.n)))
    return [scaling_point_table(*SCALING_POINTS[index - 1])] if index else []


# --- comparing schemes (rules/compare.smk) ---


COMPARE = config["compare"]
COMPARE_DIR = f"{RESULTS}/compare"
for _scheme in COMPARE["schemes"]:  # a bad scheme option fails now, naming it
    _or_workflow_error(
        variant_train,
        config["train"],
        _scheme,
        0,
        COMPARE["options"].get(_scheme, {}),
        COMPARE["snapshots"],
    )
# <scheme>-s<seed> -> (scheme, seed), in scheme-then-seed order.
COMPARE_VARIANTS = {
    variant_name(scheme, seed): (scheme, seed)
    for scheme in COMPARE["schemes"]
    for seed in COMPARE["seeds"]
}


def compare_base_config():
    """What a variant trains on: the run's labels (listed, so a variant finds the same ones),
    train section (budget included), sampling and resources; compare-config replaces the loss and
    seed and resets the loss options."""
    resources = {k: config["resources"][k] for k in ("train_threads", "train_mem_mb")}
    return {
        "data": {**DATA, "labels": [label.name for label in LABELS]},
        "train": config["train"],
        "distributed": config["distributed"],
        "sampling": config["sampling"],
        "resources": resources,
    }


def compare_variant_files(name):
    """A file of every variant, in scheme-then-seed order."""
    return [f"{COMPARE_DIR}/{variant}/{name}" for variant in COMPARE_VARIANTS]


def compare_samples(wildcards):
    """A variant's samples, made by its own Snakemake call: found by path, never declared (the
    two Snakemake instances would otherwise lock the same files)."""
    return per_label(f"{COMPARE_DIR}/{wildcards.variant}/samples/{{label}}.pt")


def compare_snapshots(wildcards):
    """A variant's snapshot samples, found by path like its samples."""
    run_dir = f"{COMPARE_DIR}/{wildcards.variant}"
    generator = SCHEMES[COMPARE_VARIANTS[wildcards.variant][0]][0]
    return [
        f"{run_dir}/snapshots/{name}.pt" for name in training_jobs(generator, SLUGS)
    ]


def compare_grid_variants():
    """The variants whose samples the figure shows: each scheme's first seed."""
    seed = COMPARE["seeds"][0]
    return [
        f"{COMPARE_DIR}/{variant_name(scheme, seed)}" for scheme in COMPARE["schemes"]
    ]


onstart:
    # Not at parse time: a dry run needs no data when the config lists the labels, and the
    # executor and job groups (label packing) are known only now.
    _or_workflow_error(check_root, SPEC)
    _or_workflow_error(check_labels_per_job, workflow.group_settings, len(LABELS))
    if workflow.executor_plugin.name == "slurm":
        train = RULE_RESOURCES.get("train_label", {})
        partition = train.get(
            "slurm_partition", DEFAULT_RESOURCES.get("slurm_partition")
        )
        _or_workflow_error(check_slurm_gpu_request, partition, train.get("gpu"))


onsuccess:
    metrics = Path(f"{RESULTS}/scores/metrics.tsv")
    if metrics.exists():
        print(format_metrics(metrics))
        print(f"figures: {RESULTS}/figures/")


onerror:
    # Only when the run trained labels (not, say, after a failed scaling point).
    message = (
        missing_models(RESULTS, TRAINED)
        if Path(RESULTS, "models").is_dir()
        else None
    )
    if message:
        print(message, file=sys.stderr)
