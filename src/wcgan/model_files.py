"""The files of trained networks: a generator (``wcgan train``) and the classifier that stands in
for Inception-v3 (``wcgan train-classifier``), each with its format tag.

Kept apart from the training loops so that what only reads the files (sampling, scoring) does
not import them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wcgan.atomic import check_tagged, load_tagged, save_torch
from wcgan.config import WEIGHTS
from wcgan.errors import WcganError
from wcgan.networks import Classifier, Generator

if TYPE_CHECKING:
    from wcgan.data import TrainingSet
    from wcgan.runner import TrainResult

GENERATOR_FORMAT = "wcgan-generator-1"
CLASSIFIER_FORMAT = "wcgan-classifier-1"
CLASSIFIER_MADE_BY = "'wcgan train-classifier'"


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
