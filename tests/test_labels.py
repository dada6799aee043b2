from pathlib import Path

import pytest

from wcgan.errors import WcganError
from wcgan.labels import (
    Label,
    check_chunk_checkpoints,
    chunk_folders,
    chunk_names,
    find_label,
    first_repeat,
    make_chunks,
    make_labels,
    read_table,
    slugify,
    write_table,
)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("airplane", "airplane"),
        ("red car", "red-car"),
        ("T-shirt/top", "t-shirt-top"),
        ("Café crème", "cafe-creme"),
        ("  spaced  ", "spaced"),
        ("n01440764", "n01440764"),
        ("a..b", "a..b"),
    ],
)
def test_slugify_gives_safe_names(name, slug):
    assert slugify(name) == slug


def test_slugify_of_non_ascii_name_is_stable_and_distinct():
    assert slugify("猫") == slugify("猫")
    assert slugify("猫") != slugify("犬")
    assert slugify("猫").startswith("u")


def test_make_labels_indexes_in_order():
    labels = make_labels(["b", "a"])
    assert labels == [Label(0, "b", "b"), Label(1, "a", "a")]


def test_labels_that_share_a_slug_are_an_error_naming_both():
    with pytest.raises(WcganError, match="'Cat'.*'cat'|'cat'.*'Cat'"):
        make_labels(["cat", "Cat"])


def test_a_label_listed_twice_is_an_error():
    with pytest.raises(WcganError, match="^label 'dog' is listed twice: rename one"):
        make_labels(["dog", "cat", "dog"])


def test_first_repeat_names_where_a_key_was_seen_first_and_again_across_calls():
    assert first_repeat([("a", 1), ("b", 2)]) is None
    assert first_repeat([("a", 1), ("b", 2), ("a", 3), ("b", 4)]) == (1, 3)
    seen = {}
    assert first_repeat([("a", "c0.pt")], seen) is None
    assert first_repeat([("b", "c1.pt"), ("a", "c1.pt")], seen) == ("c0.pt", "c1.pt")


def test_table_roundtrip(tmp_path):
    labels = make_labels(["red car", "Café"])
    write_table(labels, [5, 7], make_chunks(labels, 1), tmp_path / "labels.tsv")
    assert read_table(tmp_path / "labels.tsv") == [(labels[0], 5, "c000-000"), (labels[1], 7, "c001-001")]


def test_chunks_group_labels_in_index_order_the_last_shorter():
    labels = make_labels([f"l{i}" for i in range(7)])
    chunks = make_chunks(labels[::-1], 3)  # index order, whatever order they come in
    assert [chunk.name for chunk in chunks] == ["c000-002", "c003-005", "c006-006"]
    assert [[label.index for label in chunk.labels] for chunk in chunks] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [chunk.name for chunk in make_chunks(labels, 7)] == ["c000-006"]
    wide = make_labels([f"l{i}" for i in range(12345)])
    assert make_chunks(wide, 10000)[-1].name == "c10000-12344"  # padded to the widest index


@pytest.mark.parametrize(("n_labels", "per_job"), [(1, 1), (7, 3), (10, 10), (1001, 7), (12345, 10000)])
def test_chunk_names_from_two_numbers_are_the_chunks_names(n_labels, per_job, tmp_path):
    labels = make_labels([f"l{i}" for i in range(n_labels)])
    names = [chunk.name for chunk in make_chunks(labels, per_job)]
    assert chunk_names(n_labels, per_job) == names
    assert chunk_folders(tmp_path, n_labels, per_job) == [tmp_path / name for name in names]


@pytest.mark.parametrize(
    ("per_job", "message"),
    [
        (0, "labels_per_job must be between 1 and the number of labels \\(3\\), got 0"),
        (-2, "between 1 and the number of labels"),
        (4, "between 1 and the number of labels \\(3\\), got 4"),
        (2.5, "labels_per_job must be a whole number, got 2.5"),
        (True, "whole number"),
    ],
)
def test_labels_per_job_outside_one_to_the_labels_is_refused(per_job, message):
    with pytest.raises(WcganError, match=message):
        make_chunks(make_labels(["a", "b", "c"]), per_job)
    with pytest.raises(WcganError, match=message):
        chunk_names(3, per_job)


def test_find_label_by_name_or_slug_and_unknown_label():
    labels = make_labels(["red car", "Café"])
    assert find_label(labels, "red car").index == 0
    assert find_label(labels, "cafe").index == 1
    with pytest.raises(WcganError, match="unknown label 'bus'"):
        find_label(labels, "bus")


def test_after_a_failed_run_the_labels_without_a_model_are_named(tmp_path):
    from wcgan.layout import RunLayout
    from wcgan.tables import missing_models

    layout = RunLayout(str(tmp_path))
    paths = {slug: Path(layout.chunk_file("models", "c0-1", slug)) for slug in ("a", "b", "c")}
    paths["a"].parent.mkdir(parents=True)
    paths["a"].write_bytes(b"model")
    # b's chunk trained and failed; c's split failed, so it never trained.
    logs = {"a": layout.log("train/c0-1"), "b": layout.log("train/c0-1"), "c": layout.log("split/c2-2")}
    models = {slug: (paths[slug], logs[slug]) for slug in paths}
    message = missing_models(models)
    assert message.startswith("2 of 3 labels have no trained model") and ": b, c;" in message
    assert f"see {tmp_path}/logs/train/c0-1.log, {tmp_path}/logs/split/c2-2.log, fix" in message
    paths["b"].write_bytes(b"model")
    paths["c"].write_bytes(b"model")
    assert missing_models(models) is None


def test_checkpoints_of_another_labels_per_job_stop_the_run_before_it_trains(tmp_path):
    labels = make_labels([f"l{i}" for i in range(4)])
    old = tmp_path / "checkpoints" / "c000-001"  # made with labels_per_job 2
    old.mkdir(parents=True)
    (old / "key.pt").write_bytes(b"checkpoint")
    check_chunk_checkpoints(tmp_path / "checkpoints", make_chunks(labels, 2))  # its own: fine
    (tmp_path / "checkpoints" / "conditional").mkdir()  # another generator's folder is no chunk
    with pytest.raises(
        WcganError, match="holds checkpoints of chunks c000-001, made with another labels_per_job"
    ):
        check_chunk_checkpoints(tmp_path / "checkpoints", make_chunks(labels, 4))
    (old / "key.pt").unlink()  # an emptied folder (only its lock) is no checkpoint
    check_chunk_checkpoints(tmp_path / "checkpoints", make_chunks(labels, 4))
