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
TRAINING_PROCESSES = DIST.processes if GENERATOR == "distributed" else 1
# The name of the run's training rule (rules/train.smk), which a profile's set-resources reaches.
TRAIN_RULE = {
    "per_label": "train_chunk",
    "conditional": "train_conditional",
    "distributed": "train_distributed",
}[GENERATOR]
_or_workflow_error(
    check_resources, DEFAULT_RESOURCES, RULE_RESOURCES, TRAIN_RULE, TRAIN_JOB_BUDGET
)
TRAINED_KINDS = ("models", "losses", "training")


# What a training job draws per label: its samples and, with train.snapshots, the samples of
# every snapshot point (one folder per chunk, one file per label in it).
SAMPLED_KINDS = ("samples", "snapshots") if TRAIN.snapshots else ("samples",)


def chunk_outputs():
    """A chunk job's outputs: a folder of per-label files of each kind."""
    kinds = TRAINED_KINDS + SAMPLED_KINDS
    return {kind: directory(LAYOUT.chunks(kind)) for kind in kinds}


def generator_outputs():
    """The one generator's job's outputs: its files, and every chunk's folders of samples."""
    outputs = {kind: LAYOUT.trained(kind) for kind in TRAINED_KINDS}
    for kind in SAMPLED_KINDS:
        outputs[kind] = [directory(d) for d in per_chunk(LAYOUT.chunks(kind))]
    return outputs


def _file_options(files):
    return " ".join(f"{option} {paths}" for option, paths in files.items())


def chunk_files():
    """The file options of ``wcgan train`` for a chunk: its folders (the command makes one file
    per label in each) and its checkpoint folder. A string whose {chunk} Snakemake fills in, not
    a function: Snakemake calls a params function through its introspection for every job.
    """
    files = {
        "--checkpoint-dir": LAYOUT.chunks("checkpoints"),
        "--shard": LAYOUT.chunks("shards"),
        "--model-out": LAYOUT.chunks("models"),
        "--losses-out": LAYOUT.chunks("losses"),
        "--summary-out": LAYOUT.chunks("training"),
        "--samples-out": LAYOUT.chunks("samples"),
    }
    if TRAIN.snapshots:
        files["--snapshots-out"] = LAYOUT.chunks("snapshots")
    return _file_options(files)


def generator_files():
    """The file options of the one generator's job: its files, the roots of every chunk's
    shards, samples and snapshot samples (the job writes each label's in its chunk's folder),
    and the checkpoint folder."""
    files = {
        "--checkpoint-dir": LAYOUT.checkpoints(LAYOUT.training_job),
        "--shard": LAYOUT.path("shards"),
        "--samples-out": LAYOUT.path("samples"),
        "--model-out": LAYOUT.trained("models"),
        "--losses-out": LAYOUT.trained("losses"),
        "--summary-out": LAYOUT.trained("training"),
    }
    if TRAIN.snapshots:
        files["--snapshots-out"] = LAYOUT.path("snapshots")
    return f"{_file_options(files)} {CHUNKS_OPTION}"


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
    """Memory and time limit of the run's training job; a distributed job's also for a cluster:
    its DIST.processes tasks over distributed.nodes nodes, each with the threads and memory of
    one process (Slurm's --ntasks, --nodes, --cpus-per-task, --mem-per-cpu)."""
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


def launcher(wildcards, resources):
    """How a distributed job starts its processes: the launcher a cluster profile names as the
    job's mpi resource (srun, jsrun), which also tells the executor that the job's command
    starts its own tasks; torchrun on one machine."""
    return getattr(resources, "mpi", None) or "torchrun"


def training_params(files, *sections):
    """The params of a training job: its file options, the options of the config's train
    section (and ``sections``), and how many samples to draw. Per process: a distributed job
    runs DIST.processes of them."""
    return {
        "files": files,
        "options": " ".join(
            format_options(section) for section in (config["train"], *sections)
        ),
        "threads": config["resources"]["train_threads"],
        "samples": config["sampling"]["per_label"],
        "samples_seed": config["sampling"]["seed"],
        "samples_weights": config["sampling"]["weights"],
    }


def training_shell(launch):
    """A training job's shell command after ``launch`` (the command and how it starts)."""
    return (
        f"{launch} {{params.files}} --samples {{params.samples}}"
        " --samples-seed {params.samples_seed} --samples-weights {params.samples_weights}"
        " --threads {params.threads}"
        " {params.options} 2> {log}"
    )
