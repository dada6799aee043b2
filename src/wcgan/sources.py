"""Data sources: where each data set's label names and images come from.

A source knows its label names cheaply (metadata, folder names, or the config's list), never by
reading images, so the workflow can build its DAG on a machine that has no data. It reads the
images of one label on request; ``wcgan.data`` turns them into a tensor. No torch here.

Class-per-folder trees (imagefolder, imagenet1k) follow one rule for hidden entries and
symbolic links, under which each file counts once (see the comment above ``_class_folders``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wcgan.config import SUPPORTED_RESOLUTIONS, ConfigSection, options_from_schema
from wcgan.errors import WcganError

# Pillow's default limit: it warns of a decompression bomb above it and refuses twice as much.
PILLOW_MAX_PIXELS = 89_478_485
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
    "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
    "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip


@dataclass(frozen=True)
@options_from_schema("data")
class DataSpec(ConfigSection):
    """Where a data set comes from and how its images are normalised (the config's ``data``)."""

    source: str
    root: str | None
    labels: tuple[str, ...] | None
    resolution: int | None
    channels: int | None
    download: bool
    min_images: int
    max_pixels: int

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], key: str = "data") -> DataSpec:
        return super().from_mapping(values, key)

    def check(self, key: str = "data") -> None:
        if self.source not in SOURCES:
            raise WcganError(f"{key}.source '{self.source}' is unknown (known: {', '.join(SOURCES)})")
        if self.resolution is not None and self.resolution not in SUPPORTED_RESOLUTIONS:
            supported = ", ".join(map(str, SUPPORTED_RESOLUTIONS))
            raise WcganError(f"{key}.resolution {self.resolution} is not supported ({supported})")
        if self.channels not in (None, 1, 3):
            raise WcganError(f"{key}.channels must be 1 or 3, got {self.channels}")
        if self.min_images < 2:
            raise WcganError(f"{key}.min_images must be 2 or more, got {self.min_images}")
        if not 1 <= self.max_pixels <= PILLOW_MAX_PIXELS:
            raise WcganError(
                f"{key}.max_pixels must be between 1 and {PILLOW_MAX_PIXELS} (past that Pillow "
                f"suspects a decompression bomb), got {self.max_pixels}"
            )

    def root_path(self) -> Path:
        if not self.root:
            raise WcganError(f"data.root is required for source '{self.source}'")
        return Path(self.root).expanduser()


ImageItem = tuple[str, Callable[[], Image.Image]]  # (name shown in errors, opener)


@dataclass(frozen=True)
class Source:
    label_names: Callable[[DataSpec], list[str]]  # cheap: never reads images
    images: Callable[[DataSpec, str], Iterator[ImageItem]]  # one label's images
    channels: int  # channels when the spec gives none
    resolution: int | None = None  # its images' own size when they all share one (memory requests)
    reads_root: bool = True  # whether data.root must exist (digits ships inside scikit-learn)


# --- digits: scikit-learn's bundled 8x8 set, the embedded default ------------------------------


def _digits_labels(spec: DataSpec) -> list[str]:
    return [str(digit) for digit in range(10)]


# Sources stored as one file are read once per process, not once per label: a split job reads
# the file once for all the labels of its chunk.
@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; spread them over 0..255.
    return np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8), digits.target


def _digits_images(spec: DataSpec, name: str) -> Iterator[ImageItem]:
    pixels, targets = _digits_arrays()
    for row in np.flatnonzero(targets == int(name)):
        yield f"digits[{row}]", lambda a=pixels[row]: Image.fromarray(a)


