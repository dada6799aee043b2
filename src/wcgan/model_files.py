"""The files of trained networks: a generator (``wcgan train``) and the classifier that stands in
for Inception-v3 (``wcgan train-classifier``), each with its format tag.

Kept apart from the training loops so that what only reads the files (sampling, scoring) does
not import them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wcgan.atomic import load_torch, save_torch
from wcgan.errors import WcganError
from wcgan.networks import Classifier, Generator

if TYPE_CHECKING:
    from wcgan.data import TrainingSet
    from wcgan.runner import TrainResult

GENERATOR_FORMAT = "wcgan-generator-1"
CLASSIFIER_FORMAT = "wcgan-classifier-1"


def save_generator(result: TrainResult, data: TrainingSet, path: str | Path) -> None:
    """The trained generator with what sampling needs: architecture, label(s), how it was trained."""
    save_torch(
        {
            "format": GENERATOR_FORMAT,
            "hparams": result.generator.hparams,
            "state": result.generator.state_dict(),
            **data.identity("name"),
            "iterations": result.summary["iterations"],
            "seconds": result.summary["seconds"],
            "loss": result.summary["loss"],
        },
        path,
    )


def load_generator(path: str | Path) -> tuple[Generator, dict[str, Any]]:
    """Rebuild a saved generator in eval mode; returns it and the file's metadata."""
    data = load_torch(path, "generator")
    if not isinstance(data, dict) or data.get("format") != GENERATOR_FORMAT:
        raise WcganError(f"generator '{path}' is not a wcgan generator (made by 'wcgan train')")
    generator = Generator(**data["hparams"])
    generator.load_state_dict(data["state"])
    meta = {k: v for k, v in data.items() if k not in ("state", "format")}
    return generator.eval(), meta


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
    return classifier_from_file_data(load_torch(path, "classifier"), path)


def classifier_from_file_data(data: Any, path: str | Path) -> Classifier:
    """The classifier that ``save_classifier`` wrote to ``path``, from the file's loaded contents."""
    if not isinstance(data, dict) or data.get("format") != CLASSIFIER_FORMAT:
        raise WcganError(f"classifier '{path}' is not a wcgan classifier (made by 'wcgan train-classifier')")
    model = Classifier(**data["hparams"])
    model.load_state_dict(data["state"])
    return model.eval()
