import dataclasses
import hashlib
import io
import os

import pandas as pd
import pytest
import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.registry import register_feature_extractor

import wcgan.metrics
from wcgan.atomic import save_torch
from wcgan.classifier import predict, train_classifier
from wcgan.cli import main
from wcgan.config import ClassifierConfig
from wcgan.data import sample_rows
from wcgan.errors import WcganError
from wcgan.files import (
    SNAPSHOTS_FORMAT,
    load_chunk_scores,
    load_classifier,
    save_chunk_scores,
    save_classifier,
    save_samples,
    save_shard,
)
from wcgan.metrics import (
    INCEPTION_EXTRACTOR,
    METRIC_KEYS,
    ClassifierFeatureExtractor,
    load_chunk_score_files,
    merge_curve,
    merge_scores,
    metric_values,
    open_extractor,
    score_run,
)
from wcgan.tables import read_metrics, write_metrics, write_tsv

MAX_REAL = 60  # real images per label in the scoring tests
SAMPLES = 30  # generated images per label


@pytest.fixture(scope="module")
def classifier_file(digit_shards, tmp_path_factory):
    config = ClassifierConfig(epochs=4, batch_size=32, width=8)
    model, report = train_classifier(digit_shards, config, torch.device("cpu"), log=lambda _: None)
    path = tmp_path_factory.mktemp("clf") / "classifier.pt"
    save_classifier(model, ["0", "1", "2"], report, path)
    return path, report


def test_classifier_learns_the_digits(classifier_file, digit_shards):
    path, report = classifier_file
    assert report["holdout_accuracy"] > 0.9
    assert report["holdout_images"] + report["train_images"] == sum(len(s.images) for s in digit_shards)
    predictions = predict(load_classifier(path), digit_shards[2].images)
    assert (predictions == 2).float().mean() > 0.9


def test_scores_separate_matching_from_mismatched_images(classifier_file, digit_shards):
    network = open_extractor(None, classifier_file[0])
    assert network.extractor.accuracy == classifier_file[1]["holdout_accuracy"]
    zeros, _ = network.extract(digit_shards[0].images)
    ones, ones_logits = network.extract(digit_shards[1].images)
    same = metric_values(zeros[:80], zeros[80:160])
    different = metric_values(ones[:80], zeros[80:160])
    assert set(same) == {"fid", "kid_mean", "kid_std"}
    assert different["fid"] > 10 * same["fid"]
    both = metric_values(
        torch.cat([zeros[:50], ones[:50]]),
        torch.cat([zeros, ones]),
        torch.cat([network.extract(digit_shards[0].images[:50])[1], ones_logits[:50]]),
        precision_recall=True,
    )
    assert 1.8 < both["is_mean"] <= 2.0  # two confidently told-apart classes
    assert both["precision"] > 0.9 and both["recall"] > 0.5


# --- the reference: how scores were computed before, one torch_fidelity.calculate_metrics call each


class ImageTensorDataset(Dataset):
    """uint8 N x 1 x H x W images as the 3-channel uint8 tensors torch-fidelity reads."""

    def __init__(self, images: torch.Tensor):
        self.images = images.expand(-1, 3, -1, -1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].contiguous()


