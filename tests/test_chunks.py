"""K labels' GANs trained as one batched network (``train.generator: per_label`` with several
shards): each label gets what it would get trained alone, one checkpoint per chunk resumes
exactly, a diverging label is named, and a checkpoint folder has one writer at a time."""

import copy
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO
from wcgan import training as training_module
from wcgan.atomic import load_torch, save_torch
from wcgan.config import TrainConfig
from wcgan.data import TrainingSet
from wcgan.errors import WcganError
from wcgan.files import load_generator, save_shard
from wcgan.labels import Label
from wcgan.losses import LOSSES, make_optimizer
from wcgan.networks import Critic, Generator, NetworkStack, images_to_float
from wcgan.training import critic_steps_on, generator_step, train, train_chunk

TINY = dict(batch_size=8, z_dim=8, width=4, log_seconds=0.05, checkpoint_seconds=600)
OPTIONS = {"wgan-gp": {"gp_weight": 10.0}, "wgan-clip": {"clip_value": 0.01}}
IMAGE_COUNTS = (5, 11, 23)  # labels of different sizes draw different rows
# Per label, a shift of the critic's scores: one-stage hinge and dcgan then rescore no fakes
# of the first label, some of the second and (nearly) all of the third.
SCORE_SHIFTS = {"hinge": (0.0, -1.0, -4.0), "dcgan": (0.0, -36.0, -60.0)}


def tiny(**values) -> TrainConfig:
    return TrainConfig(**{**TINY, **values})


def quiet(_: str) -> None:
    pass


class TinyLabel:
    """One label's float64 networks, images and random streams, seeded by its number."""

    def __init__(self, k: int, loss: str):
        torch.manual_seed(k)
        self.generator = Generator(z_dim=8, resolution=8, channels=1, width=4).double()
        self.critic = Critic(resolution=8, channels=1, width=4).double()
        self.images = torch.rand(IMAGE_COUNTS[k], 1, 8, 8, dtype=torch.float64) * 2 - 1
        with torch.no_grad():
            self.critic.net[-1].weight *= 20  # scores spread out, so shifts split the fakes
            self.critic.net[-1].bias += SCORE_SHIFTS.get(loss, (0.0,) * 3)[k]
        self.critic_rng = torch.Generator().manual_seed(100 + k)
        self.generator_rng = torch.Generator().manual_seed(200 + k)


def step(labels: list[TinyLabel], loss_name: str, training: str, vectorized: bool = False) -> dict:
    """One generator iteration (two critic steps) of ``labels`` together, through the loop's own
    step functions; returns every label's gradients, parameters, batch norm statistics and
    losses."""
    loss = LOSSES[loss_name](**OPTIONS.get(loss_name, {}))
    optimizer = "rmsprop" if loss_name == "wgan-clip" else "adam"
    betas = (0.0, 0.9) if optimizer == "adam" else None
    generators = NetworkStack([label.generator for label in labels], vectorized)
    critics = NetworkStack([label.critic for label in labels], vectorized)
    opt_g = make_optimizer(optimizer, generators.parameters(), 1e-3, betas)
    opt_d = make_optimizer(optimizer, critics.parameters(), 1e-3, betas)
    one_stage = training == "one_stage"
    means, generator_loss = critic_steps_on(
        generators, critics, opt_d, loss, [label.images for label in labels], None,
        [label.critic_rng for label in labels], 2, 8,
        one_stage_optimizer=opt_g if one_stage else None,
    )  # fmt: skip
    if one_stage:
        opt_g.step()
    else:
        generator_loss = generator_step(
            generators, critics, opt_g, loss, None, [label.generator_rng for label in labels], 8
        )
    return [
        {
            "critic_grad": [p.grad.clone() for p in label.critic.parameters()],
            "generator_grad": [p.grad.clone() for p in label.generator.parameters()],
            "critic": [t.clone() for t in label.critic.state_dict().values()],
            "generator": [t.clone() for t in label.generator.state_dict().values()],
            "losses": torch.cat([means[k], generator_loss[k : k + 1]]),
        }
        for k, label in enumerate(labels)
    ]


