# Config validation, the label table and the few functions the rules share. The logic lives in
# the wcgan package; what is imported here is torch-free, so dry runs stay fast.
import functools
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
from wcgan.cluster import (
    TRAIN_RULES,
    check_resources,
    check_slurm_gpu_request,
)
from wcgan.compare import SCHEMES, variant_name, variant_train
from wcgan.config import (
    INCEPTION_DOWNLOAD,
    check_run_name,
    DistributedConfig,
    TrainConfig,
    coerce_strings,
    describe_schema_error,
    scheduler_minutes,
    training_jobs,
)
from wcgan.errors import WcganError
from wcgan.labels import CHUNK_PATTERN, SLUG_PATTERN, make_chunks, make_labels
from wcgan.scaling import scaling_points
from wcgan.sources import DataSpec, check_root, data_fingerprint, label_names
from wcgan.tables import format_metrics, missing_models

# Building the DAG of thousands of labels allocates millions of small objects; Python's default
# collector thresholds rescan them over and over (a dry run of 10,000 labels took 15% longer).
gc.freeze()
gc.set_threshold(100_000, 50, 100)

SCHEMA = Path(workflow.basedir) / "schemas" / "config.schema.yaml"
config.update(coerce_strings(config, yaml.safe_load(SCHEMA.read_text())))
try:
    # Every key is required, config/config.yaml gives each: the schema's defaults (those of the
    # package's options) are not filled in.
    validate(config, schema="../schemas/config.schema.yaml", set_default=False)
except WorkflowError as error:
    raise WorkflowError(describe_schema_error(error.__context__)) from None


def _or_workflow_error(make, *args):
    """Call into the package; its one-line errors become Snakemake's."""
    try:
        return make(*args)
    except WcganError as error:
        raise WorkflowError(str(error)) from None


_or_workflow_error(check_run_name, config["run"], config.get("parent_run"))
RESULTS = f"results/{config['run']}"
DATA = config["data"]
SPEC = _or_workflow_error(DataSpec.from_mapping, DATA)
LABELS = _or_workflow_error(lambda: make_labels(label_names(SPEC)))
SLUGS = [label.slug for label in LABELS]
# Chunks of labels_per_job labels: one split, training and feature job each.
CHUNKS = {
    chunk.name: chunk
    for chunk in _or_workflow_error(make_chunks, LABELS, config["labels_per_job"])
}
TRAIN = _or_workflow_error(TrainConfig.from_mapping, config["train"])
DIST = _or_workflow_error(DistributedConfig.from_mapping, config["distributed"])
# The training jobs: one per label, or the one job of a conditional or distributed generator.
GENERATOR = TRAIN.generator
TRAINED = training_jobs(GENERATOR, list(CHUNKS))
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
if (
    INCEPTION_WEIGHTS not in (None, INCEPTION_DOWNLOAD)
    and not Path(INCEPTION_WEIGHTS).is_file()
):
    raise WorkflowError(
        f"metrics.inception_weights '{INCEPTION_WEIGHTS}' does not exist"
    )


wildcard_constraints:
    label=SLUG_PATTERN,
    chunk=CHUNK_PATTERN,


def per_chunk(pattern):
    """Expand a path pattern with a {chunk} wildcard over every chunk of the run."""
    return expand(pattern, chunk=CHUNKS)


@functools.cache  # Snakemake evaluates a job's params more than once
def chunk_files(folder, chunk, suffix=".pt", within=""):
    """The files of ``chunk``'s labels in ``folder``/<chunk>/ (or its subfolder ``within``),
    in label order, shell-quoted and space-separated for a command line."""
    where = f"{folder}/{chunk}/{within}" if within else f"{folder}/{chunk}"
    return " ".join(
        shlex.quote(f"{where}/{label.slug}{suffix}") for label in CHUNKS[chunk].labels
    )


# Each trained unit's generator, for the message after a failed run.
MODEL_FILES = (
    {
        label.slug: f"{RESULTS}/models/{chunk}/{label.slug}.pt"
        for chunk in CHUNKS
        for label in CHUNKS[chunk].labels
    }
    if GENERATOR == "per_label"
    else {GENERATOR: f"{RESULTS}/models/{GENERATOR}.pt"}
)


def all_label_files(folder, suffix=".pt"):
    """Every label's file in ``folder``/<chunk>/, in label order, for a command line."""
    return " ".join(chunk_files(folder, chunk, suffix) for chunk in CHUNKS)


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


