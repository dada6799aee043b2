"""Scoring as map and reduce over saved features, with torch-fidelity's metric functions.

Map (``extract_label_features``, ``extract_snapshot_features``; ``wcgan features``): a job
builds its feature extractor once and sends each real and generated image through it once,
keeping what the metrics read: the pooled features of real and generated images (FID, KID,
precision/recall) and the logits of generated ones (IS). Reduce (``score_labels``,
``score_curve``; ``wcgan merge-scores``, ``wcgan merge-curve``): the metrics from those
features, all labels merged and per label, with torch-fidelity's feature-level functions and
the arguments ``torch_fidelity.calculate_metrics`` was called with before, so the numbers are
the ones it gave; nothing is re-implemented here.

Extractors: the run's classifier, or torch-fidelity's Inception-v3 network built from a state
dict loaded once with ``weights_only=True``: a local file, or torch-fidelity's published file,
downloaded and checked against its SHA-256. Nothing is unpickled beyond tensors: feature files
load with ``weights_only=True``, and torch-fidelity's pickle feature cache is not used.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from wcgan.atomic import load_torch, load_torch_hashed, save_torch
from wcgan.compare import curve_rows
from wcgan.config import INCEPTION_DOWNLOAD, PRC_MAX_IMAGES, SCORE_SEED
from wcgan.data import Shard, sample_rows
from wcgan.errors import WcganError
from wcgan.labels import Label
from wcgan.model_files import classifier_from_file_data
from wcgan.networks import Classifier, images_to_float

CLASSIFIER_EXTRACTOR = "wcgan-classifier"
INCEPTION_EXTRACTOR = "wcgan-inception-v3"  # local weights file
DOWNLOADED_INCEPTION_EXTRACTOR = "inception-v3-compat"  # torch-fidelity's published weights file
# SHA-256 of torch-fidelity's published weights file (URL_INCEPTION_V3). The file name carries
# its first 8 hex digits (6726825d, torch.hub's naming convention); the full digest pins the
# whole file.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"

FEATURES_FORMAT = "wcgan-features-1"
SNAPSHOT_FEATURES_FORMAT = "wcgan-snapshot-features-1"
BATCH_SIZE = DEFAULTS["batch_size"]  # torch-fidelity's: images are batched as it batched them

# Our names for torch-fidelity's result keys, in table order.
METRIC_KEYS = {
    "is_mean": torch_fidelity.KEY_METRIC_ISC_MEAN,
    "is_std": torch_fidelity.KEY_METRIC_ISC_STD,
    "fid": torch_fidelity.KEY_METRIC_FID,
    "kid_mean": torch_fidelity.KEY_METRIC_KID_MEAN,
    "kid_std": torch_fidelity.KEY_METRIC_KID_STD,
    "precision": torch_fidelity.KEY_METRIC_PRECISION,
    "recall": torch_fidelity.KEY_METRIC_RECALL,
    "f_score": torch_fidelity.KEY_METRIC_F_SCORE,
}


# --- extractors ---------------------------------------------------------------------------


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor over a wcgan classifier: ``logits`` for IS, ``features`` for the rest."""

    def __init__(self, name: str, features_list: list[str], model: Classifier):
        super().__init__(name, features_list)
        self.model = model
        self.requires_grad_(False)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # torch-fidelity's convention is uint8 RGB; a greyscale classifier reads one (repeated) channel.
        x = images_to_float(images[:, : self.model.channels])
        if x.shape[-1] != self.model.resolution:
            size = (self.model.resolution, self.model.resolution)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        features, logits = self.model(x)
        provided = {"features": features, "logits": logits}
        return tuple(provided[name] for name in self.features_list)


def _layers(cls: type[FeatureExtractorBase]) -> list[str]:
    """The layers an extractor class gives FID, KID and precision/recall (one layer in both of
    ours), then IS."""
    return [cls.get_default_feature_layer_for_metric("fid"), cls.get_default_feature_layer_for_metric("isc")]


