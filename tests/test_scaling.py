"""Weak scaling: points, per-job time split, summary, projection and figures, on hand-made job
records in the formats the training command and Snakemake's benchmark files write."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from wcgan.cluster import _slurm_epoch
from wcgan.config import coerce_strings
from wcgan.errors import WcganError
from wcgan.figures import plot_job_time_split, plot_scaling_projection, plot_weak_scaling
from wcgan.scaling import PARTS, point_config, point_times, project, scaling_points, summarize


@pytest.mark.parametrize("max_jobs, points", [(1, [1]), (2, [1, 2]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8])])
def test_points_double_up_to_the_largest(max_jobs, points):
    assert scaling_points(max_jobs) == points


def test_no_points_below_one_job():
    with pytest.raises(WcganError, match="max_jobs must be at least 1"):
        scaling_points(0)


def test_point_config_fixes_the_work_and_leaves_the_base_alone():
    base = {"run": "r", "data": {"labels": None}, "train": {"iterations": 5, "seconds": 60}}
    config = point_config(base, "r/scaling/local/n2", ["a", "b"], 300)
    assert config["run"] == "r/scaling/local/n2"
    assert config["data"]["labels"] == ["a", "b"]
    assert config["train"] == {"iterations": 300, "seconds": None}
    assert base["train"] == {"iterations": 5, "seconds": 60} and base["data"]["labels"] is None


def write_job(run_dir: Path, slug: str, command_s: float, start: float, parts=(3.0, 0.5, 0.25)) -> None:
    """A training summary's job timing and a Snakemake benchmark file, as the pipeline writes them."""
    training, checkpoint, shutdown = parts
    (run_dir / "training").mkdir(parents=True, exist_ok=True)
    (run_dir / "benchmarks" / "train").mkdir(parents=True, exist_ok=True)
    summary = {
        "iterations": 300,
        "host": "node1",
        "scheduler_job": None,
        "job": {
            "started_at": start,
            "finished_at": start + command_s - 0.2,
            "startup_seconds": 1.0,
            "training_seconds": training,
            "checkpoint_seconds": checkpoint,
            "shutdown_seconds": shutdown,
        },
    }
    (run_dir / "training" / f"{slug}.json").write_text(json.dumps(summary))
    (run_dir / "benchmarks" / "train" / f"{slug}.tsv").write_text(
        "s\th:m:s\tmax_rss\n" + f"{command_s}\t0:00:05\t300\n"
    )


def test_point_times_split_each_job_into_parts_that_sum_to_its_time(tmp_path):
    write_job(tmp_path, "a", command_s=5.0, start=1000.0)
    write_job(tmp_path, "b", command_s=6.0, start=1000.5)
    table = point_times(tmp_path, ["a", "b"], "local", 2)
    assert list(table["slug"]) == ["a", "b"] and set(table["n"]) == {2}
    # Start-up is what the command's own clocks do not cover: interpreter start and exit too.
    assert table["startup"].tolist() == pytest.approx([1.25, 2.25])
    assert table["time_s"].tolist() == pytest.approx([5.0, 6.0])
    assert table["launch"].tolist() == [0.0, 0.0]  # no scheduler: nothing between start and command
    assert table["queue"].isna().all()


def test_point_times_name_the_label_whose_files_are_missing(tmp_path):
    write_job(tmp_path, "a", command_s=5.0, start=1000.0)
    with pytest.raises(WcganError, match="did label 'b' train"):
        point_times(tmp_path, ["a", "b"], "local", 2)


