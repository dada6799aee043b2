"""Weak scaling of the training jobs: N chunk jobs of ``labels_per_job`` (K) labels each, with
the same fixed work, run at once, for N = 1, 2, 4, ...; each job's time and its split, the
efficiency T(1)/T(N), and a projection to thousands of jobs built from the measured times.

A point (one series, one N) is a run of its own on the first N x K labels, trained with a fixed
number of iterations by one Snakemake call whose only jobs are the N training jobs, started
together (``--jobs N``: N local cores, or N scheduler jobs). Each job's time is split into

    queue       scheduler submit -> start (Slurm only; a local job does not queue)
    launch      scheduler start -> end, less the training command (job script, Snakemake in the job)
    startup     the training command until its first iteration (interpreter, torch, shard, networks)
    training    the iterations, checkpoint writes excluded
    checkpoint  checkpoint writes
    shutdown    model, losses and samples written

A job's time T runs from its start to its end (launch + startup + ... + shutdown); queue wait is
reported beside it, since it measures the cluster's load rather than the job.
"""

from __future__ import annotations

import copy
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wcgan.atomic import read_json
from wcgan.cluster import slurm_job_times
from wcgan.errors import WcganError
from wcgan.labels import make_chunks, make_labels
from wcgan.layout import RunLayout
from wcgan.tables import read_checked_csv, write_tsv

PARTS = ("queue", "launch", "startup", "training", "checkpoint", "shutdown")
JOB_PARTS = PARTS[1:]  # what a job's time T is made of
CONCURRENT_OVERLAP = 0.5  # a point whose jobs overlap less than this is not N concurrent jobs


def scaling_points(max_jobs: int) -> list[int]:
    """1, 2, 4, ... up to ``max_jobs``, which is always the last point."""
    if max_jobs < 1:
        raise WcganError(f"scaling: max_jobs must be at least 1, not {max_jobs}")
    points = [1]
    while points[-1] * 2 <= max_jobs:
        points.append(points[-1] * 2)
    if points[-1] != max_jobs:
        points.append(max_jobs)
    return points


def point_config(base: Mapping[str, Any], run: str, labels: Sequence[str], iterations: int) -> dict:
    """The config of one point: the base run's, on the given labels, with a fixed number of
    iterations and no time budget, so every job does the same work whatever its speed."""
    config = copy.deepcopy(dict(base))
    config["run"] = run
    config["parent_run"] = run.split("/")[0]
    config["data"]["labels"] = list(labels)
    config["train"]["iterations"] = iterations
    config["train"]["seconds"] = None
    return config


def point_jobs(layout: RunLayout, labels: Sequence[str], labels_per_job: int) -> list[tuple[str, str, str]]:
    """A point's training jobs: each chunk's name, the summary of its first label (every label
    of a chunk shares its job's timing) and the job's Snakemake benchmark file."""
    chunks = make_chunks(make_labels(list(labels)), labels_per_job)
    return [
        (
            chunk.name,
            layout.trained_file("training", chunk.name, chunk.labels[0].slug),
            layout.benchmark(f"train/{chunk.name}"),
        )
        for chunk in chunks
    ]


def _job_row(run_dir: str, slug: str, summary: str, benchmark: str, iterations: int) -> dict[str, Any]:
    summary_path, benchmark_path = Path(summary), Path(benchmark)
    for path in (summary_path, benchmark_path):
        if not path.is_file():
            raise WcganError(f"scaling: '{path}' is missing; did job '{slug}' train in this point?")
    summary = read_json(summary_path, "training summary")
    if "job" not in summary:
        raise WcganError(f"scaling: '{summary_path}' has no job timing (made by an older wcgan?)")
    if summary["resumed_from_iteration"] != 0 or summary["iterations"] != iterations:
        # A resumed job's files cover its last session only: its time would read short.
        raise WcganError(
            f"scaling: job '{slug}' in '{run_dir}' ran {summary['iterations']} iterations, "
            f"resumed from {summary['resumed_from_iteration']}, not {iterations} in one go; rerun the point"
        )
    job = summary["job"]
    command_s = float(pd.read_csv(benchmark_path, sep="\t")["s"].iloc[0])
    measured = job["training_seconds"] + job["checkpoint_seconds"] + job["shutdown_seconds"]
    return {
        "slug": slug,
        "scheduler_job": summary.get("scheduler_job"),
        "host": summary.get("host"),
        "iterations": summary["iterations"],
        "command_s": command_s,
        # The command's time outside its own clocks (interpreter start and exit) counts as start-up.
        "startup": max(command_s - measured, 0.0),
        "training": job["training_seconds"],
        "checkpoint": job["checkpoint_seconds"],
        "shutdown": job["shutdown_seconds"],
        "command_start": job["started_at"],
        "command_end": job["finished_at"],
    }


