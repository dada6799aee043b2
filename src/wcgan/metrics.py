"""Scoring with torch-fidelity: IS, FID, KID and precision/recall, never re-implemented here.

Two feature extractors, both registered in torch-fidelity's extractor registry, serve the one
``calculate_metrics`` call: ``wcgan-inception-v3`` (torch-fidelity's own Inception-v3 network, its
local weights file checked with ``weights_only=True`` before use) when a weights file is given,
and ``wcgan-classifier`` (the run's trained classifier) otherwise. ``inception_weights:
download`` uses torch-fidelity's ``inception-v3-compat`` as it is, downloading its weights.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.registry import register_feature_extractor

from wcgan.atomic import load_torch
from wcgan.classifier import load_classifier
from wcgan.config import INCEPTION_DOWNLOAD
from wcgan.data import Shard, sample_rows
from wcgan.errors import WcganError
from wcgan.labels import Label
from wcgan.networks import images_to_float

CLASSIFIER_EXTRACTOR = "wcgan-classifier"
INCEPTION_EXTRACTOR = "wcgan-inception-v3"  # local weights file
DOWNLOADED_INCEPTION_EXTRACTOR = "inception-v3-compat"  # torch-fidelity downloads its weights

# Our names for torch-fidelity's result keys, in table order.
METRIC_KEYS = {
    "is_mean": torch_fidelity.KEY_METRIC_ISC_MEAN,
    "is_std": torch_fidelity.KEY_METRIC_ISC_STD,
    "fid": torch_fidelity.KEY_METRIC_FID,
    "kid_mean": torch_fidelity.KEY_METRIC_KID_MEAN,
    "kid_std": torch_fidelity.KEY_METRIC_KID_STD,
    "precision": torch_fidelity.KEY_METRIC_PRECISION,
    "recall": torch_fidelity.KEY_METRIC_RECALL,
    "f_score": torch_fidelity.KEY_METRIC_F_SCORE,
}


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor over a wcgan classifier: ``logits`` for IS, ``features`` for the rest."""

    def __init__(
        self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs
    ):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise WcganError(f"feature extractor '{name}' needs feature_extractor_weights_path")
        self.model = load_classifier(feature_extractor_weights_path)
        self.requires_grad_(False)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # torch-fidelity hands over uint8 RGB; a greyscale classifier reads one (repeated) channel.
        x = images_to_float(images[:, : self.model.channels])
        if x.shape[-1] != self.model.resolution:
            size = (self.model.resolution, self.model.resolution)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        features, logits = self.model(x)
        provided = {"features": features, "logits": logits}
        return tuple(provided[name] for name in self.features_list)


