"""The run's data files, each kind with its format tag, its save and its load: a label's shard
(``wcgan split``), samples and snapshot samples, a generator (``wcgan train``) and the classifier
that stands in for Inception-v3 (``wcgan train-classifier``), and a chunk's scores (``wcgan
features``). Every load goes through
``atomic.load_tagged``: checksums, ``weights_only``, the tag, one line naming the file.

Kept apart from the training loops so that what only reads the files (sampling, scoring) does
not import them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from wcgan.atomic import atomic_open, check_tagged, load_tagged, save_torch
from wcgan.config import WEIGHTS
from wcgan.data import Shard
from wcgan.errors import WcganError
from wcgan.feature_stats import Moments
from wcgan.labels import Label
from wcgan.networks import Classifier, Generator

if TYPE_CHECKING:
    import pandas as pd

    from wcgan.data import TrainingSet

SHARD_FORMAT = "wcgan-shard-1"
SAMPLES_FORMAT = "wcgan-samples-1"
# 2: each point says whose samples it holds ("weights": "ema" or "raw"); 1 held the raw ones.
SNAPSHOTS_FORMAT = "wcgan-snapshot-samples-2"
SNAPSHOTS_FORMATS = ("wcgan-snapshot-samples-1", SNAPSHOTS_FORMAT)
GENERATOR_FORMAT = "wcgan-generator-1"
CHUNK_SCORES_FORMAT = "wcgan-chunk-scores-1"
# 4: one schema for every trainer (3: a chunk's, wcgan-distributed-checkpoint-1: the server's).
CHECKPOINT_FORMAT = "wcgan-checkpoint-4"
CHECKPOINT_FORMATS = (CHECKPOINT_FORMAT, "wcgan-checkpoint-3", "wcgan-distributed-checkpoint-1")
CLASSIFIER_FORMAT = "wcgan-classifier-1"
CLASSIFIER_MADE_BY = "'wcgan train-classifier'"
# "wasserstein" is E[D(real)] - E[D(fake)]: the Wasserstein estimate for the Wasserstein losses,
# a generic gap between the critic's scores of real and fake images for the others.
LOSS_COLUMNS = ("iteration", "seconds", "critic_loss", "wasserstein", "penalty", "generator_loss")


def save_shard(shard: Shard, path: str | os.PathLike) -> None:
    save_torch(
        {
            "format": SHARD_FORMAT,
            "images": shard.images,
            **shard.label.record(),
            "source": shard.source,
        },
        path,
    )


def load_shard(path: str | os.PathLike, mmap: bool = False, header_only: bool = False) -> Shard:
    """Read a shard; with ``mmap`` its images stay on disk until rows of them are used. A reader
    of only its label and image shape asks ``header_only``: the images are mapped, and their
    checksum left unread (a whole read of every shard of a run, for a table of labels)."""
    data = load_tagged(
        path, "shard", SHARD_FORMAT, "'wcgan split'", mmap=mmap or header_only, check_large=not header_only
    )
    images = data["images"]
    if images.dtype != torch.uint8 or images.dim() != 4 or len(images) == 0:
        raise WcganError(f"shard '{path}' holds no uint8 N x C x H x W images")
    return Shard(images, Label.from_record(data), data["source"])


def save_samples(images: torch.Tensor, label: Label, path: str | os.PathLike) -> None:
    save_torch({"format": SAMPLES_FORMAT, "images": images, **label.record()}, path)


def load_samples(path: str | os.PathLike) -> tuple[torch.Tensor, Label]:
    data = load_tagged(path, "samples", SAMPLES_FORMAT, "'wcgan train --samples-out' or 'wcgan sample'")
    return data["images"], Label.from_record(data)


def save_snapshot_samples(points: Sequence[dict], path: str | os.PathLike) -> None:
    """The snapshot points ``sampling.snapshot_samples`` drew."""
    save_torch({"format": SNAPSHOTS_FORMAT, "points": list(points)}, path)


def load_snapshot_samples(path: str | os.PathLike) -> list[dict]:
    """The points of ``save_snapshot_samples`` (those of a file from before the moving average
    are the raw weights')."""
    data = load_tagged(path, "snapshot samples", SNAPSHOTS_FORMATS, "'wcgan train --snapshots-out'")
    return [{"weights": "raw", **point} for point in data["points"]]


@dataclass
class TrainResult:
    """What training gives for each generator: what its files hold."""

    generator: Generator
    generator_ema: Generator | None  # its moving average (wcgan.ema), None when that is off
    history: torch.Tensor  # float64, one row of LOSS_COLUMNS per generator iteration
    summary: dict[str, Any]
    # ``snapshot`` at each train.snapshots point, the last one the end
    snapshots: list[dict[str, Any]]


def save_generator(result: TrainResult, data: TrainingSet, path: str | Path) -> None:
    """The trained generator and its moving average (when it has one) with what sampling needs:
    architecture, label(s), how it was trained."""
    averaged = {} if result.generator_ema is None else {"ema_state": result.generator_ema.state_dict()}
    save_torch(
        {
            "format": GENERATOR_FORMAT,
            "hparams": result.generator.hparams,
            "state": result.generator.state_dict(),
            **averaged,
            **data.identity("name"),
            "iterations": result.summary["iterations"],
            "seconds": result.summary["seconds"],
            "loss": result.summary["loss"],
        },
        path,
    )


def load_generator(path: str | Path, weights: str = "ema") -> tuple[Generator, dict[str, Any]]:
    """Rebuild a saved generator in eval mode with its ``weights`` (``WEIGHTS``; a file without
    a moving average, written with it off or before there was one, has its raw weights only);
    returns it and the file's metadata, ``weights`` naming the ones loaded."""
    if weights not in WEIGHTS:
        raise WcganError(f"generator weights '{weights}' are unknown (known: {', '.join(WEIGHTS)})")
    data = load_tagged(path, "generator", GENERATOR_FORMAT, "'wcgan train'")
    generator = Generator(**data["hparams"])
    loaded = "ema" if weights == "ema" and "ema_state" in data else "raw"
    generator.load_state_dict(data["ema_state" if loaded == "ema" else "state"])
    meta = {k: v for k, v in data.items() if k not in ("state", "ema_state", "format")}
    return generator.eval(), {**meta, "weights": loaded}


def save_losses(history: torch.Tensor, path: str | os.PathLike) -> None:
    """A label's loss history as CSV, one row of ``LOSS_COLUMNS`` per generator iteration."""
    with atomic_open(path, "w", checksum=True, encoding="utf-8") as fh:
        fh.write(",".join(LOSS_COLUMNS) + "\n")
        for row in history.tolist():
            fh.write(f"{int(row[0])},{row[1]:.4f}," + ",".join(f"{v:.6g}" for v in row[2:]) + "\n")


def load_losses(path: str | os.PathLike) -> pd.DataFrame:
    from wcgan.tables import read_checked_csv  # pandas only for the readers of these files

    return read_checked_csv(path, "loss history", sep=",")


def save_classifier(model: Classifier, labels: Sequence[str], report: dict, path: str | Path) -> None:
    """The trained classifier with its label names and hold-out accuracy."""
    save_torch(
        {
            "format": CLASSIFIER_FORMAT,
            "hparams": model.hparams,
            "state": model.state_dict(),
            "labels": list(labels),
            "holdout_accuracy": report["holdout_accuracy"],
        },
        path,
    )


def load_classifier(path: str | Path) -> Classifier:
    """Rebuild a saved classifier in eval mode."""
    return classifier_from_file_data(
        load_tagged(path, "classifier", CLASSIFIER_FORMAT, CLASSIFIER_MADE_BY), path
    )


def classifier_from_file_data(data: Any, path: str | Path) -> Classifier:
    """The classifier that ``save_classifier`` wrote to ``path``, from the file's loaded contents."""
    check_tagged(data, path, "classifier", CLASSIFIER_FORMAT, CLASSIFIER_MADE_BY)
    model = Classifier(**data["hparams"])
    model.load_state_dict(data["state"])
    return model.eval()


# --- a chunk's scores: what the map step of scoring keeps (wcgan.metrics) ---------------------


@dataclass(frozen=True)
class Extractor:
    """Which network made a set of features: features of different extractors never mix."""

    name: str
    weights: str  # the weights file as given, or INCEPTION_DOWNLOAD
    sha256: str  # of the weights file's bytes the network was built from
    accuracy: float | None = None  # the classifier's hold-out accuracy


@dataclass(frozen=True)
class SnapshotPart:
    """One snapshot point of a chunk's training jobs: the moments of its samples' features (for
    FID), and of each label a seeded subset of its samples' features, logits and class indices
    (for IS and KID)."""

    fake: Moments
    features: torch.Tensor
    logits: torch.Tensor
    indices: torch.Tensor


@dataclass(frozen=True)
class ChunkScores:
    """What the map step of scoring keeps of a chunk of labels: each label's own scores, the
    moments of all its generated and real features (overall FID, merged exactly), and of each
    label a seeded subset of them (overall IS, KID and precision/recall); with snapshots, the
    same for every snapshot point and each training job's budget at each point."""

    extractor: Extractor
    labels: list[Label]
    rows: list[dict[str, Any]]  # per label: n_fake, n_real and its metric values
    fake: Moments
    real: Moments
    kept_fake: list[torch.Tensor]  # per label
    kept_logits: list[torch.Tensor]
    kept_real: list[torch.Tensor]
    budgets: list[list[dict[str, float]]] = dataclasses.field(default_factory=list)  # per job, per point
    snapshots: list[SnapshotPart] = dataclasses.field(default_factory=list)  # per point


def save_chunk_scores(scores: ChunkScores, path: str | os.PathLike) -> None:
    save_torch(
        {
            "format": CHUNK_SCORES_FORMAT,
            "extractor": dataclasses.asdict(scores.extractor),
            "labels": [label.record() for label in scores.labels],
            "rows": scores.rows,
            "fake": scores.fake.packed(),
            "real": scores.real.packed(),
            "kept_fake": scores.kept_fake,
            "kept_logits": scores.kept_logits,
            "kept_real": scores.kept_real,
            "budgets": scores.budgets,
            "snapshots": [
                {
                    "fake": part.fake.packed(),
                    "features": part.features,
                    "logits": part.logits,
                    "indices": part.indices,
                }
                for part in scores.snapshots
            ],
        },
        path,
    )


def _moments(data: Any, path: str | os.PathLike, what: str) -> Moments:
    try:
        if not all(torch.is_tensor(data[key]) for key in ("total", "upper")):
            raise TypeError("not tensors")
        moments = Moments.unpacked(int(data["count"]), data["total"], data["upper"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WcganError(
            f"{what} '{path}' hold no feature moments (a count, a D vector and a D x D matrix's upper triangle)"
        ) from exc
    return moments


def _matrices(data: dict, key: str, count: int, path: str | os.PathLike, what: str) -> list[torch.Tensor]:
    values = data.get(key)
    if not isinstance(values, list) or len(values) != count:
        raise WcganError(f"{what} '{path}': '{key}' is not a list of {count} matrices")
    for value in values:
        if not torch.is_tensor(value) or value.dim() != 2 or not value.is_floating_point():
            raise WcganError(f"{what} '{path}': '{key}' is not a list of {count} matrices of floats")
    return values


def load_chunk_scores(path: str | os.PathLike) -> ChunkScores:
    """A file of ``save_chunk_scores``; it loads with ``weights_only=True``, so a file that holds
    anything but tensors and plain values is refused before any of it runs."""
    what = "chunk scores"
    data = load_tagged(path, what, CHUNK_SCORES_FORMAT, "'wcgan features'")
    try:
        extractor = Extractor(**data["extractor"])
        labels = [Label.from_record(label) for label in data["labels"]]
    except (KeyError, TypeError) as exc:
        raise WcganError(f"{what} '{path}' do not say which extractor and labels they are of") from exc
    rows = data.get("rows")
    if not isinstance(rows, list) or len(rows) != len(labels) or not all(isinstance(r, dict) for r in rows):
        raise WcganError(f"{what} '{path}' hold no scores row per label")
    snapshots = []
    for point in data.get("snapshots", []):
        indices = point.get("indices") if isinstance(point, dict) else None
        if not torch.is_tensor(indices) or indices.dim() != 1:
            raise WcganError(f"{what} '{path}': a snapshot point has no class indices")
        matrices = [point.get(key) for key in ("features", "logits")]
        for key, matrix in zip(("features", "logits"), matrices, strict=True):
            if not torch.is_tensor(matrix) or matrix.dim() != 2 or len(matrix) != len(indices):
                raise WcganError(f"{what} '{path}': a snapshot point's '{key}' do not match its indices")
        snapshots.append(SnapshotPart(_moments(point.get("fake"), path, what), *matrices, indices))
    return ChunkScores(
        extractor,
        labels,
        rows,
        _moments(data.get("fake"), path, what),
        _moments(data.get("real"), path, what),
        *(_matrices(data, key, len(labels), path, what) for key in ("kept_fake", "kept_logits", "kept_real")),
        budgets=data.get("budgets", []),
        snapshots=snapshots,
    )


# --- a training job's checkpoint (wcgan.runner) ----------------------------------------------


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """The runner's ``kind``, ``unit``, ``count`` and ``seconds``, the run's ``config`` and the
    trainer's own ``state``."""
    save_torch({"format": CHECKPOINT_FORMAT, **state}, path)


def _upgraded(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of an earlier schema in this one: the runner's count and seconds beside the
    trainer's state."""
    if state.get("format") == "wcgan-checkpoint-3":
        runner = {"kind": "chunk", "unit": "iteration", "count": state["iteration"]}
        return {
            **runner,
            "seconds": state["seconds"],
            "config": state["config"],
            "state": {"labels": state["labels"]},
        }
    if state.get("format") == "wcgan-distributed-checkpoint-1":
        runner = {"kind": "distributed", "unit": "round", "count": state["round"]}
        own = {k: v for k, v in state.items() if k not in ("format", "round", "seconds", "config")}
        return {**runner, "seconds": state["seconds"], "config": state["config"], "state": own}
    return state


def load_checkpoint(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """A checkpoint of ``save_checkpoint`` (or an earlier schema, upgraded), refused when it is
    not one of a ``kind`` trainer."""
    made_by = "a training job of this version; move it away to retrain"
    state = _upgraded(load_tagged(path, "checkpoint", CHECKPOINT_FORMATS, made_by))
    if state.get("kind") != kind or "count" not in state:
        raise WcganError(
            f"checkpoint '{path}' is not a wcgan checkpoint of this version; move it away to retrain"
        )
    return state
