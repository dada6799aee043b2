"""Data sources: where each data set's label names and images come from.

A source knows its label names cheaply (metadata, folder names, or the config's list), never by
reading images, so the workflow can build its DAG on a machine that has no data. It reads the
images of one label on request; ``wcgan.data`` turns them into a tensor. No torch here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wcgan.config import SUPPORTED_RESOLUTIONS, ConfigSection
from wcgan.errors import WcganError

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
class DataSpec(ConfigSection):
    """Where a data set comes from and how its images are normalised (the config's ``data``)."""

    source: str = "digits"  # a name in SOURCES
    root: str | None = None  # folder the source reads; unused by digits
    labels: tuple[str, ...] | None = None  # explicit label names, in class-index order
    resolution: int | None = None  # None: the data set's own size; N: crop and resize to N x N
    channels: int | None = None  # None: the source's own (digits 1, the others 3)
    download: bool = False  # let torchvision download cifar10/cifar100 into root
    min_images: int = 2  # a label with fewer images is an error

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


def _subfolders(folder: Path, key: str) -> list[str]:
    if not folder.is_dir():
        raise WcganError(f"{key} '{folder}' does not exist or is not a folder")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise WcganError(f"{key} '{folder}' has no class folders (expected one folder per label)")
    return names


def _folder_images(folder: Path) -> Iterator[ImageItem]:
    if not folder.is_dir():
        raise WcganError(f"class folder '{folder}' does not exist")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )
    for path in files:
        yield str(path), lambda p=path: Image.open(p)


def _imagefolder_labels(spec: DataSpec) -> list[str]:
    return _subfolders(spec.root_path(), "data.root")


def _imagefolder_images(spec: DataSpec, name: str) -> Iterator[ImageItem]:
    return _folder_images(spec.root_path() / name)


def _imagenet_train_folder(spec: DataSpec) -> Path:
    train = spec.root_path() / "train"
    if not train.is_dir():
        raise WcganError(
            f"data.root '{spec.root}' has no train/ folder of wnid class folders; unpack the "
            f"ILSVRC2012 archives once with torchvision.datasets.ImageNet('{spec.root}', split='train')"
        )
    return train


def _imagenet_labels(spec: DataSpec) -> list[str]:
    return _subfolders(_imagenet_train_folder(spec), "ImageNet train folder")


def _imagenet_images(spec: DataSpec, name: str) -> Iterator[ImageItem]:
    return _folder_images(_imagenet_train_folder(spec) / name)


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

    return Source(lambda spec: list(classes), images, channels=3)


SOURCES: dict[str, Source] = {
    "digits": Source(_digits_labels, _digits_images, channels=1, reads_root=False),
    "imagefolder": Source(_imagefolder_labels, _imagefolder_images, channels=3),
    "cifar10": _cifar_source("CIFAR10", CIFAR10_CLASSES),
    "cifar100": _cifar_source("CIFAR100", CIFAR100_CLASSES),
    "imagenet1k": Source(_imagenet_labels, _imagenet_images, channels=3),
}


def get_source(spec: DataSpec) -> Source:
    spec.check()
    return SOURCES[spec.source]


def label_names(spec: DataSpec) -> list[str]:
    """The data set's label names in class-index order, without reading any image."""
    source = get_source(spec)
    return list(spec.labels) if spec.labels is not None else source.label_names(spec)


def check_root(spec: DataSpec) -> None:
    """Fail early when the data the run will read is not there (unless torchvision may fetch it)."""
    if get_source(spec).reads_root and not spec.download and not spec.root_path().exists():
        raise WcganError(f"data.root '{spec.root}' does not exist")
