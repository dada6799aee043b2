"""One label's images as a uint8 tensor, and the per-label shard files that hold them.

Size and mode policy (the same for every source):

* Modes are converted: every image becomes ``channels`` channels (1: greyscale ``L``, 3: ``RGB``;
  alpha is dropped, palettes are expanded).
* 16-bit greyscale (Pillow's modes ``I;16*`` from PNG and TIFF, and ``I`` from 16-bit PGM) is
  scaled to 8 bits, value * 255 / 65535 rounded, before that conversion: Pillow's own conversion
  clips at 255 and leaves such images almost white. An ``I`` image with values outside 0..65535
  is not 16-bit and is refused, as are 32-bit images (float ``F``, or integer ``I`` from a TIFF),
  whose range the file does not state.
* Images of more than ``data.max_pixels`` pixels (default 64 million; at most Pillow's own
  limit, 89,478,485) are refused by name before they are decoded: Pillow alone would decode up
  to twice its limit with only a warning.
* Sizes are refused unless asked for: with ``resolution: null`` every image of the data set must
  be square, of one size, and that size must be one the networks support. With ``resolution: N``
  every image is center-cropped to a square and resized to N x N (bicubic).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from wcgan.config import SUPPORTED_RESOLUTIONS
from wcgan.errors import WcganError
from wcgan.labels import Label
from wcgan.sources import DataSpec, get_source, label_names

CONDITIONAL = "conditional"  # the name of the one conditional GAN of a run (its files, seed, logs)


def _center_square(image: Image.Image) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_8_bits(where: str, image: Image.Image) -> Image.Image:
    """A 16-bit greyscale image as 8-bit ``L`` (value * 255 / 65535, rounded); others as they are.
    32-bit images (floats, mode ``F``; integers, mode ``I`` from any file but a 16-bit PGM) are
    refused: nothing in the file says what range their values mean, and Pillow's own conversion
    turned a float TIFF of 0..1 black and an integer one of 0..255 near black."""
    if image.mode == "F" or (image.mode == "I" and image.format != "PPM"):
        kind = "floats" if image.mode == "F" else "integers"
        raise WcganError(
            f"image '{where}' holds 32-bit {kind} (mode {image.mode}), whose range is not known: save it "
            f"with 8 or 16 bits per channel"
        )
    if image.mode not in SIXTEEN_BIT_MODES:
        return image
    values = np.asarray(image)
    if values.min() < 0 or values.max() > 65535:
        raise WcganError(
            f"image '{where}' is mode {image.mode} with values outside 0..65535: not 16-bit greyscale"
        )
    return Image.fromarray(np.rint(values * (255.0 / 65535.0)).astype(np.uint8))


def _check_pixels(where: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise WcganError(
            f"image '{where}' is {width}x{height}, {width * height} pixels, more than "
            f"data.max_pixels {max_pixels}; shrink it or raise data.max_pixels"
        )


def _check_native_size(where: str, size: tuple[int, int], first: tuple[str, tuple[int, int]] | None):
    width, height = size
    if width != height:
        raise WcganError(
            f"image '{where}' is {width}x{height}, not square; set data.resolution to crop and resize"
        )
    if first is not None and first[1] != size:
        raise WcganError(
            f"image '{where}' is {width}x{height} but {first[0]} is {first[1][0]}x{first[1][1]}; "
            f"set data.resolution to resize every image to one size"
        )
    if width not in SUPPORTED_RESOLUTIONS:
        raise WcganError(
            f"image '{where}' is {width}x{height}: resolution {width} is not supported "
            f"({', '.join(map(str, SUPPORTED_RESOLUTIONS))}); set data.resolution to resize"
        )


def load_label_images(spec: DataSpec, name: str, image_size: int | None = None) -> torch.Tensor:
    """All images of label ``name`` as uint8 ``N x C x H x W``, after the size and mode policy;
    with ``data.resolution`` null, each of the size ``image_size`` where it is given (the run's,
    ``sources.native_image_size``), else of its label's first image's size."""
    source = get_source(spec)
    if name not in label_names(spec):
        raise WcganError(f"label '{name}' is not a label of this data set")
    channels = spec.channels or source.channels
    mode = {1: "L", 3: "RGB"}[channels]
    arrays = []
    first = None if image_size is None else ("the run's first image", (image_size, image_size))
    for where, open_image in source.images(spec, name):
        try:
            with warnings.catch_warnings():
                # Opening warns above Pillow's limit; the size check below refuses by name instead.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = open_image()
            with image:
                _check_pixels(where, image.size, spec.max_pixels)
                image.load()  # decode now, so a truncated or corrupt file fails here
                converted = _to_8_bits(where, image).convert(mode)
        except Image.DecompressionBombError as exc:  # over twice Pillow's limit, so over ours
            raise WcganError(
                f"image '{where}' has more than data.max_pixels {spec.max_pixels} pixels"
            ) from exc
        except (OSError, ValueError) as exc:
            raise WcganError(f"image '{where}' cannot be read: {exc}") from exc
        if spec.resolution is None:
            _check_native_size(where, converted.size, first)
            first = first or (f"'{where}'", converted.size)
        elif converted.size != (spec.resolution, spec.resolution):
            converted = _center_square(converted).resize(
                (spec.resolution, spec.resolution), Image.Resampling.BICUBIC
            )
        arrays.append(np.asarray(converted, dtype=np.uint8).reshape(*converted.size[::-1], channels))
    if len(arrays) < spec.min_images:
        found = "no images" if not arrays else f"only {len(arrays)} image"
        raise WcganError(
            f"label '{name}' has {found}; a label needs at least {spec.min_images} to train a GAN"
        )
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


# --- shards ---------------------------------------------------------------------------------


@dataclass
class Shard:
    images: torch.Tensor  # uint8 N x C x H x W
    label: Label
    source: str

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]


def one_image_shape(named_shapes: Iterable[tuple[tuple[int, ...], str]]) -> tuple[int, ...]:
    """The one image shape (C, H, W) of labels given as (shape, label name) pairs, which train
    as one network or are scored as one set; a second shape is refused in one line naming a
    label of each, with the fix."""
    first: tuple[tuple[int, ...], str] | None = None
    for shape, name in named_shapes:
        if first is None:
            first = (shape, name)
        elif shape != first[0]:
            raise WcganError(
                f"label '{name}' has images of shape {shape} but '{first[1]}' has {first[0]}; "
                f"set data.resolution (and data.channels) so every label shares one shape"
            )
    if first is None:
        raise WcganError("no label's images were given")
    return first[0]


def sample_rows(images: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    """At most ``limit`` rows of ``images``, a seeded random subset in file order (all when unset).

    Random rather than the first ``limit``: files sorted by name can be ordered by source.
    """
    if limit is None or len(images) <= limit:
        return images[:]
    rows = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit]
    return images[rows.sort().values]


@dataclass
class TrainingSet:
    """What one GAN trains on: one label's images (a per-label GAN), or the images of several
    labels with each image's class (one conditional GAN for all of them)."""

    images: torch.Tensor  # uint8 N x C x H x W
    labels: list[Label]  # the labels covered; class c of a conditional GAN is labels[c]
    classes: torch.Tensor | None  # int64 class of each image, None for one label's set
    name: str  # names the run's seed, checkpoint and log lines: the label's slug, or CONDITIONAL

    @classmethod
    def of_label(cls, shard: Shard) -> TrainingSet:
        return cls(shard.images, [shard.label], None, shard.label.slug)

    @classmethod
    def of_labels(cls, shards: list[Shard]) -> TrainingSet:
        """Every shard's images, classes numbered in the order given."""
        if not shards:
            raise WcganError("a conditional GAN needs at least one label's shard")
        one_image_shape((tuple(s.images.shape[1:]), s.label.name) for s in shards)
        classes = torch.cat([torch.full((len(s.images),), c) for c, s in enumerate(shards)])
        return cls(torch.cat([s.images for s in shards]), [s.label for s in shards], classes, CONDITIONAL)

    def identity(self, name_key: str = "label") -> dict[str, Any]:
        """Whose GAN it is: one label's index, slug and name (under ``name_key``), or the labels
        of a conditional GAN (class c is ``labels[c]``, each as [index, slug, name])."""
        if self.classes is None:
            label = self.labels[0]
            return {name_key: label.name, "slug": label.slug, "index": label.index}
        return {"slug": self.name, "labels": [[lb.index, lb.slug, lb.name] for lb in self.labels]}

    @property
    def num_classes(self) -> int | None:
        """The conditional GAN's class count; None for one label's GAN."""
        return None if self.classes is None else len(self.labels)

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]
