"""Where a run's files live: one object names every path under ``results/<run>/``, for the
workflow's rules and for the commands that read a run's folder
([Configuration and layout](../../docs/layout.md#the-run-folder)).

A path may hold Snakemake's wildcards (``CHUNK``, the default chunk): a rule declares the
pattern, a command is given it filled in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CHUNK = "{chunk}"  # Snakemake's wildcard of a chunk's name (wcgan.labels.chunk_names)
# The files a training job writes per GAN (or per label: samples), by kind.
TRAINED_SUFFIXES = {
    "models": ".pt",
    "losses": ".csv",
    "training": ".json",
    "snapshots": ".pt",
    "samples": ".pt",
}


@dataclass(frozen=True)
class RunLayout:
    """The folder ``root`` of a run whose training jobs are a chunk of per-label GANs each
    (``generator`` per_label) or the one job of a conditional or distributed GAN."""

    root: str
    generator: str = "per_label"

    @classmethod
    def of(cls, run: str, generator: str = "per_label") -> RunLayout:
        return cls(f"results/{run}", generator)

    @classmethod
    def of_config(cls, config: Mapping[str, Any]) -> RunLayout:
        """The layout of the run a workflow config (or a nested run's config file) describes."""
        return cls.of(config["run"], config["train"]["generator"])

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    @property
    def per_label(self) -> bool:
        return self.generator == "per_label"

    @property
    def training_job(self) -> str:
        """A training job's name: its chunk's, or the one generator's."""
        return CHUNK if self.per_label else self.generator

    # --- per chunk: the split, the samples, the features --------------------------------

    def chunks(self, kind: str, chunk: str = CHUNK) -> str:
        """A chunk's folder of ``kind`` (shards, samples, and a per-label run's models, losses,
        training summaries and snapshots): ``<root>/<kind>/<chunk>``."""
        return self.path(kind, chunk)

    def chunk_file(self, kind: str, chunk: str, slug: str) -> str:
        """A label's file in its chunk's folder of ``kind``."""
        return self.path(kind, chunk, f"{slug}{TRAINED_SUFFIXES.get(kind, '.pt')}")

    def features(self, chunk: str = CHUNK) -> str:
        return self.path("features", f"{chunk}.pt")

    # --- the training jobs ---------------------------------------------------------------

    def trained(self, kind: str, chunk: str = CHUNK) -> str:
        """A training job's output of ``kind`` (``TRAINED_SUFFIXES`` but samples): a chunk's
        folder of per-label files, or the one generator's file."""
        if self.per_label:
            return self.chunks(kind, chunk)
        return self.path(kind, f"{self.generator}{TRAINED_SUFFIXES[kind]}")

    def trained_file(self, kind: str, chunk: str, slug: str) -> str:
        """A label's output of ``kind``: its own file, or the one generator's."""
        return self.chunk_file(kind, chunk, slug) if self.per_label else self.trained(kind)

    def checkpoints(self, job: str | None = None) -> str:
        """A training job's checkpoint folder (outside every declared output); ``job`` None:
        the root of them all."""
        return self.path("checkpoints") if job is None else self.path("checkpoints", job)

    # --- the run's tables, scores, logs and figures -------------------------------------

    @property
    def labels_table(self) -> str:
        return self.path("labels.tsv")

    @property
    def classifier(self) -> str:
        return self.path("classifier", "classifier.pt")

    def scores(self, name: str) -> str:
        return self.path("scores", name)

    def figure(self, name: str) -> str:
        return self.path("figures", name)

    def log(self, name: str) -> str:
        """``<root>/logs/<name>.log``; ``name`` may hold folders (``train/{chunk}``)."""
        return self.path("logs", f"{name}.log")

    def benchmark(self, name: str) -> str:
        """Snakemake's ``benchmark:`` file of a job, ``<root>/benchmarks/<name>.tsv``."""
        return self.path("benchmarks", f"{name}.tsv")

    # --- runs nested in this one ---------------------------------------------------------

    def compare(self, *parts: str) -> str:
        """``<root>/compare/...``: the compare target's variants and tables."""
        return self.path("compare", *parts)
