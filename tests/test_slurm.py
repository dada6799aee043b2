"""The workflow through a real Slurm (the one-node cluster .ci/run starts with
scripts/slurm-local.sh) and the slurm profile, with a CI override for partition and resources."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import BIN, REPO, SNAKEFILE, TINY, env, merged, run_snakemake, write_config

pytestmark = pytest.mark.slurm
RUN = Path("results") / "tiny"
# The site values a user puts in profiles/slurm, set here for the CI cluster (no accounting
# database there, so the plugin polls with squeue).
CI_OVERRIDE = [
    "--profile", str(REPO / "profiles" / "slurm"),
    "--default-resources", "slurm_partition=main", "runtime=10", "mem_mb=500",
    "--set-resources", "train_chunk:slurm_partition=main", "train_chunk:mem_mb=1000",
    "features_chunk:slurm_partition=main",
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


def scheduler_job(workdir: Path, chunk: str) -> str:
    log = (workdir / RUN / "logs/train" / f"{chunk}.log").read_text()
    match = re.search(r"scheduler job (\d+)", log)
    assert match, log
    return match.group(1)


# Two labels per job: the three labels train in two Slurm jobs, the second chunk shorter.
CHUNKS = {"c000-001": ["0", "1"], "c002-002": ["2"]}


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("slurm")
    write_config(workdir, merged(TINY, {"labels_per_job": 2}))
    result = run_snakemake(workdir, *CI_OVERRIDE, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir


def test_the_tiny_pipeline_runs_a_slurm_job_per_chunk(slurm_run):
    assert (slurm_run / RUN / "scores/metrics.tsv").exists()
    for chunk, slugs in CHUNKS.items():
        job = scheduler_job(slurm_run, chunk)
        assert slurm_job(job) == ("COMPLETED", f"rule_train_chunk_wildcards_{chunk}")
        assert (slurm_run / ".snakemake/slurm_logs/rule_train_chunk" / chunk / f"{job}.log").exists()
        for slug in slugs:
            summary = json.loads((slurm_run / RUN / f"training/{chunk}/{slug}.json").read_text())
            assert summary["scheduler_job"] == job


@pytest.mark.parametrize(
    "generator, gpus, message",
    [
        (
            "per_label",
            "train_chunk:gpu=1",
            "set-resources train_chunk: gpu=1 on partition 'main', which has no GPUs",
        ),
        (
            "distributed",
            "train_distributed:slurm_extra='--gpus-per-task=1'",
            "set-resources train_distributed: slurm_extra --gpus-per-task=1 on partition 'main', which has no GPUs",
        ),
    ],
)
def test_a_gpu_request_on_a_cpu_partition_stops_before_submission(tmp_path, generator, gpus, message):
    write_config(tmp_path, merged(TINY, {"train": {"generator": generator}}))
    before = subprocess.run(["squeue", "-h", "-t", "all"], capture_output=True, text=True).stdout
    rule = gpus.split(":")[0]
    result = run_snakemake(tmp_path, *CI_OVERRIDE, "--set-resources", f"{rule}:slurm_partition=main", gpus,
                           timeout=120)  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr
    assert subprocess.run(["squeue", "-h", "-t", "all"], capture_output=True, text=True).stdout == before


def checkpoint_iteration(workdir: Path, chunk: str) -> int:
    (checkpoint,) = (workdir / RUN / "checkpoints" / chunk).glob("*.pt")
    return torch.load(checkpoint, weights_only=True)["count"]


def iterations_per_second(digit_shards, folder: Path) -> float:
    """How fast the tiny GAN trains here now: this machine has run it at 20 and at over 67
    iterations per second, so the time-limit test sizes its budget from a short run."""
    from wcgan.files import save_shard

    save_shard(digit_shards[0], folder / "0.pt")
    options = [
        f"--{key.replace('_', '-')}={value}" for key, value in TINY["train"].items() if key != "seconds"
    ]
    files = {"model-out": "model.pt", "losses-out": "losses.csv", "summary-out": "summary.json"}
    outputs = [f"--{option}={folder / name}" for option, name in files.items()]
    command = [str(BIN / "wcgan"), "train", f"--shard={folder / '0.pt'}", f"--checkpoint-dir={folder}/ck"]
    command += [*outputs, f"--samples-out={folder / 'samples.pt'}", "--samples=2", "--threads=1"]
    command += ["--device=cpu", *options, "--iterations=300"]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    summary = json.loads((folder / "summary.json").read_text())
    return summary["iterations"] / summary["seconds"]


def test_a_job_stopped_at_its_time_limit_resumes_to_completion(tmp_path, digit_shards):
    # A budget of about 150 s here: it outlasts the 1-minute limit even at twice this speed, and
    # the resumed job ends well inside its timeout even at a third of it. Checkpoints every 3 s.
    (tmp_path / "rate").mkdir()
    budget = max(4_000, int(150 * iterations_per_second(digit_shards, tmp_path / "rate")))
    write_config(
        tmp_path, merged(TINY, {"train": {"iterations": budget, "seconds": None, "checkpoint_seconds": 3}})
    )
    target = str(RUN / "training/c000-000")
    limit = [
        "--set-resources",
        "train_chunk:slurm_partition=main",
        "train_chunk:mem_mb=1000",
        "train_chunk:runtime=1",
    ]
    first = run_snakemake(tmp_path, target, *CI_OVERRIDE, *limit, timeout=600)
    assert first.returncode != 0
    assert slurm_job(scheduler_job(tmp_path, "c000-000"))[0] == "TIMEOUT"
    reached = checkpoint_iteration(tmp_path, "c000-000")
    assert 0 < reached < budget and not (tmp_path / RUN / "models/c000-000/0.pt").exists()

    second = run_snakemake(tmp_path, target, *CI_OVERRIDE, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    summary = json.loads((tmp_path / RUN / "training/c000-000/0.json").read_text())
    assert summary["iterations"] == budget and summary["resumed_from_iteration"] >= reached
    assert slurm_job(summary["scheduler_job"])[0] == "COMPLETED"
    rows = (tmp_path / RUN / "losses/c000-000/0.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, budget + 1))


def test_one_failing_label_does_not_stop_the_others_and_is_named(tmp_path):
    write_config(tmp_path, TINY)
    split = run_snakemake(tmp_path, str(RUN / "labels.tsv"), *CI_OVERRIDE, timeout=600)
    assert split.returncode == 0, split.stderr[-3000:]
    shard = tmp_path / RUN / "shards/c001-001/1.pt"
    times = shard.stat()
    shard.write_bytes(b"a shard damaged on disk")
    os.utime(shard, ns=(times.st_atime_ns, times.st_mtime_ns))  # damaged, not rewritten
    result = run_snakemake(tmp_path, *CI_OVERRIDE, timeout=900)
    assert result.returncode != 0
    run = tmp_path / RUN
    assert (run / "models/c000-000/0.pt").exists() and (run / "models/c002-002/2.pt").exists()
    assert (run / "samples/c002-002/2.pt").exists()  # the others went on (--keep-going)
    assert not (run / "models/c001-001/1.pt").exists()
    assert "cannot be read" in (run / "logs/train/c001-001.log").read_text()
    assert (
        "1 of 3 labels have no trained model, so the merged scores and figures were not made: 1;"
        in result.stderr
    )
    assert f"; see {RUN}/logs/train/c001-001.log, fix" in result.stderr  # the log that holds the error


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
        assert slurm_job(job) == ("COMPLETED", f"rule_train_chunk_wildcards_{slug}")
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


# The distributed job as the profile asks for it: its own srun starts devices + 1 tasks.
DISTRIBUTED_OVERRIDE = [
    *CI_OVERRIDE[: CI_OVERRIDE.index("--set-resources")],
    "--set-resources", "train_distributed:slurm_partition=main", "train_distributed:mpi='srun'",
    "train_distributed:mem_mb_per_cpu=500",
    *CI_OVERRIDE[CI_OVERRIDE.index("--slurm-status-command"):],
]  # fmt: skip


def test_distributed_training_runs_as_slurm_tasks_and_survives_a_killed_device(tmp_path):
    budget = 100  # per label: 300 rounds
    train = {"generator": "distributed", "iterations": budget, "checkpoint_seconds": 1}
    write_config(
        tmp_path, merged(TINY, {"train": train, "distributed": {"devices": 2, "partition": "by_label"}})
    )
    group = tmp_path / RUN / "checkpoints/distributed/group"
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--cores", "2",
               str(RUN / "training/distributed.json"), *DISTRIBUTED_OVERRIDE]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 600
        while not (group / "rank-0.json").exists() or "round" not in json.loads(
            (group / "rank-0.json").read_text()
        ):
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()[-3000:]
            time.sleep(0.2)
        victim = json.loads((group / "rank-2.json").read_text())
        os.kill(victim["pid"], signal.SIGKILL)  # a device process, inside the Slurm job
        output, _ = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]
    log = (tmp_path / RUN / "logs/train/distributed.log").read_text()
    host = socket.gethostname()
    for rank, role in enumerate(["server", "device 1", "device 2"]):  # once per launch of the group
        assert log.count(f"rank {rank} ({role}) on {host}: srun rank {rank} of 3,") == 2, log
    assert f"rank 2 (device 2) on {host} (pid {victim['pid']}) was lost (srun exit 137); restarting" in log
    summary = json.loads((tmp_path / RUN / "training/distributed.json").read_text())
    assert summary["rounds"] == 3 * budget and summary["resumed_from_round"] > 0
    job = summary["scheduler_job"]
    details = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "NumTasks=3 " in details and "JobState=COMPLETED" in details, details


def test_a_srun_launch_of_the_wrong_size_is_refused_in_one_line(tmp_path):
    command = ["srun", "--ntasks=2", str(BIN / "wcgan"), "train-distributed", "--devices", "2",
               "--shard", "a.pt", "b.pt", "--model-out", "m.pt", "--losses-out", "l.csv",
               "--summary-out", "s.json", "--checkpoint-dir", "ck", "--iterations", "1"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if line.startswith("wcgan:")] == [
        "wcgan: error: the srun launch has 2 processes, but distributed.devices 2 needs 3 (the server and "
        "one per device): srun --ntasks 3"
    ]
    assert not list(tmp_path.iterdir())
