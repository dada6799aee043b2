import os
import re
import signal
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import save_png
from wcgan.atomic import load_torch
from wcgan.data import Shard, load_label_images
from wcgan.errors import WcganError
from wcgan.files import load_shard, save_shard
from wcgan.labels import Label
from wcgan.sources import CIFAR100_CLASSES, DataSpec, label_names


def test_digits_labels_without_reading_images():
    assert label_names(DataSpec()) == [str(d) for d in range(10)]


def test_digits_label_images_are_uint8_8x8_greyscale():
    images = load_label_images(DataSpec(), "0")
    assert images.dtype == torch.uint8
    assert images.shape == (178, 1, 8, 8)  # scikit-learn's digits have 178 zeros
    assert images.max() == 255  # 0..16 spread over 0..255


def test_imagefolder_labels_are_folder_names(image_tree):
    assert label_names(DataSpec("imagefolder", str(image_tree))) == ["Café", "red car", "x+y"]


def test_config_labels_win_and_need_no_data(tmp_path):
    spec = DataSpec("imagefolder", str(tmp_path / "absent"), labels=("a", "b"))
    assert label_names(spec) == ["a", "b"]


def test_imagefolder_images_keep_their_size_and_channels(image_tree):
    images = load_label_images(DataSpec("imagefolder", str(image_tree)), "red car")
    assert images.shape == (4, 3, 8, 8)


def test_modes_are_converted(image_tree):
    save_png(image_tree / "red car" / "grey.png", mode="L")
    save_png(image_tree / "red car" / "alpha.png", mode="RGBA")
    assert load_label_images(DataSpec("imagefolder", str(image_tree)), "red car").shape == (6, 3, 8, 8)
    grey = load_label_images(DataSpec("imagefolder", str(image_tree), channels=1), "red car")
    assert grey.shape == (6, 1, 8, 8)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".pgm"])  # Pillow modes I;16, I;16, I
def test_16_bit_greyscale_is_scaled_to_8_bits_not_clipped(tmp_path, suffix):
    values = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)
    (tmp_path / "deep").mkdir()
    for i in range(2):
        Image.fromarray(values).save(tmp_path / "deep" / f"{i}{suffix}")
    expected = torch.from_numpy(np.rint(values * (255 / 65535)).astype(np.uint8))
    grey = load_label_images(DataSpec("imagefolder", str(tmp_path), channels=1), "deep")
    assert torch.equal(grey[0, 0], expected)  # a full 0..255 ramp, not 99.9% white
    rgb = load_label_images(DataSpec("imagefolder", str(tmp_path)), "deep")
    assert all(torch.equal(rgb[0, c], expected) for c in range(3))


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (np.linspace(0, 1, 64, dtype=np.float32), "floats (mode F)"),  # was all black
        (np.arange(64, dtype=np.int32) * 4, "integers (mode I)"),  # 0..255, was near black
        (np.full(64, 70000, dtype=np.int32), "integers (mode I)"),
    ],
)
def test_32_bit_images_are_refused_in_one_line(tmp_path, values, kind):
    (tmp_path / "deep").mkdir()
    for i in range(2):
        Image.fromarray(values.reshape(8, 8)).save(tmp_path / "deep" / f"{i}.tif")
    with pytest.raises(
        WcganError, match=rf"0\.tif' holds 32-bit {re.escape(kind)}, whose range is not known"
    ):
        load_label_images(DataSpec("imagefolder", str(tmp_path)), "deep")


