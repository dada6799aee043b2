"""Reading Snakemake's ``benchmark:`` files of a run: wall time and memory per job and per rule."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from wcgan.errors import WcganError


def read_benchmarks(run_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per job: ``rule`` (the benchmark folder), ``job`` (file stem) and Snakemake's
    columns (``s`` wall seconds, ``max_rss`` MB, ``cpu_time`` ...)."""
    root = Path(run_dir) / "benchmarks"
    files = sorted(root.rglob("*.tsv"))
    if not files:
        raise WcganError(f"no benchmark files under '{root}'")
    frames = []
    for path in files:
        frame = pd.read_csv(path, sep="\t")
        relative = path.relative_to(root)
        frame.insert(0, "rule", relative.parts[0] if len(relative.parts) > 1 else relative.stem)
        frame.insert(1, "job", relative.stem)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def time_by_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Jobs, total, mean and max wall seconds per rule, the largest total first."""
    table = jobs.groupby("rule")["s"].agg(jobs="count", total_s="sum", mean_s="mean", max_s="max")
    table["share"] = table["total_s"] / table["total_s"].sum()
    return table.sort_values("total_s", ascending=False)
