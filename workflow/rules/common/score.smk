# What the scoring rules (rules/score.smk) share: parse-time checks and input,
# output and parameter functions. Included by rules/common.smk.


def feature_files(wildcards):
    """The folders ``wcgan features`` reads for the job's chunk: samples, real images and (with
    train.snapshots) snapshot samples, one file per label in each."""
    chunk = wildcards.chunk
    options = [("--samples", "samples"), ("--shards", "shards")]
    if TRAIN.snapshots and GENERATOR == "per_label":
        options.append(("--snapshots", "snapshots"))
    return " ".join(
        f"{option} {LAYOUT.chunks(kind, chunk)}" for option, kind in options
    )


def chunk_snapshots():
    """A chunk's snapshot samples, which its feature job reads (per-label generators only)."""
    if TRAIN.snapshots and GENERATOR == "per_label":
        return LAYOUT.chunks("snapshots")
    return []


def classifier_shards(wildcards):
    """What stands for every chunk's shards in the classifier's input: labels.tsv, whose job
    reads them all (so a re-split chunk retrains the classifier). One input per chunk would cost
    Snakemake a comparison per chunk for each feature job's look-up of the classifier, quadratic
    in the chunks (a dry run of 21,841 labels at K = 1 did not end in 11 minutes). Refused while
    building the DAG (not after training) when a run that scores with it has one label, which no
    classifier can tell apart from another. Runs that only train (a scaling point) never ask.
    """
    if len(LABELS) < 2:
        raise WorkflowError(
            f"the data set has one label ('{LABELS[0].name}'): scoring needs two or more for its "
            f"classifier; add labels, or set metrics.inception_weights"
        )
    return LAYOUT.labels_table