def inception_from_state(state: Any, path: str | os.PathLike) -> FeatureExtractorInceptionV3:
    """torch-fidelity's Inception-v3 network with the weights ``state`` (loaded from ``path``).

    Its constructor insists on reading the weights itself and unpickles them without
    ``weights_only``; it gets a stream that we serialised here from the tensors already loaded,
    so no file is opened a second time and nothing but tensors is unpickled.
    """
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise WcganError(f"Inception-v3 weights '{path}' are not a state dict of tensors")
    stream = io.BytesIO()
    torch.save(state, stream)
    stream.seek(0)
    layers = _layers(FeatureExtractorInceptionV3)
    try:
        return FeatureExtractorInceptionV3(INCEPTION_EXTRACTOR, layers, feature_extractor_weights_path=stream)
    except RuntimeError as exc:  # load_state_dict: missing, unexpected or misshapen tensors
        raise WcganError(
            f"Inception-v3 weights '{path}' do not fit torch-fidelity's Inception-v3: "
            + str(exc).strip().splitlines()[0]
        ) from exc


def download_inception_weights() -> Path:
    """torch-fidelity's published Inception-v3 weights file, downloaded into torch.hub's
    checkpoint folder unless it is there already (where torch-fidelity itself keeps it)."""
    import torch.hub

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(URL_INCEPTION_V3).name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(path), INCEPTION_SHA256, progress=False)
        except Exception as exc:  # no network, HTTP errors, or a file with another digest
            raise WcganError(f"cannot download the Inception-v3 weights {URL_INCEPTION_V3}: {exc}") from exc
    return path


@dataclass(frozen=True)
class Extractor:
    """Which network made a set of features: features of different extractors never mix."""

    name: str
    weights: str  # the weights file as given, or INCEPTION_DOWNLOAD
    sha256: str  # of the weights file's bytes the network was built from
    accuracy: float | None = None  # the classifier's hold-out accuracy


