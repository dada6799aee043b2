"""The workflow through a real Slurm (the one-node cluster .ci/run starts with
scripts/slurm-local.sh) and the slurm profile, with a CI override for partition and resources."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, TINY, merged, run_snakemake, write_config

pytestmark = pytest.mark.slurm
RUN = Path("results") / "tiny"
# The site values a user puts in profiles/slurm, set here for the CI cluster (no accounting
# database there, so the plugin polls with squeue).
CI_OVERRIDE = [
    "--profile", str(REPO / "profiles" / "slurm"),
    "--default-resources", "slurm_partition=main", "runtime=10", "mem_mb=500",
    "--set-resources", "train_label:slurm_partition=main", "train_label:mem_mb=1000",
    "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def slurm():
    try:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        state = ""
    if "idle" not in state and "mix" not in state and "alloc" not in state:
        if os.environ.get("WCGAN_REQUIRE_SLURM"):
            pytest.fail(
                "no Slurm cluster answers, but WCGAN_REQUIRE_SLURM is set (see scripts/slurm-local.sh)"
            )
        pytest.skip("no Slurm cluster here; start one with scripts/slurm-local.sh up")


def slurm_job(job_id: str) -> tuple[str, str]:
    """(state, comment) of a Slurm job; Snakemake's comment names the rule and wildcards."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%k"], capture_output=True, text=True
    )
    state, comment = out.stdout.strip().split("|")
    return state, comment


def scheduler_job(workdir: Path, slug: str) -> str:
    log = (workdir / RUN / "logs/train" / f"{slug}.log").read_text()
    match = re.search(r"scheduler job (\d+)", log)
    assert match, log
    return match.group(1)