SchedulerTimes = Mapping[str, tuple[float | None, float | None, float | None]]


def point_times(
    run_dir: str,
    jobs: Sequence[tuple[str, str, str]],
    series: str,
    iterations: int,
    scheduler_times: SchedulerTimes | None = None,
) -> pd.DataFrame:
    """One row per training job of a point (``point_jobs``; N = the jobs): its parts (seconds), its time T and,
    for jobs that ran under Slurm, the scheduler's submit, start and end (seconds since the
    epoch; ``slurm_job_times`` when not given). A job that resumed, shares its scheduler job
    with another (Snakemake job groups) or that the scheduler no longer knows is an error:
    its time would be wrong."""
    table = pd.DataFrame([_job_row(run_dir, *job, iterations) for job in jobs])
    table.insert(0, "series", series)
    table.insert(1, "n", len(jobs))
    ids = [str(job) for job in table["scheduler_job"].dropna()]
    if len(set(ids)) < len(ids):
        raise WcganError(
            f"scaling: jobs of '{run_dir}' share scheduler jobs (Snakemake job groups); a point needs "
            f"one scheduler job per chunk: leave --groups out of the series' snakemake_args"
        )
    scheduler_times = slurm_job_times(ids) if scheduler_times is None else scheduler_times
    unknown = [job for job in ids if None in scheduler_times.get(job, (None,))]
    if unknown:
        raise WcganError(
            f"scaling: the scheduler gives no submit/start/end time for jobs {', '.join(unknown)} "
            f"of '{run_dir}' (Slurm forgets finished jobs after MinJobAge without accounting; "
            f"LSF is not read); rerun the point"
        )
    times = [scheduler_times.get(str(job), (np.nan,) * 3) for job in table["scheduler_job"]]
    table["submit"], table["start"], table["end"] = (
        np.array(column, dtype=float) for column in zip(*times, strict=True)
    )
    on_scheduler = table["start"].notna()
    table["queue"] = (table["start"] - table["submit"]).where(on_scheduler)
    # Slurm's times have one-second resolution; a launch shorter than that can read as 0.
    table["launch"] = (
        ((table["end"] - table["start"]) - table["command_s"]).clip(lower=0).where(on_scheduler, 0.0)
    )
    table["time_s"] = table[list(JOB_PARTS)].sum(axis=1)
    return table


def write_table(table: pd.DataFrame, out: str | os.PathLike) -> None:
    # 15 digits: time stamps (seconds since the epoch) keep their milliseconds.
    write_tsv(table, out, digits=15)


