# What the scoring rules (rules/score.smk) share: parse-time checks and input,
# output and parameter functions. Included by rules/common.smk.


def feature_files(wildcards):
    """The folders of ``wcgan features`` for the job's chunk: samples, real images and (with
    train.snapshots) snapshot samples, and their feature files (one file per label in each).
    """
    chunk = wildcards.chunk
    options = [
        ("--samples", f"samples/{chunk}"),
        ("--shards", f"shards/{chunk}"),
        ("--out", f"features/{chunk}"),
    ]
    if TRAIN.snapshots and GENERATOR == "per_label":
        options += [
            ("--snapshots", f"snapshots/{chunk}"),
            ("--snapshot-features", f"features/{chunk}/snapshots"),
        ]
    return " ".join(f"{option} {RESULTS}/{folder}" for option, folder in options)


def chunk_snapshots():
    """A chunk's snapshot samples, which its feature job reads (per-label generators only)."""
    if TRAIN.snapshots and GENERATOR == "per_label":
        return f"{RESULTS}/snapshots/{{chunk}}"
    return []
