# What the scoring rules (rules/score.smk) share: parse-time checks and input,
# output and parameter functions. Included by rules/common.smk.


def feature_files(wildcards):
    """The folders ``wcgan features`` reads for the job's chunk: samples, real images and (with
    train.snapshots) snapshot samples, one file per label in each."""
    chunk = wildcards.chunk
    options = [("--samples", "samples"), ("--shards", "shards")]
    if TRAIN.snapshots:
        options.append(("--snapshots", "snapshots"))
    return " ".join(
        f"{option} {LAYOUT.chunks(kind, chunk)}" for option, kind in options
    )


def chunk_snapshots():
    """A chunk's snapshot samples, which its feature job reads."""
    return LAYOUT.chunks("snapshots") if TRAIN.snapshots else []


# A run of one label cannot be scored through the classifier, which tells labels apart: refused
# here, in one line (in the classifier's input function, Snakemake printed its exception block
# around it). Runs inside another (compare variants, scaling points) only train.
if len(LABELS) < 2 and INCEPTION_WEIGHTS is None and config.get("parent_run") is None:
    raise WorkflowError(
        f"the data set has one label ('{LABELS[0].name}'): scoring needs two or more for its "
        f"classifier; add labels, or set metrics.inception_weights"
    )