@pytest.mark.parametrize("vectorized", [False, True], ids=["looped", "vectorized"])
@pytest.mark.parametrize("training", ["two_stage", "one_stage"])
@pytest.mark.parametrize("loss", ["wgan-gp", "wgan-clip", "dcgan", "hinge"])
def test_a_batched_step_gives_each_label_what_it_gets_alone(loss, training, vectorized):
    together = step([TinyLabel(k, loss) for k in range(3)], loss, training, vectorized)
    for k in range(3):
        (alone,) = step([TinyLabel(k, loss)], loss, training)
        for key, expected in alone.items():
            actual = together[k][key]
            expected = expected if isinstance(expected, list) else [expected]
            actual = actual if isinstance(actual, list) else [actual]
            assert any(e.abs().max() > 0 for e in expected if e.is_floating_point()), (k, key)
            for a, e in zip(actual, expected, strict=True):
                torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12, msg=f"label {k}, {key}")


@pytest.mark.parametrize("loss", ["hinge", "dcgan"])
def test_the_shifted_critics_rescore_some_labels_fakes_and_not_others(loss):
    """The equality test above covers one stage's batched rescoring: label 0 has none of its
    fakes to rescore, label 1 some, label 2 more."""
    labels = [TinyLabel(k, loss) for k in range(3)]
    scorer = LOSSES[loss](**OPTIONS.get(loss, {}))
    counts = []
    for label in labels:
        with torch.no_grad():
            scores = label.critic(label.generator(torch.randn(64, 8, dtype=torch.float64)))
        _, rescore = scorer._generator_gradient_scale(scores)
        counts.append(int(rescore.sum()))
    assert counts[0] == 0 < counts[1] < counts[2]


def test_generator_batch_norm_statistics_stay_per_label():
    labels = [TinyLabel(k, "wgan-gp") for k in range(3)]
    before = [copy.deepcopy(label.generator) for label in labels]
    z = torch.randn(3, 8, 8, dtype=torch.float64)
    NetworkStack([label.generator for label in labels], vectorized=True)(z)
    for k, (label, alone) in enumerate(zip(labels, before, strict=True)):
        alone(z[k])
        for (name, actual), expected in zip(label.generator.named_buffers(), alone.buffers(), strict=True):
            torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-15, msg=name)


def shards_of(digit_shards):
    """Three labels with different image counts."""
    return [TrainingSet.of_label(shard) for shard in digit_shards]


def generator_weights(result) -> list[torch.Tensor]:
    return list(result.generator.state_dict().values())


