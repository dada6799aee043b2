# Config validation, the label table and the few functions the rules share. The logic lives in
# the wcgan package; what is imported here is torch-free, so dry runs stay fast.
import gc
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from wcgan.options import format_options
from wcgan.cluster import (
    check_resources,
    check_slurm_gpu_request,
)
from wcgan.compare import variant_name, variant_train
from wcgan.config import (
    INCEPTION_DOWNLOAD,
    SCHEMA_PATH,
    config_schema,
    check_run_name,
    DistributedConfig,
    TrainConfig,
    check_plain_values,
    coerce_strings,
    describe_schema_error,
    scheduler_minutes,
)
from wcgan.errors import WcganError
from wcgan.layout import RunLayout
from wcgan.labels import (
    CHUNK_PATTERN,
    SLUG_PATTERN,
    check_chunk_checkpoints,
    make_chunks,
    make_labels,
)
from wcgan.scaling import scaling_points
from wcgan.sources import (
    DataSpec,
    check_root,
    data_fingerprint,
    label_names,
    native_image_size,
)
from wcgan.tables import format_metrics, missing_models

# Building the DAG of thousands of labels allocates millions of small objects; Python's default
# collector thresholds rescan them over and over (a dry run of 10,000 labels took 15% longer).
gc.freeze()
gc.set_threshold(100_000, 50, 100)

config.update(coerce_strings(config, config_schema()))
try:
    # The schema (in the package, whose options take their defaults from it too) fills in every
    # key the config files leave out.
    validate(config, schema=str(SCHEMA_PATH), set_default=True)
except WorkflowError as error:
    raise WorkflowError(describe_schema_error(error.__context__)) from None


def _or_workflow_error(make, *args):
    """Call into the package; its one-line errors become Snakemake's."""
    try:
        return make(*args)
    except WcganError as error:
        raise WorkflowError(str(error)) from None


_or_workflow_error(check_plain_values, config)
_or_workflow_error(check_run_name, config["run"], config.get("parent_run"))
DATA = config["data"]
SPEC = _or_workflow_error(DataSpec.from_mapping, DATA)
LABELS = _or_workflow_error(lambda: make_labels(label_names(SPEC)))
# The images' size: data.resolution, or with it null the source's own size or that of the
# run's first image, which every split job then asks of its labels (None: not readable here).
IMAGE_SIZE = _or_workflow_error(native_image_size, SPEC, LABELS[0].name)
# Chunks of labels_per_job labels: one split, training and feature job each.
CHUNKS = {
    chunk.name: chunk
    for chunk in _or_workflow_error(make_chunks, LABELS, config["labels_per_job"])
}
TRAIN = _or_workflow_error(TrainConfig.from_mapping, config["train"])
DIST = _or_workflow_error(DistributedConfig.from_mapping, config["distributed"])
# The training jobs: one per label, or the one job of a conditional or distributed generator.
GENERATOR = TRAIN.generator
# Every path under results/<run>/ (wcgan.layout).
LAYOUT = RunLayout.of(config["run"], GENERATOR)
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
if INCEPTION_WEIGHTS and ("{" in INCEPTION_WEIGHTS or "}" in INCEPTION_WEIGHTS):
    # The path is a rule's input, where Snakemake reads braces as wildcards.
    raise WorkflowError(
        f"metrics.inception_weights '{INCEPTION_WEIGHTS}' holds a brace, which Snakemake "
        f"reads as a wildcard: rename the file, or give a link to it"
    )
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


# A command that reads (or writes) every chunk gets the kind's root folder (results/<run>/samples)
# and these two numbers, from which it names every chunk's folder (wcgan.cli.add_chunks_option):
# one argument per chunk would pass Linux's 128 KiB limit on a command at a few thousand chunks.
# The rules still declare each chunk's folder as input or output, for the DAG.
CHUNKS_OPTION = f"--chunks {len(LABELS)} {config['labels_per_job']}"


def every_chunk(name):
    """A params function: the rule's input ``name`` (every chunk's folder) as a command takes
    it, their root and CHUNKS_OPTION. The root is read off the input, so that it follows the
    files wherever Snakemake puts them (a function of one job's rule costs nothing)."""
    return lambda wildcards, input: f"{os.path.dirname(input[name][0])} {CHUNKS_OPTION}"


