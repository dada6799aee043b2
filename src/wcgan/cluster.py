"""Cluster settings checked before anything is submitted, and what the scheduler knows of a job.

Profiles (``profiles/slurm``, ``profiles/lsf``) carry the site-specific values as placeholders
that start with ``EDIT_ME``; Snakemake hands their resolved values (``--default-resources``,
``--set-resources``) to the workflow, which passes them here as plain mappings. No torch here.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from wcgan.config import TrainConfig
from wcgan.errors import WcganError

PLACEHOLDER = "EDIT_ME"


def scheduler_job() -> dict[str, str | None]:
    """Where this process runs: the host and the Slurm or LSF job id (None outside a scheduler)."""
    job = os.environ.get("SLURM_JOB_ID")  # unique per array task too
    if job is None and "LSB_JOBID" in os.environ:
        index = os.environ.get("LSB_JOBINDEX", "0")
        job = os.environ["LSB_JOBID"] + (f"[{index}]" if index != "0" else "")
    return {"host": socket.gethostname(), "scheduler_job": job}


def check_resources(
    defaults: Mapping[str, Any],
    per_rule: Mapping[str, Mapping[str, Any]],
    train_rule: str,
    train: TrainConfig,
) -> None:
    """No placeholder left in any resource, and no time limit of the training rule
    ``train_rule`` below the budget of its job (``train``: e.g. a chunk's K labels together)."""
    settings = [("default-resources", name, value) for name, value in defaults.items()]
    settings += [
        (f"set-resources {rule}", name, value)
        for rule, values in per_rule.items()
        for name, value in values.items()
    ]
    for where, name, value in settings:
        if isinstance(value, str) and value.startswith(PLACEHOLDER):
            raise WcganError(
                f"profile setting {where}: {name} is still the placeholder '{value}'; set it to "
                f"your site's value in the profile (or delete the line)"
            )
    runtime = per_rule.get(train_rule, {}).get("runtime")
    if runtime is not None and train.seconds is not None:
        needed = math.ceil(train.seconds / 60)
        if not isinstance(runtime, (int, float)) or runtime < needed:
            raise WcganError(
                f"set-resources {train_rule}: runtime={runtime} minutes is below train.seconds "
                f"({train.seconds:g} s = {needed} min): the scheduler would stop every label before its budget"
            )


def slurm_partition_gpus(partition: str) -> int | None:
    """GPUs per node that ``sinfo`` reports for ``partition`` (0: none), or None when unknown."""
    if shutil.which("sinfo") is None:
        return None
    try:
        result = subprocess.run(
            ["sinfo", "-h", "-p", partition, "-o", "%G"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    counts = []
    for gres in result.stdout.split():
        for item in gres.split(","):
            parts = item.split("(")[0].split(":")  # gpu:a100:4(S:0-1) -> gpu, a100, 4
            if parts[0] == "gpu":
                counts.append(int(parts[-1]) if parts[-1].isdigit() else 1)
    return max(counts, default=0)


def check_slurm_gpu_request(rule: str, resources: Mapping[str, Any], partition: Any) -> None:
    """A training job (of ``rule``, with its ``resources``) that asks for GPUs, as ``gpu`` or as
    ``--gpus-per-task`` in ``slurm_extra`` (a distributed job's), must go to a partition that
    has some."""
    # The raw value: a command-line one may still carry its quotes.
    extra = re.search(r"--gpus-per-task[= ][\w:]+", str(resources.get("slurm_extra") or ""))
    request = f"gpu={resources['gpu']}" if resources.get("gpu") else extra and f"slurm_extra {extra.group()}"
    if not request or not isinstance(partition, str):
        return
    if slurm_partition_gpus(partition) == 0:
        undo = "gpu=0" if request.startswith("gpu=") else "leave --gpus-per-task out of slurm_extra"
        raise WcganError(
            f"set-resources {rule}: {request} on partition '{partition}', which has no GPUs "
            f"(sinfo -p {partition} -o %G shows no gpu); set slurm_partition to a GPU partition, or {undo}"
        )


def _epoch(text: str) -> float | None:
    """A Slurm time stamp printed with SLURM_TIME_FORMAT=%s (seconds since the epoch, no time
    zone to get wrong), or None for 'Unknown', 'N/A' and the like."""
    try:
        return float(text)
    except ValueError:
        return None


def slurm_job_times(job_ids: Sequence[str]) -> dict[str, tuple[float | None, float | None, float | None]]:
    """Submit, start and end time of Slurm jobs, by job id: from ``sacct`` where accounting is on,
    and from ``squeue -t all``, which keeps finished jobs for MinJobAge (300 s by default), for
    the rest. Jobs that neither knows are left out."""
    wanted, times = set(job_ids), {}
    environment = {**os.environ, "SLURM_TIME_FORMAT": "%s"}
    queries = [
        ["sacct", "-X", "-n", "-P", "--format=JobIDRaw,Submit,Start,End", "-j"],
        # %A is unique per array task, like SLURM_JOB_ID; %V submit, %S start, %e end.
        ["squeue", "-h", "-t", "all", "-o", "%A|%V|%S|%e", "-j"],
    ]
    for command in queries:
        missing = sorted(wanted - times.keys())
        if not missing or shutil.which(command[0]) is None:
            continue
        try:
            result = subprocess.run(
                [*command, ",".join(missing)], capture_output=True, text=True, timeout=60, env=environment
            )
        except subprocess.TimeoutExpired:
            continue
        for line in result.stdout.splitlines() if result.returncode == 0 else []:
            fields = line.strip().split("|")
            if len(fields) == 4 and fields[0] in wanted:
                times[fields[0]] = tuple(_epoch(field) for field in fields[1:])
    return times
