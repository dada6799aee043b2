"""Sampling trained generators, one label at a time or as one class-conditional ensemble."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from wcgan.config import label_seed
from wcgan.errors import WcganError
from wcgan.files import load_generator
from wcgan.labels import Label, find_label, read_table
from wcgan.layout import RunLayout
from wcgan.networks import Generator, float_to_images


@torch.no_grad()
def generate(
    generator: Generator, z: torch.Tensor, class_index: int | None = None, batch_size: int = 256
) -> torch.Tensor:
    """uint8 images for the latent codes ``z``, in batches, on the generator's device; a
    conditional generator draws them all of class ``class_index``."""
    device = next(generator.parameters()).device
    chunks = []
    for part in z.split(batch_size):
        classes = None if class_index is None else torch.full((len(part),), class_index, device=device)
        chunks.append(float_to_images(generator(part.to(device), classes)).cpu())
    return torch.cat(chunks)


def latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """``n`` standard-normal latent codes, the same for the same seed on every machine."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


def sample_label(
    generator: Generator, label: Label, n: int, seed: int = 0, class_index: int | None = None
) -> torch.Tensor:
    """``n`` samples of one label, from latents seeded by ``seed`` and the label (as the pipeline
    draws them), so the same label and seed give the same images from Python and the CLI. A
    conditional generator needs the label's ``class_index`` (its position among its labels)."""
    return generate(generator, latents(n, generator.z_dim, label_seed(seed, label.slug)), class_index)


class ConditionalEnsemble:
    """The per-label generators of a run acting as one class-conditional generator.

    ``ensemble(z, c)`` maps latents ``z`` and class indices ``c`` to uint8 images, like a
    conditional generator ``G(z, c)``; ``ensemble.sample(label, n)`` draws for one label by name
    or slug. Generators are loaded on first use, so a 1,000-label ensemble costs nothing until
    its labels are asked for; ``weights`` says which of their weights (``WEIGHTS``).
    """

    def __init__(
        self,
        labels: Sequence[Label],
        model_paths: Sequence[str | os.PathLike],
        device: str = "cpu",
        weights: str = "ema",
    ):
        self.labels = list(labels)
        self.model_paths = [Path(path) for path in model_paths]  # one per label, in label order
        self.device, self.weights = torch.device(device), weights
        self._generators: dict[int, Generator] = {}

    @classmethod
    def from_run(
        cls, run_dir: str | os.PathLike, device: str = "cpu", weights: str = "ema"
    ) -> ConditionalEnsemble:
        """Open a run folder (``results/<run>``) holding ``labels.tsv`` and
        ``models/<chunk>/<label>.pt``."""
        layout = RunLayout(str(run_dir))
        rows = read_table(layout.labels_table)
        paths = [layout.chunk_file("models", chunk, label.slug) for label, _, chunk in rows]
        return cls([label for label, _, _ in rows], paths, device, weights)

    def generator(self, index: int) -> Generator:
        if index not in self._generators:
            if not 0 <= index < len(self.labels):
                raise WcganError(f"class index {index} is outside 0..{len(self.labels) - 1}")
            generator, _ = load_generator(self.model_paths[index], self.weights)
            self._generators[index] = generator.to(self.device)
        return self._generators[index]

    @property
    def z_dim(self) -> int:
        return self.generator(0).z_dim

    def __call__(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor | None = None
        for index in c.unique().tolist():
            rows = (c == index).nonzero().squeeze(1)
            images = generate(self.generator(int(index)), z[rows])
            if out is None:
                out = torch.empty(len(z), *images.shape[1:], dtype=torch.uint8)
            out[rows] = images
        return out

    def find(self, label: str) -> Label:
        """The label named (or slugged) ``label``."""
        return find_label(self.labels, label)

    def sample(self, label: str, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` samples of the label named (or slugged) ``label``."""
        found = self.find(label)
        return sample_label(self.generator(found.index), found, n, seed)


def generator_labels(meta: dict) -> list[Label]:
    """The labels a saved generator draws, in class order: one for a label's generator."""
    if "labels" in meta:
        return [Label(index, slug, name) for index, slug, name in meta["labels"]]
    return [Label.from_record(meta)]


def sample_labels(generator: Generator, labels: Sequence[Label], n: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` samples of each of ``labels``: those of one label's generator (one label), or of
    a conditional generator's classes in order."""
    if generator.num_classes is None:
        return [sample_label(generator, labels[0], n, seed)]
    return [sample_label(generator, label, n, seed, c) for c, label in enumerate(labels)]


def snapshot_samples(
    points: Sequence[dict], generator: Generator, labels: Sequence[Label], n: int, seed: int
) -> list[list[dict]]:
    """Samples of every label from each training snapshot (``TrainResult.snapshots``), of the
    moving average's weights where there is one and of the raw ones, all the moving average's
    points first: the points of the quality-against-compute curves. One list of points per
    label, each point that label's images, as ``files.save_snapshot_samples`` stores a label's."""
    per_label: list[list[dict]] = [[] for _ in labels]
    for weights, key in (("ema", "generator_ema"), ("raw", "generator")):
        for point in points:
            if key not in point:
                continue
            generator.load_state_dict(point[key])
            images = sample_labels(generator.eval(), labels, n, seed)
            budget = {name: point[name] for name in ("iteration", "seconds", "device_seconds")}
            for saved, label_images, label in zip(per_label, images, labels, strict=True):
                indices = torch.full((len(label_images),), label.index)
                saved.append({**budget, "weights": weights, "images": label_images, "indices": indices})
    return per_label
