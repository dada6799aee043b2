"""Distributed training with local critics and a server-side GAN: partitions, the weighted
average, refusals, and real ``torchrun`` launches (gloo on the CPU) of both schedules."""

import copy
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from conftest import REPO, env
from wcgan.atomic import LOCK_NAME, load_torch
from wcgan.cli import main
from wcgan.config import DistributedConfig, TrainConfig, label_seed
from wcgan.data import TrainingSet, save_shard
from wcgan.distributed import (
    critic_seed,
    partition_rows,
    resolve_backend,
    train_distributed,
    weighted_average,
)
from wcgan.errors import WcganError
from wcgan.losses import LOSSES, make_optimizer
from wcgan.model_files import load_generator
from wcgan.networks import Critic, NetworkStack, images_to_float
from wcgan.sampling import load_samples, load_snapshot_samples
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
    # One checkpoint beside the folder's lock file: no temporaries left behind.
    (path,) = (p for p in (out / "checkpoints").iterdir() if p.name != LOCK_NAME)
    return load_torch(path, "checkpoint")


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


@pytest.mark.parametrize("mode", ["iid", "by_label"])
def test_partitions_cover_every_row_once(mode):
    classes = torch.repeat_interleave(torch.arange(5), torch.tensor([3, 4, 5, 2, 6]))
    shares = partition_rows(classes, 3, mode, seed=7)
    assert len(shares) == 3 and all(len(rows) > 0 for rows in shares)
    assert torch.equal(torch.cat(shares).sort().values, torch.arange(len(classes)))
    assert all(torch.equal(rows, rows.sort().values) for rows in shares)  # data order
    if mode == "iid":
        assert sorted(len(rows) for rows in shares) == [6, 7, 7]
        assert not torch.equal(shares[0], partition_rows(classes, 3, mode, seed=8)[0])
    else:  # contiguous runs of whole labels
        assert [classes[rows].unique().tolist() for rows in shares] == [[0, 1], [2, 3], [4]]
    assert all(
        torch.equal(a, b) for a, b in zip(shares, partition_rows(classes, 3, mode, seed=7), strict=True)
    )


def test_one_device_gets_every_row_in_order():
    classes = torch.tensor([0, 0, 1, 1, 1])
    for mode in ("iid", "by_label"):
        assert torch.equal(partition_rows(classes, 1, mode, seed=3)[0], torch.arange(5))


def test_by_label_shares_out_only_labels_with_images():
    classes = torch.tensor([0, 0, 2, 2, 3])  # label 1 has no images
    shares = partition_rows(classes, 3, "by_label", seed=0)
    assert [classes[rows].unique().tolist() for rows in shares] == [[0], [2], [3]]
    with pytest.raises(
        WcganError, match=r"^distributed.devices 4 exceeds the number of labels with images \(3\)"
    ):
        partition_rows(classes, 4, "by_label", seed=0)


@pytest.mark.parametrize(
    "mode, devices, message",
    [
        (
            "iid",
            6,
            r"^distributed.devices 6 exceeds the number of images \(5\) that partition iid shares out",
        ),
        ("by_label", 3, r"^distributed.devices 3 exceeds the number of labels with images \(2\)"),
        ("dirichlet", 2, r"^distributed.partition 'dirichlet' is unknown \(known: iid, by_label\)$"),
    ],
)
def test_partition_refusals(mode, devices, message):
    with pytest.raises(WcganError, match=message):
        partition_rows(torch.tensor([0, 0, 1, 1, 1]), devices, mode, seed=0)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"schedule": "async"}, r"^distributed.schedule 'async' is unknown \(known: serial, parallel\)$"),
        ({"partition": "random"}, r"^distributed.partition 'random' is unknown"),
        ({"backend": "mpi"}, r"^distributed.backend 'mpi' is unknown"),
        ({"devices": 0}, r"^distributed.devices must be positive, got 0$"),
        ({"local_steps": 0}, r"^distributed.local_steps must be positive"),
        ({"rounds": 3}, r"^distributed.rounds is not an option of distributed$"),
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
    digit_shards, tmp_path, config, dist_values, message
):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(WcganError, match=message):
            train_distributed(
                TrainingSet.of_labels(digit_shards), config, DistributedConfig(**dist_values), tmp_path
            )
    finally:
        dist.destroy_process_group()
    assert not list(tmp_path.glob("distributed-*"))


@pytest.mark.parametrize(
    "options, message",
    [
        (["--devices", "1"], r"no torchrun launch found \(RANK is unset\): run torchrun --nproc-per-node 2"),
        (["--schedule", "async"], r"distributed.schedule 'async' is unknown"),
        (["--snapshots", "2"], r"train.snapshots is 2: give --snapshots-out"),
    ],
)
def test_command_line_refusals_are_one_line(shard_files, tmp_path, capsys, monkeypatch, options, message):
    monkeypatch.delenv("RANK", raising=False)
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
    reference_critic = load_torch(train_checkpoint, "checkpoint")["labels"][0]["critic"]
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
        "--snapshots-out", str(out / "snapshots.pt"), "--samples=5", "--samples-out", *samples,
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
    assert [point["iteration"] for point in load_snapshot_samples(out / "snapshots.pt")] == [2, 3]


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
        str(tmp_path / "s.pt"),
    ]
    result = launch(2, shard_files, tmp_path, "--devices=1", *same)
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if "wcgan: error:" in line]
    assert line == (
        f"wcgan: error: checkpoint '{path}' was written by a launch of world size 3 (devices 2, partition "
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
        f"wcgan: error: checkpoint folder '{folder}' is in use by host {socket.gethostname()} pid {holder.pid}; "
        f"wait for it to end, or stop it"
    )
    assert [p.name for p in folder.iterdir()] == [LOCK_NAME]


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
    shares = partition_rows(data.classes, 2, "iid", seed)
    generator, critic = initial_networks(config, data)
    loss = LOSSES[config.loss](**config.loss_options())
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
