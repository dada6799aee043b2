import subprocess
import sys

import pytest
import torch

from conftest import env, run_wcgan
from wcgan.config import TrainConfig
from wcgan.data import TrainingSet
from wcgan.errors import WcganError
from wcgan.files import load_samples, save_generator, save_samples
from wcgan.labels import Chunk, make_labels, write_table
from wcgan.sampling import ConditionalEnsemble, generate, latents
from wcgan.training import train


@pytest.fixture(scope="module")
def run_dir(digit_shards, tmp_path_factory):
    """A run folder with labels.tsv and two trained (briefly) generators."""
    root = tmp_path_factory.mktemp("run")
    config = TrainConfig(iterations=2, batch_size=8, z_dim=8, width=4)
    for shard in digit_shards[:2]:
        result = train(
            TrainingSet.of_label(shard), config, root / "checkpoints" / shard.label.slug, log=lambda _: None
        )
        save_generator(
            result, TrainingSet.of_label(shard), root / "models" / "c0-1" / f"{shard.label.slug}.pt"
        )
    labels = make_labels(["0", "1"])
    write_table(labels, [178, 182], [Chunk("c0-1", tuple(labels))], root / "labels.tsv")
    return root


def test_latents_are_reproducible():
    assert torch.equal(latents(4, 8, seed=3), latents(4, 8, seed=3))
    assert not torch.equal(latents(4, 8, seed=3), latents(4, 8, seed=4))


def test_ensemble_routes_each_class_to_its_generator(run_dir):
    ensemble = ConditionalEnsemble.from_run(run_dir)
    z = latents(6, ensemble.z_dim, seed=0)
    c = torch.tensor([1, 0, 1, 1, 0, 0])
    images = ensemble(z, c)
    assert images.dtype == torch.uint8 and images.shape == (6, 1, 8, 8)
    for index in (0, 1):
        rows = (c == index).nonzero().squeeze(1)
        assert torch.equal(images[rows], generate(ensemble.generator(index), z[rows]))
    assert not torch.equal(generate(ensemble.generator(0), z), generate(ensemble.generator(1), z))


def test_ensemble_sample_by_name_and_errors(run_dir):
    ensemble = ConditionalEnsemble.from_run(run_dir)
    assert torch.equal(ensemble.sample("1", 3, seed=5), ensemble.sample("1", 3, seed=5))
    with pytest.raises(WcganError, match="unknown label '7'"):
        ensemble.sample("7", 3)
    with pytest.raises(WcganError, match="class index 5 is outside 0..1"):
        ensemble.generator(5)


def test_sample_command_writes_a_grid_and_tensor_files(run_dir, tmp_path):
    result = run_wcgan(
        "sample", "--run", str(run_dir), "--label", "1", "-n", "16", "--out", str(tmp_path / "x.png")
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.png").stat().st_size > 0
    result = run_wcgan(
        "sample",
        "--model",
        str(run_dir / "models" / "c0-1" / "0.pt"),
        "-n",
        "5",
        "--out",
        str(tmp_path / "s.pt"),
    )
    assert result.returncode == 0, result.stderr
    images, label = load_samples(tmp_path / "s.pt")
    assert images.shape == (5, 1, 8, 8) and label.name == "0"
    result = run_wcgan("sample", "--run", str(run_dir), "--label", "1", "--out", str(tmp_path / "x.jpg"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "wcgan: error: --out '"
        + str(tmp_path / "x.jpg")
        + "' must end in .png (a grid) or .pt (uint8 samples)"
    ]
    assert not (tmp_path / "x.jpg").exists()


def test_samples_file_roundtrip(tmp_path):
    label = make_labels(["a"])[0]
    save_samples(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), label, tmp_path / "a.pt")
    images, back = load_samples(tmp_path / "a.pt")
    assert back == label and images.shape == (2, 3, 8, 8)


def test_sampling_reads_generator_files_without_importing_the_training_loop():
    """wcgan.sampling needs the file format (wcgan.files), not the training loop; a fresh
    interpreter shows what importing it pulls in."""
    probe = "import sys, wcgan.sampling; print(sorted(m for m in sys.modules if m.startswith('wcgan.')))"
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env(), capture_output=True, text=True, timeout=120, check=True
    )
    imported = result.stdout
    assert "'wcgan.files'" in imported and "'wcgan.training'" not in imported, imported