def generator_weights(workdir: Path, slug: str) -> list[torch.Tensor]:
    return list(torch.load(workdir / RUN / "models" / f"{slug}.pt", weights_only=True)["state"].values())


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("slurm")
    write_config(workdir, TINY)
    result = run_snakemake(workdir, *CI_OVERRIDE, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir


def test_the_tiny_pipeline_runs_as_slurm_jobs(slurm_run):
    assert (slurm_run / RUN / "scores/metrics.tsv").exists()
    for slug in ("0", "1", "2"):
        job = scheduler_job(slurm_run, slug)
        assert slurm_job(job) == ("COMPLETED", f"rule_train_label_wildcards_{slug}")
        assert (slurm_run / ".snakemake/slurm_logs/rule_train_label" / slug / f"{job}.log").exists()
        summary = json.loads((slurm_run / RUN / f"training/{slug}.json").read_text())
        assert summary["scheduler_job"] == job


def test_label_packing_trains_several_labels_per_job_with_identical_results(slurm_run, tmp_path):
    write_config(tmp_path, TINY)
    target = [str(RUN / "training" / f"{slug}.json") for slug in ("0", "1", "2")]
    packing = ["--groups", "train_label=train", "--group-components", "train=2"]  # two labels per job
    result = run_snakemake(tmp_path, *target, *CI_OVERRIDE, *packing, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = {scheduler_job(tmp_path, slug) for slug in ("0", "1", "2")}
    assert len(jobs) == 2  # three labels, two per job
    assert {slurm_job(job)[1] for job in jobs} == {"rule_train_train_label"}
    for slug in ("0", "1", "2"):
        packed, alone = generator_weights(tmp_path, slug), generator_weights(slurm_run, slug)
        assert all(torch.equal(a, b) for a, b in zip(packed, alone, strict=True))


def test_a_gpu_request_on_a_cpu_partition_stops_before_submission(tmp_path):
    write_config(tmp_path, TINY)
    before = subprocess.run(["squeue", "-h", "-t", "all"], capture_output=True, text=True).stdout
    result = run_snakemake(tmp_path, *CI_OVERRIDE, "--set-resources", "train_label:slurm_partition=main",
                           "train_label:gpu=1", timeout=120)  # fmt: skip
    assert result.returncode != 0
    assert "gpu=1 on partition 'main', which has no GPUs" in result.stderr
    assert subprocess.run(["squeue", "-h", "-t", "all"], capture_output=True, text=True).stdout == before


def checkpoint_iteration(workdir: Path, slug: str) -> int:
    (checkpoint,) = (workdir / RUN / "checkpoints" / slug).glob("*.pt")
    return torch.load(checkpoint, weights_only=True)["iteration"]


def test_a_job_stopped_at_its_time_limit_resumes_to_completion(tmp_path):
    # An iteration budget that takes longer than the 1-minute limit; checkpoints every 3 s.
    write_config(
        tmp_path, merged(TINY, {"train": {"iterations": 4000, "seconds": None, "checkpoint_seconds": 3}})
    )
    target = str(RUN / "training/0.json")
    limit = [
        "--set-resources",
        "train_label:slurm_partition=main",
        "train_label:mem_mb=1000",
        "train_label:runtime=1",
    ]
    first = run_snakemake(tmp_path, target, *CI_OVERRIDE, *limit, timeout=600)
    assert first.returncode != 0
    assert slurm_job(scheduler_job(tmp_path, "0"))[0] == "TIMEOUT"
    reached = checkpoint_iteration(tmp_path, "0")
    assert 0 < reached < 4000 and not (tmp_path / RUN / "models/0.pt").exists()

    second = run_snakemake(tmp_path, target, *CI_OVERRIDE, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    summary = json.loads((tmp_path / RUN / "training/0.json").read_text())
    assert summary["iterations"] == 4000 and summary["resumed_from_iteration"] >= reached
    assert slurm_job(summary["scheduler_job"])[0] == "COMPLETED"
    rows = (tmp_path / RUN / "losses/0.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 4001))


def test_one_failing_label_does_not_stop_the_others_and_is_named(tmp_path):
    write_config(tmp_path, TINY)
    split = run_snakemake(tmp_path, str(RUN / "labels.tsv"), *CI_OVERRIDE, timeout=600)
    assert split.returncode == 0, split.stderr[-3000:]
    shard = tmp_path / RUN / "shards/1.pt"
    times = shard.stat()
    shard.write_bytes(b"a shard damaged on disk")
    os.utime(shard, ns=(times.st_atime_ns, times.st_mtime_ns))  # damaged, not rewritten
    result = run_snakemake(tmp_path, *CI_OVERRIDE, timeout=900)
    assert result.returncode != 0
    assert (tmp_path / RUN / "models/0.pt").exists() and (tmp_path / RUN / "models/2.pt").exists()
    assert (tmp_path / RUN / "samples/2.pt").exists()  # the others went on (--keep-going)
    assert not (tmp_path / RUN / "models/1.pt").exists()
    assert "cannot be read" in (tmp_path / RUN / "logs/train/1.log").read_text()
    assert (
        "1 of 3 labels have no trained model, so the merged scores and figures were not made: 1;"
        in result.stderr
    )


def test_weak_scaling_through_slurm_splits_each_job_with_the_schedulers_times(tmp_path):
    path = write_config(tmp_path, merged(TINY, {"scaling": {"iterations": 8, "projection_jobs": [100]}}))
    config = yaml.safe_load(path.read_text())
    config["scaling"]["series"] = {"slurm": {"max_jobs": 2, "snakemake_args": CI_OVERRIDE}}  # only this one
    path.write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "scaling", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = pd.read_csv(tmp_path / RUN / "scaling/jobs.tsv", sep="\t", dtype={"scheduler_job": str})
    assert jobs[["series", "n"]].values.tolist() == [["slurm", 1], ["slurm", 2], ["slurm", 2]]
    for job, slug, n in zip(jobs["scheduler_job"], jobs["slug"], jobs["n"], strict=True):
        assert slurm_job(job) == ("COMPLETED", f"rule_train_label_wildcards_{slug}")
        log = (tmp_path / RUN / f"scaling/slurm/n{n}/logs/train/{slug}.log").read_text()
        assert f"scheduler job {job}" in log
    # Slurm's own time stamps: the job ran at least as long as the training command inside it.
    assert jobs[["submit", "start", "end"]].notna().all().all()
    assert (jobs["queue"] >= 0).all() and (jobs["launch"] >= 0).all()
    assert (jobs["end"] - jobs["start"] >= jobs["command_s"] - 1).all()
    summary = pd.read_csv(tmp_path / RUN / "scaling/summary.tsv", sep="\t")
    # Whether two jobs overlapped is the cluster's load (tests/test_scaling.py checks the rule).
    assert summary.loc[summary["n"] == 1, "concurrent"].all()
    assert (tmp_path / RUN / "figures/scaling/weak_scaling.png").exists()