# A training job's budget: a chunk's K labels share one device for K times a label's seconds;
# a conditional or distributed GAN gets the labels' budget together. The scheduler's time limit
# (minutes) follows from it.
TRAIN_JOB = (
    TRAIN.for_labels(config["labels_per_job"])
    if GENERATOR == "per_label"
    else TRAIN.for_labels(
        len(LABELS), DIST.processes if GENERATOR == "distributed" else 1
    )
)
TRAIN_RUNTIME = scheduler_minutes(
    TRAIN_JOB,
    config["resources"]["runtime_margin_minutes"],
    config["resources"]["runtime_minutes_without_seconds"],
)
_or_workflow_error(check_resources, DEFAULT_RESOURCES, RULE_RESOURCES, TRAIN_JOB)


# --- training jobs (rules/train.smk) ---


def trained_files(kind, name_or_pattern="{chunk}"):
    """A training job's output of ``kind`` (models, losses, training, snapshots): a chunk's
    folder of per-label files, or the one file of a conditional or distributed generator.
    """
    suffix = {
        "models": ".pt",
        "losses": ".csv",
        "training": ".json",
        "snapshots": ".pt",
    }
    if GENERATOR == "per_label":
        return directory(f"{RESULTS}/{kind}/{name_or_pattern}")
    return f"{RESULTS}/{kind}/{GENERATOR}{suffix[kind]}"


def all_trained(kind):
    """Every training job's output of ``kind``."""
    if GENERATOR == "per_label":
        return per_chunk(f"{RESULTS}/{kind}/{{chunk}}")
    return [trained_files(kind)]


def training_outputs():
    """What a training job writes: per label of a chunk (per_label), or one generator and every
    label's samples; with train.snapshots also the samples of every snapshot point."""
    outputs = {kind: trained_files(kind) for kind in ("models", "losses", "training")}
    if GENERATOR == "per_label":
        outputs["samples"] = directory(f"{RESULTS}/samples/{{chunk}}")
    else:
        outputs["samples"] = [
            directory(d) for d in per_chunk(f"{RESULTS}/samples/{{chunk}}")
        ]
    if TRAIN.snapshots:
        outputs["snapshots"] = trained_files("snapshots")
    return outputs


def _per_label_outputs(wildcards):
    """The file options of ``wcgan train`` for the job's chunk, one file per label (or, for
    one generator, its files and every label's samples), and its checkpoint folder. One
    function, not one per option: Snakemake inspects every input function of every job.
    """
    if GENERATOR == "per_label":
        chunk = wildcards.chunk
        files = {
            "--checkpoint-dir": f"{RESULTS}/checkpoints/{chunk}",
            "--shard": chunk_files(f"{RESULTS}/shards", chunk),
            "--model-out": chunk_files(f"{RESULTS}/models", chunk),
            "--losses-out": chunk_files(f"{RESULTS}/losses", chunk, ".csv"),
            "--summary-out": chunk_files(f"{RESULTS}/training", chunk, ".json"),
            "--samples-out": chunk_files(f"{RESULTS}/samples", chunk),
        }
        if TRAIN.snapshots:
            files["--snapshots-out"] = chunk_files(f"{RESULTS}/snapshots", chunk)
    else:
        files = {
            "--checkpoint-dir": f"{RESULTS}/checkpoints/{GENERATOR}",
            "--shard": all_label_files(f"{RESULTS}/shards"),
            "--model-out": trained_files("models"),
            "--losses-out": trained_files("losses"),
            "--summary-out": trained_files("training"),
            "--samples-out": all_label_files(f"{RESULTS}/samples"),
        }
        if TRAIN.snapshots:
            files["--snapshots-out"] = trained_files("snapshots")
    return " ".join(f"{option} {paths}" for option, paths in files.items())


def training_params():
    sections = [config["train"]]
    if GENERATOR == "distributed":
        sections.append(config["distributed"])
    options = " ".join(format_options(section) for section in sections)
    return {
        "files": _per_label_outputs,
        "options": options,
        # Per process: a distributed job runs DIST.processes of them.
        "threads": config["resources"]["train_threads"],
        "samples": config["sampling"]["per_label"],
        "samples_seed": config["sampling"]["seed"],
    }


def training_command(launch):
    """The shell command of a training job: ``launch`` is ``wcgan train`` or a torchrun launch
    of ``wcgan train-distributed``."""
    return (
        f"{launch} {{params.files}} --samples {{params.samples}}"
        " --samples-seed {params.samples_seed} --threads {params.threads}"
        " {params.options} 2> {log}"
    )


def split_fingerprint(wildcards):
    """The chunk's image files' fingerprint: a changed file list reruns the split job (a
    parameter changed), so shards and labels.tsv follow the data."""
    names = [label.name for label in CHUNKS[wildcards.chunk].labels]
    return data_fingerprint(SPEC, names)


