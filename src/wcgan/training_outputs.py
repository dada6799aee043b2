"""What a training job writes (``wcgan train``, ``wcgan train-distributed``): per GAN its
generator, losses and summary, per label its samples and snapshot samples. One object names every
file, from the files or folders the command was given, and writes them
([Training](../../docs/training.md)).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wcgan.errors import WcganError
from wcgan.labels import Label, chunk_names
from wcgan.layout import TRAINED_SUFFIXES

# Each output's file suffix, the run folder's (whose folder of summaries is "training"): one given
# as a folder, not such a file, holds a file per label (``<slug><suffix>``), in its chunk's folder
# when the command has ``--chunks``.
SUFFIXES = {
    name: TRAINED_SUFFIXES["training" if name == "summaries" else name]
    for name in ("models", "losses", "summaries", "samples", "snapshots")
}
OPTIONS = {"models": "--model-out", "losses": "--losses-out", "summaries": "--summary-out",
           "samples": "--samples-out", "snapshots": "--snapshots-out"}  # fmt: skip


def label_folders(labels: Sequence[Label], chunks: tuple[int, int] | None) -> list[str]:
    """Each label's folder under an output root: its chunk's (``chunks``: the run's number of
    labels and labels per job), else the root itself."""
    if chunks is None:
        return [""] * len(labels)
    n_labels, per_job = chunks
    names = chunk_names(n_labels, per_job)
    outside = next((label for label in labels if not 0 <= label.index < n_labels), None)
    if outside is not None:
        raise WcganError(
            f"label '{outside.name}' has index {outside.index}, but --chunks {n_labels} {per_job} "
            f"names labels 0 to {n_labels - 1}"
        )
    return [names[label.index // per_job] for label in labels]


def check_outputs(
    given: Mapping[str, Sequence[str] | None], gans: int, labels: int, generator: str, snapshots: int
) -> None:
    """The outputs as given (``SUFFIXES``' names to paths) name one file per GAN of each per-GAN
    output and one per label of the samples and snapshot samples (a folder: one per label), and
    snapshot samples wherever the config asks for snapshots."""

    def count(name: str) -> int:
        paths = given[name]
        return labels if len(paths) == 1 and not paths[0].endswith(SUFFIXES[name]) else len(paths)

    for name in ("models", "losses", "summaries"):
        if given.get(name) and count(name) != gans:
            per = "one per --shard" if gans > 1 else f"one for train.generator {generator}"
            raise WcganError(f"{OPTIONS[name]} names {count(name)} files; it needs {gans}: {per}")
    for name in ("samples", "snapshots"):
        if given.get(name) and count(name) != labels:
            raise WcganError(f"{OPTIONS[name]} names {count(name)} files for {labels} shards")
    if snapshots and not given.get("snapshots"):
        raise WcganError(f"train.snapshots is {snapshots}: give --snapshots-out for their samples")


@dataclass(frozen=True)
class TrainingOutputs:
    """The files of a training job: ``models``, ``losses`` and ``summaries`` one per GAN,
    ``samples`` and ``snapshots`` one per label (``None``: not written)."""

    models: list[str]
    losses: list[str]
    summaries: list[str]
    samples: list[str] | None
    snapshots: list[str] | None

    @classmethod
    def of(
        cls,
        given: Mapping[str, Sequence[str] | None],
        labels: Sequence[Label],
        chunks: tuple[int, int] | None,
    ) -> TrainingOutputs:
        """The outputs as given (``SUFFIXES``' names to the paths of their options), where one
        folder stands for a file per label in it, in label order."""
        folders = label_folders(labels, chunks)

        def files(name: str) -> list[str] | None:
            paths = given.get(name)
            if paths and len(paths) == 1 and not paths[0].endswith(SUFFIXES[name]):
                return [
                    str(Path(paths[0], folder, f"{label.slug}{SUFFIXES[name]}"))
                    for label, folder in zip(labels, folders, strict=True)
                ]
            return list(paths) if paths else None

        return cls(**{name: files(name) for name in SUFFIXES})

    def write(
        self,
        results: Sequence,
        sets: Sequence,
        samples: int,
        samples_seed: int,
        started_at: float,
        weights: str = "ema",
    ) -> None:
        """Per GAN: generator, losses, samples of each of its labels (from its ``weights``:
        ``wcgan.config.WEIGHTS``) and their snapshot samples, and the summary with where the job's
        time went (for the weak-scaling split, wcgan.scaling)."""
        from wcgan.atomic import remove_stale_temporaries, write_json
        from wcgan.files import save_generator, save_losses, save_samples, save_snapshot_samples
        from wcgan.sampling import sample_labels, snapshot_samples

        trained = time.monotonic()
        # A job killed while it wrote these files left their temporaries: this is where they go.
        outputs = [
            *self.models,
            *self.losses,
            *self.summaries,
            *(self.samples or []),
            *(self.snapshots or []),
        ]
        remove_stale_temporaries(*outputs)
        samples_out = iter(self.samples or [])
        snapshots_out = iter(self.snapshots or [])
        for k, (result, data) in enumerate(zip(results, sets, strict=True)):
            save_generator(result, data, self.models[k])
            save_losses(result.history, self.losses[k])
            averaged = weights == "ema" and result.generator_ema is not None
            if self.samples:
                drawn = result.generator_ema if averaged else result.generator
                images = sample_labels(drawn, data.labels, samples, samples_seed)
                for label_images, label in zip(images, data.labels, strict=True):
                    save_samples(label_images, label, next(samples_out))
            if self.snapshots:
                generator = copy.deepcopy(result.generator)
                per_label = snapshot_samples(result.snapshots, generator, data.labels, samples, samples_seed)
                # Named by their generator's file: the curve counts a generator's budget once,
                # however many labels' files it drew.
                source = {"generator": self.models[k]}
                for points in per_label:
                    save_snapshot_samples([point | source for point in points], next(snapshots_out))
            summary: dict[str, Any] = result.summary
            summary["samples_weights"] = "ema" if averaged else "raw"
            loop = summary["session_seconds"]
            checkpoint = summary.get("phase_seconds", {}).get("checkpoint", 0.0)
            summary["job"] = {
                "started_at": started_at,
                "finished_at": time.time(),
                "training_seconds": loop - checkpoint,
                "checkpoint_seconds": checkpoint,
                "shutdown_seconds": time.monotonic() - trained,
            }
            write_json(summary, self.summaries[k])