def test_a_chunk_trains_each_label_as_its_own_gan(digit_shards, tmp_path):
    sets = shards_of(digit_shards)
    results = train_chunk(sets, tiny(iterations=3, seconds=600), tmp_path, log=quiet)
    assert [r.summary["slug"] for r in results] == ["0", "1", "2"]
    for result, data in zip(results, sets, strict=True):
        assert result.history.shape == (3, 6) and torch.all(torch.isfinite(result.history))
        assert result.summary["chunk_size"] == 3 and result.summary["chunk_labels"] == ["0", "1", "2"]
        assert result.summary["images"] == len(data.images)
        assert result.summary["seconds"] == pytest.approx(result.summary["chunk_seconds"] / 3)
    assert len(list(tmp_path.glob("*.pt"))) == 1  # one checkpoint for the chunk
    # Each label's GAN is the one it trains alone (float32: equal to rounding), and so is its
    # optimizer state, which the chunk's checkpoint keeps per label.
    alone = train(sets[1], tiny(iterations=3), tmp_path / "alone", log=quiet)
    for a, b in zip(generator_weights(results[1]), generator_weights(alone), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    (chunk_state,) = (load_torch(path, "checkpoint")["state"] for path in tmp_path.glob("*.pt"))
    (alone_state,) = (load_torch(path, "checkpoint")["state"] for path in (tmp_path / "alone").glob("*.pt"))
    critic = Critic(resolution=8, channels=1, width=4)
    optimizer = make_optimizer("adam", critic.parameters(), 1e-4, (0.0, 0.9))
    optimizer.load_state_dict(chunk_state["labels"][1]["opt_d"])  # restorable alone
    expected = alone_state["labels"][0]["opt_d"]["state"]
    assert optimizer.state_dict()["state"].keys() == expected.keys()
    for index, moments in optimizer.state_dict()["state"].items():
        for name, value in moments.items():
            torch.testing.assert_close(value, expected[index][name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("training", ["two_stage", "one_stage"])
def test_a_chunk_keeps_its_images_as_bytes_and_trains_as_on_float_ones(
    digit_shards, tmp_path, monkeypatch, training
):
    """The loop holds each label's images as uint8 and converts a batch at a time; the
    reference holds them as float32 (the former loop), and every number comes out the same."""
    sets, config = shards_of(digit_shards)[:2], tiny(iterations=3, training=training)
    held = []
    critic_steps = training_module.critic_steps_on

    def watched(*args, **kwargs):
        held.append([x.dtype for x in args[4]])  # the loop's images, as it holds them
        return critic_steps(*args, **kwargs)

    monkeypatch.setattr(training_module, "critic_steps_on", watched)
    as_bytes = train_chunk(sets, config, tmp_path / "bytes", log=quiet)
    assert held and all(dtypes == [torch.uint8] * 2 for dtypes in held)

    held.clear()
    monkeypatch.setattr(
        training_module,
        "resident_images",
        lambda sets, device: [images_to_float(data.images.to(device)) for data in sets],
    )
    as_float = train_chunk(sets, config, tmp_path / "float", log=quiet)
    assert held and all(dtypes == [torch.float32] * 2 for dtypes in held)
    for a, b in zip(as_bytes, as_float, strict=True):
        assert torch.equal(a.history[:, 2:], b.history[:, 2:])
        for x, y in zip(generator_weights(a), generator_weights(b), strict=True):
            assert torch.equal(x, y)


def test_a_seconds_budget_is_per_label(digit_shards, tmp_path):
    results = train_chunk(shards_of(digit_shards)[:2], tiny(seconds=0.4), tmp_path, log=quiet)
    summary = results[0].summary
    assert summary["stopped_by"] == "seconds" and summary["seconds"] >= 0.4
    # K x train.seconds of the job's own wall clock, measured, not the share times K.
    assert summary["session_seconds"] >= 0.8


def test_another_chunk_never_resumes_a_chunks_checkpoint(digit_shards, tmp_path):
    sets = shards_of(digit_shards)
    train_chunk(sets, tiny(iterations=2), tmp_path, log=quiet)
    for others in ([sets[0], sets[1]], [sets[2], sets[1], sets[0]], [sets[0]]):
        (result, *_) = train_chunk(others, tiny(iterations=2), tmp_path, log=quiet)
        assert result.summary["resumed_from_iteration"] == 0
    assert len(list(tmp_path.glob("*.pt"))) == 4
    (result, *_) = train_chunk(sets, tiny(iterations=3), tmp_path, log=quiet)
    assert result.summary["resumed_from_iteration"] == 2


def test_a_chunk_of_different_shapes_or_a_label_twice_is_refused(digit_shards, tmp_path):
    sets = shards_of(digit_shards)
    other = TrainingSet(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), [Label(9, "rgb", "rgb")], None, "rgb")
    with pytest.raises(WcganError, match=r"^label '.*' has images of shape .* but '.*' has"):
        train_chunk([sets[0], other], tiny(iterations=1), tmp_path, log=quiet)
    with pytest.raises(WcganError, match=r"^the chunk names a label twice: 0, 0$"):
        train_chunk([sets[0], sets[0]], tiny(iterations=1), tmp_path, log=quiet)


@pytest.mark.parametrize("what", ["losses", "weights"])
def test_a_diverging_label_is_named_and_the_last_good_checkpoint_stays(
    digit_shards, tmp_path, monkeypatch, what
):
    import wcgan.training

    sets = shards_of(digit_shards)
    config = tiny(iterations=6, checkpoint_seconds=0)  # a checkpoint every iteration
    calls = []
    real_step = wcgan.training.generator_step

    def diverging_step(generators, *args):
        losses = real_step(generators, *args)
        calls.append(1)
        if len(calls) == 4:  # the fourth iteration goes wrong for label '1' alone
            if what == "losses":
                losses[1] = float("nan")
            else:
                with torch.no_grad():
                    next(generators.networks[1].parameters()).fill_(float("inf"))
        return losses

    monkeypatch.setattr(wcgan.training, "generator_step", diverging_step)
    message = (
        r"^label '1': generator_loss is nan at iteration 4; training stopped"
        if what == "losses"
        else r"^label '1': the generator's weights hold NaN/inf at iteration 4; training stopped"
    )
    with pytest.raises(WcganError, match=message):
        train_chunk(sets, config, tmp_path, log=quiet)
    (checkpoint,) = tmp_path.glob("*.pt")
    state = load_torch(checkpoint, "checkpoint")
    assert state["count"] == 3
    for label in state["state"]["labels"]:
        assert all(torch.isfinite(t).all() for t in label["generator"].values() if t.is_floating_point())
        assert torch.isfinite(label["history"]).all()


def _start_chunk(shards, out, iterations, checkpoint_seconds):
    slugs = [str(k) for k in range(len(shards))]
    command = [
        sys.executable, "-m", "wcgan.cli", "train", "--shard", *map(str, shards),
        "--model-out", *(str(out / f"g{s}.pt") for s in slugs),
        "--losses-out", *(str(out / f"l{s}.csv") for s in slugs),
        "--summary-out", *(str(out / f"s{s}.json") for s in slugs),
        "--checkpoint-dir", str(out / "ck"), "--threads", "1",
        "--iterations", str(iterations), "--batch-size", "16", "--z-dim", "8", "--width", "4",
        "--checkpoint-seconds", str(checkpoint_seconds), "--log-seconds", "0.2",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)


def test_a_sigkilled_chunk_resumes_bit_for_bit(digit_shards, tmp_path):
    shards = []
    for k, shard in enumerate(digit_shards):
        save_shard(shard, tmp_path / f"{k}.pt")
        shards.append(tmp_path / f"{k}.pt")
    process = _start_chunk(shards, tmp_path, iterations=100_000, checkpoint_seconds=0.3)
    deadline = time.monotonic() + 120
    while (
        not (found := list((tmp_path / "ck").glob("*.pt")))
        or load_torch(found[0], "checkpoint")["count"] == 0
    ):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    (checkpoint,) = (tmp_path / "ck").glob("*.pt")
    reached = load_torch(checkpoint, "checkpoint")["count"]
    budget = reached + 4
    rerun = _start_chunk(shards, tmp_path, iterations=budget, checkpoint_seconds=600)
    _, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert f"at iteration {reached} " in stderr
    threads = torch.get_num_threads()
    try:
        straight = train_chunk(
            shards_of(digit_shards),
            tiny(batch_size=16, iterations=budget),
            tmp_path / "straight",
            threads=1,
            log=quiet,
        )
    finally:
        torch.set_num_threads(threads)
    for k, result in enumerate(straight):
        # The raw weights and their moving average both.
        for weights, trained in (("raw", result.generator), ("ema", result.generator_ema)):
            resumed, meta = load_generator(tmp_path / f"g{k}.pt", weights)
            assert meta["slug"] == str(k) and meta["iterations"] == budget and meta["weights"] == weights
            pairs = zip(resumed.state_dict().values(), trained.state_dict().values(), strict=True)
            assert all(torch.equal(a, b) for a, b in pairs), (k, weights)
        rows = (tmp_path / f"l{k}.csv").read_text().splitlines()[1:]
        assert [int(r.split(",")[0]) for r in rows] == list(range(1, budget + 1))


def test_a_locked_checkpoint_folder_stops_a_second_job_and_loses_nothing(digit_shards, tmp_path):
    folder = tmp_path / "ck"
    sets = shards_of(digit_shards)
    train_chunk(sets, tiny(iterations=1), folder, log=quiet)
    (checkpoint,) = folder.glob("*.pt")
    before = checkpoint.read_bytes()
    save_torch({"unfinished": True}, folder / "unrelated.pt")
    stale = folder / f".{checkpoint.name}.abc.tmp"  # what a killed writer leaves
    stale.write_bytes(b"partial")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from wcgan.atomic import exclusive_lock\n"
         "with exclusive_lock(sys.argv[1]):\n print('locked', flush=True); time.sleep(120)", str(folder)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WcganError) as error:
            train_chunk(sets, tiny(iterations=2), folder, log=quiet)
        assert str(error.value) == (
            f"checkpoint folder '{folder}' is in use by host {socket.gethostname()} pid {holder.pid}; "
            f"wait for it to end, or stop it"
        )
        assert checkpoint.read_bytes() == before and stale.exists() and (folder / "unrelated.pt").exists()
    finally:
        holder.kill()  # the kernel releases a dead holder's lock
        holder.wait()
    (result, *_) = train_chunk(sets, tiny(iterations=2), folder, log=quiet)
    assert result.summary["resumed_from_iteration"] == 1 and not stale.exists()
