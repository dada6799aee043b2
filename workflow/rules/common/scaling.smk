# What the weak scaling rules (rules/scaling.smk) share: parse-time checks and input,
# output and parameter functions. Included by rules/common.smk.


def scaling_max_jobs(settings):
    if settings["max_jobs"] is not None:
        return settings["max_jobs"]
    cores = (os.cpu_count() or 1) // config["resources"]["train_threads"]
    return max(1, min(cores, len(CHUNKS)))


SCALING = config["scaling"]
SCALING_DIR = LAYOUT.path("scaling")
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
