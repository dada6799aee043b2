"""The LSF profile, exercised with stand-in LSF commands (tests/lsf_standin): no LSF can be
installed here. The stand-ins record each bsub command line and run the job locally, so these
tests check what every training job asks LSF for, not a live cluster's behaviour."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import REPO, TINY, default_config, env, merged, run_snakemake, write_config
from wcgan.config import TrainConfig
from wcgan.memory import training_memory

pytestmark = pytest.mark.e2e
RUN = Path("results") / "tiny"
STANDIN = Path(__file__).parent / "lsf_standin"
SITE = {"EDIT_ME_project": "ci-project", "EDIT_ME_cpu_queue": "cpu", "EDIT_ME_gpu_queue": "gpu"}


def site_profile(folder: Path) -> Path:
    """profiles/lsf with its SITE placeholders set, as a user edits it."""
    text = (REPO / "profiles" / "lsf" / "config.v8+.yaml").read_text()
    for placeholder, value in SITE.items():
        text = text.replace(placeholder, value)
    assert not re.search(r":\s*EDIT_ME", text)
    folder.mkdir(parents=True)
    (folder / "config.v8+.yaml").write_text(text)
    return folder


def test_each_training_job_asks_lsf_for_its_queue_project_time_memory_and_gpu(tmp_path):
    workdir = tmp_path / "work"
    # A seconds budget, which sets the jobs' time limit.
    write_config(workdir, merged(TINY, {"labels_per_job": 2, "train": {"seconds": 60}}))
    lsf = {"PATH": f"{STANDIN}{os.pathsep}{env()['PATH']}", "LSF_STANDIN_DIR": str(tmp_path / "lsf")}
    targets = [str(RUN / "training" / chunk) for chunk in ("c000-001", "c002-002")]
    result = run_snakemake(
        workdir, *targets, "--profile", str(site_profile(tmp_path / "profile")), timeout=600, extra_env=lsf
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    submissions = [json.loads(line) for line in (tmp_path / "lsf" / "bsub.jsonl").read_text().splitlines()]
    train = {s["job"]: s for s in submissions if "rule_train_chunk" in s["options"]["-J"][0]}
    split = [s for s in submissions if "rule_split_chunk" in s["options"]["-J"][0]]
    assert len(train) == 2 and len(split) == 2  # a job per chunk of two labels
    config = merged(default_config(), merged(TINY, {"train": {"seconds": 60}}))
    estimate = training_memory(
        TrainConfig.from_mapping(config["train"], "train"),
        2,
        2 * config["resources"]["train_images_per_label"],
        1,
        8,
    )
    expected_mb = config["resources"]["train_mem_mb"] + estimate.data_mb
    assert expected_mb > config["resources"]["train_mem_mb"]
    for job in train.values():
        options, argv = job["options"], job["argv"]
        assert options["-q"] == ["gpu"] and options["-P"] == ["ci-project"]
        assert options["-W"] == ["7"]  # 2 labels x train.seconds 60 -> 2 minutes + 5 minutes margin
        # the rule's own request (the profile sets none): train_mem_mb plus the chunk's estimate
        assert options["-n"] == ["1"] and f"rusage[mem={float(expected_mb)}]" in options["-R"]
        assert argv[argv.index("-gpu") + 1] == "num=1"
    for job in split:
        assert job["options"]["-q"] == ["cpu"] and job["options"]["-W"] == ["30"]
        assert "-gpu" not in job["argv"]
    for chunk in ("c000-001", "c002-002"):
        log = (workdir / RUN / "logs/train" / f"{chunk}.log").read_text()
        assert re.search(r"scheduler job (\d+)", log).group(1) in train


def test_unedited_cluster_profiles_stop_with_one_line(tmp_path):
    write_config(tmp_path, TINY)
    for profile, key in (("lsf", "lsf_project"), ("slurm", "slurm_account")):
        result = run_snakemake(tmp_path, "-n", "--profile", str(REPO / "profiles" / profile), timeout=120)
        assert result.returncode != 0
        output = result.stdout + result.stderr  # the executor plugins log to different streams
        assert f"default-resources: {key} is still the placeholder 'EDIT_ME_" in output
        assert "Traceback" not in output


def test_a_distributed_job_starts_its_processes_with_jsrun(tmp_path):
    workdir = tmp_path / "work"
    train = {"generator": "distributed", "iterations": 2}
    write_config(
        workdir, merged(TINY, {"train": train, "distributed": {"devices": 2, "partition": "by_label"}})
    )
    lsf = {"PATH": f"{STANDIN}{os.pathsep}{env()['PATH']}", "LSF_STANDIN_DIR": str(tmp_path / "lsf")}
    # --cores 4: a job's threads are not scaled down below the 3 processes' (as with no --cores).
    result = run_snakemake(
        workdir, str(RUN / "training/distributed.json"), "--profile", str(site_profile(tmp_path / "profile")),
        "--cores", "4", timeout=600, extra_env=lsf,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    submissions = [json.loads(line) for line in (tmp_path / "lsf" / "bsub.jsonl").read_text().splitlines()]
    (job,) = [s for s in submissions if "rule_train_distributed" in s["options"]["-J"][0]]
    assert job["options"]["-q"] == ["gpu"] and job["options"]["-P"] == ["ci-project"]
    assert job["options"]["-n"] == ["3"] and "span[hosts=1]" in job["options"]["-R"]  # 3 slots, one host
    (launch,) = [json.loads(line) for line in (tmp_path / "lsf" / "jsrun.jsonl").read_text().splitlines()]
    assert launch["options"]["--nrs"] == "3" and launch["options"]["--tasks_per_rs"] == "1"
    log = (workdir / RUN / "logs/train/distributed.log").read_text()
    for rank, role in enumerate(["server", "device 1", "device 2"]):
        assert f"rank {rank} ({role}) on " in log and f": jsrun rank {rank} of 3," in log
    assert json.loads((workdir / RUN / "training/distributed.json").read_text())["rounds"] == 6