def png_header(path, width: int, height: int) -> None:
    """A PNG that declares its size and holds no pixels: opening it reads only this header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00")))


@pytest.mark.parametrize("side", [10_000, 20_000])  # over Pillow's warning, over its error limit
def test_images_over_the_pixel_limit_are_refused_by_name_without_pillows_warning(tmp_path, side):
    png_header(tmp_path / "huge" / "0.png", side, side)
    png_header(tmp_path / "huge" / "1.png", side, side)
    spec = DataSpec("imagefolder", str(tmp_path), resolution=32)
    with warnings.catch_warnings(), pytest.raises(WcganError, match=r"0\.png' .*more than data\.max_pixels"):
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would fail the test
        load_label_images(spec, "huge")


def test_the_pixel_limit_is_the_configured_one(image_tree):
    assert load_label_images(DataSpec("imagefolder", str(image_tree), max_pixels=64), "x+y").shape[0] == 4
    with pytest.raises(WcganError, match=r"0\.png' is 8x8, 64 pixels, more than data\.max_pixels 63"):
        load_label_images(DataSpec("imagefolder", str(image_tree), max_pixels=63), "x+y")
    with pytest.raises(WcganError, match="data.max_pixels must be between 1 and 89478485"):
        DataSpec("imagefolder", str(image_tree), max_pixels=89_478_486).check()


def test_mixed_sizes_are_refused_unless_a_resolution_is_set(image_tree):
    save_png(image_tree / "red car" / "big.png", size=(16, 16))
    spec = DataSpec("imagefolder", str(image_tree))
    with pytest.raises(WcganError, match=r"big\.png' is 16x16 but .* is 8x8; set data\.resolution"):
        load_label_images(spec, "red car")
    resized = load_label_images(DataSpec("imagefolder", str(image_tree), resolution=16), "red car")
    assert resized.shape == (5, 3, 16, 16)


def test_non_square_and_unsupported_sizes_are_refused(tmp_path):
    save_png(tmp_path / "a" / "wide.png", size=(16, 8))
    with pytest.raises(WcganError, match="wide.png' is 16x8, not square"):
        load_label_images(DataSpec("imagefolder", str(tmp_path)), "a")
    save_png(tmp_path / "b" / "0.png", size=(28, 28))
    save_png(tmp_path / "b" / "1.png", size=(28, 28))
    with pytest.raises(WcganError, match="resolution 28 is not supported"):
        load_label_images(DataSpec("imagefolder", str(tmp_path)), "b")
    assert load_label_images(DataSpec("imagefolder", str(tmp_path), resolution=32), "b").shape == (
        2,
        3,
        32,
        32,
    )


def test_unsupported_configured_resolution(image_tree):
    with pytest.raises(WcganError, match="data.resolution 28 is not supported"):
        load_label_images(DataSpec("imagefolder", str(image_tree), resolution=28), "red car")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "does not exist or is not a folder"),
        (lambda root: root.mkdir(), "has no class folders"),
    ],
)
def test_missing_or_empty_root(tmp_path, setup, message):
    root = tmp_path / "root"
    setup(root)
    with pytest.raises(WcganError, match=message):
        label_names(DataSpec("imagefolder", str(root)))


def test_a_folder_named_with_dots_is_a_class_and_hidden_entries_are_named_on_stderr(image_tree, capsys):
    save_png(image_tree / "..." / "0.png")
    save_png(image_tree / ".git" / "0.png")
    (image_tree / "red car" / ".DS_Store").write_bytes(b"Finder metadata")
    save_png(image_tree / "red car" / ".ipynb_checkpoints" / "0-checkpoint.png")
    (image_tree / "red car" / "notes.txt").write_text("not an image")
    spec = DataSpec("imagefolder", str(image_tree))
    assert label_names(spec) == ["...", "Café", "red car", "x+y"]
    assert "skipped 1 hidden ('.git')" in capsys.readouterr().err
    assert load_label_images(spec, "red car").shape == (4, 3, 8, 8)
    said = capsys.readouterr().err
    assert "class 'red car': skipped 2 hidden ('.DS_Store', '.ipynb_checkpoints')" in said
    assert "1 without an image extension ('notes.txt')" in said


def test_links_are_followed_once_and_dangling_ones_are_named(image_tree, capsys):
    (image_tree / "alias").symlink_to("red car")  # a second name for a class
    (image_tree / "gone").symlink_to("nowhere")
    (image_tree / "x+y" / "copy.png").symlink_to("0.png")  # the same file twice
    (image_tree / "x+y" / "theirs.png").symlink_to("../Café/0.png")  # another class's file
    (image_tree / "x+y" / "broken.png").symlink_to("missing.png")
    # Linked folders: the files in them are the real folder's (another class's, or reached twice).
    save_png(image_tree / "x+y" / "sub" / "4.png")
    (image_tree / "x+y" / "again").symlink_to("sub")
    (image_tree / "x+y" / "their folder").symlink_to("../Café")
    spec = DataSpec("imagefolder", str(image_tree))
    assert label_names(spec) == ["Café", "red car", "x+y"]
    said = capsys.readouterr().err
    assert "1 dangling links ('gone')" in said
    assert "1 links to files of class 'red car' (counted there) ('alias')" in said
    assert load_label_images(spec, "x+y").shape == (5, 3, 8, 8)
    said = capsys.readouterr().err
    assert "2 files reached twice (counted once) ('copy.png', 'sub/4.png')" in said
    assert "5 files of class 'Café' (counted there) ('their folder/0.png', 'their folder/1.png'," in said
    assert "1 dangling links ('broken.png')" in said


def test_listed_labels_must_be_the_data_sets_where_it_is_here(image_tree, tmp_path):
    spec = DataSpec("imagefolder", str(image_tree), labels=("red car", "Café"))
    assert label_names(spec) == ["red car", "Café"]  # the list's order: the class indices
    with pytest.raises(
        WcganError, match="^data.labels lists 'blue car', a label data.root '.*' does not hold$"
    ):
        label_names(DataSpec("imagefolder", str(image_tree), labels=("red car", "blue car")))
    # Without the data (a dry run on a login node) the list is taken as it is.
    assert label_names(DataSpec("imagefolder", str(tmp_path / "absent"), labels=("x",))) == ["x"]


def test_a_fifo_named_like_an_image_is_named_on_stderr_not_opened(image_tree, capsys):
    os.mkfifo(image_tree / "red car" / "pipe.png")  # opening it would wait for a writer forever
    os.symlink("pipe.png", image_tree / "red car" / "to pipe.png")

    def too_long(signum, frame):
        raise TimeoutError("the split waited on the FIFO")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(30)
    try:
        images = load_label_images(DataSpec("imagefolder", str(image_tree)), "red car")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert images.shape == (4, 3, 8, 8)
    said = capsys.readouterr().err
    assert "2 not regular files (a FIFO, socket or device) ('pipe.png', 'to pipe.png')" in said


@pytest.mark.parametrize(
    ("link", "target", "message"),
    [
        ("alias", ".", r"link '.*alias' leads back to .*: it loops"),  # a class of copies of all
        ("red car/up", "..", r"link '.*up' leads back to .*: it loops"),
        ("red car/self", "self", r"link '.*self' cannot be followed: it loops"),
        ("outside", "..", r"link '.*outside' leads to .*, outside the data folder"),
    ],
)
def test_links_that_loop_or_leave_the_tree_are_refused_by_name(image_tree, link, target, message):
    (image_tree / link).symlink_to(target)
    spec = DataSpec("imagefolder", str(image_tree))
    with pytest.raises(WcganError, match=message):
        label_names(spec)
        load_label_images(spec, "red car")


def test_empty_class_folder_and_single_image_class(image_tree):
    (image_tree / "empty").mkdir()
    save_png(image_tree / "lonely" / "0.png")
    spec = DataSpec("imagefolder", str(image_tree))
    with pytest.raises(WcganError, match="label 'empty' has no images"):
        load_label_images(spec, "empty")
    with pytest.raises(WcganError, match="label 'lonely' has only 1 image"):
        load_label_images(spec, "lonely")


def test_corrupt_and_truncated_images_name_the_file(image_tree):
    (image_tree / "red car" / "corrupt.png").write_bytes(b"not an image at all")
    spec = DataSpec("imagefolder", str(image_tree))
    with pytest.raises(WcganError, match=r"corrupt\.png' cannot be read"):
        load_label_images(spec, "red car")
    (image_tree / "red car" / "corrupt.png").unlink()
    big = save_png(image_tree / "Café" / "cut.png", size=(8, 8))
    big.write_bytes(big.read_bytes()[:60])
    with pytest.raises(WcganError, match=r"cut\.png' cannot be read"):
        load_label_images(spec, "Café")


def test_unknown_source_and_unknown_label(image_tree):
    with pytest.raises(WcganError, match="data.source 'mnist' is unknown"):
        label_names(DataSpec("mnist"))
    with pytest.raises(WcganError, match="label 'bus' is not a label"):
        load_label_images(DataSpec("imagefolder", str(image_tree)), "bus")


def test_torchvision_readers_explain_missing_files(tmp_path):
    assert len(CIFAR100_CLASSES) == 100
    assert label_names(DataSpec("cifar100", str(tmp_path)))[:2] == ["apple", "aquarium_fish"]
    with pytest.raises(WcganError, match="holds no CIFAR10 training files.*data.download"):
        load_label_images(DataSpec("cifar10", str(tmp_path)), "cat")
    with pytest.raises(WcganError, match="has no train/ folder.*torchvision.datasets.ImageNet"):
        label_names(DataSpec("imagenet1k", str(tmp_path)))
    with pytest.raises(WcganError, match="data.root is required for source 'cifar10'"):
        load_label_images(DataSpec("cifar10"), "cat")


def test_imagenet_layout_is_read_per_wnid(tmp_path):
    for i in range(2):
        save_png(tmp_path / "train" / "n01440764" / f"{i}.JPEG", size=(40, 30))
    spec = DataSpec("imagenet1k", str(tmp_path), resolution=16)
    assert label_names(spec) == ["n01440764"]
    assert load_label_images(spec, "n01440764").shape == (2, 3, 16, 16)


def test_the_runs_image_size_is_its_first_images_and_a_label_of_another_is_refused(image_tree, tmp_path):
    from wcgan.sources import native_image_size

    spec = DataSpec("imagefolder", str(image_tree))
    assert native_image_size(spec, "red car") == 8
    assert native_image_size(DataSpec("imagefolder", str(image_tree), resolution=16), "red car") == 16
    assert native_image_size(DataSpec(), "0") == 8  # the digits' own size
    assert native_image_size(DataSpec("imagefolder", str(tmp_path / "not-here")), "red car") is None
    for i in range(2):  # a label of 16x16 images: alone it agrees with itself
        save_png(image_tree / "big" / f"{i}.png", size=(16, 16))
    assert load_label_images(spec, "big").shape[-1] == 16
    with pytest.raises(WcganError, match=r"big/0.png' is 16x16 but the run's first image is 8x8"):
        load_label_images(spec, "big", image_size=8)


def test_shard_roundtrip_and_foreign_file(tmp_path):
    shard = Shard(torch.zeros(3, 1, 8, 8, dtype=torch.uint8), Label(2, "b", "B"), "digits")
    save_shard(shard, tmp_path / "b.pt")
    back = load_shard(tmp_path / "b.pt")
    assert back.label == shard.label and torch.equal(back.images, shard.images)
    assert (back.resolution, back.channels) == (8, 1)
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(WcganError, match="is not a wcgan shard"):
        load_shard(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(WcganError, match="junk.pt' cannot be read"):
        load_shard(tmp_path / "junk.pt")


class NotTensors:
    """Stands for pickled code in a file."""


@pytest.mark.parametrize("damage", ["truncated", "zeros", "flipped", "code"])
def test_a_damaged_file_is_named_with_what_to_do_and_never_weights_only_false(tmp_path, damage):
    path = tmp_path / "ck.pt"
    torch.save({"iteration": 3, "state": {"w": torch.randn(100)}}, path)
    raw = path.read_bytes()
    start = raw.find(b"\x80\x02")  # the pickle inside the zip
    damaged = {
        "truncated": raw[: len(raw) // 2],
        "zeros": b"\x00" * 10,
        "flipped": raw[: start + 2] + b"\xff\xff\xff" + raw[start + 5 :],
        "code": None,
    }[damage]
    if damaged is None:
        torch.save({"iteration": NotTensors()}, path)
    else:
        path.write_bytes(damaged)
    with pytest.raises(WcganError) as caught:
        load_torch(path, "checkpoint")
    message = str(caught.value)
    assert message.startswith(f"checkpoint '{path}' cannot be read: it is damaged")
    assert message.endswith("move it away and rerun to make it again")
    assert "weights_only" not in message and "\n" not in message


def zero_bytes_inside(path, record_suffix: str, count: int = 64) -> None:
    """Overwrite ``count`` bytes in the middle of one record of a torch zip with zeros, in
    place, the file's length unchanged (damage that torch.load alone does not notice)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        (record,) = [r for r in archive.infolist() if r.filename.endswith(record_suffix)]
        with open(path, "rb") as fh:  # the data starts after the record's local header
            fh.seek(record.header_offset + 26)
            name_length, extra_length = struct.unpack("<HH", fh.read(4))
        start = record.header_offset + 30 + name_length + extra_length + record.file_size // 2
    with open(path, "r+b") as fh:
        fh.seek(start)
        fh.write(b"\x00" * count)