class FeatureNetwork:
    """A built extractor on its device: ``extract(images)`` sends each image through it once."""

    def __init__(self, extractor: Extractor, network: FeatureExtractorBase, device: torch.device | None):
        self.extractor = extractor
        self.device = device or torch.device("cpu")
        self.network = network.requires_grad_(False).eval().to(self.device)

    @torch.no_grad()
    def extract(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (FID, KID, precision/recall) and logits (IS) of uint8 N x 1|3 x H x W
        ``images``, in torch-fidelity's batches, on the CPU."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError("expected uint8 N x 1|3 x H x W images")
        features, logits = [], []
        for batch in images.split(BATCH_SIZE):
            rgb = batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch
            out = self.network(rgb.to(self.device))
            features.append(out[0].cpu())
            logits.append(out[1].cpu())
        return torch.cat(features), torch.cat(logits)


def open_extractor(
    inception_weights: str | None,
    classifier: str | os.PathLike | None,
    device: torch.device | None = None,
) -> FeatureNetwork:
    """Inception-v3 when ``metrics.inception_weights`` names a file (or ``download``), else the
    run's classifier; its weights file read once, with ``weights_only=True``."""
    if inception_weights == INCEPTION_DOWNLOAD:
        path = download_inception_weights()
        state, sha256 = load_torch_hashed(path, "Inception-v3 weights")
        if sha256 != INCEPTION_SHA256:
            raise WcganError(
                f"Inception-v3 weights '{path}' have SHA-256 {sha256}, not the published "
                f"{INCEPTION_SHA256}: delete the file to download it again"
            )
        extractor = Extractor(DOWNLOADED_INCEPTION_EXTRACTOR, INCEPTION_DOWNLOAD, sha256)
        return FeatureNetwork(extractor, inception_from_state(state, path), device)
    if inception_weights:
        if not Path(inception_weights).is_file():
            raise WcganError(f"metrics.inception_weights '{inception_weights}' does not exist")
        state, sha256 = load_torch_hashed(inception_weights, "Inception-v3 weights")
        extractor = Extractor(INCEPTION_EXTRACTOR, str(inception_weights), sha256)
        return FeatureNetwork(extractor, inception_from_state(state, inception_weights), device)
    if classifier is None:
        raise WcganError("no classifier file given and metrics.inception_weights is unset")
    data, sha256 = load_torch_hashed(classifier, "classifier")
    model = classifier_from_file_data(data, classifier)
    extractor = Extractor(CLASSIFIER_EXTRACTOR, str(classifier), sha256, data.get("holdout_accuracy"))
    network = ClassifierFeatureExtractor(CLASSIFIER_EXTRACTOR, _layers(ClassifierFeatureExtractor), model)
    return FeatureNetwork(extractor, network, device)


# --- map: features ------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelFeatures:
    """What every metric reads of one label: its real images' features, its samples' features
    and logits, and the extractor that made them."""

    label: Label
    extractor: Extractor
    real_features: torch.Tensor  # n_real x D
    fake_features: torch.Tensor  # n_fake x D
    fake_logits: torch.Tensor  # n_fake x C


def _split_rows(values: torch.Tensor, counts: Sequence[int]) -> list[torch.Tensor]:
    # Clones, so a saved part holds its own rows rather than all the batch's storage.
    return [part.clone() for part in values.split(list(counts))]


def extract_real_features(
    network: FeatureNetwork, shards: Sequence[Shard], max_real_per_label: int | None = None
) -> list[torch.Tensor]:
    """Features of each label's real images (at most ``max_real_per_label``, a subset seeded by
    the label), as one stream so batches run across labels."""
    real = [sample_rows(s.images, max_real_per_label, seed=s.label.index) for s in shards]
    features, _ = network.extract(torch.cat(real))
    return _split_rows(features, [len(images) for images in real])


def extract_label_features(
    network: FeatureNetwork,
    samples: Sequence[tuple[torch.Tensor, Label]],
    shards: Sequence[Shard],
    max_real_per_label: int | None = None,
    log: Callable[[str], None] = print,
) -> list[LabelFeatures]:
    """The features of each label's samples and real images, ``samples`` and ``shards`` in the
    same label order; every image goes through the extractor once."""
    if len(samples) != len(shards):
        raise WcganError(f"{len(samples)} labels' samples but {len(shards)} labels' real images")
    for (_, label), shard in zip(samples, shards, strict=True):
        if label.slug != shard.label.slug:
            raise WcganError(
                f"the samples of label '{label.name}' come with the real images of label "
                f"'{shard.label.name}': give samples and real images in one label order"
            )
    fake_features, fake_logits = network.extract(torch.cat([images for images, _ in samples]))
    counts = [len(images) for images, _ in samples]
    real_features = extract_real_features(network, shards, max_real_per_label)
    log(
        f"features of {len(samples)} labels: {sum(counts)} samples, {sum(map(len, real_features))} real images"
    )
    return [
        LabelFeatures(label, network.extractor, real, fake, logits)
        for (_, label), real, fake, logits in zip(
            samples,
            real_features,
            _split_rows(fake_features, counts),
            _split_rows(fake_logits, counts),
            strict=True,
        )
    ]


@dataclass(frozen=True)
class SnapshotFeatures:
    """The features of one training job's snapshot samples (``wcgan.sampling.save_snapshot_samples``):
    per point its iteration, seconds, device-seconds, each sample's class ``indices`` and the
    samples' ``features`` and ``logits``."""

    extractor: Extractor
    points: list[dict[str, Any]]


def extract_snapshot_features(network: FeatureNetwork, points: Sequence[dict]) -> SnapshotFeatures:
    """The features of every snapshot point's samples (``wcgan.sampling.load_snapshot_samples``)."""
    featured = []
    for point in points:
        features, logits = network.extract(point["images"])
        kept = {key: point[key] for key in ("iteration", "seconds", "device_seconds", "indices")}
        featured.append({**kept, "features": features, "logits": logits})
    return SnapshotFeatures(network.extractor, featured)


# --- feature files ------------------------------------------------------------------------


def save_label_features(features: LabelFeatures, path: str | os.PathLike) -> None:
    save_torch(
        {
            "format": FEATURES_FORMAT,
            "label": dataclasses.asdict(features.label),
            "extractor": dataclasses.asdict(features.extractor),
            "n_real": len(features.real_features),
            "n_fake": len(features.fake_features),
            "real_features": features.real_features,
            "fake_features": features.fake_features,
            "fake_logits": features.fake_logits,
        },
        path,
    )


def _extractor_of(data: dict, path: str | os.PathLike, what: str) -> Extractor:
    try:
        return Extractor(**data["extractor"])
    except (KeyError, TypeError) as exc:
        raise WcganError(f"{what} '{path}' do not say which extractor made them") from exc


def _matrix(data: dict, key: str, rows: int | None, path: str | os.PathLike, what: str) -> torch.Tensor:
    value = data.get(key)
    if not torch.is_tensor(value) or value.dim() != 2 or not value.is_floating_point():
        raise WcganError(f"{what} '{path}': '{key}' is not a matrix of floats")
    if rows is not None and len(value) != rows:
        raise WcganError(f"{what} '{path}': '{key}' has {len(value)} rows, not {rows}")
    return value


def load_label_features(path: str | os.PathLike) -> LabelFeatures:
    """A file of ``save_label_features``; it loads with ``weights_only=True``, so a file that
    holds anything but tensors and plain values is refused before any of it runs."""
    what = "features"
    data = load_torch(path, what)
    if not isinstance(data, dict) or data.get("format") != FEATURES_FORMAT:
        raise WcganError(f"{what} '{path}' is not a wcgan features file (made by 'wcgan features')")
    try:
        label = Label(**data["label"])
    except (KeyError, TypeError) as exc:
        raise WcganError(f"{what} '{path}' do not say which label they are of") from exc
    return LabelFeatures(
        label,
        _extractor_of(data, path, what),
        _matrix(data, "real_features", data.get("n_real"), path, what),
        _matrix(data, "fake_features", data.get("n_fake"), path, what),
        _matrix(data, "fake_logits", data.get("n_fake"), path, what),
    )


def save_snapshot_features(features: SnapshotFeatures, path: str | os.PathLike) -> None:
    save_torch(
        {
            "format": SNAPSHOT_FEATURES_FORMAT,
            "extractor": dataclasses.asdict(features.extractor),
            "points": features.points,
        },
        path,
    )


def load_snapshot_features(path: str | os.PathLike) -> SnapshotFeatures:
    """A file of ``save_snapshot_features``, loaded with ``weights_only=True``."""
    what = "snapshot features"
    data = load_torch(path, what)
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FEATURES_FORMAT:
        raise WcganError(f"{what} '{path}' is not a wcgan snapshot features file (made by 'wcgan features')")
    points = data.get("points")
    if not isinstance(points, list) or not all(isinstance(point, dict) for point in points):
        raise WcganError(f"{what} '{path}' hold no list of snapshot points")
    for point in points:
        missing = {"iteration", "seconds", "device_seconds"} - point.keys()
        if missing:
            raise WcganError(f"{what} '{path}': a snapshot point has no {', '.join(sorted(missing))}")
        indices = point.get("indices")
        if not torch.is_tensor(indices) or indices.dim() != 1:
            raise WcganError(f"{what} '{path}': a snapshot point has no class indices")
        _matrix(point, "features", len(indices), path, what)
        _matrix(point, "logits", len(indices), path, what)
    return SnapshotFeatures(_extractor_of(data, path, what), points)


def check_one_extractor(extractors: Sequence[Extractor], paths: Sequence[str | os.PathLike]) -> None:
    """Features of different extractors (or of one weights file changed in between) never mix;
    the same weights named by another path are the same extractor."""
    first = extractors[0]
    for extractor, path in zip(extractors[1:], paths[1:], strict=True):
        if (extractor.name, extractor.sha256) != (first.name, first.sha256):
            raise WcganError(
                f"features '{path}' were made by {extractor.name} '{extractor.weights}' "
                f"(SHA-256 {extractor.sha256[:12]}), but '{paths[0]}' by {first.name} "
                f"'{first.weights}' ({first.sha256[:12]}): extract all with one extractor"
            )


def load_label_feature_files(paths: Sequence[str | os.PathLike]) -> list[LabelFeatures]:
    """Every label's features, one extractor's, no label twice."""
    labels = [load_label_features(path) for path in paths]
    check_one_extractor([features.extractor for features in labels], paths)
    seen: dict[int, str | os.PathLike] = {}
    for features, path in zip(labels, paths, strict=True):
        if features.label.index in seen:
            raise WcganError(
                f"features '{path}' repeat label '{features.label.name}' of '{seen[features.label.index]}'"
            )
        seen[features.label.index] = path
    return labels


# --- reduce: metrics ----------------------------------------------------------------------


def metric_values(
    fake_features: torch.Tensor,
    real_features: torch.Tensor,
    fake_logits: torch.Tensor | None = None,
    *,
    precision_recall: bool = False,
    prc_max_images: int = PRC_MAX_IMAGES,
    seed: int = SCORE_SEED,
) -> dict[str, float]:
    """FID and KID of generated against real features, IS when ``fake_logits`` are given, and
    precision/recall on request, from at most ``prc_max_images`` of each side (a subset seeded
    by ``seed`` above that; ``prc_n_fake`` and ``prc_n_real`` say how many were used).

    The arguments are those ``torch_fidelity.calculate_metrics`` was called with before.
    """
    n_fake, n_real = len(fake_features), len(real_features)
    if n_fake < 2 or n_real < 2:
        raise WcganError(f"scoring needs at least 2 generated and 2 real images, got {n_fake} and {n_real}")
    values: dict[str, float] = {}
    if fake_logits is not None:
        values.update(isc_features_to_metric(fake_logits, splits=min(10, n_fake), rng_seed=seed))
    statistics = [fid_features_to_statistics(features) for features in (fake_features, real_features)]
    values.update(fid_statistics_to_metric(*statistics, verbose=False))
    values.update(
        kid_features_to_metric(
            fake_features,
            real_features,
            kid_subset_size=min(1000, n_fake, n_real),
            rng_seed=seed,
            verbose=False,
        )
    )
    sizes = {}
    # Precision/recall compares each image with its k nearest neighbours: a label with k or
    # fewer images on a side has none to give (NaN in its row, not a failed merge of them all).
    if precision_recall and min(n_fake, n_real) <= DEFAULTS["prc_neighborhood"]:
        values.update(
            {torch_fidelity.KEY_METRIC_PRECISION: math.nan, torch_fidelity.KEY_METRIC_RECALL: math.nan}
        )
        sizes = {"prc_n_fake": 0, "prc_n_real": 0}
    elif precision_recall:
        fake_subset = sample_rows(fake_features, prc_max_images, seed)
        real_subset = sample_rows(real_features, prc_max_images, seed)
        # save_cpu_ram: distances a batch at a time, not the whole n_fake x n_real matrix.
        values.update(prc_features_to_metric(fake_subset, real_subset, save_cpu_ram=True, verbose=False))
        sizes = {"prc_n_fake": len(fake_subset), "prc_n_real": len(real_subset)}
    return {ours: float(values[theirs]) for ours, theirs in METRIC_KEYS.items() if theirs in values} | sizes


def _shown(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4g}" for name, value in values.items())


def score_labels(
    labels: Sequence[LabelFeatures],
    *,
    prc_max_images: int = PRC_MAX_IMAGES,
    seed: int = SCORE_SEED,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The metrics table of a run: all labels merged (IS, FID, KID, precision/recall), then each
    label against its own real images (FID, KID, precision/recall: a label's recall is how much
    of its real images its samples cover), labels in class-index order."""
    labels = sorted(labels, key=lambda features: features.label.index)
    extractor = labels[0].extractor

    def record(label: Label | None, n_fake: int, n_real: int, values: dict) -> dict:
        return {
            "scope": "label" if label else "overall",
            "label": label.name if label else "",
            "slug": label.slug if label else "",
            "index": label.index if label else -1,
            "extractor": extractor.name,
            "extractor_weights": extractor.weights,
            "extractor_accuracy": extractor.accuracy,
            "n_fake": n_fake,
            "n_real": n_real,
            **values,
        }

    def merged(name: str) -> torch.Tensor:
        return torch.cat([getattr(features, name) for features in labels])

    fake, real = merged("fake_features"), merged("real_features")
    common = dict(precision_recall=True, prc_max_images=prc_max_images, seed=seed)
    overall = metric_values(fake, real, merged("fake_logits"), **common)
    log(f"all {len(labels)} labels: {_shown(overall)}")
    records = [record(None, len(fake), len(real), overall)]
    for features in labels:
        values = metric_values(features.fake_features, features.real_features, **common)
        log(f"label '{features.label.name}': {_shown(values)}")
        records.append(
            record(features.label, len(features.fake_features), len(features.real_features), values)
        )
    return records


def score_curve(
    units: Sequence[SnapshotFeatures],
    real: Sequence[tuple[Label, torch.Tensor]],
    *,
    seed: int = SCORE_SEED,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The quality-against-compute curve: at each snapshot point, the budget used so far
    (``wcgan.compare.curve_rows``) and IS, FID and KID of the k-th snapshot samples of every
    training job (``units``) merged, against every label's ``real`` features. Both are taken in
    label-index order whatever order they come in (KID's subsets and IS's splits follow the
    order of the rows)."""
    real = sorted(real, key=lambda item: item[0].index)
    units = sorted(units, key=lambda unit: int(unit.points[0]["indices"].min()))
    real_features = torch.cat([features for _, features in real])
    wanted = sorted(label.index for label, _ in real)
    rows = []
    for row in curve_rows([unit.points for unit in units]):
        k = row["point"] - 1
        indices = torch.cat([unit.points[k]["indices"] for unit in units])
        if sorted(indices.unique().tolist()) != wanted:
            raise WcganError(f"snapshot point {k + 1}: the samples do not cover the real images' labels")
        fake = [torch.cat([unit.points[k][key] for unit in units]) for key in ("features", "logits")]
        values = metric_values(fake[0], real_features, fake[1], seed=seed)
        log(f"snapshot {k + 1}: {_shown(values)}")
        rows.append({**row, **values, "extractor": units[0].extractor.name})
    return rows


# --- map and reduce in one process --------------------------------------------------------


def score_run(
    samples: Sequence[tuple[torch.Tensor, Label]],
    shards: Sequence[Shard],
    network: FeatureNetwork,
    max_real_per_label: int | None = None,
    *,
    prc_max_images: int = PRC_MAX_IMAGES,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """``score_labels`` of ``extract_label_features``: the metrics table without feature files."""
    features = extract_label_features(network, samples, shards, max_real_per_label, log)
    return score_labels(features, prc_max_images=prc_max_images, log=log)


def score_snapshots(
    points_per_unit: Sequence[Sequence[dict]],
    shards: Sequence[Shard],
    network: FeatureNetwork,
    max_real_per_label: int | None = None,
    *,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """``score_curve`` of ``extract_snapshot_features`` and ``extract_real_features``: the
    curve of every training job's snapshot samples (``wcgan.sampling.load_snapshot_samples``)
    without feature files."""
    units = [extract_snapshot_features(network, points) for points in points_per_unit]
    real = extract_real_features(network, shards, max_real_per_label)
    return score_curve(
        units, [(shard.label, features) for shard, features in zip(shards, real, strict=True)], log=log
    )
