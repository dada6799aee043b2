"""A training job's memory estimate (wcgan.memory): the networks it counts are the ones built,
and a job whose estimate is over its --mem-mb is refused at its start, in one line, with no
output."""

import pytest
import torch
from test_cli import one_error_line

from conftest import run_wcgan
from wcgan.config import TrainConfig
from wcgan.data import Shard
from wcgan.files import save_shard
from wcgan.labels import make_labels
from wcgan.memory import MB, network_sizes, training_memory
from wcgan.networks import Critic, Generator


def parameters(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


@pytest.mark.parametrize("classes", [None, 7])
@pytest.mark.parametrize(
    ("resolution", "channels", "width", "z_dim"), [(8, 1, 4, 8), (32, 3, 16, 64), (128, 3, 8, 128)]
)
def test_the_estimate_counts_the_networks_the_job_builds(resolution, channels, width, z_dim, classes):
    generator, critic, _ = network_sizes(resolution, channels, width, z_dim, classes)
    assert generator == parameters(Generator(z_dim, resolution, channels, width, classes))
    assert critic == parameters(
        Critic(resolution, channels, width, classes, spectral_norm=classes is not None)
    )


def test_the_images_are_counted_as_bytes():
    estimate = training_memory(TrainConfig(iterations=1), 50, 50 * 1300, 3, 64)
    assert estimate.images == 50 * 1300 * 3 * 64 * 64


def test_a_chunk_over_the_jobs_memory_is_refused_at_its_start(tmp_path):
    chunk = tmp_path / "shards" / "c000-001"
    chunk.mkdir(parents=True)
    for label in make_labels(["a", "b"]):
        images = torch.randint(
            0, 256, (300, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
        )
        save_shard(Shard(images, label, "test"), chunk / f"{label.slug}.pt")
    options = ["--iterations", "1", "--width", "4", "--z-dim", "8", "--batch-size", "8", "--device", "cpu"]
    outputs = {name: tmp_path / name for name in ("models", "losses", "training", "checkpoints")}
    estimate = training_memory(TrainConfig(iterations=1, width=4, z_dim=8, batch_size=8), 2, 600, 3, 64)
    command = ["train", "--shard", str(chunk), "--checkpoint-dir", str(outputs["checkpoints"]),
               "--model-out", str(outputs["models"]), "--losses-out", str(outputs["losses"]),
               "--summary-out", str(outputs["training"]), *options]  # fmt: skip

    line = one_error_line(run_wcgan(*command, "--mem-mb", str(estimate.total // MB)))
    assert line.startswith(
        f"wcgan: error: chunk c000-001: K = 2 labels need {estimate.describe()}, more than"
    )
    assert f"the job's {estimate.total // MB / 1000:.2f} GB (--mem-mb" in line
    assert not any(path.exists() for path in outputs.values())

    for folder in ("models", "losses", "training"):
        outputs[folder].mkdir()
    result = run_wcgan(*command, "--mem-mb", str(-(-estimate.total // MB)))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in outputs["models"].iterdir()) == ["a.pt", "b.pt"]

    # The conditional GAN's one job names the shards' root and the run's chunks: its estimate
    # counts every chunk's images.
    conditional = ["train", "--shard", str(tmp_path / "shards"), "--chunks", "2", "2", "--generator",
                   "conditional", "--checkpoint-dir", str(tmp_path / "cgan"), "--model-out", str(tmp_path / "c.pt"),
                   "--losses-out", str(tmp_path / "c.csv"), "--summary-out", str(tmp_path / "c.json"), *options]  # fmt: skip
    estimate = training_memory(
        TrainConfig(iterations=1, width=4, z_dim=8, batch_size=8), 1, 600, 3, 64, classes=2
    )
    line = one_error_line(run_wcgan(*conditional, "--mem-mb", str(estimate.total // MB)))
    assert line.startswith(
        f"wcgan: error: the conditional GAN's 2 labels need {estimate.describe()}, more than"
    )
    assert not (tmp_path / "cgan").exists()