# --- class-per-folder trees: user data, the CIFAR-10 JPEG tree, ImageNet's train/ -------------
#
# The tree is the folder that holds one folder per class (data.root, or its train/ for
# imagenet1k); a class's images are the files with an image extension anywhere under its folder.
# One rule for what is read, and each file is counted once:
#
# * Hidden entries, whose name starts with '.' (.git, .DS_Store, ._x.png), are skipped at every
#   level. A name made only of dots ('...') is not hidden: '.' and '..' never appear in a listing.
# * Symbolic links are followed to their real paths. A link that leads outside the tree, or
#   back to a folder that holds it (a loop, such as 'alias -> .'), is an error naming the link; a
#   dangling link is skipped.
# * A file reached twice (two links, or a link into another class's folder) counts once, in the
#   class whose real folder holds it. A class folder whose real folder is, holds or lies in
#   another class's is skipped; a real folder wins over a link, then the first name in order.
#
# Whatever is skipped is said in one line on stderr per tree or class.


def _is_hidden(name: str) -> bool:
    return name.startswith(".") and name.strip(".") != ""


def _say_skipped(where: str, skipped: list[tuple[str, str]]) -> None:
    """One stderr line: each reason with its count and the first few (reason, name) pairs."""
    by_reason: dict[str, list[str]] = {}
    for reason, name in skipped:
        by_reason.setdefault(reason, []).append(repr(name))
    parts = [
        f"{len(names)} {reason} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        for reason, names in by_reason.items()
    ]
    if parts:
        _say_once(f"wcgan: {where}: skipped {'; '.join(parts)}")


@functools.cache
def _say_once(line: str) -> None:
    # Once per process: a split lists the tree for its label names and again for the images.
    print(line, file=sys.stderr, flush=True)


def _follow(path: Path, tree: Path, holders: tuple[Path, ...]) -> Path | None:
    """The real path of ``path`` (a link or not), None for a dangling link; an error for a link
    that leaves ``tree`` or leads back to one of ``holders``, the real folders that hold it, the
    last of them ``path``'s own folder's."""
    if not path.is_symlink():
        # Its folder's real path and its name: resolving each of a class's thousands of files
        # again (a system call per part of the path) took a third of a CIFAR-10 split.
        return holders[-1] / path.name
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        return None
    except (RuntimeError, OSError) as exc:  # a loop of links: RuntimeError before Python 3.13
        raise WcganError(f"link '{path}' cannot be followed: it loops ({exc})") from exc
    if not real.is_relative_to(tree):
        raise WcganError(f"link '{path}' leads to '{real}', outside the data folder '{tree}'")
    if any(holder.is_relative_to(real) for holder in holders):
        raise WcganError(f"link '{path}' leads back to '{real}', a folder that holds it: it loops")
    return real


def _class_folders(tree: Path, key: str) -> dict[str, Path]:
    """Class name -> real folder, in name order, after the tree's rule (above)."""
    if not tree.is_dir():
        raise WcganError(f"{key} '{tree}' does not exist or is not a folder")
    # Listed once per process while the tree is unchanged: a split job asks for each of its
    # K labels, and a changed tree (a folder added or removed) changes the tree's time.
    return _listed_class_folders(tree, key, tree.stat().st_mtime_ns)


@functools.cache
def _listed_class_folders(tree: Path, key: str, mtime_ns: int) -> dict[str, Path]:
    real_tree = tree.resolve()
    candidates, skipped = [], []  # skipped: (reason, name)
    for path in sorted(tree.iterdir()):
        if _is_hidden(path.name):
            skipped.append(("hidden", path.name))
            continue
        real = _follow(path, real_tree, (real_tree,))
        if real is None:
            skipped.append(("dangling links", path.name))
        elif real.is_dir():
            candidates.append((path.is_symlink(), path.name, real))
    folders: dict[str, Path] = {}
    # Kept folders, and every folder above one, by the class kept there: a candidate overlaps a
    # kept class when it lies inside one or holds one. Lookups by path, not a scan of the kept
    # classes per candidate, which took seconds at 1,000 classes.
    owner_of: dict[Path, str] = {}
    above: dict[Path, str] = {}
    for _, name, real in sorted(candidates):  # real folders first, then links, each in name order
        overlap = above.get(real) or next(
            (owner_of[folder] for folder in (real, *real.parents) if folder in owner_of), None
        )
        if overlap is None:
            folders[name] = real
            owner_of[real] = name
            for parent in real.parents:
                above.setdefault(parent, name)
        else:
            skipped.append((f"links to files of class '{overlap}' (counted there)", name))
    _say_skipped(f"{key} '{tree}'", skipped)
    if not folders:
        raise WcganError(f"{key} '{tree}' has no class folders (expected one folder per label)")
    return dict(sorted(folders.items()))


