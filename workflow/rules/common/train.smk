# What the training rules (rules/train.smk) share: parse-time checks and input,
# output and parameter functions. Included by rules/common.smk.

from wcgan.memory import training_memory
from wcgan.sources import SOURCES

# A training job's budget: a chunk's K labels share one device for K times a label's seconds;
# a conditional or distributed GAN gets the labels' budget together. The scheduler's time limit
# (minutes) follows from it.
TRAIN_JOB_BUDGET = (
    TRAIN.for_labels(config["labels_per_job"])
    if GENERATOR == "per_label"
    else TRAIN.for_labels(
        len(LABELS), DIST.processes if GENERATOR == "distributed" else 1
    )
)
TRAIN_RUNTIME = scheduler_minutes(
    TRAIN_JOB_BUDGET,
    config["resources"]["runtime_margin_minutes"],
    config["resources"]["runtime_minutes_without_seconds"],
    config["labels_per_job"] if GENERATOR == "per_label" else len(LABELS),
)
_or_workflow_error(check_resources, DEFAULT_RESOURCES, RULE_RESOURCES, TRAIN_JOB_BUDGET)


TRAINING_PROCESSES = DIST.processes if GENERATOR == "distributed" else 1


def training_outputs():
    """What a training job writes: per label of a chunk (per_label), or one generator and every
    label's samples; with train.snapshots also the samples of every snapshot point."""
    outputs = {kind: trained_files(kind) for kind in ("models", "losses", "training")}
    if GENERATOR == "per_label":
        outputs["samples"] = directory(LAYOUT.chunks("samples"))
    else:
        outputs["samples"] = [directory(d) for d in per_chunk(LAYOUT.chunks("samples"))]
    if TRAIN.snapshots:
        outputs["snapshots"] = trained_files("snapshots")
    return outputs


def training_files():
    """The file options of ``wcgan train``: for a chunk, its folders (the command makes one file
    per label in each), else the one generator's files and the roots of every chunk's shards
    and samples; and the checkpoint folder. A string whose {chunk} Snakemake fills in, not a
    function: Snakemake calls a params function through its introspection for every job.
    """
    if GENERATOR == "per_label":
        files = {
            "--checkpoint-dir": LAYOUT.checkpoints(LAYOUT.training_job),
            "--shard": LAYOUT.chunks("shards"),
            "--model-out": LAYOUT.chunks("models"),
            "--losses-out": LAYOUT.chunks("losses"),
            "--summary-out": LAYOUT.chunks("training"),
            "--samples-out": LAYOUT.chunks("samples"),
        }
        if TRAIN.snapshots:
            files["--snapshots-out"] = LAYOUT.chunks("snapshots")
    else:
        files = {
            "--checkpoint-dir": LAYOUT.checkpoints(LAYOUT.training_job),
            # The job writes each label's samples in its chunk's folder.
            "--shard": LAYOUT.path("shards"),
            "--samples-out": LAYOUT.path("samples"),
            "--model-out": trained_files("models"),
            "--losses-out": trained_files("losses"),
            "--summary-out": trained_files("training"),
        }
        if TRAIN.snapshots:
            files["--snapshots-out"] = trained_files("snapshots")
    options = " ".join(f"{option} {paths}" for option, paths in files.items())
    return options if GENERATOR == "per_label" else f"{options} {CHUNKS_OPTION}"


def training_mem_mb():
    """A chunk's (or the conditional GAN's) memory: resources.train_mem_mb for the runtime,
    plus the estimate (wcgan.memory) of its images, at resources.train_images_per_label each,
    and networks; train_mem_mb alone where the images' size is not known (data.resolution null
    and the data not readable here). A distributed job's processes each get train_mem_mb.
    """
    fixed = config["resources"]["train_mem_mb"]
    source = SOURCES[DATA["source"]]
    resolution = IMAGE_SIZE
    if GENERATOR == "distributed" or resolution is None:
        return fixed * TRAINING_PROCESSES
    channels = DATA["channels"] or source.channels
    labels = (
        min(config["labels_per_job"], len(LABELS))
        if GENERATOR == "per_label"
        else len(LABELS)
    )
    images = labels * config["resources"]["train_images_per_label"]
    if GENERATOR == "per_label":
        estimate = training_memory(TRAIN, labels, images, channels, resolution)
    else:
        estimate = training_memory(
            TRAIN, 1, images, channels, resolution, classes=labels
        )
    return fixed + estimate.data_mb


TRAIN_MEM_MB = training_mem_mb()


def training_resources():
    """Memory and time limit of a training job; a distributed job's also for a cluster: its
    DIST.processes tasks over distributed.nodes nodes, each with the threads and memory of one
    process (Slurm's --ntasks, --nodes, --cpus-per-task, --mem-per-cpu)."""
    threads = config["resources"]["train_threads"]
    resources = {
        "mem_mb": TRAIN_MEM_MB,
        "runtime": TRAIN_RUNTIME,
    }
    if GENERATOR == "distributed":
        resources |= {
            "tasks": DIST.processes,
            "nodes": DIST.nodes,
            "cpus_per_task": threads,
            "mem_mb_per_cpu": -(-config["resources"]["train_mem_mb"] // threads),
        }
    return resources


def _launcher(wildcards, resources):
    """How a distributed job starts its processes: the launcher a cluster profile names as the
    job's mpi resource (srun, jsrun), which also tells the executor that the job's command
    starts its own tasks; torchrun on one machine."""
    return getattr(resources, "mpi", None) or "torchrun"


def training_params():
    sections = [config["train"]]
    if GENERATOR == "distributed":
        sections.append(config["distributed"])
    options = " ".join(format_options(section) for section in sections)
    params = {
        "files": training_files(),
        "options": options,
        # Per process: a distributed job runs DIST.processes of them.
        "threads": config["resources"]["train_threads"],
        "samples": config["sampling"]["per_label"],
        "samples_seed": config["sampling"]["seed"],
        "samples_weights": config["sampling"]["weights"],
    }
    # Only the distributed command launches a group: a params function costs every job.
    if GENERATOR == "distributed":
        params["launcher"] = _launcher
    return params


def training_command():
    """The shell command of a training job: ``wcgan train``, or ``wcgan train-distributed``
    launching its group (and restarting it when a process is lost)."""
    # The job refuses at its start an estimate over the memory it was given.
    launch = "wcgan train --mem-mb {resources.mem_mb}"
    if GENERATOR == "distributed":
        launch = "wcgan train-distributed --launch {params.launcher}"
    return (
        f"{launch} {{params.files}} --samples {{params.samples}}"
        " --samples-seed {params.samples_seed} --samples-weights {params.samples_weights}"
        " --threads {params.threads}"
        " {params.options} 2> {log}"
    )
