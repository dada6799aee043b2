"""Every file wcgan writes carries a checksum that its reads verify: tables beside them in a
``sha256sum`` file, JSON records in their first key, PNGs in their chunks' CRC-32s (``.pt`` files:
test_data.py)."""

import json
import subprocess

import pandas as pd
import pytest
import torch

from wcgan import atomic
from wcgan.atomic import read_json, remove_stale_temporaries, write_json
from wcgan.config import read_run_config, write_run_config
from wcgan.errors import WcganError
from wcgan.figures import _read_grid, save_grid
from wcgan.labels import Label, make_chunks, read_table, write_table
from wcgan.tables import read_checked_csv, write_tsv


def overwrite(path, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` of the same length in place: the file's size is unchanged."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))


def one_line_refusal(caught, path, detail: str) -> None:
    message = str(caught.value)
    assert f" '{path}' cannot be read: it is damaged ({detail}" in message
    assert message.endswith("move it away and rerun to make it again") and "\n" not in message


@pytest.fixture
def fresh_stderr(capsys, monkeypatch):
    """stderr, with no kind of file said to be unchecked yet in this process."""
    monkeypatch.setattr(atomic, "_UNCHECKED_KINDS", set())
    return capsys


def test_a_table_is_read_only_while_it_matches_its_sha256sum_file(tmp_path, fresh_stderr):
    path = tmp_path / "metrics.tsv"
    table = pd.DataFrame({"label": ["cat", "dog"], "fid": [12.5, 30.25]})
    write_tsv(table, path)
    assert (tmp_path / "metrics.tsv.sha256").read_text().endswith("  metrics.tsv\n")
    # The standard tool checks it too, from the table's folder.
    assert (
        subprocess.run(["sha256sum", "--check", "--quiet", "metrics.tsv.sha256"], cwd=tmp_path).returncode
        == 0
    )
    pd.testing.assert_frame_equal(read_checked_csv(path, "metrics table"), table)

    overwrite(path, b"12.5", b"92.5")  # one digit, same length: pandas alone reads it silently
    assert pd.read_csv(path, sep="\t")["fid"].tolist() == [92.5, 30.25]
    with pytest.raises(WcganError) as caught:
        read_checked_csv(path, "metrics table")
    one_line_refusal(caught, path, "its SHA-256 differs from the one in 'metrics.tsv.sha256'")

    # A run's table from before checksums is read unchecked, said once for its kind.
    (tmp_path / "metrics.tsv.sha256").unlink()
    write_tsv(table, tmp_path / "other.tsv")
    (tmp_path / "other.tsv.sha256").unlink()
    assert fresh_stderr.readouterr().err == ""
    assert read_checked_csv(path, "metrics table")["fid"].tolist() == [92.5, 30.25]
    assert read_checked_csv(tmp_path / "other.tsv", "metrics table").equals(table)
    warning = fresh_stderr.readouterr().err
    assert warning == (
        f"wcgan: metrics table '{path}' has no checksum (no 'metrics.tsv.sha256' beside it): a file from "
        f"before wcgan wrote them; it and any other metrics table without one are read unchecked\n"
    )


def test_an_edited_label_table_or_nested_config_is_refused(tmp_path):
    labels = [Label(0, "cat", "cat"), Label(1, "dog", "dog")]
    path = tmp_path / "labels.tsv"
    write_table(labels, [5, 6], make_chunks(labels, 1), path)
    assert [row[0] for row in read_table(path)] == labels
    overwrite(path, b"\tdog\tdog\t", b"\tdog\tcow\t")
    with pytest.raises(WcganError) as caught:
        read_table(path)
    one_line_refusal(caught, path, "its SHA-256 differs")

    config = tmp_path / "config.yaml"
    write_run_config({"run": "d/compare/wgan-gp-s0", "train": {"iterations": 100}}, config)
    assert read_run_config(config)["train"]["iterations"] == 100
    overwrite(config, b"100", b"900")
    with pytest.raises(WcganError, match="nested run config '.*config.yaml' cannot be read: it is damaged"):
        read_run_config(config)


def test_a_json_record_carries_its_checksum_as_its_first_key(tmp_path, fresh_stderr):
    path = tmp_path / "summary.json"
    record = {"label": "cat", "seconds": 1.25, "nan": float("nan"), "nested": {"phases": [1, 2.5]}}
    write_json(record, path)
    assert next(iter(json.loads(path.read_text()))) == "sha256"  # any JSON reader still reads it
    back = read_json(path, "training summary")
    assert json.dumps(back) == json.dumps(record)

    overwrite(path, b"1.25", b"1.75")
    with pytest.raises(WcganError) as caught:
        read_json(path, "training summary")
    one_line_refusal(caught, path, "its SHA-256 differs from its sha256 key")

    path.write_text(json.dumps({"sha256": 5, **record}))
    with pytest.raises(WcganError) as caught:
        read_json(path, "training summary")
    one_line_refusal(caught, path, "its sha256 key is not a string")

    path.write_text(json.dumps(record))  # a summary from before checksums: read, and said
    assert read_json(path, "training summary")["seconds"] == 1.25
    assert "has no checksum (no sha256 key)" in fresh_stderr.readouterr().err
    with pytest.raises(ValueError, match="cannot have its own 'sha256' key"):
        write_json({"sha256": "x"}, path)


def test_a_damaged_sample_grid_is_refused_in_one_line_before_it_is_drawn(tmp_path):
    path = tmp_path / "cat.png"
    images = torch.randint(
        0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    save_grid(images, path)
    assert _read_grid(tmp_path, "cat", "cat").shape[-1] == 3
    data = bytearray(path.read_bytes())
    data[data.find(b"IDAT") + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WcganError) as caught:
        _read_grid(tmp_path, "cat", "cat")
    one_line_refusal(caught, path, "broken PNG file")


def test_the_temporaries_of_a_killed_writer_of_a_table_and_its_checksum_are_removed(tmp_path):
    stale = [tmp_path / ".a.csv.k2x9.tmp", tmp_path / ".a.csv.sha256.0abc.tmp"]
    kept = [tmp_path / ".b.csv.k2x9.tmp", tmp_path / "a.csv.sha256"]
    for path in (*stale, *kept):
        path.write_text("half")
    remove_stale_temporaries(tmp_path / "a.csv")
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