def _folder_images(tree: Path, name: str, key: str) -> Iterator[ImageItem]:
    folders = _class_folders(tree, key)
    if name not in folders:
        raise WcganError(f"class folder '{tree / name}' does not exist")
    real_tree = tree.resolve()
    own = folders[name]  # class folders never overlap: a file in it is no other class's
    others = {other: folder for other, folder in folders.items() if other != name}
    found: dict[Path, Path] = {}  # real path -> the path it was reached by
    skipped: list[tuple[str, str]] = []  # (reason, path under the class folder)
    top = tree / name

    def visit(folder: Path, holders: tuple[Path, ...]) -> None:
        # scandir's entries know their type (a link's target's) without another system call.
        for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
            path = Path(entry.path)
            if _is_hidden(path.name):
                skipped.append(("hidden", path))
                continue
            real = _follow(path, real_tree, holders)
            if real is None:
                skipped.append(("dangling links", path))
            elif entry.is_dir():
                visit(path, (*holders, real))
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append(("without an image extension", path))
            elif not entry.is_file():  # opening a FIFO would wait for a writer forever
                skipped.append(("not regular files (a FIFO, socket or device)", path))
            elif not real.is_relative_to(own) and (
                owner := next((o for o, f in others.items() if real.is_relative_to(f)), None)
            ):
                skipped.append((f"files of class '{owner}' (counted there)", path))
            elif real in found:
                skipped.append(("files reached twice (counted once)", path))
            else:
                found[real] = path

    visit(top, (real_tree, own))
    # Named under the class folder only here, for the few skipped: not for each of thousands.
    _say_skipped(f"class '{name}'", [(reason, str(path.relative_to(top))) for reason, path in skipped])
    for path in sorted(found.values()):
        yield str(path), lambda p=path: Image.open(p)


def _imagefolder_labels(spec: DataSpec) -> list[str]:
    return list(_class_folders(spec.root_path(), "data.root"))


def _imagefolder_images(spec: DataSpec, name: str) -> Iterator[ImageItem]:
    return _folder_images(spec.root_path(), name, "data.root")


def _imagenet_train_folder(spec: DataSpec) -> Path:
    train = spec.root_path() / "train"
    if not train.is_dir():
        raise WcganError(
            f"data.root '{spec.root}' has no train/ folder of wnid class folders; unpack the "
            f"ILSVRC2012 archives once with torchvision.datasets.ImageNet('{spec.root}', split='train')"
        )
    return train


def _imagenet_labels(spec: DataSpec) -> list[str]:
    return list(_class_folders(_imagenet_train_folder(spec), "ImageNet train folder"))


def _imagenet_images(spec: DataSpec, name: str) -> Iterator[ImageItem]:
    return _folder_images(_imagenet_train_folder(spec), name, "ImageNet train folder")


# --- torchvision's CIFAR readers ------------------------------------------------------------


def _cifar_source(dataset_name: str, classes: Sequence[str]) -> Source:
    @functools.cache  # once per process (see _digits_arrays)
    def read(root: Path, download: bool) -> Any:
        import torchvision

        reader = getattr(torchvision.datasets, dataset_name)
        return reader(root=str(root), train=True, download=download)

    def images(spec: DataSpec, name: str) -> Iterator[ImageItem]:
        root = spec.root_path()
        try:
            dataset = read(root, spec.download)
        except RuntimeError as exc:
            raise WcganError(
                f"data.root '{root}' holds no {dataset_name} training files ({exc}); point "
                f"data.root at them or set data.download: true"
            ) from exc
        if tuple(dataset.classes) != tuple(classes):
            raise WcganError(f"data.root '{root}': {dataset_name} class list differs from the known one")
        target = classes.index(name)
        for row in np.flatnonzero(np.asarray(dataset.targets) == target):
            yield f"{dataset_name}[{row}]", lambda a=dataset.data[row]: Image.fromarray(a)

    return Source(lambda spec: list(classes), images, channels=3, resolution=32)


