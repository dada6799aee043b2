"""Distributed training with local critics and a server-side GAN: partitions, the weighted
average, refusals, real ``torchrun`` launches (gloo on the CPU) of both schedules, and the
launcher: ranks from each launcher's environment, the shards each rank reads, a device that
cannot read its shard, and a device killed mid-run."""

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from conftest import REPO, env
from wcgan.atomic import LOCK_NAME, load_torch, save_torch
from wcgan.cli import main
from wcgan.config import DistributedConfig, TrainConfig, label_seed
from wcgan.data import TrainingSet
from wcgan.distributed import (
    critic_seed,
    iid_rows,
    label_shares,
    resolve_backend,
    train_distributed,
    weighted_average,
)
from wcgan.errors import QuietExit, WcganError
from wcgan.files import load_generator, load_samples, load_snapshot_samples, save_shard
from wcgan.launch import GROUP_FOLDER, group_command, launch_group, member_from_environment
from wcgan.losses import LOSSES, make_optimizer
from wcgan.networks import Critic, NetworkStack, images_to_float
from wcgan.training import critic_steps_on, initial_networks, train

TINY = dict(width=8, batch_size=8, z_dim=8)
OPTIONS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()] + ["--log-seconds=0.05"]


def tiny(**values) -> TrainConfig:
    return TrainConfig(**{"generator": "conditional", **TINY, **values})


