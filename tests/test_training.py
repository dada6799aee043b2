import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO
from wcgan.atomic import LOCK_NAME, load_torch, save_torch
from wcgan.config import TrainConfig
from wcgan.data import TrainingSet
from wcgan.errors import WcganError
from wcgan.files import LOSS_COLUMNS, load_generator, save_generator, save_losses, save_shard
from wcgan.runner import prepare_process
from wcgan.training import train

TINY = dict(batch_size=16, z_dim=8, width=4, log_seconds=0.05, checkpoint_seconds=600)


def tiny(**values) -> TrainConfig:
    return TrainConfig(**{**TINY, **values})


def weights(result):
    return torch.cat([p.detach().flatten() for p in result.generator.state_dict().values()])


def test_trains_the_budgeted_iterations(digit_shards, tmp_path):
    result = train(TrainingSet.of_label(digit_shards[0]), tiny(iterations=5), tmp_path, log=lambda _: None)
    assert result.history.shape == (5, len(LOSS_COLUMNS))
    assert result.history[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert result.summary["iterations"] == 5 and result.summary["stopped_by"] == "iterations"
    assert result.summary["phase_seconds"]["penalty"] > 0
    assert torch.all(result.history[:, 4] > 0)  # wgan-gp reports a penalty
    # The checkpoint and the folder's lock file, no temporaries.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [LOCK_NAME, *(p.name for p in tmp_path.glob("*.pt"))]
    )


def test_wall_clock_budget_stops_training(digit_shards, tmp_path):
    result = train(TrainingSet.of_label(digit_shards[0]), tiny(seconds=0.5), tmp_path, log=lambda _: None)
    assert result.summary["stopped_by"] == "seconds"
    assert result.summary["seconds"] >= 0.5  # how soon after is the machine's load (bench/ times it)


def test_same_seed_same_result_different_seed_different_result(digit_shards, tmp_path):
    a = train(TrainingSet.of_label(digit_shards[0]), tiny(iterations=3), tmp_path / "a", log=lambda _: None)
    b = train(TrainingSet.of_label(digit_shards[0]), tiny(iterations=3), tmp_path / "b", log=lambda _: None)
    c = train(
        TrainingSet.of_label(digit_shards[0]), tiny(iterations=3, seed=1), tmp_path / "c", log=lambda _: None
    )
    assert torch.equal(weights(a), weights(b))
    assert torch.equal(a.history[:, 2:], b.history[:, 2:])
    assert not torch.equal(weights(a), weights(c))


def test_labels_get_different_seeds(digit_shards, tmp_path):
    a = train(TrainingSet.of_label(digit_shards[0]), tiny(iterations=1), tmp_path / "a", log=lambda _: None)
    b = train(TrainingSet.of_label(digit_shards[1]), tiny(iterations=1), tmp_path / "b", log=lambda _: None)
    assert not torch.equal(weights(a), weights(b))


@pytest.mark.parametrize("training", ["two_stage", "one_stage"])
@pytest.mark.parametrize("loss", ["wgan-gp", "wgan-clip", "dcgan", "hinge"])
def test_resume_continues_exactly(digit_shards, tmp_path, loss, training):
    def run(iterations, folder, log=lambda _: None):
        config = tiny(loss=loss, training=training, iterations=iterations)
        return train(TrainingSet.of_label(digit_shards[0]), config, tmp_path / folder, log=log)

    straight = run(6, "straight")
    lines = []
    run(3, "resumed")
    resumed = run(6, "resumed", lines.append)
    assert any("resumed from" in line and "at iteration 3" in line for line in lines)
    assert resumed.summary["resumed_from_iteration"] == 3
    assert torch.equal(weights(straight), weights(resumed))
    assert torch.equal(straight.history[:, [0, *range(2, 6)]], resumed.history[:, [0, *range(2, 6)]])


def test_a_checkpoint_of_the_former_schema_resumes_and_an_unknown_one_is_refused(digit_shards, tmp_path):
    data = TrainingSet.of_label(digit_shards[0])
    straight = train(data, tiny(iterations=4), tmp_path / "straight", log=lambda _: None)
    train(data, tiny(iterations=2), tmp_path / "former", log=lambda _: None)
    (path,) = (tmp_path / "former").glob("*.pt")
    state = load_torch(path, "checkpoint")
    assert (state["format"], state["kind"], state["unit"], state["count"]) == (
        "wcgan-checkpoint-4",
        "chunk",
        "iteration",
        2,
    )
    # What a chunk's checkpoint held before the runner's schema (wcgan-checkpoint-3).
    former = {
        "format": "wcgan-checkpoint-3",
        "iteration": 2,
        "seconds": state["seconds"],
        "config": state["config"],
    }
    save_torch({**former, "labels": state["state"]["labels"]}, path)
    lines = []
    resumed = train(data, tiny(iterations=4), tmp_path / "former", log=lines.append)
    assert resumed.summary["resumed_from_iteration"] == 2 and any("at iteration 2" in line for line in lines)
    assert torch.equal(weights(straight), weights(resumed))
    save_torch({**former, "format": "wcgan-checkpoint-1"}, path)
    with pytest.raises(WcganError) as refused:
        train(data, tiny(iterations=6), tmp_path / "former", log=lambda _: None)
    assert (
        str(refused.value)
        == f"checkpoint '{path}' is not a wcgan checkpoint file (made by a training job of this version; "
        "move it away to retrain)"
    )


