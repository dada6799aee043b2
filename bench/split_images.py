"""A split job on real images at size: images per second, peak memory, and where the time goes.

    scripts/unpack-cifar10.sh                       # data/cifar10/train/<class>/*.jpg, 5,000 per label
    python bench/split_images.py --cifar data/cifar10/train [--repeat 3] [--keep /tmp/jpeg256]

Two cases, each one ``wcgan split`` of a chunk of labels (``data.source: imagefolder``):

- ``cifar10``: the CIFAR-10 JPEG tree, 32x32, 5,000 per label, ``data.resolution: null``;
- ``256->64``: generated 256x256 JPEGs (smooth colour fields with noise, quality 90, about the
  bytes per pixel of photographs), 1,300 per label as in ImageNet-1k, ``data.resolution: 64``.

For each case: the split as a child process, ``--repeat`` times (median wall and CPU seconds,
images per second of the whole process, start-up included, and per CPU-second, which other
load on the machine changes less; peak memory is the child's maximum
resident set, from ``os.wait4``), then one split in this process under cProfile, its time
grouped by part (the profiler slows Python code more than the C decoder: shares, not seconds).
Then the data fingerprint that Snakemake computes for each split job when it builds the DAG, and
what decoding JPEGs at a reduced scale (Pillow's ``draft``, the DCT scaling of libjpeg) would
save before the resize to 64, with how far its pixels lie from today's.
"""

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from wcgan.cli import main as wcgan_main
from wcgan.data import _center_square
from wcgan.sources import DataSpec, data_fingerprint

BIN = Path(sys.executable).parent

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--cifar", default="data/cifar10/train", help="the CIFAR-10 tree of class folders")
parser.add_argument("--cifar-labels", type=int, default=2, help="labels of the CIFAR-10 chunk")
parser.add_argument("--generated-labels", type=int, default=3, help="labels of the 256x256 chunk")
parser.add_argument("--per-label", type=int, default=1300, help="generated images per label")
parser.add_argument("--repeat", type=int, default=3, help="timed child runs per case")
parser.add_argument("--keep", help="make (or reuse) the generated images here (default: a scratch folder)")
args = parser.parse_args()

# Part of a split -> the functions whose cumulative time it is, as (file name, function name).
PARTS = {
    "list files": [("sources.py", "_folder_images")],
    "open (JPEG header)": [("PIL/Image.py", "open")],
    "decode": [("PIL/ImageFile.py", "load")],
    "convert mode": [("PIL/Image.py", "convert"), ("data.py", "_to_8_bits")],
    "crop + resize": [("PIL/Image.py", "resize"), ("data.py", "_center_square")],
    "size checks": [("data.py", "_check_pixels"), ("data.py", "_check_native_size")],
    "to array, stack": [
        ("~", "<built-in method numpy.asarray>"),
        ("numpy/core/shape_base.py", "stack"),
        ("~", "<method 'contiguous' of 'torch._C.TensorBase' objects>"),
    ],
    "save shards": [("data.py", "save_shard")],
}


def make_jpegs(root: Path) -> None:
    """``args.generated_labels`` class folders of 256x256 JPEGs, unless ``root`` has them."""
    rng = np.random.default_rng(0)
    for label in range(args.generated_labels):
        folder = root / f"class{label}"
        if folder.is_dir() and len(list(folder.iterdir())) == args.per_label:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(args.per_label):
            field = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
                (256, 256), Image.BICUBIC
            )
            pixels = np.clip(np.asarray(field, float) + rng.normal(0, 8, (256, 256, 3)), 0, 255).astype(
                np.uint8
            )
            Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def split_command(tree: Path, names: list[str], resolution: int | None, out: Path) -> list[str]:
    sized = ["--resolution", str(resolution)] if resolution else []
    return [
        "split",
        "--source",
        "imagefolder",
        "--root",
        str(tree),
        *sized,
        "--out-dir",
        str(out),
        "--",
        *names,
    ]


def timed_child(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak resident MB of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"{' '.join(command)} failed: {child.stderr.read().decode()[-2000:]}")
    child.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def profile_parts(command: list[str]) -> tuple[float, dict[str, float]]:
    """Seconds of one split in this process under cProfile, and each part's share of them."""
    profile = cProfile.Profile()
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # its lines per label
        code = profile.runcall(wcgan_main, command)
    if code != 0:
        sys.exit(f"wcgan {' '.join(command)} failed")
    total = time.perf_counter() - start
    stats = pstats.Stats(profile).stats
    shares = {}
    for part, functions in PARTS.items():
        seconds = sum(
            cumulative
            for (filename, _, function), (_, _, _, cumulative, _) in stats.items()
            for suffix, name in functions
            if function == name and filename.endswith(suffix)
        )
        shares[part] = seconds / total
    shares["other"] = 1 - sum(shares.values())
    return total, shares


