# What the comparing schemes rules (rules/compare.smk) share: parse-time checks and input,
# output and parameter functions. Included by rules/common.smk.


COMPARE = config["compare"]
COMPARE_DIR = LAYOUT.compare()
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
    return per_chunk(f"{COMPARE_DIR}/{wildcards.variant}/snapshots/{{chunk}}")


def compare_grid_variants():
    """The variants whose samples the figure shows: each scheme's first seed."""
    seed = COMPARE["seeds"][0]
    return [
        f"{COMPARE_DIR}/{variant_name(scheme, seed)}" for scheme in COMPARE["schemes"]
    ]