class ReferenceClassifierExtractor(ClassifierFeatureExtractor):
    """The classifier extractor as torch-fidelity's registry built it: from a weights path."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list, load_classifier(feature_extractor_weights_path))


REFERENCE_EXTRACTOR = "test-reference-classifier"
register_feature_extractor(REFERENCE_EXTRACTOR, ReferenceClassifierExtractor)


def reference_scores(fake, real, classifier, inception_score=False, precision_recall=False) -> dict:
    """The former ``wcgan.metrics.score``, its torch-fidelity call unchanged (less the cache)."""
    results = torch_fidelity.calculate_metrics(
        input1=ImageTensorDataset(fake),
        input2=ImageTensorDataset(real),
        feature_extractor=REFERENCE_EXTRACTOR,
        feature_extractor_weights_path=str(classifier),
        isc=inception_score,
        fid=True,
        kid=True,
        prc=precision_recall,
        cuda=False,
        kid_subset_size=min(1000, len(fake), len(real)),
        isc_splits=min(10, len(fake)),
        rng_seed=2020,
        verbose=False,
        cache=False,
        save_cpu_ram=True,
    )
    return {ours: float(results[theirs]) for ours, theirs in METRIC_KEYS.items() if theirs in results}


def assert_same_scores(ours: dict, reference: dict) -> None:
    assert set(reference) <= set(ours)
    for name, value in reference.items():
        # torch-fidelity sums KID's kernels in float32, ours in float64: its rounding reaches
        # 3e-7 here, ours 2e-8 (test_feature_stats holds ours to its definition in float64).
        tolerance = 1e-6 if name.startswith("kid") else 1e-9
        assert ours[name] == pytest.approx(value, rel=1e-6, abs=tolerance), name


# --- a run's files: samples, shards, snapshot samples of two training jobs


@pytest.fixture(scope="module")
def run_files(digit_shards, tmp_path_factory):
    """Samples (other images of the label than the real ones scored), shards, and the snapshot
    samples of two training jobs: labels 0 and 1 together, label 2 alone, two points each."""
    folder = tmp_path_factory.mktemp("run")
    samples, shards = [], []
    for shard in digit_shards:
        samples.append(folder / f"samples-{shard.label.slug}.pt")
        save_samples(shard.images[-SAMPLES:], shard.label, samples[-1])
        shards.append(folder / f"shard-{shard.label.slug}.pt")
        save_shard(shard, shards[-1])
    snapshots = []
    for unit, labels in enumerate([digit_shards[:2], digit_shards[2:]]):
        points = []
        for k in range(2):
            images = [shard.images[k * 40 : k * 40 + 20] for shard in labels]
            points.append(
                {
                    "iteration": 10 * (k + 1),
                    "seconds": 1.0 + k,
                    "device_seconds": 2.0 + k + unit,
                    "images": torch.cat(images),
                    "indices": torch.cat([torch.full((20,), s.label.index) for s in labels]),
                }
            )
        snapshots.append(folder / f"snapshots-{unit}.pt")
        save_torch({"format": SNAPSHOTS_FORMAT, "points": points}, snapshots[-1])
    return {"samples": samples, "shards": shards, "snapshots": snapshots, "folder": folder}


def features_command(run_files, classifier, labels, out, snapshots=(), *options: str) -> list[str]:
    """``wcgan features`` of some labels (positions in the run's label list) and snapshot files."""
    command = [
        "features",
        "--samples",
        *[str(run_files["samples"][i]) for i in labels],
        "--shards",
        *[str(run_files["shards"][i]) for i in labels],
        "--out",
        str(out),
        *options,
        "--classifier",
        str(classifier),
        "--max-real-per-label",
        str(MAX_REAL),
        "--device",
        "cpu",
    ]
    if snapshots:
        command += ["--snapshots", *[str(run_files["snapshots"][u]) for u in snapshots]]
    return command


@pytest.fixture(scope="module")
def feature_files(run_files, classifier_file, tmp_path_factory):
    """Two map jobs (chunks): labels 0 and 1 with the first training job's snapshots, label 2
    with the second's."""
    out = tmp_path_factory.mktemp("features")
    assert main(features_command(run_files, classifier_file[0], [0, 1], out / "c0-1.pt", snapshots=[0])) == 0
    assert main(features_command(run_files, classifier_file[0], [2], out / "c2-2.pt", snapshots=[1])) == 0
    return [out / "c0-1.pt", out / "c2-2.pt"]


def merge_command(feature_files, out, *options: str) -> pd.DataFrame:
    paths = [str(p) for p in feature_files]
    assert main(["merge-scores", "--features", *paths, "--out", str(out), *options]) == 0
    return read_metrics(out)


def test_map_and_reduce_give_the_scores_of_one_torch_fidelity_call(
    feature_files, run_files, digit_shards, classifier_file, tmp_path
):
    records = merge_scores(load_chunk_score_files(feature_files), log=lambda _: None)
    classifier = classifier_file[0]
    fake = [shard.images[-SAMPLES:] for shard in digit_shards]
    real = [sample_rows(shard.images, MAX_REAL, seed=shard.label.index) for shard in digit_shards]
    assert_same_scores(records[0], reference_scores(torch.cat(fake), torch.cat(real), classifier, True, True))
    for record, label_fake, label_real in zip(records[1:], fake, real, strict=True):
        assert_same_scores(
            record, reference_scores(label_fake, label_real, classifier, precision_recall=True)
        )
    # The reduce command writes those records; the one-process command is the same map and reduce.
    table = merge_command(feature_files, tmp_path / "metrics.tsv")
    write_metrics(records, tmp_path / "records.tsv")
    pd.testing.assert_frame_equal(table, read_metrics(tmp_path / "records.tsv"))
    assert list(table["n_fake"]) == [3 * SAMPLES, SAMPLES, SAMPLES, SAMPLES]
    assert list(table["n_real"]) == [3 * MAX_REAL, MAX_REAL, MAX_REAL, MAX_REAL]
    assert (table["kept_n_fake"][0], table["kept_n_real"][0]) == (3 * SAMPLES, 3 * MAX_REAL)  # all kept
    command = [
        "score",
        "--samples",
        *map(str, run_files["samples"]),
        "--shards",
        *map(str, run_files["shards"]),
    ]
    options = ["--classifier", str(classifier), "--max-real-per-label", str(MAX_REAL), "--device", "cpu"]
    assert main([*command, *options, "--out", str(tmp_path / "score.tsv")]) == 0
    pd.testing.assert_frame_equal(read_metrics(tmp_path / "score.tsv"), table)


def test_the_curve_from_snapshot_features_is_the_one_of_torch_fidelity(
    feature_files, run_files, digit_shards, classifier_file, tmp_path
):
    rows = merge_curve(load_chunk_score_files(feature_files), log=lambda _: None)
    # Files come in name order, not label order: the curve takes them in label order (the
    # moments, summed in another order, may differ in the last bits).
    shuffled = merge_curve(load_chunk_score_files(feature_files[::-1]), log=lambda _: None)
    for row, again in zip(rows, shuffled, strict=True):
        assert again == {
            key: value if isinstance(value, str) else pytest.approx(value, rel=1e-12)
            for key, value in row.items()
        }
    assert [row["point"] for row in rows] == [1, 2] and [row["iterations"] for row in rows] == [20, 40]
    assert [row["device_seconds"] for row in rows] == [5.0, 7.0]  # summed over the two training jobs
    real = torch.cat([sample_rows(s.images, MAX_REAL, seed=s.label.index) for s in digit_shards])
    for k, row in enumerate(rows):
        fake = torch.cat([shard.images[k * 40 : k * 40 + 20] for shard in digit_shards])
        assert_same_scores(row, reference_scores(fake, real, classifier_file[0], inception_score=True))
    # The reduce command writes those rows; the one-process command is the same map and reduce.
    out = tmp_path / "curve.tsv"
    assert main(["merge-curve", "--features", *map(str, feature_files), "--out", str(out)]) == 0
    curve = pd.read_csv(out, sep="\t")
    write_tsv(pd.DataFrame(rows), tmp_path / "rows.tsv")
    pd.testing.assert_frame_equal(curve, pd.read_csv(tmp_path / "rows.tsv", sep="\t"))
    command = ["score-curve", "--snapshots", *map(str, run_files["snapshots"])]
    options = ["--shards", *map(str, run_files["shards"]), "--classifier", str(classifier_file[0])]
    options += ["--max-real-per-label", str(MAX_REAL), "--device", "cpu"]
    assert main([*command, *options, "--out", str(tmp_path / "score-curve.tsv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "score-curve.tsv", sep="\t"), curve)


def test_a_map_job_builds_its_extractor_once_and_sees_each_image_once(
    run_files, classifier_file, tmp_path, monkeypatch
):
    built, seen = [], []
    original_init, original_forward = ClassifierFeatureExtractor.__init__, ClassifierFeatureExtractor.forward

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original_init(self, *args, **kwargs)

    def counting_forward(self, images):
        seen.append(len(images))
        return original_forward(self, images)

    monkeypatch.setattr(ClassifierFeatureExtractor, "__init__", counting_init)
    monkeypatch.setattr(ClassifierFeatureExtractor, "forward", counting_forward)
    out = tmp_path / "c.pt"
    assert main(features_command(run_files, classifier_file[0], [0, 1, 2], out, snapshots=[0, 1])) == 0
    snapshot_images = 2 * 20 * 3  # two points of 20 samples of each of three labels
    assert built == [1]
    assert sum(seen) == 3 * SAMPLES + 3 * MAX_REAL + snapshot_images
    saved = load_chunk_scores(out)
    assert [label.name for label in saved.labels] == ["0", "1", "2"]
    assert [(row["n_fake"], row["n_real"]) for row in saved.rows] == [(SAMPLES, MAX_REAL)] * 3
    assert (saved.fake.count, saved.real.count) == (3 * SAMPLES, 3 * MAX_REAL)
    assert [len(part.indices) for part in saved.snapshots] == [60, 60]  # both jobs' samples of a point


def test_a_map_job_refuses_lists_that_do_not_pair_up(run_files, classifier_file, tmp_path, capsys):
    command = features_command(run_files, classifier_file[0], [0, 1], tmp_path / "c.pt")
    del command[command.index("--shards") + 2]  # two labels' samples, one label's images
    assert main(command) == 1
    assert "got --samples 2, --shards 1 files" in capsys.readouterr().err
    swapped = features_command(run_files, classifier_file[0], [0, 1], tmp_path / "c.pt")
    shards = swapped.index("--shards")
    swapped[shards + 1], swapped[shards + 2] = swapped[shards + 2], swapped[shards + 1]
    assert main(swapped) == 1
    error = capsys.readouterr().err.strip()
    assert error.splitlines() == [error]
    assert "the samples of label '0' come with the real images of label '1'" in error


def test_precision_recall_uses_a_seeded_subset_above_the_limit(
    feature_files, run_files, classifier_file, tmp_path
):
    full = merge_command(feature_files, tmp_path / "full.tsv")
    assert list(full["prc_n_fake"]) == [3 * SAMPLES, SAMPLES, SAMPLES, SAMPLES]
    assert list(full["prc_n_real"]) == [3 * MAX_REAL, MAX_REAL, MAX_REAL, MAX_REAL]
    # The reduce's limit holds for the merged labels, the map's for each label.
    limited = merge_command(feature_files, tmp_path / "limited.tsv", "--prc-max-images", "50")
    assert list(limited["prc_n_fake"]) == [50, SAMPLES, SAMPLES, SAMPLES]
    assert list(limited["prc_n_real"]) == [50, MAX_REAL, MAX_REAL, MAX_REAL]
    again = merge_command(feature_files, tmp_path / "again.tsv", "--prc-max-images", "50")
    pd.testing.assert_frame_equal(again, limited)  # seeded: the same subset every time
    # The limit touches precision/recall only.
    for name in ("is_mean", "fid", "kid_mean"):
        assert list(limited[name].fillna(-1)) == list(full[name].fillna(-1))
    command = features_command(
        run_files, classifier_file[0], [2], tmp_path / "2.pt", (), "--prc-max-images", "50"
    )
    assert main(command) == 0
    assert load_chunk_scores(tmp_path / "2.pt").rows[0]["prc_n_real"] == 50


def test_the_overall_scores_read_a_seeded_subset_of_each_label(feature_files, tmp_path):
    full = merge_scores(load_chunk_score_files(feature_files), log=lambda _: None)
    kept = []
    for chunk_file in feature_files:
        kept.append(tmp_path / chunk_file.name)
        chunk = load_chunk_scores(chunk_file)
        subset = {
            key: [rows[::3] for rows in getattr(chunk, key)]
            for key in ("kept_fake", "kept_logits", "kept_real")
        }
        save_chunk_scores(dataclasses.replace(chunk, **subset), kept[-1])
    subset = merge_command(kept, tmp_path / "subset.tsv")
    assert (subset["kept_n_fake"][0], subset["kept_n_real"][0]) == (3 * SAMPLES // 3, 3 * MAX_REAL // 3)
    assert subset["n_fake"][0] == 3 * SAMPLES  # FID's moments hold every feature
    # (the table holds 6 significant digits)
    assert subset["fid"][0] == pytest.approx(full[0]["fid"], rel=1e-5)
    assert subset["kid_mean"][0] != pytest.approx(full[0]["kid_mean"], rel=1e-3)
    assert list(subset["fid"][1:]) == pytest.approx([row["fid"] for row in full[1:]], rel=1e-5)


class WritesAFile:
    """Unpickling this runs code: it creates the folder ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_malicious_features_file_is_refused_before_it_runs(feature_files, tmp_path):
    marker = tmp_path / "code-ran"
    planted = tmp_path / "features.pt"
    torch.save({"format": "wcgan-chunk-scores-1", "payload": WritesAFile(marker)}, planted)
    torch.load(planted, weights_only=False)  # what an unsafe load does
    assert marker.is_dir()
    marker.rmdir()
    with pytest.raises(WcganError, match=f"chunk scores '{planted}' cannot be read"):
        load_chunk_scores(planted)
    paths = [str(feature_files[0]), str(planted)]
    assert main(["merge-scores", "--features", *paths, "--out", str(tmp_path / "m.tsv")]) == 1
    damaged = torch.load(feature_files[1], weights_only=True)
    damaged["real"]["upper"] = damaged["real"]["upper"][:-1]
    torch.save(damaged, tmp_path / "damaged.pt")
    with pytest.raises(WcganError, match="damaged.pt' hold no feature moments"):
        load_chunk_scores(tmp_path / "damaged.pt")
    assert main(["merge-curve", "--features", *paths, "--out", str(tmp_path / "c.tsv")]) == 1
    assert not marker.exists() and not (tmp_path / "m.tsv").exists()


def test_features_of_another_extractor_are_refused(feature_files, classifier_file, run_files, tmp_path):
    state = torch.load(classifier_file[0], weights_only=True)
    state["state"]["head.bias"] += 1.0  # a retrained classifier
    torch.save(state, tmp_path / "retrained.pt")
    assert main(features_command(run_files, tmp_path / "retrained.pt", [2], tmp_path / "2.pt")) == 0
    paths = [feature_files[0], tmp_path / "2.pt"]
    with pytest.raises(WcganError, match=f"features '{tmp_path / '2.pt'}' were made by wcgan-classifier"):
        load_chunk_score_files(paths)
    with pytest.raises(WcganError, match="chunk scores '.*c2-2.pt' repeat label '2' of '.*c2-2.pt'"):
        load_chunk_score_files([*feature_files, feature_files[1]])


def test_a_run_is_scored_merged_and_per_label(classifier_file, digit_shards, tmp_path):
    network = open_extractor(None, classifier_file[0])
    samples = [(shard.images[:SAMPLES], shard.label) for shard in digit_shards]
    records = score_run(samples, digit_shards, network, max_real_per_label=MAX_REAL, log=lambda _: None)
    write_metrics(records, tmp_path / "metrics.tsv")
    table = read_metrics(tmp_path / "metrics.tsv")
    assert list(table["scope"]) == ["overall", "label", "label", "label"]
    assert list(table["label"].fillna("")) == ["", "0", "1", "2"]
    assert table["is_mean"].notna().tolist() == [True, False, False, False]
    assert (table["extractor"] == "wcgan-classifier").all()
    with pytest.raises(WcganError, match="the samples of label '1' come with the real images of label '2'"):
        score_run(samples[:2], digit_shards[::2], network, log=lambda _: None)


# --- Inception-v3 -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A randomly initialised Inception-v3 state dict: the real weights cannot be downloaded
    here, and the code path is the same."""
    folder = tmp_path_factory.mktemp("inception")
    torch.save({}, folder / "empty.pth")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.Module, "load_state_dict", lambda self, state, *a, **k: None)
        network = FeatureExtractorInceptionV3(
            "x", ["2048"], feature_extractor_weights_path=str(folder / "empty.pth")
        )
    torch.save(network.state_dict(), folder / "inception.pth")
    return folder / "inception.pth"


def test_inception_weights_are_read_once_and_only_as_tensors(inception_file, digit_shards, monkeypatch):
    """torch-fidelity's Inception-v3 gets the state dict loaded with weights_only=True, never
    the file: a file swapped after that check cannot reach torch-fidelity's unsafe load."""
    loads, original_load = [], torch.load

    def recording_load(source, *args, **kwargs):
        loads.append((source, kwargs.get("weights_only")))
        return original_load(source, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    network = open_extractor(str(inception_file), None)
    monkeypatch.undo()
    assert loads and all(isinstance(source, io.BytesIO) for source, _ in loads)  # no file reopened
    assert loads[0][1] is True  # the file's bytes, loaded as tensors only
    assert network.extractor.name == INCEPTION_EXTRACTOR
    assert network.extractor.sha256 == hashlib.sha256(inception_file.read_bytes()).hexdigest()
    state = torch.load(inception_file, weights_only=True)
    assert torch.equal(network.network.state_dict()["fc.weight"], state["fc.weight"])
    features, logits = network.extract(digit_shards[0].images[:4])
    assert features.shape == (4, 2048) and logits.shape == (4, 1008)


class NotTensors:
    """Stands for arbitrary pickled code in a weights file."""


def test_inception_weights_must_be_a_plain_state_dict(tmp_path):
    with pytest.raises(WcganError, match="metrics.inception_weights '.*absent.pth' does not exist"):
        open_extractor(str(tmp_path / "absent.pth"), None)
    torch.save({"fc.weight": NotTensors()}, tmp_path / "pickled.pth")
    with pytest.raises(WcganError, match="pickled.pth' cannot be read"):
        open_extractor(str(tmp_path / "pickled.pth"), None)
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(WcganError, match="other.pth' do not fit torch-fidelity's Inception-v3"):
        open_extractor(str(tmp_path / "other.pth"), None)


def test_downloaded_inception_weights_must_have_the_published_sha256(inception_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    downloads = []

    def offline_download(url, dst, hash_prefix=None, progress=True):
        downloads.append((url, hash_prefix))
        with open(dst, "wb") as fh:
            fh.write(inception_file.read_bytes())  # stands for a file that is not the published one

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline_download)
    with pytest.raises(WcganError, match="have SHA-256 [0-9a-f]{64}, not the published 6726825d"):
        open_extractor("download", None)
    assert downloads == [(wcgan.metrics.URL_INCEPTION_V3, wcgan.metrics.INCEPTION_SHA256)]
    digest = hashlib.sha256(inception_file.read_bytes()).hexdigest()
    monkeypatch.setattr(wcgan.metrics, "INCEPTION_SHA256", digest)  # as if it were the published file
    network = open_extractor("download", None)
    assert len(downloads) == 1  # the file kept from before, checked again
    assert (network.extractor.name, network.extractor.weights, network.extractor.sha256) == (
        "inception-v3-compat",
        "download",
        digest,
    )


def test_a_label_too_small_for_precision_recall_gets_nan_not_a_failed_merge():
    generator = torch.Generator().manual_seed(0)
    fake, real = (torch.randn(3, 8, generator=generator) for _ in range(2))  # k = 3 neighbours
    values = metric_values(fake, real, precision_recall=True)
    assert torch.isnan(torch.tensor([values["precision"], values["recall"]])).all()
    assert values["prc_n_fake"] == 0 and values["fid"] == values["fid"]  # the other metrics stand
    bigger = metric_values(torch.randn(5, 8, generator=generator), real.repeat(2, 1), precision_recall=True)
    assert 0 <= bigger["precision"] <= 1 and bigger["prc_n_real"] == 6