def model_files():
    """Each label's generator (or the one generator) and the log that says why it is missing,
    for the message after a failed run: its chunk's split log when the split made no shards,
    else its training job's. Built only then, not on every parse of thousands of labels.
    """
    unsplit = [
        name for name in CHUNKS if not Path(LAYOUT.chunks("shards", name)).is_dir()
    ]
    split_logs = [LAYOUT.log(f"split/{name}") for name in unsplit]
    if GENERATOR != "per_label":
        log = split_logs[0] if split_logs else LAYOUT.log(f"train/{GENERATOR}")
        return {GENERATOR: (LAYOUT.trained("models"), log)}
    return {
        label.slug: (
            LAYOUT.trained_file("models", chunk.name, label.slug),
            LAYOUT.log(f"{'split' if chunk.name in unsplit else 'train'}/{chunk.name}"),
        )
        for chunk in CHUNKS.values()
        for label in chunk.labels
    }


def data_options():
    return format_options({k: v for k, v in DATA.items() if k != "labels"})


def all_trained(kind):
    """Every training job's output of ``kind``."""
    return (
        per_chunk(LAYOUT.trained(kind)) if LAYOUT.per_label else [LAYOUT.trained(kind)]
    )


def all_trained_option(kind):
    """A params function: the rule's input ``kind`` (``all_trained(kind)``) as a command takes
    it, every chunk's folder (``every_chunk``) or the one generator's file."""
    if GENERATOR == "per_label":
        return every_chunk(kind)
    return lambda wildcards, input: input[kind]


def extractor_input():
    """The file the feature extractor reads: the run's classifier or local Inception weights."""
    if INCEPTION_WEIGHTS is None:
        return LAYOUT.classifier
    return [] if INCEPTION_WEIGHTS == INCEPTION_DOWNLOAD else INCEPTION_WEIGHTS


def extractor_option():
    """The extractor's command option, quoted: a weights path is the user's, and may hold
    spaces or shell characters. A string, not an input function: Snakemake would call one per
    job of thousands."""
    if INCEPTION_WEIGHTS is None:
        return f"--classifier {shlex.quote(extractor_input())}"
    return f"--inception-weights {shlex.quote(INCEPTION_WEIGHTS)}"


def feature_options():
    limit = config["metrics"]["max_real_per_label"]
    overall = f"--overall-per-label {config['metrics']['overall_per_label']}"
    return f"--max-real-per-label {limit} {overall}" if limit else overall


def merge_options():
    return f"--prc-max-images {config['metrics']['prc_max_images']}"


def get_final_output():
    """The metrics, the figures and every generator: the ensemble is a deliverable, so a
    deleted model is retrained (resumed) even when its samples still exist."""
    curve = [LAYOUT.scores("curve.tsv")] if TRAIN.snapshots else []
    return [
        LAYOUT.scores("metrics.tsv"),
        *curve,
        *get_figures(),
        *all_trained("models"),
    ]


def get_figures():
    return [
        LAYOUT.figure("samples"),
        LAYOUT.figure("samples_merged.png"),
        LAYOUT.figure("losses.png"),
        LAYOUT.figure("fid_per_label.png"),
        LAYOUT.figure("grids_by_fid.png"),
    ]


# Each stage's helpers, beside the shared ones above.
include: "common/split.smk"
include: "common/train.smk"
include: "common/score.smk"
include: "common/scaling.smk"
include: "common/compare.smk"


onstart:
    # Not at parse time: a dry run needs no data when the config lists the labels, and the
    # executor is known only now.
    _or_workflow_error(check_root, SPEC)
    _or_workflow_error(
        check_chunk_checkpoints, LAYOUT.checkpoints(), list(CHUNKS.values())
    )
    if workflow.executor_plugin.name == "local" and TRAIN.device.startswith("cuda"):
        # The jobs run here: a GPU asked for that this machine lacks stops the run before its
        # first job, not at the first training job after every split. (A cluster's login node
        # has none, so only here.)
        from wcgan.training import resolve_device

        _or_workflow_error(resolve_device, TRAIN.device)
    if workflow.executor_plugin.name == "slurm":
        train = RULE_RESOURCES.get(TRAIN_RULE, {})
        partition = train.get(
            "slurm_partition", DEFAULT_RESOURCES.get("slurm_partition")
        )
        _or_workflow_error(check_slurm_gpu_request, TRAIN_RULE, train, partition)


onsuccess:
    metrics = Path(LAYOUT.scores("metrics.tsv"))
    if metrics.exists():
        print(format_metrics(metrics))
        print(f"figures: {LAYOUT.figure('')}")


onerror:
    # Only when the run trained labels (not, say, after a failed scaling point).
    message = (
        missing_models(model_files())
        if Path(LAYOUT.path("models")).is_dir()
        else None
    )
    if message:
        print(message, file=sys.stderr)