@pytest.mark.parametrize("critic_steps", [1, 3])
def test_one_stage_training_fills_the_history_and_times_its_phases(digit_shards, tmp_path, critic_steps):
    config = tiny(training="one_stage", critic_steps=critic_steps, iterations=4)
    result = train(TrainingSet.of_label(digit_shards[0]), config, tmp_path, log=lambda _: None)
    assert result.history.shape == (4, len(LOSS_COLUMNS)) and torch.all(torch.isfinite(result.history))
    assert torch.all(result.history[:, 4] > 0) and torch.all(result.history[:, 5] != 0)
    assert {"data", "critic", "penalty", "generator", "checkpoint"} <= set(result.summary["phase_seconds"])
    two_stage = train(
        TrainingSet.of_label(digit_shards[0]),
        tiny(critic_steps=critic_steps, iterations=4),
        tmp_path,
        log=lambda _: None,
    )
    assert not torch.equal(weights(result), weights(two_stage))


def test_switching_the_training_scheme_starts_a_new_run(digit_shards, tmp_path):
    train(TrainingSet.of_label(digit_shards[0]), tiny(iterations=2), tmp_path, log=lambda _: None)
    result = train(
        TrainingSet.of_label(digit_shards[0]),
        tiny(iterations=2, training="one_stage"),
        tmp_path,
        log=lambda _: None,
    )
    assert result.summary["resumed_from_iteration"] == 0
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_a_different_setting_starts_a_new_run(digit_shards, tmp_path):
    train(TrainingSet.of_label(digit_shards[0]), tiny(iterations=2), tmp_path, log=lambda _: None)
    result = train(
        TrainingSet.of_label(digit_shards[0]), tiny(iterations=2, lr=3e-4), tmp_path, log=lambda _: None
    )
    assert result.summary["resumed_from_iteration"] == 0
    assert len(list(tmp_path.glob("*.pt"))) == 2  # the earlier run's checkpoint is kept


@pytest.mark.parametrize("training", ["two_stage", "one_stage"])
def test_weight_clipping_keeps_the_critic_clipped(digit_shards, tmp_path, training):
    config = tiny(loss="wgan-clip", training=training, iterations=2)
    result = train(TrainingSet.of_label(digit_shards[0]), config, tmp_path, log=lambda _: None)
    state = load_torch(result.summary["checkpoint"], "checkpoint")
    assert max(t.abs().max().item() for t in state["state"]["labels"][0]["critic"].values()) <= 0.01 + 1e-7
    assert torch.all(result.history[:, 4] == 0)  # no penalty term


def test_diverging_losses_stop_with_a_clear_error(digit_shards, tmp_path):
    with pytest.raises(
        WcganError, match=r"label '0': .* is (nan|inf|-inf) at iteration \d+; training stopped"
    ):
        train(
            TrainingSet.of_label(digit_shards[0]), tiny(iterations=50, lr=1e30), tmp_path, log=lambda _: None
        )


def test_generator_file_and_loss_csv(digit_shards, tmp_path):
    result = train(
        TrainingSet.of_label(digit_shards[1]), tiny(iterations=2), tmp_path / "ck", log=lambda _: None
    )
    save_generator(result, TrainingSet.of_label(digit_shards[1]), tmp_path / "g.pt")
    generator, meta = load_generator(tmp_path / "g.pt")
    assert (meta["name"], meta["index"], meta["iterations"]) == ("1", 1, 2)
    assert generator(torch.randn(2, 8)).shape == (2, 1, 8, 8)
    save_losses(result.history, tmp_path / "losses.csv")
    lines = (tmp_path / "losses.csv").read_text().splitlines()
    assert lines[0] == ",".join(LOSS_COLUMNS) and len(lines) == 3