def decode_resize(path: Path, resolution: int, draft: bool) -> np.ndarray:
    """Today's decode, crop and bicubic resize of one image; with ``draft``, libjpeg decodes at
    the smallest scale (1/2, 1/4, 1/8) that keeps it at least ``resolution`` pixels wide first."""
    with Image.open(path) as image:
        if draft:
            image.draft("RGB", (resolution, resolution))
        image = image.convert("RGB")
        if image.size != (resolution, resolution):
            image = _center_square(image).resize((resolution, resolution), Image.Resampling.BICUBIC)
        return np.asarray(image)


def draft_potential(folder: Path, resolution: int) -> None:
    paths = sorted(folder.iterdir())
    seconds = {False: [], True: []}
    for _ in range(3):  # alternated, so a change in the machine's speed hits both alike
        for draft in (False, True):
            start = time.perf_counter()
            for path in paths:
                decode_resize(path, resolution, draft)
            seconds[draft].append(time.perf_counter() - start)
    today, drafted = (statistics.median(seconds[d]) for d in (False, True))
    differences = np.concatenate(
        [
            np.abs(
                decode_resize(p, resolution, False).astype(int) - decode_resize(p, resolution, True)
            ).ravel()
            for p in paths[:200]
        ]
    )
    print(
        f"decode + resize of {len(paths)} 256x256 JPEGs to {resolution}: {len(paths) / today:.0f} images/s today, "
        f"{len(paths) / drafted:.0f} with draft ({today / drafted:.1f}x); its pixels differ from today's: "
        f"max {differences.max()}, mean {differences.mean():.2f} of 255, {np.mean(differences > 0):.0%} of values"
    )


def run(generated: Path, scratch: Path) -> None:
    cifar = Path(args.cifar)
    if not cifar.is_dir():
        sys.exit(f"--cifar '{cifar}' is not a folder; unpack it with scripts/unpack-cifar10.sh")
    make_jpegs(generated)
    cases = {
        "cifar10": (cifar, sorted(p.name for p in cifar.iterdir())[: args.cifar_labels], None),
        "256->64": (generated, [f"class{i}" for i in range(args.generated_labels)], 64),
    }
    print(
        f"{'case':8} {'labels':>6} {'images':>7} {'wall s':>7} {'CPU s':>6} {'images/s':>9} {'/CPU-s':>7} {'peak MB':>8}"
    )
    profiles = {}
    for case, (tree, names, resolution) in cases.items():
        images = sum(len(list((tree / name).iterdir())) for name in names)
        command = split_command(tree, names, resolution, scratch / case)
        runs = [timed_child([str(BIN / "wcgan"), *command]) for _ in range(args.repeat)]
        wall, cpu, peak = (statistics.median(values) for values in zip(*runs, strict=True))
        print(
            f"{case:8} {len(names):>6} {images:>7} {wall:>7.1f} {cpu:>6.1f} {images / wall:>9.0f} {images / cpu:>7.0f} {peak:>8.0f}"
        )
        profiles[case] = profile_parts(command)
    print("\nwhere a split's time goes (cProfile, in process, start-up excluded):")
    print(f"{'part':20}" + "".join(f"{case:>10}" for case in cases))
    for part in [*PARTS, "other"]:
        print(f"{part:20}" + "".join(f"{profiles[case][1][part]:>10.0%}" for case in cases))
    print(f"{'seconds (profiled)':20}" + "".join(f"{profiles[case][0]:>10.1f}" for case in cases))
    for case, (tree, names, _) in cases.items():
        spec = DataSpec(source="imagefolder", root=str(tree))
        start = time.perf_counter()
        data_fingerprint(spec, names)
        print(
            f"data fingerprint of the {case} chunk (once per split job, at DAG time): {time.perf_counter() - start:.4f} s"
        )
    draft_potential(generated / "class0", 64)


with tempfile.TemporaryDirectory() as scratch:
    run(Path(args.keep) if args.keep else Path(scratch) / "jpeg256", Path(scratch))