@pytest.fixture(scope="module")
def shard_files(digit_shards, tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("shards")
    paths = []
    for shard in digit_shards:
        save_shard(shard, folder / f"{shard.label.slug}.pt")
        paths.append(str(folder / f"{shard.label.slug}.pt"))
    return paths


@pytest.fixture
def one_thread():
    """The threads a device process has, so float reductions round as they do there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def launch(processes: int, shards: list[str], out: Path, *options: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone`` of ``wcgan train-distributed`` on ``shards``, outputs under ``out``.
    The budget is per label: ``--iterations=N`` on three shards is 3N rounds."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        "-m", "wcgan.cli", "train-distributed", "--shard", *shards, "--model-out", str(out / "model.pt"),
        "--losses-out", str(out / "losses.csv"), "--summary-out", str(out / "summary.json"),
        "--checkpoint-dir", str(out / "checkpoints"), *OPTIONS, *options,
    ]  # fmt: skip
    environment = {**env(), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)


def checkpoint(out: Path) -> dict:
    """The server's state in the one checkpoint beside the folder's lock file and the ranks'
    records: no temporaries."""
    (path,) = (p for p in (out / "checkpoints").iterdir() if p.name not in (LOCK_NAME, GROUP_FOLDER))
    state = load_torch(path, "checkpoint")
    assert state["kind"] == "distributed" and state["count"] == len(state["state"]["history"])
    return state["state"]


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def expected_bytes(data: TrainingSet, devices: int) -> int:
    """A round's traffic from the networks' sizes: the command and G's and D's parameters and
    buffers broadcast to each device; from each, its weighted D, 3 loss means and the 2 timings
    of every device (zero but its own) reduced."""
    generator, critic = initial_networks(tiny(), data)

    def size(module):
        return sum(t.nbytes for t in module.state_dict().values())

    broadcast = devices * (8 + size(generator) + size(critic))
    return broadcast + devices * (size(critic) + 4 * (3 + 2 * devices))


# --- without processes ----------------------------------------------------------------------


def test_the_weighted_average_is_the_data_size_weighted_mean():
    critics = []
    for seed in range(3):
        torch.manual_seed(seed)
        critic = Critic(8, 1, 4, num_classes=3, spectral_norm=True)
        critic(torch.randn(2, 1, 8, 8), torch.tensor([0, 2]))  # spectral norm's u and v move apart
        critics.append(critic.state_dict())
    sizes = [10, 30, 60]
    average = weighted_average(critics, sizes)
    assert average.keys() == critics[0].keys()
    assert any(key.endswith("._u") for key in average)  # buffers are averaged too
    for key, value in average.items():
        expected = (10 * critics[0][key] + 30 * critics[1][key] + 60 * critics[2][key]) / 100
        torch.testing.assert_close(value, expected)
    assert not torch.allclose(average["net.0.bias"], sum(c["net.0.bias"] for c in critics) / 3)


def test_iid_deals_every_row_once_in_data_order():
    shares = iid_rows(20, 3, seed=7)
    assert sorted(len(rows) for rows in shares) == [6, 7, 7]
    assert torch.equal(torch.cat(shares).sort().values, torch.arange(20))
    assert all(torch.equal(rows, rows.sort().values) for rows in shares)
    assert all(torch.equal(a, b) for a, b in zip(shares, iid_rows(20, 3, seed=7), strict=True))
    assert not torch.equal(shares[0], iid_rows(20, 3, seed=8)[0])
    assert torch.equal(iid_rows(5, 1, seed=3)[0], torch.arange(5))  # one device: every row in order


def test_by_label_gives_each_device_a_contiguous_run_of_labels():
    assert label_shares(5, 3) == [range(0, 2), range(2, 4), range(4, 5)]
    assert label_shares(3, 3) == [range(0, 1), range(1, 2), range(2, 3)]
    assert label_shares(4, 1) == [range(0, 4)]


@pytest.mark.parametrize(
    "share, message",
    [
        (
            lambda: iid_rows(5, 6, seed=0),
            r"^distributed.devices 6 exceeds the number of images \(5\) that partition iid",
        ),
        (
            lambda: label_shares(2, 3),
            r"^distributed.devices 3 exceeds the number of labels \(2\) that partition by_label",
        ),
    ],
)
def test_partition_refusals(share, message):
    with pytest.raises(WcganError, match=message):
        share()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"schedule": "async"}, r"^distributed.schedule 'async' is unknown \(known: serial, parallel\)$"),
        ({"partition": "random"}, r"^distributed.partition 'random' is unknown"),
        ({"backend": "mpi"}, r"^distributed.backend 'mpi' is unknown"),
        ({"devices": 0}, r"^distributed.devices must be positive, got 0$"),
        ({"local_steps": 0}, r"^distributed.local_steps must be positive"),
        ({"rounds": 3}, r"^distributed.rounds is not an option of distributed$"),
        ({"nodes": 4}, r"^distributed.nodes 4 exceeds the launch's 3 processes \(devices \+ 1\)"),
        ({"max_restarts": -1}, r"^distributed.max_restarts must be 0 or more, got -1$"),
    ],
)
def test_config_refusals(values, message):
    with pytest.raises(WcganError, match=message):
        DistributedConfig.from_mapping(values)


def test_the_backend_follows_the_device():
    assert resolve_backend("auto", torch.device("cpu")) == "gloo"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "nccl"
    assert resolve_backend("gloo", torch.device("cpu")) == "gloo"
    with pytest.raises(
        WcganError, match=r"^distributed.backend nccl needs GPUs, but this process runs on cpu$"
    ):
        resolve_backend("nccl", torch.device("cpu"))
    with pytest.raises(
        WcganError, match=r"^distributed.backend gloo needs train.device cpu, but .* on cuda:0$"
    ):
        resolve_backend("gloo", torch.device("cuda", 0))


@pytest.mark.parametrize(
    "config, dist_values, message",
    [
        (
            tiny(iterations=1),
            {"devices": 2},
            r"^the launch has world size 1, but distributed.devices 2 needs 3 ",
        ),
        (
            tiny(iterations=1, generator="distributed", training="one_stage"),
            {"devices": 1},
            r"^train.training one_stage does not apply to train.generator distributed",
        ),
    ],
)
def test_train_distributed_refuses_a_launch_it_cannot_run(
    shard_files, tmp_path, config, dist_values, message
):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(WcganError, match=message):
            train_distributed(shard_files, config, DistributedConfig(**dist_values), tmp_path)
    finally:
        dist.destroy_process_group()
    assert not list(tmp_path.glob("distributed-*"))


@pytest.mark.parametrize(
    "options, message",
    [
        (["--devices", "1"], r"no launch found \(no torchrun, srun or jsrun environment\): run wcgan "),
        (["--schedule", "async"], r"distributed.schedule 'async' is unknown"),
        (["--snapshots", "2"], r"train.snapshots is 2: give --snapshots-out"),
    ],
)
def test_command_line_refusals_are_one_line(shard_files, tmp_path, capsys, monkeypatch, options, message):
    for name in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)
    argv = [
        "train-distributed",
        "--shard",
        *shard_files,
        "--model-out",
        str(tmp_path / "m.pt"),
        "--losses-out",
        "l.csv",
    ]
    argv += ["--summary-out", "s.json", "--checkpoint-dir", str(tmp_path), "--iterations", "1", *options]
    assert main(argv) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("wcgan: error: ")
    assert re.search(message, line)
    assert not list(tmp_path.iterdir())


# --- real launches --------------------------------------------------------------------------


def test_one_device_on_the_serial_schedule_reproduces_train_and_resumes(
    shard_files, digit_shards, tmp_path, one_thread
):
    out = tmp_path / "distributed"
    first = launch(2, shard_files, out, "--devices=1", "--iterations=1")  # 3 labels: 3 rounds
    assert first.returncode == 0, first.stderr
    assert "new distributed run" in first.stderr
    # Written as the server's checkpoint was before the runner's schema: it resumes all the same.
    (path,) = (out / "checkpoints").glob("distributed-*.pt")
    state = load_torch(path, "checkpoint")
    former = {
        "format": "wcgan-distributed-checkpoint-1",
        "round": state["count"],
        "seconds": state["seconds"],
    }
    save_torch({**former, "config": state["config"], **state["state"]}, path)
    second = launch(2, shard_files, out, "--devices=1", "--iterations=2")
    assert second.returncode == 0, second.stderr
    assert "at round 3" in next(line for line in second.stderr.splitlines() if "resumed from" in line)
    assert summary(out)["resumed_from_round"] == 3 and summary(out)["rounds"] == 6

    reference = train(
        TrainingSet.of_labels(digit_shards), tiny(iterations=6), tmp_path / "train", log=lambda _: None
    )
    state = checkpoint(out)
    columns = [0, 2, 3, 4, 5]  # every column but the wall-clock seconds
    assert state["history"].shape == (6, 6)
    assert torch.equal(state["history"][:, columns], reference.history[:, columns])
    for name, parameter in reference.generator.named_parameters():
        assert torch.equal(state["generator"][name], parameter), name
    (train_checkpoint,) = (tmp_path / "train").glob("*.pt")
    reference_critic = load_torch(train_checkpoint, "checkpoint")["state"]["labels"][0]["critic"]
    assert state["critic"].keys() == reference_critic.keys()
    for name, value in reference_critic.items():  # spectral norm's u and v included
        assert torch.equal(state["critic"][name], value), name


@pytest.fixture(scope="module")
def serial_run(shard_files, tmp_path_factory):
    """Two devices, a share of the labels each, serial schedule, with samples and snapshots."""
    out = tmp_path_factory.mktemp("serial")
    samples = [str(out / f"samples-{i}.pt") for i in range(len(shard_files))]
    result = launch(
        3, shard_files, out, "--devices=2", "--partition=by_label", "--iterations=1", "--snapshots=2",
        "--snapshots-out", str(out / "snapshots"), "--samples=5", "--samples-out", *samples,
    )  # fmt: skip
    return result, out


def test_serial_schedule_writes_its_outputs_and_counts_its_traffic(serial_run, digit_shards):
    result, out = serial_run
    assert result.returncode == 0, result.stderr
    facts = summary(out)
    assert facts["rounds"] == facts["iterations"] == 3 and facts["schedule"] == "serial"
    assert facts["loss"] == "wgan-gp" and facts["slug"] == "conditional" and facts["seconds"] > 0
    assert facts["world_size"] == 3 and facts["backend"] == "gloo"
    counts = [len(shard.images) for shard in digit_shards]
    assert facts["device_images"] == [counts[0] + counts[1], counts[2]]
    assert facts["device_labels"] == [["0", "1"], ["2"]]
    data = TrainingSet.of_labels(digit_shards)
    assert facts["bytes_per_round"] == expected_bytes(data, devices=2)
    timings = checkpoint(out)["timings"]  # every round alike, the first too
    assert (timings[:, 1] + timings[:, 2]).tolist() == [expected_bytes(data, devices=2)] * 3
    assert facts["broadcast_bytes_per_round"] + facts["reduce_bytes_per_round"] == facts["bytes_per_round"]
    assert (
        facts["compute_seconds_per_round"]["devices"] > 0 and facts["compute_seconds_per_round"]["server"] > 0
    )
    assert facts["communication_seconds_per_round"]["server"] > 0
    assert len(facts["device_seconds_per_round"]) == 2

    generator, meta = load_generator(out / "model.pt")
    assert generator.num_classes == 3 and meta["iterations"] == 3
    lines = (out / "losses.csv").read_text().splitlines()
    assert lines[0] == "iteration,seconds,critic_loss,wasserstein,penalty,generator_loss"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
    for index, shard in enumerate(digit_shards):
        images, label = load_samples(out / f"samples-{index}.pt")
        assert label == shard.label and images.shape == (5, 1, 8, 8)
    for shard in digit_shards:  # a file per label: the moving average's points, then the raw weights'
        points = load_snapshot_samples(out / "snapshots" / f"{shard.label.slug}.pt")
        assert [(point["weights"], point["iteration"]) for point in points] == [
            ("ema", 2), ("ema", 3), ("raw", 2), ("raw", 3)
        ]  # fmt: skip
        assert all(set(point["indices"].tolist()) == {shard.label.index} for point in points)


def test_a_checkpoint_of_another_layout_is_refused_in_one_line(serial_run, shard_files, tmp_path):
    _, previous = serial_run
    shutil.copytree(previous / "checkpoints", tmp_path / "checkpoints")
    (path,) = (tmp_path / "checkpoints").glob("*.pt")
    before = path.read_bytes()
    same = [
        "--partition=by_label",
        "--iterations=1",
        "--snapshots=2",
        "--snapshots-out",
        str(tmp_path / "snapshots"),
    ]
    result = launch(2, shard_files, tmp_path, "--devices=1", *same)
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if "wcgan: error:" in line]
    assert line == (
        f"wcgan: error: rank 0 (server) on {socket.gethostname()}: checkpoint '{path}' was written by a launch of world size 3 (devices 2, partition "
        f"by_label, schedule serial, local steps 5), not world size 2 (devices 1, partition by_label, "
        f"schedule serial, local steps 5); launch it as it was, or move it away to retrain"
    )
    assert path.read_bytes() == before
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "summary.json").exists()


def test_a_locked_checkpoint_folder_stops_the_launch_in_one_line(shard_files, tmp_path):
    folder = tmp_path / "checkpoints"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from wcgan.atomic import exclusive_lock\n"
         "with exclusive_lock(sys.argv[1]):\n print('locked', flush=True); time.sleep(120)", str(folder)],
        cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = launch(2, shard_files, tmp_path, "--devices=1", "--iterations=1")  # the devices end too
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if "wcgan: error:" in line]
    assert line == (
        f"wcgan: error: rank 0 (server) on {socket.gethostname()}: checkpoint folder '{folder}' is in use by host {socket.gethostname()} pid {holder.pid}; "
        f"wait for it to end, or stop it"
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted([GROUP_FOLDER, LOCK_NAME])


def test_parallel_schedule_averages_the_local_critics_and_resumes(
    shard_files, digit_shards, tmp_path, one_thread
):
    # One label's shard: one round per iteration of the budget.
    first = launch(3, shard_files[:1], tmp_path, "--devices=2", "--schedule=parallel", "--iterations=1")
    assert first.returncode == 0, first.stderr
    after_one = checkpoint(tmp_path)

    # Round 1 by hand: each device's critic steps from the initial networks, then the average.
    # In the parallel schedule the server's generator step comes before the reduce, so the
    # global critic after round 1 is that average exactly.
    data, config = TrainingSet.of_labels(digit_shards[:1]), tiny(iterations=1)
    seed = label_seed(config.seed, data.name)
    shares = iid_rows(len(data.classes), 2, seed)
    generator, critic = initial_networks(config, data)
    loss = LOSSES[config.loss](**config.resolved().loss_options)
    settings = config.effective()
    states = []
    for device, rows in enumerate(shares, start=1):
        local = copy.deepcopy(critic)
        optimizer = make_optimizer(
            settings["optimizer"], local.parameters(), settings["lr"], settings["betas"]
        )
        rng = torch.Generator().manual_seed(critic_seed(seed, device))
        images, classes = images_to_float(data.images[rows]), data.classes[rows]
        critic_steps_on(
            NetworkStack([generator]), NetworkStack([local]), optimizer, loss, [images], classes, [rng],
            settings["critic_steps"], 8,
        )  # fmt: skip
        states.append(local.state_dict())
    average = weighted_average(states, [len(rows) for rows in shares])
    for name, value in average.items():
        torch.testing.assert_close(after_one["critic"][name], value)

    second = launch(3, shard_files[:1], tmp_path, "--devices=2", "--schedule=parallel", "--iterations=3")
    assert second.returncode == 0, second.stderr
    assert "at round 1" in next(line for line in second.stderr.splitlines() if "resumed from" in line)
    facts = summary(tmp_path)
    assert facts["resumed_from_round"] == 1 and facts["rounds"] == 3 and facts["schedule"] == "parallel"
    assert facts["partition"] == "iid" and sum(facts["device_images"]) == len(data.images)
    assert facts["bytes_per_round"] == expected_bytes(data, devices=2)
    history = checkpoint(tmp_path)["history"]
    assert history[:, 0].tolist() == [1, 2, 3]
    assert torch.equal(history[0], after_one["history"][0])
    assert len((tmp_path / "losses.csv").read_text().splitlines()) == 4


# --- launching the group: where each process stands, what it reads, a lost process -----------


@pytest.mark.parametrize(
    "environ, expected",
    [
        (
            {"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"},
            (2, 3, 2, "env://", "torchrun"),
        ),
        (  # srun: the store on the step's first node, the port the launcher chose
            {
                "SLURM_PROCID": "1",
                "SLURM_STEP_NUM_TASKS": "3",
                "SLURM_LOCALID": "0",
                "SLURM_STEP_NODELIST": "gpu[07-08]",
                "MASTER_PORT": "29511",
            },
            (1, 3, 0, "tcp://gpu07:29511", "srun"),
        ),
        (
            {"JSM_NAMESPACE_RANK": "0", "JSM_NAMESPACE_SIZE": "3", "WCGAN_RENDEZVOUS": "file:///shared/r"},
            (0, 3, 0, "file:///shared/r", "jsrun"),
        ),
    ],
)
def test_each_launcher_environment_gives_the_rank_and_the_rendezvous(environ, expected):
    def hostnames(nodelist):
        assert nodelist == "gpu[07-08]"
        return ["gpu07", "gpu08"]

    member = member_from_environment(environ, 3, hostnames)
    assert (
        member.rank,
        member.world_size,
        member.local_rank,
        member.init_method,
        member.launcher,
    ) == expected
    assert member.describe() == (
        f"rank {expected[0]} ({'server' if expected[0] == 0 else f'device {expected[0]}'}) on {member.host}"
    )


def test_a_slurm_step_without_a_chosen_port_takes_one_from_its_job_and_step():
    environ = {
        "SLURM_PROCID": "0",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_STEP_NODELIST": "n1",
        "SLURM_JOB_ID": "7",
    }
    first = member_from_environment({**environ, "SLURM_STEP_ID": "0"}, 2).init_method
    restarted = member_from_environment({**environ, "SLURM_STEP_ID": "1"}, 2).init_method
    assert first.startswith("tcp://n1:") and first != restarted


def test_a_launch_of_the_wrong_size_is_refused_by_rank_0_alone():
    environ = {"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "n1"}
    message = (
        r"^the srun launch has 2 processes, but distributed.devices 2 needs 3 \(the server and one per "
        r"device\): srun --ntasks 3$"
    )
    with pytest.raises(WcganError, match=message) as refused:
        member_from_environment(environ, 3)
    assert not isinstance(refused.value, QuietExit)
    with pytest.raises(QuietExit):  # the other ranks end without a line of their own
        member_from_environment({**environ, "SLURM_PROCID": "1"}, 3)


def test_the_launchers_command_lines():
    command = ["wcgan", "train-distributed"]
    argv, environ = group_command("srun", command, 5, nodes=2, threads=4, gpus=True)
    assert argv == [
        "srun", "--ntasks=5", "--nodes=2", "--cpus-per-task=4", "--kill-on-bad-exit=0", "--gpus-per-task=1",
        *command,
    ]  # fmt: skip
    assert environ["OMP_NUM_THREADS"] == "4" and int(environ["MASTER_PORT"]) > 0
    argv, environ = group_command("torchrun", command, 3)
    assert argv[-5:] == ["--nproc-per-node=3", "--max-restarts=0", "--no-python", *command]
    assert environ == {}
    argv, environ = group_command("jsrun", command, 3, threads=2, rendezvous="file:///r")
    assert argv == ["jsrun", "--nrs=3", "--tasks_per_rs=1", "--cpu_per_rs=2", "--gpu_per_rs=0", *command]
    assert environ == {"WCGAN_RENDEZVOUS": "file:///r", "OMP_NUM_THREADS": "2"}


# Logs each rank's opens of files under WCGAN_TEST_OPENS's folder: what a process read.
AUDIT = """
import os, sys
_watched, _log = os.environ.get("WCGAN_TEST_WATCH"), os.environ.get("WCGAN_TEST_OPENS")
if _watched and _log and "RANK" in os.environ:
    def _hook(event, args):
        if event == "open" and isinstance(args[0], str) and os.path.abspath(args[0]).startswith(_watched):
            with open(os.path.join(_log, "rank-" + os.environ["RANK"]), "a") as fh:
                fh.write(os.path.basename(args[0]) + "\\n")
    sys.addaudithook(_hook)
"""


def group(shards: list[str], out: Path, *options: str, extra_env: dict | None = None) -> list[str]:
    """``wcgan train-distributed --launch torchrun`` on ``shards``, outputs under ``out``."""
    return [
        sys.executable, "-m", "wcgan.cli", "train-distributed", "--launch", "torchrun", "--shard", *shards,
        "--model-out", str(out / "model.pt"), "--losses-out", str(out / "losses.csv"),
        "--summary-out", str(out / "summary.json"), "--checkpoint-dir", str(out / "checkpoints"),
        *OPTIONS, *options,
    ]  # fmt: skip


def test_by_label_devices_read_only_their_own_shards_and_the_server_none(shard_files, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(AUDIT)
    opens = tmp_path / "opens"
    opens.mkdir()
    folder = str(Path(shard_files[0]).parent)
    environment = {
        **env(),
        "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{env().get('PYTHONPATH', '')}",
        "WCGAN_TEST_WATCH": folder,
        "WCGAN_TEST_OPENS": str(opens),
    }
    command = group(shard_files, tmp_path, "--devices=2", "--partition=by_label", "--iterations=1")
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    read = {path.name: sorted(set(path.read_text().split())) for path in opens.iterdir()}
    assert read == {"rank-1": ["0.pt", "1.pt"], "rank-2": ["2.pt"]}  # rank 0 read none
    assert summary(tmp_path)["device_labels"] == [["0", "1"], ["2"]]


def test_a_device_that_cannot_read_its_shard_says_so_in_one_line(shard_files, tmp_path):
    shards = []
    for path in shard_files:
        shards.append(str(tmp_path / Path(path).name))
        shutil.copy(path, shards[-1])
    Path(shards[2]).write_bytes(b"not a shard")  # device 2's label under by_label
    command = group(shards, tmp_path, "--devices=2", "--partition=by_label", "--iterations=1")
    result = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True, timeout=180)
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if "wcgan: error:" in line]
    assert line.startswith(f"wcgan: error: rank 2 (device 2) on {socket.gethostname()}: shard '{shards[2]}'")
    assert "restarting" not in result.stderr  # a refusal is not retried
    assert not (tmp_path / "model.pt").exists()


def test_a_launch_with_a_process_too_few_is_refused_in_one_line(shard_files, tmp_path):
    result = launch(2, shard_files, tmp_path, "--devices=2", "--iterations=1")
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if "wcgan: error:" in line] == [
        "wcgan: error: the torchrun launch has 2 processes, but distributed.devices 2 needs 3 (the server "
        "and one per device): torchrun --nproc-per-node 3"
    ]


def record(out: Path, rank: int) -> dict:
    path = out / "checkpoints" / GROUP_FOLDER / f"rank-{rank}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_a_killed_device_restarts_the_group_from_the_last_checkpoint(shard_files, tmp_path):
    budget = 100  # per label: 300 rounds
    command = group(shard_files, tmp_path, "--devices=2", f"--iterations={budget}", "--checkpoint-seconds=1")
    process = subprocess.Popen(command, cwd=REPO, env=env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while "round" not in record(tmp_path, 0):  # the server's first checkpoint
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        victim = record(tmp_path, 2)
        checkpointed = record(tmp_path, 0)["round"]
        os.kill(victim["pid"], signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    (restart,) = [line for line in stderr.splitlines() if "restarting the group" in line]
    resumed = summary(tmp_path)["resumed_from_round"]
    assert restart == (
        f"wcgan: rank 2 (device 2) on {victim['host']} (pid {victim['pid']}) was lost (torchrun exit 1); "
        f"restarting the group from checkpoint '{record(tmp_path, 0)['checkpoint']}' (round {resumed}) "
        f"(restart 1 of 3)"
    )
    # It resumed from the checkpoint written before the kill (or a later one): at most one
    # checkpoint interval of rounds was lost, and the run has every round once.
    assert resumed >= checkpointed
    assert summary(tmp_path)["rounds"] == 3 * budget
    rows = (tmp_path / "losses.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, 3 * budget + 1))


# A rank that records itself as running and dies: a lost process, as the launcher sees one.
# Each rank records itself, waits until the other has too (else torchrun may stop it first, on
# the first exit, and the launcher could name one rank), then is lost.
LOST_RANK = (
    "import os, sys, time\n"
    "from wcgan.launch import RankRecord, member_from_environment\n"
    "record = RankRecord(sys.argv[1], member_from_environment(os.environ, 2))\n"
    "record.write('running')\n"
    "deadline = time.monotonic() + 60\n"
    "while len(list(record.path.parent.glob('rank-*.json'))) < 2 and time.monotonic() < deadline:\n"
    "    time.sleep(0.05)\n"
    "os._exit(9)\n"
)


def test_out_of_restarts_the_launcher_names_the_lost_ranks_in_one_line(tmp_path):
    lines = []
    with pytest.raises(WcganError) as failed:
        launch_group(
            "torchrun",
            [sys.executable, "-c", LOST_RANK, str(tmp_path)],
            2,
            tmp_path,
            max_restarts=1,
            log=lines.append,
        )
    host = socket.gethostname()
    assert re.fullmatch(
        rf"rank 0 \(server\) on {host} \(pid \d+\); rank 1 \(device 1\) on {host} \(pid \d+\) was lost, and the "
        r"group was restarted once; rerun to resume from the start \(no checkpoint was written yet\)",
        str(failed.value),
    )
    (restart,) = lines
    assert restart.endswith(
        "restarting the group from the start (no checkpoint was written yet) (restart 1 of 1)"
    )


def test_a_launch_that_fails_before_any_rank_records_itself_is_not_retried(tmp_path):
    lines = []
    code = launch_group(
        "torchrun", [sys.executable, "-c", "raise SystemExit(3)"], 2, tmp_path, log=lines.append
    )
    assert code != 0 and lines == []  # nothing to resume, nothing lost: the ranks' own output says why


def test_a_label_given_twice_is_refused_in_one_line(shard_files, tmp_path):
    result = launch(3, [*shard_files, shard_files[0]], tmp_path, "--devices=2", "--iterations=1")
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if "wcgan: error:" in line]
    assert line.endswith("label '0' (index 0) has more than one shard: give each label's once")
    assert line.startswith(
        f"wcgan: error: rank 1 (device 1) on {socket.gethostname()}: "
    )  # iid: the first says it
