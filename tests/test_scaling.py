"""Weak scaling: points, per-job time split, summary, projection and figures, on hand-made job
records in the formats the training command and Snakemake's benchmark files write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from wcgan.atomic import write_json
from wcgan.cluster import _epoch
from wcgan.config import coerce_strings
from wcgan.errors import WcganError
from wcgan.figures import plot_job_time_split, plot_scaling_projection, plot_weak_scaling
from wcgan.layout import RunLayout
from wcgan.scaling import PARTS, point_config, point_jobs, point_times, project, scaling_points, summarize


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


def jobs(run_dir) -> list[tuple[str, str, str]]:
    """Chunks a and b, each timed by its first label's summary and its benchmark file."""
    return [
        (chunk, f"{run_dir}/training/{chunk}/first.json", f"{run_dir}/benchmarks/train/{chunk}.tsv")
        for chunk in "ab"
    ]


def test_a_point_trains_n_chunks_and_times_each_by_its_first_label():
    assert point_jobs(RunLayout.of("p"), ["x", "y", "z"], 2) == [
        ("c000-001", "results/p/training/c000-001/x.json", "results/p/benchmarks/train/c000-001.tsv"),
        ("c002-002", "results/p/training/c002-002/z.json", "results/p/benchmarks/train/c002-002.tsv"),
    ]


def write_job(
    run_dir: Path, slug: str, command_s: float, start: float, parts=(3.0, 0.5, 0.25), job=None, resumed=0
) -> None:
    """A training summary's job timing and a Snakemake benchmark file, as the pipeline writes them."""
    training, checkpoint, shutdown = parts
    (run_dir / "training" / slug).mkdir(parents=True, exist_ok=True)
    (run_dir / "benchmarks" / "train").mkdir(parents=True, exist_ok=True)
    summary = {
        "iterations": 300,
        "resumed_from_iteration": resumed,
        "host": "node1",
        "scheduler_job": job,
        "job": {
            "started_at": start,
            "finished_at": start + command_s - 0.2,
            "training_seconds": training,
            "checkpoint_seconds": checkpoint,
            "shutdown_seconds": shutdown,
        },
    }
    write_json(summary, (run_dir / "training" / slug / "first.json"))
    (run_dir / "benchmarks" / "train" / f"{slug}.tsv").write_text(
        "s\th:m:s\tmax_rss\n" + f"{command_s}\t0:00:05\t300\n"
    )


def test_point_times_split_each_job_into_parts_that_sum_to_its_time(tmp_path):
    write_job(tmp_path, "a", command_s=5.0, start=1000.0)
    write_job(tmp_path, "b", command_s=6.0, start=1000.5)
    table = point_times(str(tmp_path), jobs(tmp_path), "local", 300)
    assert list(table["slug"]) == ["a", "b"] and set(table["n"]) == {2}
    # Start-up is what the command's own clocks do not cover: interpreter start and exit too.
    assert table["startup"].tolist() == pytest.approx([1.25, 2.25])
    assert table["time_s"].tolist() == pytest.approx([5.0, 6.0])
    assert table["launch"].tolist() == [0.0, 0.0]  # no scheduler: nothing between start and command
    assert table["queue"].isna().all()


def test_point_times_name_the_label_whose_files_are_missing(tmp_path):
    write_job(tmp_path, "a", command_s=5.0, start=1000.0)
    with pytest.raises(WcganError, match="did job 'b' train"):
        point_times(str(tmp_path), jobs(tmp_path), "local", 300)


def test_point_times_add_the_schedulers_queue_and_launch(tmp_path):
    write_job(tmp_path, "a", command_s=5.0, start=1002.5, job="11")
    write_job(tmp_path, "b", command_s=6.0, start=1003.0, job="12")
    stamps = {"11": (1000.0, 1001.0, 1008.0), "12": (1000.0, 1002.0, 1010.0)}
    table = point_times(str(tmp_path), jobs(tmp_path), "slurm", 300, scheduler_times=stamps)
    assert table["queue"].tolist() == [1.0, 2.0]
    assert table["launch"].tolist() == pytest.approx([2.0, 2.0])  # Slurm's 7 and 8 s less the command's
    assert table["time_s"].tolist() == pytest.approx([7.0, 8.0])  # start to end, queue apart
    summary = summarize(pd.concat([jobs_table({1: [7.0]}, series="slurm"), table]))
    assert summary.set_index("n").loc[2, "makespan_s"] == pytest.approx(10.0)  # first submit to last end


@pytest.mark.parametrize(
    ("scheduler_jobs", "resumed", "times", "message"),
    [
        (("11", "11"), 0, {"11": (1.0, 2.0, 9.0)}, "share scheduler jobs"),
        (("11", "12"), 0, {"11": (1.0, 2.0, 9.0)}, "no submit/start/end time for jobs 12"),
        ((None, None), 40, {}, "resumed from 40, not 300 in one go"),
    ],
)
def test_point_times_refuse_jobs_whose_time_would_be_wrong(tmp_path, scheduler_jobs, resumed, times, message):
    for slug, job in zip("ab", scheduler_jobs, strict=True):
        write_job(tmp_path, slug, command_s=5.0, start=1000.0, job=job, resumed=resumed)
    with pytest.raises(WcganError, match=message):
        point_times(str(tmp_path), jobs(tmp_path), "slurm", 300, scheduler_times=times)


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
    assert not bool(summary.loc[4, "concurrent"]) and summary.loc[4, "overlap"] < 0
    assert {f"{part}_mean_s" for part in PARTS} <= set(summary.columns)


def test_summary_needs_a_single_job_point():
    with pytest.raises(WcganError, match="no N = 1 point"):
        summarize(jobs_table({2: [10.0, 10.0]}))


def test_projection_adds_submission_offsets_and_stragglers():
    steady = jobs_table({1: [10.0], 2: [10.0, 10.0]})
    flat = project(steady, [100, 1000], draws=50)
    # Identical job times and no scheduler: the makespan stays the job time.
    assert flat["makespan_median_s"].tolist() == pytest.approx([10.0, 10.0])
    assert flat["makespan_efficiency_median"].tolist() == pytest.approx([1.0, 1.0])

    submitted = steady.copy()
    submitted.loc[submitted["n"] == 2, "submit"] = [0.0, 0.5]
    offset = project(submitted, [100], draws=50)
    assert offset["submit_interval_s"].iloc[0] == pytest.approx(0.5)
    assert offset["makespan_median_s"].iloc[0] == pytest.approx(99 * 0.5 + 10.0)

    noisy = project(jobs_table({1: [10.0], 2: [9.0, 11.0]}), [10, 100, 1000], draws=200)
    assert noisy["job_time_log_sd"].iloc[0] == pytest.approx(np.log(11 / 9) / np.sqrt(2))
    assert np.all(np.diff(noisy["makespan_median_s"]) > 0)  # the slowest of more jobs is slower
    assert np.all(noisy["makespan_efficiency_median"] < 1)

    # A point whose jobs did not overlap is not projected from.
    apart = jobs_table(
        {1: [10.0], 2: [10.0, 10.0], 4: [30.0] * 4}, starts={1: [0], 2: [0, 0], 4: [0, 0, 40, 40]}
    )
    assert project(apart, [100], draws=10)["from_n"].iloc[0] == 2


def test_slurm_time_stamps_are_read_as_epoch_seconds():
    assert _epoch("1795447158") == 1795447158.0
    assert _epoch("Unknown") is None and _epoch("N/A") is None and _epoch("2026-11-23T14:50:01") is None


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