def _start_training(shard_path, out, iterations, checkpoint_seconds):
    command = [
        sys.executable, "-m", "wcgan.cli", "train", "--shard", str(shard_path),
        "--model-out", str(out / "g.pt"), "--losses-out", str(out / "l.csv"),
        "--summary-out", str(out / "s.json"), "--checkpoint-dir", str(out / "ck"), "--threads", "1",
        "--iterations", str(iterations), "--batch-size", "16", "--z-dim", "8", "--width", "4",
        "--checkpoint-seconds", str(checkpoint_seconds), "--log-seconds", "0.2",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(process, folder, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(folder.glob("*.pt")) if folder.exists() else []
        if found and load_torch(found[0], "checkpoint")["count"] > 0:
            return found[0]
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.1)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_training_resumes_from_its_checkpoint(digit_shards, tmp_path, sig):
    save_shard(digit_shards[0], tmp_path / "shard.pt")
    process = _start_training(tmp_path / "shard.pt", tmp_path, iterations=100_000, checkpoint_seconds=0.3)
    _wait_for_checkpoint(process, tmp_path / "ck")
    os.kill(process.pid, sig)
    _, stderr = process.communicate(timeout=60)
    checkpoint = next((tmp_path / "ck").glob("*.pt"))
    reached = load_torch(checkpoint, "checkpoint")["count"]
    assert reached > 0 and not (tmp_path / "g.pt").exists()
    if sig == signal.SIGTERM:  # a scheduler's time limit: checkpoint, one line, exit 143
        assert process.returncode == 143
        assert f"stopped by SIGTERM at iteration {reached}; checkpoint" in stderr.strip().splitlines()[-1]
    else:
        assert process.returncode == -signal.SIGKILL
    # The rerun resumes where the checkpoint left off and stops at the budget.
    budget = reached + 5
    rerun = _start_training(tmp_path / "shard.pt", tmp_path, iterations=budget, checkpoint_seconds=600)
    _, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert f"at iteration {reached} " in stderr
    assert load_torch(checkpoint, "checkpoint")["count"] == budget
    rows = (tmp_path / "l.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, budget + 1))
    # Bit for bit what an uninterrupted run (same settings, one thread) makes.
    threads = torch.get_num_threads()
    try:
        straight = train(
            TrainingSet.of_label(digit_shards[0]),
            tiny(iterations=budget),
            tmp_path / "straight",
            threads=1,
            log=lambda _: None,
        )
    finally:
        torch.set_num_threads(threads)
    # The raw weights and their moving average both.
    for weights, trained in (("raw", straight.generator), ("ema", straight.generator_ema)):
        resumed, _ = load_generator(tmp_path / "g.pt", weights)
        pairs = zip(resumed.state_dict().values(), trained.state_dict().values(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs), weights


def test_one_conditional_gan_trains_on_every_label_and_keeps_snapshots(digit_shards, tmp_path):
    data = TrainingSet.of_labels(digit_shards)
    assert data.num_classes == 3 and data.classes.bincount().tolist() == [len(s.images) for s in digit_shards]
    config = tiny(generator="conditional", loss="hinge", iterations=6, snapshots=3)
    result = train(data, config, tmp_path, log=lambda _: None)
    assert result.history.shape == (6, len(LOSS_COLUMNS)) and torch.all(torch.isfinite(result.history))
    assert result.generator.num_classes == 3
    assert [point["iteration"] for point in result.snapshots] == [2, 4, 6]
    assert result.summary["snapshots"][-1] == [6, result.summary["seconds"]]
    assert [label[1] for label in result.summary["labels"]] == ["0", "1", "2"]
    # The last point is the trained generator itself.
    assert all(
        torch.equal(v, result.generator.state_dict()[k]) for k, v in result.snapshots[-1]["generator"].items()
    )
    save_generator(result, data, tmp_path / "g.pt")
    generator, meta = load_generator(tmp_path / "g.pt")
    assert generator.num_classes == 3 and [slug for _, slug, _ in meta["labels"]] == ["0", "1", "2"]


@pytest.mark.parametrize(("loss", "training"), [("hinge", "two_stage"), ("wgan-gp", "one_stage")])
def test_conditional_resume_continues_exactly(digit_shards, tmp_path, loss, training):
    data = TrainingSet.of_labels(digit_shards)

    def run(iterations, folder):
        config = tiny(
            generator="conditional", loss=loss, training=training, iterations=iterations, snapshots=2
        )
        return train(data, config, tmp_path / folder, log=lambda _: None)

    straight = run(6, "straight")
    run(3, "resumed")
    resumed = run(6, "resumed")
    assert resumed.summary["resumed_from_iteration"] == 3
    assert torch.equal(weights(straight), weights(resumed))
    assert torch.equal(straight.history[:, 2:], resumed.history[:, 2:])
    # Snapshots follow the budget in force: half of the first run's 3 iterations, then the end.
    assert [p["iteration"] for p in resumed.snapshots] == [2, 6]


def test_the_conditional_budget_is_the_per_label_budget_times_the_labels():
    config = tiny(iterations=7, seconds=2.5).for_labels(10)
    assert (config.iterations, config.seconds) == (70, 25.0)
    assert tiny(iterations=7, seconds=None).for_labels(3).seconds is None


def test_snapshots_follow_a_seconds_budget(digit_shards, tmp_path):
    result = train(
        TrainingSet.of_label(digit_shards[0]), tiny(seconds=1.0, snapshots=4), tmp_path, log=lambda _: None
    )
    seconds = [point["seconds"] for point in result.snapshots]
    assert len(seconds) == 4 and seconds == sorted(seconds)
    assert [s >= k / 4 for k, s in enumerate(seconds[:3], 1)] == [True] * 3  # at or just past k/4 of it


def test_a_gpu_trainer_turns_on_the_cudnn_autotuner_and_a_cpu_trainer_leaves_it(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    threads = torch.get_num_threads()
    prepare_process(torch.device("cpu"), threads)
    assert torch.backends.cudnn.benchmark is False and torch.get_num_threads() == threads
    prepare_process(torch.device("cuda"), None)  # only the flag: no GPU is needed to set it
    assert torch.backends.cudnn.benchmark is True
