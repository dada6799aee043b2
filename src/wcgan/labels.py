"""Label names, their file-safe slugs, the chunks of labels that one job handles, and the run's
label table (``labels.tsv``)."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import unicodedata
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from wcgan.atomic import atomic_open, read_checked
from wcgan.errors import WcganError

T = TypeVar("T")

SLUG_PATTERN = r"[a-z0-9][a-z0-9._-]*"
CHUNK_PATTERN = r"c[0-9]+-[0-9]+"
TABLE_COLUMNS = ("index", "slug", "name", "count", "chunk")


def slugify(name: str) -> str:
    """A lower-case ASCII file name for ``name``, stable across runs and machines.

    Accents are folded (``é`` -> ``e``), anything outside ``[a-z0-9._-]`` becomes ``-``. A name
    with nothing ASCII left (``"猫"``) gets ``u`` plus a short hash of its UTF-8 bytes, so it is
    still unique and reproducible. Lower case because some file systems ignore case.
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9._-]+", "-", folded.lower()).strip("-._")
    if not slug:
        slug = "u" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    return slug


@dataclass(frozen=True)
class Label:
    index: int  # position in the run's label list: the class index of the ensemble
    slug: str  # file-safe name used in paths and as the Snakemake wildcard
    name: str  # the data set's own name for the class

    def record(self) -> dict[str, Any]:
        """The label as every file that names one stores it (``from_record`` reads it back)."""
        return {"index": self.index, "slug": self.slug, "name": self.name}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Label:
        return cls(int(record["index"]), record["slug"], record["name"])


def first_repeat(
    items: Iterable[tuple[Hashable, T]], seen: dict[Hashable, T] | None = None
) -> tuple[T, T] | None:
    """Where the first key of ``(key, where)`` items given twice was seen first and again, or
    None: the one check of "a label given twice" (in a label list, a chunk, the merged chunks).
    Every key goes into ``seen``; one dict passed to successive calls checks a stream."""
    seen = {} if seen is None else seen
    for key, where in items:
        if key in seen:
            return seen[key], where
        seen[key] = where
    return None


def make_labels(names: Sequence[str]) -> list[Label]:
    """Index and slug ``names``; two labels that are the same, or share a slug, are an error."""
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise WcganError(f"label #{index} is empty: every label needs a name")
    labels = [Label(index, slugify(name), name) for index, name in enumerate(names)]
    repeat = first_repeat((label.slug, label) for label in labels)
    if repeat is not None:
        first, again = repeat
        what = (
            "is listed twice"
            if first.name == again.name
            else f"and '{first.name}' both become slug '{again.slug}'"
        )
        raise WcganError(f"label '{again.name}' {what}: rename one so every label has its own slug")
    return labels


@dataclass(frozen=True)
class Chunk:
    """Labels that one job splits, trains (as one batched network) and scores together."""

    name: str  # c<first index>-<last index>, zero-padded alike for every chunk of the run
    labels: tuple[Label, ...]


def make_chunks(labels: Sequence[Label], per_job: int) -> list[Chunk]:
    """``labels`` in index order, grouped ``per_job`` at a time (the last chunk may be shorter).

    A chunk's name depends only on its first and last label index and the number of labels, so
    it is the same in every run of the same labels and ``labels_per_job``; runs with another
    ``labels_per_job`` name their chunks differently, and never share a chunk's files."""
    _check_per_job(len(labels), per_job)
    ordered = sorted(labels, key=lambda label: label.index)
    last = ordered[-1].index
    chunks = []
    for start in range(0, len(ordered), per_job):
        members = tuple(ordered[start : start + per_job])
        chunks.append(Chunk(_chunk_name(members[0].index, members[-1].index, last), members))
    return chunks


def _check_per_job(n_labels: int, per_job: int) -> None:
    if isinstance(per_job, bool) or not isinstance(per_job, int):
        raise WcganError(f"labels_per_job must be a whole number, got {per_job!r}")
    if not 1 <= per_job <= n_labels:
        raise WcganError(
            f"labels_per_job must be between 1 and the number of labels ({n_labels}), got {per_job}"
        )


def _chunk_name(first: int, last: int, last_of_run: int) -> str:
    width = max(3, len(str(last_of_run)))
    return f"c{first:0{width}d}-{last:0{width}d}"


def chunk_names(n_labels: int, per_job: int) -> list[str]:
    """The chunk names of a run of ``n_labels`` labels (indices 0 to n_labels - 1) at
    ``labels_per_job``, as ``make_chunks`` names them: a command that reads every chunk is
    given these two numbers, not one folder per chunk, so that its command line stays short at
    any number of labels."""
    _check_per_job(n_labels, per_job)
    return [
        _chunk_name(start, min(start + per_job, n_labels) - 1, n_labels - 1)
        for start in range(0, n_labels, per_job)
    ]


def chunk_folders(root: str | os.PathLike, n_labels: int, per_job: int) -> list[Path]:
    """Every chunk's folder under ``root`` (a run's shards/, samples/, features/, ...)."""
    return [Path(root) / name for name in chunk_names(n_labels, per_job)]


def check_chunk_checkpoints(folder: str | os.PathLike, chunks: Sequence[Chunk]) -> None:
    """Refuse to train when ``folder`` (a run's checkpoints/) holds checkpoints of chunks this run
    does not have: they were made with another ``labels_per_job``, which groups the labels
    otherwise. They are never resumed as this run's; one line says how to use them or set them
    aside, before anything runs."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    names = {chunk.name for chunk in chunks}
    foreign = sorted(
        entry.name
        for entry in folder.iterdir()
        if re.fullmatch(CHUNK_PATTERN, entry.name) and entry.name not in names and any(entry.glob("*.pt"))
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise WcganError(
            f"'{folder}' holds checkpoints of chunks {shown}, made with another labels_per_job; "
            f"set labels_per_job back to resume them, or move '{folder}' away to train with this one"
        )


def write_table(
    labels: Sequence[Label], counts: Sequence[int], chunks: Sequence[Chunk], path: str | os.PathLike
) -> None:
    """Write ``labels.tsv``: index, slug, original name, image count and chunk, one row per label."""
    chunk_of = {label.slug: chunk.name for chunk in chunks for label in chunk.labels}
    with atomic_open(path, "w", checksum=True, newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(TABLE_COLUMNS)
        for label, count in zip(labels, counts, strict=True):
            writer.writerow((label.index, label.slug, label.name, count, chunk_of[label.slug]))


def read_table(path: str | os.PathLike) -> list[tuple[Label, int, str]]:
    """Read ``labels.tsv`` back as ``(Label, image count, chunk name)`` in index order."""
    reader = csv.DictReader(io.StringIO(read_checked(path, "label table"), newline=""), delimiter="\t")
    if tuple(reader.fieldnames or ()) != TABLE_COLUMNS:
        raise WcganError(f"label table '{path}' must have the columns {', '.join(TABLE_COLUMNS)}")
    rows = [(Label(int(r["index"]), r["slug"], r["name"]), int(r["count"]), r["chunk"]) for r in reader]
    return sorted(rows, key=lambda row: row[0].index)


def find_label(labels: Sequence[Label], wanted: str) -> Label:
    """The label whose name or slug is ``wanted``, or a one-line error listing a few choices."""
    for label in labels:
        if wanted in (label.name, label.slug):
            return label
    choices = ", ".join(label.name for label in labels[:10])
    more = ", ..." if len(labels) > 10 else ""
    raise WcganError(f"unknown label '{wanted}' (labels: {choices}{more})")
