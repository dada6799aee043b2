"""The generators' moving average: its update, its schedule, and training with it off."""

import pytest
import torch

from wcgan.compare import curve_rows
from wcgan.config import EmaSchedule, TrainConfig
from wcgan.data import TrainingSet
from wcgan.ema import GeneratorAverage
from wcgan.files import load_generator, save_generator
from wcgan.networks import Generator
from wcgan.training import run_key, train_chunk
from wcgan.training_outputs import TrainingOutputs


def quiet(_: str) -> None:
    pass


def test_the_schedule_is_a_half_life_in_images_shortened_by_the_rampup():
    schedule = EmaSchedule(half_life_images=10_000, rampup=0.05)
    # 1,000 updates of 64: the ramp-up's 5 % of 64,000 images, 3,200, is the shorter half-life.
    assert schedule.beta(64_000, 64) == 0.5 ** (64 / 3_200)
    assert schedule.beta(640_000, 64) == 0.5 ** (64 / 10_000)  # past 200,000 images, the half-life
    assert EmaSchedule(10_000, None).beta(64, 64) == 0.5 ** (64 / 10_000)


def test_the_average_moves_by_the_hand_computed_step_and_copies_the_batch_statistics():
    torch.manual_seed(0)
    generators = [Generator(4, 8, 1, 4).double() for _ in range(2)]
    average = GeneratorAverage(generators, EmaSchedule(100.0, 0.05), batch=4)
    before = [[p.clone() for p in g.parameters()] for g in average.averages]
    with torch.no_grad():
        for g in generators:
            for p in g.parameters():
                p.add_(torch.randn_like(p))
        generators[1].net[2].running_mean.fill_(3.0)  # batch-norm statistics after some steps
    average.update(3)  # 12 images seen: half-life min(100, 0.05 x 12) = 0.6 images
    beta = 0.5 ** (4 / 0.6)
    for g, averaged, old in zip(generators, average.averages, before, strict=True):
        for p, a, o in zip(g.parameters(), averaged.parameters(), old, strict=True):
            torch.testing.assert_close(a, beta * o + (1 - beta) * p, rtol=0, atol=1e-12)
        for b, a in zip(g.buffers(), averaged.buffers(), strict=True):
            assert torch.equal(a, b)
    assert not any(p.requires_grad for p in average.averages[0].parameters())


def test_with_the_average_off_a_run_is_the_one_before_it_existed(digit_shards, tmp_path):
    sets = [TrainingSet.of_label(shard) for shard in digit_shards]
    tiny = dict(iterations=4, batch_size=16, width=8, z_dim=8, checkpoint_seconds=600)
    off, on = TrainConfig(**tiny, ema_half_life_images=0), TrainConfig(**tiny)
    # The run key of these settings before the moving average existed (commit b110b03): the
    # checkpoints of such runs resume.
    assert run_key(off.resolved(), sets, torch.device("cpu")) == "5462065b011fa0c8"
    assert run_key(on.resolved(), sets, torch.device("cpu")) != "5462065b011fa0c8"
    threads = torch.get_num_threads()
    try:
        plain = train_chunk(sets, off, tmp_path / "off", threads=1, log=quiet)
        averaged = train_chunk(sets, on, tmp_path / "on", threads=1, log=quiet)
    finally:
        torch.set_num_threads(threads)
    for without, with_average in zip(plain, averaged, strict=True):
        assert without.generator_ema is None and with_average.generator_ema is not None
        # The average only watches: the raw training is the same bit for bit.
        raw = without.generator.state_dict().values(), with_average.generator.state_dict().values()
        assert all(torch.equal(a, b) for a, b in zip(*raw, strict=True))
    save_generator(plain[0], sets[0], tmp_path / "g.pt")
    generator, meta = load_generator(tmp_path / "g.pt")  # asks for the average; the file has none
    assert meta["weights"] == "raw"
    pairs = zip(generator.state_dict().values(), plain[0].generator.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_a_training_job_samples_the_average_by_default_and_the_raw_weights_when_asked(digit_shards, tmp_path):
    from wcgan.files import load_samples, load_snapshot_samples
    from wcgan.sampling import sample_labels

    data = TrainingSet.of_label(digit_shards[0])
    config = TrainConfig(iterations=4, batch_size=16, width=8, z_dim=8, snapshots=2, checkpoint_seconds=600)
    (result,) = train_chunk([data], config, tmp_path / "ck", log=quiet)
    drawn = {}
    for weights in ("ema", "raw"):
        given = {name: [str(tmp_path / weights / name)] for name in ("models", "losses", "summaries")}
        given |= {
            "samples": [str(tmp_path / weights / "samples")],
            "snapshots": [str(tmp_path / weights / "snap")],
        }
        outputs = TrainingOutputs.of(given, data.labels, None)
        outputs.write([result], [data], 6, 0, 0.0, weights)
        drawn[weights], _ = load_samples(outputs.samples[0])
        points = load_snapshot_samples(outputs.snapshots[0])
        assert [(p["weights"], p["iteration"]) for p in points] == [
            ("ema", 2),
            ("ema", 4),
            ("raw", 2),
            ("raw", 4),
        ]
    assert torch.equal(drawn["ema"], sample_labels(result.generator_ema, data.labels, 6, 0)[0])
    assert torch.equal(drawn["raw"], sample_labels(result.generator, data.labels, 6, 0)[0])
    assert not torch.equal(drawn["ema"], drawn["raw"])


def test_the_curve_numbers_each_weights_points_apart():
    def points(*kinds):
        return [
            {"weights": kind, "iteration": 2 * k, "device_seconds": 1.5 * k} for kind in kinds for k in (1, 2)
        ]

    rows = curve_rows([points("ema", "raw"), points("ema", "raw")])
    assert [(r["weights"], r["point"], r["share"], r["iterations"]) for r in rows] == [
        ("ema", 1, 0.5, 4), ("ema", 2, 1.0, 8), ("raw", 1, 0.5, 4), ("raw", 2, 1.0, 8)
    ]  # fmt: skip
    assert rows[-1]["device_seconds"] == 6.0
    old = [{"iteration": 3, "device_seconds": 1.0}]  # a snapshot file from before the average
    assert curve_rows([old])[0]["weights"] == "raw"
    with pytest.raises(Exception, match="moving average's snapshots, others not"):
        curve_rows([points("ema", "raw"), [*points("raw"), *points("raw")]])