def split_labels(wildcards):
    """The names and class indices of the job's chunk, for ``wcgan split``."""
    labels = CHUNKS[wildcards.chunk].labels
    names = shlex.join(label.name for label in labels)
    return f"--names {names} --indices {' '.join(str(label.index) for label in labels)}"


def feature_files(wildcards):
    """The per-label files of ``wcgan features`` for the job's chunk: samples, real images and
    (with train.snapshots) snapshot samples, and their feature files."""
    options = [
        ("--samples", "samples", ""),
        ("--shards", "shards", ""),
        ("--out", "features", ""),
    ]
    if TRAIN.snapshots and GENERATOR == "per_label":
        options += [
            ("--snapshots", "snapshots", ""),
            ("--snapshot-features", "features", "snapshots"),
        ]
    return " ".join(
        f"{option} {chunk_files(f'{RESULTS}/{kind}', wildcards.chunk, '.pt', within)}"
        for option, kind, within in options
    )


def chunk_snapshots():
    """A chunk's snapshot samples, which its feature job reads (per-label generators only)."""
    if TRAIN.snapshots and GENERATOR == "per_label":
        return f"{RESULTS}/snapshots/{{chunk}}"
    return []


def extractor_input():
    """The file the feature extractor reads: the run's classifier or local Inception weights."""
    if INCEPTION_WEIGHTS is None:
        return f"{RESULTS}/classifier/classifier.pt"
    return [] if INCEPTION_WEIGHTS == INCEPTION_DOWNLOAD else INCEPTION_WEIGHTS


def extractor_option(wildcards, input):
    # Quoted: a weights path is the user's, and may hold spaces or shell characters.
    if INCEPTION_WEIGHTS is None:
        return f"--classifier {shlex.quote(str(input.extractor))}"
    return f"--inception-weights {shlex.quote(INCEPTION_WEIGHTS)}"


def feature_options():
    limit = config["metrics"]["max_real_per_label"]
    return f"--max-real-per-label {limit}" if limit else ""


def merge_options():
    return f"--prc-max-images {config['metrics']['prc_max_images']}"


def get_final_output():
    """The metrics, the figures and every generator: the ensemble is a deliverable, so a
    deleted model is retrained (resumed) even when its samples still exist."""
    curve = [f"{RESULTS}/scores/curve.tsv"] if TRAIN.snapshots else []
    return [
        f"{RESULTS}/scores/metrics.tsv",
        *curve,
        *get_figures(),
        *all_trained("models"),
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
    return max(1, min(cores, len(CHUNKS)))


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
        "labels_per_job": config["labels_per_job"],
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
        if scaling_max_jobs(settings) > len(CHUNKS):
            raise WorkflowError(
                f"scaling.series.{series}.max_jobs is {settings['max_jobs']}, but the data set "
                f"has only {len(CHUNKS)} chunks of labels_per_job {config['labels_per_job']} labels"
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
        "labels_per_job": config["labels_per_job"],
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
    return per_chunk(f"{COMPARE_DIR}/{wildcards.variant}/samples/{{chunk}}")


def compare_snapshots(wildcards):
    """A variant's snapshot samples, found by path like its samples."""
    run_dir = f"{COMPARE_DIR}/{wildcards.variant}"
    generator = SCHEMES[COMPARE_VARIANTS[wildcards.variant][0]][0]
    if generator == "per_label":
        return per_chunk(f"{run_dir}/snapshots/{{chunk}}")
    return [f"{run_dir}/snapshots/{generator}.pt"]


def compare_grid_variants():
    """The variants whose samples the figure shows: each scheme's first seed."""
    seed = COMPARE["seeds"][0]
    return [
        f"{COMPARE_DIR}/{variant_name(scheme, seed)}" for scheme in COMPARE["schemes"]
    ]


onstart:
    # Not at parse time: a dry run needs no data when the config lists the labels, and the
    # executor is known only now.
    _or_workflow_error(check_root, SPEC)
    if workflow.executor_plugin.name == "slurm":
        train = RULE_RESOURCES.get(TRAIN_RULES[GENERATOR], {})
        partition = train.get(
            "slurm_partition", DEFAULT_RESOURCES.get("slurm_partition")
        )
        _or_workflow_error(
            check_slurm_gpu_request,
            TRAIN_RULES[GENERATOR],
            partition,
            train.get("gpu"),
        )


onsuccess:
    metrics = Path(f"{RESULTS}/scores/metrics.tsv")
    if metrics.exists():
        print(format_metrics(metrics))
        print(f"figures: {RESULTS}/figures/")


onerror:
    # Only when the run trained labels (not, say, after a failed scaling point).
    message = (
        missing_models(RESULTS, MODEL_FILES)
        if Path(RESULTS, "models").is_dir()
        else None
    )
    if message:
        print(message, file=sys.stderr)
