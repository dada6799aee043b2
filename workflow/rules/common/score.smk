# What the scoring rules (rules/score.smk) share: parse-time checks and input,
# output and parameter functions. Included by rules/common.smk.


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