class LocalInceptionFeatureExtractor(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception-v3, unchanged, reading a local weights file that must load with
    ``torch.load(weights_only=True)``: torch-fidelity itself unpickles it without that guard, so
    a file that passes the check holds tensors only before torch-fidelity reads it."""

    def __init__(
        self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs
    ):
        if feature_extractor_weights_path is None:
            raise WcganError(f"feature extractor '{name}' needs a local weights file")
        state = load_torch(feature_extractor_weights_path, "Inception-v3 weights")
        if not isinstance(state, dict) or "fc.weight" not in state:
            raise WcganError(
                f"Inception-v3 weights '{feature_extractor_weights_path}' are not torch-fidelity's state dict"
            )
        super().__init__(
            name, features_list, feature_extractor_weights_path=feature_extractor_weights_path, **kwargs
        )


register_feature_extractor(CLASSIFIER_EXTRACTOR, ClassifierFeatureExtractor)
register_feature_extractor(INCEPTION_EXTRACTOR, LocalInceptionFeatureExtractor)


@dataclass(frozen=True)
class Extractor:
    """Which registered extractor scores a run, and the weights file it reads."""

    name: str
    weights: str  # a file, or INCEPTION_DOWNLOAD
    accuracy: float | None = None  # the classifier's hold-out accuracy

    def digest(self) -> str:
        """Short content hash of the weights, so cached real features follow the extractor."""
        if self.weights == INCEPTION_DOWNLOAD:
            return "download"
        sha = hashlib.sha256()
        with open(self.weights, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
        return sha.hexdigest()[:12]


def choose_extractor(inception_weights: str | None, classifier: str | os.PathLike | None) -> Extractor:
    """Inception-v3 when ``metrics.inception_weights`` names a file (or ``download``), else the
    run's classifier."""
    if inception_weights == INCEPTION_DOWNLOAD:
        return Extractor(DOWNLOADED_INCEPTION_EXTRACTOR, INCEPTION_DOWNLOAD)
    if inception_weights:
        if not Path(inception_weights).is_file():
            raise WcganError(f"metrics.inception_weights '{inception_weights}' does not exist")
        return Extractor(INCEPTION_EXTRACTOR, str(inception_weights))
    if classifier is None:
        raise WcganError("no classifier file given and metrics.inception_weights is unset")
    accuracy = load_torch(classifier, "classifier").get("holdout_accuracy")
    return Extractor(CLASSIFIER_EXTRACTOR, str(classifier), accuracy)


class ImageTensorDataset(Dataset):
    """uint8 N x C x H x W images as the 3-channel uint8 tensors torch-fidelity reads."""

    def __init__(self, images: torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError("expected uint8 N x 1|3 x H x W images")
        self.images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].contiguous()


def tensor_digest(images: torch.Tensor) -> str:
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()[:12]


def score(
    fake: torch.Tensor,
    real: torch.Tensor,
    extractor: Extractor,
    *,
    inception_score: bool = False,
    precision_recall: bool = False,
    cache_root: str | os.PathLike | None = None,
    real_cache_name: str | None = None,
    device: torch.device | None = None,
    seed: int = 2020,
    verbose: bool = False,
) -> dict[str, float]:
    """FID and KID of ``fake`` against ``real`` (plus IS and precision/recall on request).

    With ``cache_root``, the real images' features are cached by torch-fidelity under a name
    made of ``real_cache_name``, the images' hash and the extractor's hash, so they are
    computed once per data set and extractor.
    """
    if len(fake) < 2 or len(real) < 2:
        raise WcganError(
            f"scoring needs at least 2 generated and 2 real images, got {len(fake)} and {len(real)}"
        )
    cached = cache_root is not None
    if device is not None and device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # torch-fidelity takes only cuda=True, meaning the current device
    kwargs: dict[str, Any] = dict(
        input1=ImageTensorDataset(fake),
        input2=ImageTensorDataset(real),
        feature_extractor=extractor.name,
        feature_extractor_weights_path=None if extractor.weights == INCEPTION_DOWNLOAD else extractor.weights,
        isc=inception_score,
        fid=True,
        kid=True,
        prc=precision_recall,
        cuda=device is not None and device.type == "cuda",
        kid_subset_size=min(1000, len(fake), len(real)),
        isc_splits=min(10, len(fake)),
        rng_seed=seed,
        verbose=verbose,
        cache=cached,
        save_cpu_ram=True,  # no DataLoader worker processes for in-memory tensors
    )
    if cached:
        name = real_cache_name or "real"
        kwargs.update(
            cache_root=str(cache_root),
            input2_cache_name=f"{name}-{tensor_digest(real)}-{extractor.digest()}",
        )
    results = torch_fidelity.calculate_metrics(**kwargs)
    return {ours: float(results[theirs]) for ours, theirs in METRIC_KEYS.items() if theirs in results}


def score_run(
    samples: Sequence[tuple[torch.Tensor, Label]],
    shards: Sequence[Shard],
    extractor: Extractor,
    max_real_per_label: int | None = None,
    *,
    cache_root: str | os.PathLike | None = None,
    device: torch.device | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The metrics table of a run: all labels merged (IS, FID, KID, precision/recall), then each
    label against its own real images (FID, KID, precision/recall: a label's recall is how much
    of its real images its samples cover), one torch-fidelity call each."""
    fake_slugs = [label.slug for _, label in samples]
    real_slugs = [shard.label.slug for shard in shards]
    if fake_slugs != real_slugs:
        missing = sorted(set(real_slugs) ^ set(fake_slugs))
        raise WcganError(f"samples and shards cover different labels (first differences: {missing[:5]})")
    real = [sample_rows(s.images, max_real_per_label, seed=s.label.index) for s in shards]
    common = dict(extractor=extractor, cache_root=cache_root, device=device)

    def record(label: Label | None, fake: torch.Tensor, real: torch.Tensor, values: dict) -> dict:
        return {
            "scope": "label" if label else "overall",
            "label": label.name if label else "",
            "slug": label.slug if label else "",
            "index": label.index if label else -1,
            "extractor": extractor.name,
            "extractor_weights": extractor.weights,
            "extractor_accuracy": extractor.accuracy,
            "n_fake": len(fake),
            "n_real": len(real),
            **values,
        }

    all_fake, all_real = torch.cat([images for images, _ in samples]), torch.cat(real)
    overall = score(
        all_fake, all_real, inception_score=True, precision_recall=True, real_cache_name="all", **common
    )
    log(f"all {len(samples)} labels: " + ", ".join(f"{k} {v:.4g}" for k, v in overall.items()))
    records = [record(None, all_fake, all_real, overall)]
    for (fake, label), real_images in zip(samples, real, strict=True):
        values = score(fake, real_images, precision_recall=True, real_cache_name=label.slug, **common)
        log(f"label '{label.name}': " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        records.append(record(label, fake, real_images, values))
    return records


def score_snapshots(
    points_per_unit: Sequence[Sequence[dict]],
    shards: Sequence[Shard],
    extractor: Extractor,
    max_real_per_label: int | None = None,
    *,
    cache_root: str | os.PathLike | None = None,
    device: torch.device | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """IS, FID and KID of all labels merged at each snapshot point: point k merges the k-th
    snapshot samples of every training job (``points_per_unit``, one list of points per job,
    as ``wcgan.sampling.load_snapshot_samples`` reads them) and scores them against every
    label's real images, as ``score_run`` scores the final samples."""
    real = torch.cat([sample_rows(s.images, max_real_per_label, seed=s.label.index) for s in shards])
    wanted = sorted(s.label.index for s in shards)
    scores = []
    for k in range(min(len(points) for points in points_per_unit)):
        indices = torch.cat([points[k]["indices"] for points in points_per_unit])
        if sorted(indices.unique().tolist()) != wanted:
            raise WcganError(f"snapshot point {k + 1}: the samples do not cover the shards' labels")
        fake = torch.cat([points[k]["images"] for points in points_per_unit])
        values = score(
            fake,
            real,
            extractor,
            inception_score=True,
            cache_root=cache_root,
            real_cache_name="all",
            device=device,
        )
        log(f"snapshot {k + 1}: " + ", ".join(f"{name} {value:.4g}" for name, value in values.items()))
        scores.append(values)
    return scores
