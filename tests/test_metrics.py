import pytest
import torch
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from wcgan.classifier import load_classifier, predict, save_classifier, train_classifier
from wcgan.config import ClassifierConfig
from wcgan.errors import WcganError
from wcgan.metrics import (
    CLASSIFIER_EXTRACTOR,
    INCEPTION_EXTRACTOR,
    ClassifierFeatureExtractor,
    LocalInceptionFeatureExtractor,
    choose_extractor,
    score,
    score_run,
)


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


def test_both_extractors_are_registered_with_torch_fidelity():
    assert FEATURE_EXTRACTORS_REGISTRY[CLASSIFIER_EXTRACTOR] is ClassifierFeatureExtractor
    assert FEATURE_EXTRACTORS_REGISTRY[INCEPTION_EXTRACTOR] is LocalInceptionFeatureExtractor


class NotTensors:
    """Stands for arbitrary pickled code in a weights file."""


def test_inception_weights_must_be_a_plain_state_dict(tmp_path):
    torch.save({"fc.weight": NotTensors()}, tmp_path / "pickled.pth")
    with pytest.raises(WcganError, match="pickled.pth' cannot be read"):
        LocalInceptionFeatureExtractor(
            "x", ["2048"], feature_extractor_weights_path=str(tmp_path / "pickled.pth")
        )
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(WcganError, match="are not torch-fidelity's state dict"):
        LocalInceptionFeatureExtractor(
            "x", ["2048"], feature_extractor_weights_path=str(tmp_path / "other.pth")
        )


def test_scores_separate_matching_from_mismatched_images(classifier_file, digit_shards):
    extractor = choose_extractor(None, classifier_file[0])
    assert extractor.accuracy == classifier_file[1]["holdout_accuracy"]
    zeros, ones = digit_shards[0].images, digit_shards[1].images
    same = score(zeros[:80], zeros[80:160], extractor)
    different = score(ones[:80], zeros[80:160], extractor)
    assert set(same) == {"fid", "kid_mean", "kid_std"}
    assert different["fid"] > 10 * same["fid"]
    both = score(
        torch.cat([zeros[:50], ones[:50]]),
        torch.cat([zeros, ones]),
        extractor,
        inception_score=True,
        precision_recall=True,
    )
    assert 1.8 < both["is_mean"] <= 2.0  # two confidently told-apart classes
    assert both["precision"] > 0.9 and both["recall"] > 0.5


def test_real_features_are_cached_per_images_and_extractor(classifier_file, digit_shards, tmp_path, capsys):
    extractor = choose_extractor(None, classifier_file[0])
    zeros, ones = digit_shards[0].images, digit_shards[1].images

    def run(real, extractor=extractor):
        values = score(ones[:40], real, extractor, cache_root=tmp_path, real_cache_name="all", verbose=True)
        return values, capsys.readouterr().err

    first, log = run(zeros)
    assert "Caching" in log and "Loading cached" not in log
    files = set(tmp_path.iterdir())
    assert files and all(p.name.startswith("all-") for p in files)
    again, log = run(zeros)
    assert again == first and "Loading cached" in log and set(tmp_path.iterdir()) == files
    _, log = run(zeros[:100])  # other real images: a new cache entry, not the stale one
    assert "Loading cached" not in log and len(set(tmp_path.iterdir())) == 2 * len(files)
    state = torch.load(classifier_file[0], weights_only=True)
    state["state"]["head.bias"] += 1.0  # a retrained classifier: other weights, other cache entry
    torch.save(state, tmp_path.parent / "retrained.pt")
    _, log = run(zeros, choose_extractor(None, tmp_path.parent / "retrained.pt"))
    assert "Loading cached" not in log and len(set(tmp_path.iterdir())) == 3 * len(files)


def test_inception_needs_an_existing_weights_file(tmp_path):
    with pytest.raises(WcganError, match="metrics.inception_weights '.*absent.pth' does not exist"):
        choose_extractor(str(tmp_path / "absent.pth"), None)
    downloaded = choose_extractor("download", None)
    assert (downloaded.name, downloaded.weights) == ("inception-v3-compat", "download")


def test_inception_from_a_local_weights_file(tmp_path, digit_shards, monkeypatch):
    """torch-fidelity's own Inception-v3, loaded from a local file (random weights here: the
    real file cannot be downloaded on this machine, and the code path is the same)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.save({}, tmp_path / "empty.pth")
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda self, state, *a, **k: None)
    state = FeatureExtractorInceptionV3(
        "x", ["2048"], feature_extractor_weights_path=str(tmp_path / "empty.pth")
    ).state_dict()
    monkeypatch.undo()
    torch.save(state, tmp_path / "inception.pth")
    extractor = choose_extractor(str(tmp_path / "inception.pth"), None)
    assert extractor.name == "wcgan-inception-v3"
    values = score(digit_shards[0].images[:12], digit_shards[1].images[:12], extractor, inception_score=True)
    assert values["is_mean"] > 0 and values["fid"] >= 0


def test_a_run_is_scored_merged_and_per_label(classifier_file, digit_shards, tmp_path):
    from wcgan.tables import read_metrics, write_metrics

    extractor = choose_extractor(None, classifier_file[0])
    samples = [(shard.images[:30], shard.label) for shard in digit_shards]
    records = score_run(samples, digit_shards, extractor, max_real_per_label=60, log=lambda _: None)
    write_metrics(records, tmp_path / "metrics.tsv")
    table = read_metrics(tmp_path / "metrics.tsv")
    assert list(table["scope"]) == ["overall", "label", "label", "label"]
    assert list(table["label"].fillna("")) == ["", "0", "1", "2"]
    assert list(table["n_fake"]) == [90, 30, 30, 30] and list(table["n_real"]) == [180, 60, 60, 60]
    assert table["is_mean"].notna().tolist() == [True, False, False, False]
    assert (table["extractor"] == "wcgan-classifier").all()
    with pytest.raises(WcganError, match="samples and shards cover different labels"):
        score_run(samples[:2], digit_shards, extractor, log=lambda _: None)