def jobs_table(times_by_n: dict[int, list[float]], starts=None, series="local") -> pd.DataFrame:
    rows = []
    for n, times in times_by_n.items():
        for i, time_s in enumerate(times):
            start = 1000.0 + (starts[n][i] if starts else 0.0)
            row = {"series": series, "n": n, "slug": str(i), "time_s": time_s, "command_start": start,
                   "command_end": start + time_s, "submit": np.nan, "start": np.nan, "end": np.nan,
                   "queue": np.nan, "launch": 0.0, "startup": 1.0, "training": time_s - 1.0,
                   "checkpoint": 0.0, "shutdown": 0.0}  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def test_summary_gives_efficiency_against_one_job_and_checks_the_jobs_overlapped():
    jobs = jobs_table(
        {1: [10.0], 2: [10.0, 12.0], 4: [20.0] * 4}, starts={1: [0], 2: [0, 0], 4: [0, 0, 25, 25]}
    )
    summary = summarize(jobs).set_index("n")
    assert summary.loc[2, "time_mean_s"] == pytest.approx(11.0)
    assert summary.loc[2, "efficiency"] == pytest.approx(10 / 11)
    assert summary.loc[2, "makespan_s"] == pytest.approx(12.0)
    assert summary.loc[2, "makespan_efficiency"] == pytest.approx(10 / 12)
    assert bool(summary.loc[2, "concurrent"])
    # Two of the four started after the others ended: not four concurrent jobs.
    assert not bool(summary.loc[4, "concurrent"])
    assert {f"{part}_mean_s" for part in PARTS} <= set(summary.columns)


def test_summary_needs_a_single_job_point():
    with pytest.raises(WcganError, match="no N = 1 point"):
        summarize(jobs_table({2: [10.0, 10.0]}))


def test_projection_adds_submission_offsets_and_stragglers():
    steady = jobs_table({1: [10.0], 2: [10.0, 10.0]})
    flat = project(steady, [100, 1000], draws=50)
    # Identical job times and no scheduler: the makespan stays the job time.
    assert flat["makespan_median_s"].tolist() == pytest.approx([10.0, 10.0])
    assert flat["efficiency_median"].tolist() == pytest.approx([1.0, 1.0])

    submitted = steady.copy()
    submitted.loc[submitted["n"] == 2, "submit"] = [0.0, 0.5]
    offset = project(submitted, [100], draws=50)
    assert offset["submit_interval_s"].iloc[0] == pytest.approx(0.5)
    assert offset["makespan_median_s"].iloc[0] == pytest.approx(99 * 0.5 + 10.0)

    noisy = project(jobs_table({1: [10.0], 2: [9.0, 11.0]}), [10, 100, 1000], draws=200)
    assert noisy["job_time_log_sd"].iloc[0] > 0
    assert np.all(np.diff(noisy["makespan_median_s"]) > 0)  # the slowest of more jobs is slower
    assert np.all(noisy["efficiency_p5"] <= noisy["efficiency_median"])


def test_slurm_time_stamps_read_as_local_time():
    assert _slurm_epoch("2026-11-23T14:50:01") == datetime(2026, 11, 23, 14, 50, 1).timestamp()
    assert _slurm_epoch("Unknown") is None and _slurm_epoch("N/A") is None


def test_series_settings_from_the_command_line_get_their_types():
    schema = {
        "properties": {
            "series": {"additionalProperties": {"properties": {"max_jobs": {"type": ["integer", "null"]}}}}
        }
    }
    assert coerce_strings({"series": {"slurm": {"max_jobs": "4"}}}, schema) == {
        "series": {"slurm": {"max_jobs": 4}}
    }


def test_scaling_figures_are_drawn_from_the_tables(tmp_path):
    jobs = pd.concat(
        [jobs_table({1: [10.0], 2: [10.0, 11.0]}), jobs_table({1: [12.0], 2: [12.5, 13.0]}, series="slurm")]
    )
    summary = summarize(jobs)
    plot_weak_scaling(summary, tmp_path / "weak.png")
    plot_job_time_split(summary, PARTS, tmp_path / "split.png")
    plot_scaling_projection(summary, project(jobs, [100, 1000], draws=20), tmp_path / "projection.png")
    for name in ("weak", "split", "projection"):
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.format == "PNG" and image.width > 400