@pytest.mark.parametrize("mmap", [False, True])
def test_damage_of_the_same_length_inside_a_tensor_is_refused_by_its_checksum(tmp_path, mmap):
    path = tmp_path / "ck.pt"
    torch.save({"iteration": 3, "state": {"w": torch.randn(1000)}}, path)
    zero_bytes_inside(path, "data/0")
    assert torch.load(path, weights_only=True)["iteration"] == 3  # torch alone reads it
    with pytest.raises(WcganError) as caught:
        load_torch(path, "checkpoint", mmap=mmap)
    message = str(caught.value)
    assert message.startswith(f"checkpoint '{path}' cannot be read: it is damaged (Bad CRC-32")
    assert "\n" not in message and message.endswith("move it away and rerun to make it again")


def test_a_shards_header_reader_skips_its_images_checksum_and_every_image_reader_checks_it(tmp_path):
    label = Label(0, "a", "a")
    save_shard(
        Shard(torch.randint(0, 255, (512, 3, 32, 32), dtype=torch.uint8), label, "imagefolder"),
        tmp_path / "a.pt",
    )
    zero_bytes_inside(tmp_path / "a.pt", "data/0")
    assert load_shard(tmp_path / "a.pt", header_only=True).label == label  # label table, memory check
    for mmap in (False, True):  # training; classifier and features
        with pytest.raises(WcganError, match=r"shard '.*a\.pt' cannot be read: it is damaged"):
            load_shard(tmp_path / "a.pt", mmap=mmap)


