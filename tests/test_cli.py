"""The command line as the rules call it: outputs on success; on bad input one line, a non-zero
exit and no output file."""

import pytest
import torch

from conftest import run_wcgan, save_png
from wcgan.cli import build_parser
from wcgan.data import Shard
from wcgan.errors import WcganError
from wcgan.files import save_shard
from wcgan.labels import Label, read_table
from wcgan.options import config_from_options, format_options
from wcgan.training_outputs import TrainingOutputs, check_outputs


def one_error_line(result) -> str:
    """The error: the one ``wcgan: error:`` line, last on stderr (progress lines may come before)."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert [line.startswith("wcgan: error: ") for line in lines].count(True) == 1, result.stderr
    assert lines[-1].startswith("wcgan: error: "), result.stderr
    return lines[-1]


def test_labels_and_split_of_an_image_tree(image_tree, tmp_path):
    result = run_wcgan("labels", "--source", "imagefolder", "--root", str(image_tree))
    assert result.stdout.splitlines() == ["0\tcafe\tCafé", "1\tred-car\tred car", "2\tx-y\tx+y"]
    out = tmp_path / "shards" / "c001-002"
    result = run_wcgan(
        "split", "--source", "imagefolder", "--root", str(image_tree), "--out-dir", str(out), "red car", "x+y"
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["red-car.pt", "x-y.pt"]
    table = tmp_path / "labels.tsv"
    result = run_wcgan("label-table", "--shards", str(out), "--labels-per-job", "2", "--out", str(table))
    assert result.returncode == 0, result.stderr
    assert read_table(table) == [
        (Label(1, "red-car", "red car"), 4, "c001-002"),
        (Label(2, "x-y", "x+y"), 4, "c001-002"),
    ]


def test_a_command_given_a_root_and_chunks_reads_every_chunks_folder(image_tree, tmp_path):
    split = ("split", "--source", "imagefolder", "--root", str(image_tree))
    for chunk, names in {"c000-001": ["Café", "red car"], "c002-002": ["x+y"]}.items():
        result = run_wcgan(*split, "--out-dir", str(tmp_path / "shards" / chunk), *names)
        assert result.returncode == 0, result.stderr
    table = tmp_path / "labels.tsv"
    label_table = ("label-table", "--shards", str(tmp_path / "shards"), "--out", str(table), "--chunks")
    result = run_wcgan(*label_table, "3", "2")
    assert result.returncode == 0, result.stderr
    assert [(label.slug, chunk) for label, _, chunk in read_table(table)] == [
        ("cafe", "c000-001"),
        ("red-car", "c000-001"),
        ("x-y", "c002-002"),
    ]
    table.unlink()
    missing = tmp_path / "shards" / "c000-000"
    line = one_error_line(run_wcgan(*label_table, "3", "1"))
    assert line.endswith(f"chunk folder '{missing}' does not exist: --chunks 3 1 names another run's chunks")
    line = one_error_line(run_wcgan(*label_table, "3", "4"))
    assert line.endswith("--chunks 3 4: labels_per_job must be between 1 and the number of labels (3), got 4")
    assert not table.exists()


def test_a_root_and_chunks_put_each_labels_output_in_its_chunks_folder():
    given = {"models": ["m.pt"], "losses": ["l.csv"], "summaries": ["s.json"], "samples": ["samples"],
             "snapshots": None}  # fmt: skip
    labels = [Label(i, f"l{i}", f"l{i}") for i in range(5)]
    outputs = TrainingOutputs.of(given, labels, (5, 2))
    chunks = ["c000-001", "c000-001", "c002-003", "c002-003", "c004-004"]
    assert outputs.samples == [f"samples/{chunk}/l{i}.pt" for i, chunk in enumerate(chunks)]
    assert outputs.models == ["m.pt"] and outputs.snapshots is None  # a file, not a root
    assert TrainingOutputs.of(given, labels, None).samples == [f"samples/l{i}.pt" for i in range(5)]
    with pytest.raises(WcganError, match="label 'l4' has index 4, but --chunks 4 2 names labels 0 to 3"):
        TrainingOutputs.of(given, labels, (4, 2))


def test_a_training_job_removes_the_temporaries_a_killed_one_left_of_its_outputs(tmp_path):
    shards = tmp_path / "shards" / "c000-001"
    for label in (Label(0, "a", "a"), Label(1, "b", "b")):
        images = torch.randint(
            0, 256, (20, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
        )
        save_shard(Shard(images, label, "test"), shards / f"{label.slug}.pt")
    folders = {name: tmp_path / name for name in ("models", "losses", "training", "samples")}
    for folder in folders.values():
        folder.mkdir()
    stale = [
        folders["models"] / ".a.pt.k2x9_q.tmp",
        folders["samples"] / ".b.pt.0abc1.tmp",
        folders["losses"] / ".a.csv.sha256.x1y2.tmp",  # a loss table's checksum, half written
    ]
    kept = [folders["models"] / ".c.pt.k2x9_q.tmp", folders["models"] / ".a.pt.notes"]  # no output's
    for path in (*stale, *kept):
        path.write_bytes(b"half a file")
    result = run_wcgan(
        "train", "--shard", str(shards), "--model-out", str(folders["models"]), "--losses-out",
        str(folders["losses"]), "--summary-out", str(folders["training"]), "--samples-out", str(folders["samples"]),
        "--samples", "4", "--checkpoint-dir", str(tmp_path / "checkpoints"), "--iterations", "1",
        "--batch-size", "4", "--z-dim", "4", "--width", "4", "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
    assert sorted(p.name for p in folders["models"].glob("*.pt")) == ["a.pt", "b.pt"]
    assert sorted(p.name for p in folders["losses"].iterdir()) == [
        "a.csv",
        "a.csv.sha256",
        "b.csv",
        "b.csv.sha256",
    ]


def test_training_outputs_name_a_file_per_gan_and_per_label():
    given = {
        "models": ["a.pt", "b.pt"],
        "losses": ["l"],
        "summaries": ["s"],
        "samples": ["x.pt"],
        "snapshots": None,
    }
    with pytest.raises(WcganError, match="--samples-out names 1 files for 2 shards"):
        check_outputs(given, 2, 2, "per_label", 0)
    with pytest.raises(
        WcganError, match="--model-out names 2 files; it needs 1: one for train.generator conditional"
    ):
        check_outputs(given | {"samples": ["folder"]}, 1, 2, "conditional", 0)
    with pytest.raises(WcganError, match="train.snapshots is 3: give --snapshots-out"):
        check_outputs(given | {"samples": ["folder"]}, 2, 2, "per_label", 3)
    check_outputs(given | {"samples": ["folder"]}, 2, 2, "per_label", 0)  # folders: a file per label


@pytest.mark.parametrize(
    ("make_bad", "label", "message"),
    [
        (lambda root: (root / "empty").mkdir(), "empty", "label 'empty' has no images"),
        (
            lambda root: (root / "red car" / "bad.jpg").write_bytes(b"JFIF?"),
            "red car",
            "bad.jpg' cannot be read",
        ),
        (
            lambda root: save_png(root / "red car" / "big.png", size=(32, 32)),
            "red car",
            "big.png' is 32x32 but",
        ),
    ],
)
def test_split_bad_input(image_tree, tmp_path, make_bad, label, message):
    make_bad(image_tree)
    out = tmp_path / "chunk"
    result = run_wcgan(
        "split", "--source", "imagefolder", "--root", str(image_tree), "--out-dir", str(out), "--", "x+y", label
    )  # fmt: skip
    assert message in one_error_line(result)
    assert not out.exists()  # no shard of the chunk is written, not even the good label's


def test_split_refuses_a_chunk_of_labels_with_different_shapes(image_tree, tmp_path):
    save_png(image_tree / "big" / "0.png", size=(16, 16))
    save_png(image_tree / "big" / "1.png", size=(16, 16))
    out = tmp_path / "chunk"
    result = run_wcgan(
        "split", "--source", "imagefolder", "--root", str(image_tree), "--out-dir", str(out), "x+y", "big"
    )  # fmt: skip
    assert "label 'big' has images of shape (3, 16, 16) but 'x+y' has (3, 8, 8)" in one_error_line(result)
    assert not out.exists()


def test_unknown_source_is_one_line():
    assert "data.source 'mnist' is unknown" in one_error_line(run_wcgan("labels", "--source", "mnist"))


def test_train_bad_input(tmp_path, digit_shards):
    save_shard(digit_shards[0], tmp_path / "0.pt")
    common = ["--model-out", str(tmp_path / "g.pt"), "--losses-out", str(tmp_path / "l.csv"),
              "--summary-out", str(tmp_path / "s.json"), "--checkpoint-dir", str(tmp_path / "ck")]  # fmt: skip
    line = one_error_line(run_wcgan("train", "--shard", str(tmp_path / "0.pt"), *common, "--iterations", "0"))
    assert "train.iterations must be positive, got 0" in line
    line = one_error_line(
        run_wcgan("train", "--shard", str(tmp_path / "none.pt"), *common, "--iterations", "3")
    )
    assert f"shard '{tmp_path / 'none.pt'}' does not exist" in line
    assert not any((tmp_path / name).exists() for name in ("g.pt", "l.csv", "s.json"))


def test_label_table_refuses_shards_of_different_shapes(tmp_path):
    save_shard(Shard(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), Label(0, "a", "a"), "x"), tmp_path / "a.pt")
    save_shard(Shard(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), Label(1, "b", "b"), "x"), tmp_path / "b.pt")
    result = run_wcgan(
        "label-table",
        "--shards",
        str(tmp_path / "a.pt"),
        str(tmp_path / "b.pt"),
        "--out",
        str(tmp_path / "t.tsv"),
    )
    assert "label 'b' has images of shape (3, 8, 8) but 'a' has (1, 8, 8)" in one_error_line(result)
    assert not (tmp_path / "t.tsv").exists()


def test_train_also_draws_the_labels_samples(tmp_path, digit_shards):
    from wcgan.files import load_generator, load_samples
    from wcgan.sampling import sample_label

    save_shard(digit_shards[2], tmp_path / "2.pt")
    result = run_wcgan("train", "--shard", str(tmp_path / "2.pt"), "--model-out", str(tmp_path / "g.pt"),
                       "--losses-out", str(tmp_path / "l.csv"), "--summary-out", str(tmp_path / "s.json"),
                       "--checkpoint-dir", str(tmp_path / "ck"), "--iterations", "2", "--width", "4", "--z-dim", "8",
                       "--batch-size", "8", "--samples-out", str(tmp_path / "samples.pt"), "--samples", "7",
                       "--samples-seed", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    images, label = load_samples(tmp_path / "samples.pt")
    generator, _ = load_generator(tmp_path / "g.pt")
    assert label.name == "2" and torch.equal(images, sample_label(generator, label, 7, seed=3))


def test_format_options_round_trips_through_the_parser():
    import shlex

    from wcgan.config import TrainConfig

    section = {
        "loss": "wgan-gp",
        "iterations": 7,
        "seconds": None,
        "lr": 2e-4,
        "betas": [0.5, 0.9],
        "device": "cpu",
    }
    words = shlex.split(format_options(section))
    assert "--seconds" not in words  # None means unset: the dataclass default applies
    args = build_parser().parse_args(["train", "--shard", "s", "--model-out", "m", "--losses-out", "l",
                                      "--summary-out", "j", "--checkpoint-dir", "c", *words])  # fmt: skip
    assert config_from_options(TrainConfig, vars(args)) == TrainConfig(
        iterations=7, lr=2e-4, betas=(0.5, 0.9), device="cpu"
    )
    assert format_options({"download": False, "loss": "wgan gp"}) == "--no-download --loss 'wgan gp'"


def test_diverging_training_is_one_line_with_no_outputs(tmp_path, digit_shards):
    save_shard(digit_shards[0], tmp_path / "0.pt")
    result = run_wcgan("train", "--shard", str(tmp_path / "0.pt"), "--model-out", str(tmp_path / "g.pt"),
                       "--losses-out", str(tmp_path / "l.csv"), "--summary-out", str(tmp_path / "s.json"),
                       "--checkpoint-dir", str(tmp_path / "ck"), "--iterations", "50", "--lr", "1e30",
                       "--width", "4", "--z-dim", "8", "--batch-size", "8", "--log-seconds", "0.05")  # fmt: skip
    assert "training stopped" in one_error_line(result)
    assert not any((tmp_path / name).exists() for name in ("g.pt", "l.csv", "s.json"))


def test_a_chunk_needs_one_output_file_per_label(tmp_path, digit_shards):
    shards = []
    for k, shard in enumerate(digit_shards[:2]):
        save_shard(shard, tmp_path / f"{k}.pt")
        shards.append(str(tmp_path / f"{k}.pt"))
    result = run_wcgan("train", "--shard", *shards, "--model-out", str(tmp_path / "g0.pt"), str(tmp_path / "g1.pt"),
                       "--losses-out", str(tmp_path / "l0.csv"), "--summary-out", str(tmp_path / "s0.json"),
                       str(tmp_path / "s1.json"), "--checkpoint-dir", str(tmp_path / "ck"), "--iterations", "1")  # fmt: skip
    assert one_error_line(result) == "wcgan: error: --losses-out names 1 files; it needs 2: one per --shard"
    assert not any(tmp_path.glob("[gls][01].*"))


def test_split_takes_a_label_whose_name_starts_with_a_dash(image_tree, tmp_path):
    (image_tree / "red car").rename(image_tree / "-neg")
    out = tmp_path / "chunk"
    result = run_wcgan(
        "split", "--source", "imagefolder", "--root", str(image_tree), "--indices", "0", "--out-dir", str(out), "--", "-neg"
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.iterdir()] == ["neg.pt"]