def read_points(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    return pd.concat(
        [
            read_checked_csv(path, "weak-scaling point", dtype={"slug": str, "scheduler_job": str})
            for path in paths
        ],
        ignore_index=True,
    )


def _on_scheduler(group: pd.DataFrame) -> bool:
    return bool(group["start"].notna().all() and group["end"].notna().all())


def _makespan(group: pd.DataFrame) -> float:
    """First submit to last end of a point's jobs (locally: first command start to last end)."""
    if _on_scheduler(group):
        return float(group["end"].max() - group["submit"].fillna(group["start"]).min())
    return float(group["command_end"].max() - group["command_start"].min())


def _overlap(group: pd.DataFrame) -> float:
    """How long all jobs of a point ran at one time, as a share of their mean duration (1: all
    the way, 0 or less: never). A point measures N concurrent jobs only when it is high."""
    if _on_scheduler(group):
        starts, ends = group["start"], group["end"]
    else:
        starts, ends = group["command_start"], group["command_end"]
    return float((ends.min() - starts.max()) / (ends - starts).mean())


def summarize(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per series and N: time per job (mean, min, max), efficiency T(1)/T(N) of the mean, the
    makespan (first submit to last end under a scheduler, so queue wait counts; locally the
    first command start to the last end) and its efficiency, how far the jobs overlapped, and
    the mean of each part."""
    rows = []
    for (series, n), group in jobs.groupby(["series", "n"], sort=True):
        row = {
            "series": series,
            "n": n,
            "jobs": len(group),
            "time_mean_s": group["time_s"].mean(),
            "time_min_s": group["time_s"].min(),
            "time_max_s": group["time_s"].max(),
            "makespan_s": _makespan(group),
            "overlap": _overlap(group),
            "concurrent": _overlap(group) >= CONCURRENT_OVERLAP,
        }
        row.update({f"{part}_mean_s": group[part].mean() for part in PARTS})
        rows.append(row)
    table = pd.DataFrame(rows)
    for series, group in table.groupby("series"):
        base = group.loc[group["n"].idxmin()]
        if base["n"] != 1:
            raise WcganError(f"scaling: series '{series}' has no N = 1 point to compare with")
        table.loc[group.index, "efficiency"] = base["time_mean_s"] / group["time_mean_s"]
        table.loc[group.index, "makespan_efficiency"] = base["makespan_s"] / group["makespan_s"]
    return table


def _log_time_spread(group: pd.DataFrame) -> float:
    """Standard deviation of log job time within points, pooled over a series' points (0 when
    no point has two jobs)."""
    logs = np.log(group["time_s"])
    deviations = logs - logs.groupby(group["n"]).transform("mean")
    freedom = int((group.groupby("n").size() - 1).sum())
    return float(np.sqrt((deviations**2).sum() / freedom)) if freedom else 0.0


def project(jobs: pd.DataFrame, counts: Sequence[int], draws: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Makespan of N = ``counts`` jobs, modelled from the measured ones (a projection, not a
    measurement). Job i is submitted i submission intervals after the first (the mean interval
    of the series' largest concurrent point), waits a queue time drawn from that point's jobs,
    and runs for a log-normal time: that point's mean log time, with the spread pooled over all
    points, so stragglers grow with N as they would. The makespan is the last end. Every job is
    assumed to get a device at once, as in the published runs. Returns the median and 5-95 %
    range over the draws (the simulation's spread only, not the uncertainty of the fitted
    values) of the makespan and of its efficiency against N = 1 (its queue wait plus job time)."""
    summary = summarize(jobs)
    rows = []
    for series, group in jobs.groupby("series", sort=True):
        points = summary[(summary["series"] == series) & summary["concurrent"]]
        largest = group[group["n"] == points["n"].max()]
        single = group[group["n"] == 1]
        submits = largest["submit"].dropna().sort_values()
        interval = float(submits.diff().mean()) if len(submits) > 1 else 0.0
        waits = largest["queue"].fillna(0.0).to_numpy()
        location, spread = float(np.log(largest["time_s"]).mean()), _log_time_spread(group)
        base = float((single["queue"].fillna(0.0) + single["time_s"]).mean())
        rng = np.random.default_rng(
            [seed, zlib.crc32(series.encode())]
        )  # same draws whatever other series exist
        for count in counts:
            times = np.exp(location + spread * rng.standard_normal((draws, count)))
            queued = waits[rng.integers(len(waits), size=(draws, count))]
            makespans = (interval * np.arange(count) + queued + times).max(axis=1)
            low, median, high = np.percentile(makespans, [5, 50, 95])
            rows.append(
                {
                    "series": series,
                    "n": count,
                    "from_n": int(largest["n"].iloc[0]),
                    "submit_interval_s": interval,
                    "job_time_median_s": float(np.exp(location)),
                    "job_time_log_sd": spread,
                    "makespan_median_s": median,
                    "makespan_p5_s": low,
                    "makespan_p95_s": high,
                    "makespan_efficiency_median": base / median,
                    "makespan_efficiency_p5": base / high,
                    "makespan_efficiency_p95": base / low,
                }
            )
    return pd.DataFrame(rows)