def test_the_data_fingerprint_follows_each_labels_file_list(image_tree):
    from wcgan.sources import DataSpec, data_fingerprint

    spec = DataSpec(source="imagefolder", root=str(image_tree))
    before = data_fingerprint(spec, ["red car"])
    assert before and data_fingerprint(spec, ["red car"]) == before
    other = data_fingerprint(spec, ["x+y"])
    save_png(image_tree / "x+y" / "new.png")
    assert data_fingerprint(spec, ["red car"]) == before  # another label's change
    assert data_fingerprint(spec, ["x+y"]) != other
    fingerprints = {before}
    time.sleep(0.01)  # a folder's time has a resolution; a later change must differ from it
    for change in (
        lambda folder: save_png(folder / "sub" / "deep.png"),
        lambda folder: (folder / "0.png").rename(folder / "zero.png"),
        lambda folder: (folder / "1.png").unlink(),
    ):
        change(image_tree / "red car")
        fingerprints.add(data_fingerprint(spec, ["red car"]))
        time.sleep(0.01)
    assert len(fingerprints) == 4  # every change noticed
    assert data_fingerprint(DataSpec(), ["0"]) == ""  # digits ships with scikit-learn
    assert data_fingerprint(DataSpec(source="imagefolder", root=str(image_tree / "gone")), ["a"]) == ""


@pytest.mark.parametrize(
    ("load", "what", "made_by"),
    [
        ("wcgan.files:load_shard", "shard", "'wcgan split'"),
        ("wcgan.files:load_samples", "samples", "'wcgan train --samples-out' or 'wcgan sample'"),
        ("wcgan.files:load_snapshot_samples", "snapshot samples", "'wcgan train --snapshots-out'"),
        ("wcgan.files:load_generator", "generator", "'wcgan train'"),
        ("wcgan.files:load_classifier", "classifier", "'wcgan train-classifier'"),
        ("wcgan.files:load_chunk_scores", "chunk scores", "'wcgan features'"),
    ],
)
def test_every_file_kind_refuses_another_kinds_file_in_one_line_naming_what_makes_it(
    tmp_path, load, what, made_by
):
    import importlib

    from wcgan.atomic import save_torch

    module, name = load.split(":")
    path = tmp_path / "other.pt"
    save_torch({"format": "wcgan-labels-9", "images": torch.zeros(1, 1, 8, 8, dtype=torch.uint8)}, path)
    with pytest.raises(WcganError) as refused:
        getattr(importlib.import_module(module), name)(path)
    assert str(refused.value) == f"{what} '{path}' is not a wcgan {what} file (made by {made_by})"
