# What the splitting rules (rules/split.smk) share: parse-time checks and input,
# output and parameter functions. Included by rules/common.smk.

from wcgan.sources import SOURCES


def split_fingerprint(wildcards):
    """The chunk's image files' fingerprint: a changed file list reruns the split job (a
    parameter changed), so shards and labels.tsv follow the data."""
    names = [label.name for label in CHUNKS[wildcards.chunk].labels]
    return data_fingerprint(SPEC, names)


def split_labels(wildcards):
    """The class indices and names of the job's chunk, for ``wcgan split``: the names last,
    after "--", so that one starting with '-' is a name, not an option."""
    labels = CHUNKS[wildcards.chunk].labels
    names = shlex.join(label.name for label in labels)
    return f"--indices {' '.join(str(label.index) for label in labels)} -- {names}"


def split_data_options():
    """The data options of ``wcgan split``; with data.resolution null on a source of many
    sizes (image folders), also the run's image size: a label of another size fails its own
    split, and the other chunks go on (they would all wait for labels.tsv, which checks every
    label's shape, otherwise)."""
    own_size = SOURCES[DATA["source"]].resolution is not None
    if DATA["resolution"] is not None or own_size or IMAGE_SIZE is None:
        return data_options()
    return f"{data_options()} --image-size {IMAGE_SIZE}"