SOURCES: dict[str, Source] = {
    "digits": Source(_digits_labels, _digits_images, channels=1, resolution=8, reads_root=False),
    "imagefolder": Source(_imagefolder_labels, _imagefolder_images, channels=3),
    "cifar10": _cifar_source("CIFAR10", CIFAR10_CLASSES),
    "cifar100": _cifar_source("CIFAR100", CIFAR100_CLASSES),
    "imagenet1k": Source(_imagenet_labels, _imagenet_images, channels=3),
}


def get_source(spec: DataSpec) -> Source:
    spec.check()
    return SOURCES[spec.source]


def native_image_size(spec: DataSpec, name: str) -> int | None:
    """With ``data.resolution`` null, the size every image of the run must have: the source's
    own, or that of the first image of label ``name`` (the run's first), read from its header.
    None where that image cannot be read here (a dry run without the data, a broken file: its
    label's split says why) or is not square. Known before any split, it lets each split job
    refuse a label of another size on its own, so one bad label stops only its chunk."""
    source = get_source(spec)
    if spec.resolution is not None or source.resolution is not None:
        return spec.resolution or source.resolution
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the label's split names what it skips
            _, open_image = next(iter(source.images(spec, name)))
            with warnings.catch_warnings(), open_image() as image:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                width, height = image.size
    except (WcganError, OSError, ValueError, StopIteration, Image.DecompressionBombError):
        return None
    return width if width == height else None


def label_names(spec: DataSpec) -> list[str]:
    """The data set's label names in class-index order, without reading any image: those
    ``data.labels`` lists, each of which the data set must hold where its files are here to
    ask (a dry run on a login node without the data plans from the list alone)."""
    source = get_source(spec)
    if spec.labels is None:
        return source.label_names(spec)
    if not source.reads_root or spec.root_path().is_dir():
        held = set(source.label_names(spec))
        missing = next((name for name in spec.labels if name not in held), None)
        if missing is not None:
            where = f"data.root '{spec.root}'" if source.reads_root else f"data.source {spec.source}"
            raise WcganError(f"data.labels lists '{missing}', a label {where} does not hold")
    return list(spec.labels)


def data_fingerprint(spec: DataSpec, names: Sequence[str]) -> str:
    """A cheap digest that changes when the image files of labels ``names`` are added, removed
    or renamed: the modification times of their class folders and every folder below them (a
    folder's time changes with its list of files), or of a single-file source's files. It does
    not read or stat each image, so it stays cheap at ImageNet scale (a few thousand folders);
    an image rewritten in place under the same name is not noticed (touch its folder), and a
    hidden file added to a class folder counts as a change. Empty when the data is not there (a
    dry run without data) or ships in a package (digits)."""
    source = get_source(spec)
    if not source.reads_root or not spec.root_path().is_dir():
        return ""
    root = spec.root_path()
    if source.images in (_imagefolder_images, _imagenet_images):
        tree = root / "train" if source.images is _imagenet_images else root
        tops, with_files = [tree / name for name in names], False
    else:
        tops, with_files = [root], True
    digest = hashlib.sha256()
    for top in tops:
        for folder, subfolders, files in os.walk(top):  # links are not followed: no loop
            if with_files and folder != str(top):
                subfolders.clear()  # a data file's folder (cifar-10-batches-py), not below it
            stat = os.stat(folder)
            digest.update(f"{folder}\0{stat.st_mtime_ns}\0".encode())
            for name in files if with_files else ():
                stat = os.stat(os.path.join(folder, name))
                digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def check_root(spec: DataSpec) -> None:
    """Fail early when the data the run will read is not there (unless torchvision may fetch it)."""
    if get_source(spec).reads_root and not spec.download and not spec.root_path().exists():
        raise WcganError(f"data.root '{spec.root}' does not exist")
