"""Scoring as map and reduce, with torch-fidelity's definitions ([Metrics](../../docs/metrics.md)).

Map (``wcgan features``, a job per chunk): the feature extractor built once, each real and
generated image through it once, then each label's own FID, KID and precision/recall on the
job's device, the moments of all features and a seeded subset of each label's
(``ChunkScores``). Reduce (``wcgan merge-scores``, ``wcgan merge-curve``): the per-label rows
concatenated; overall FID from the summed moments, exact; overall IS, KID and precision/recall
from the subsets, so that its cost grows with the labels, not the images.

Extractors: the run's classifier, or torch-fidelity's Inception-v3 network built from a state
dict loaded once with ``weights_only=True`` (a local file, or torch-fidelity's published file,
downloaded and checked against its SHA-256). Nothing but tensors and plain values is unpickled.
"""

from __future__ import annotations

import functools
import io
import math
import operator
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.metric_isc import isc_features_to_metric

from wcgan.atomic import load_torch_hashed
from wcgan.compare import curve_rows
from wcgan.config import INCEPTION_DOWNLOAD, OVERALL_PER_LABEL, PRC_MAX_IMAGES, SCORE_SEED
from wcgan.data import Shard, sample_rows
from wcgan.errors import WcganError
from wcgan.feature_stats import (
    InnerProducts,
    Moments,
    frechet_distance,
    frechet_distance_of_moments,
    kernel_distance,
    precision_and_recall,
)
from wcgan.files import ChunkScores, Extractor, SnapshotPart, classifier_from_file_data, load_chunk_scores
from wcgan.labels import Label, first_repeat
from wcgan.networks import Classifier, images_to_float

CLASSIFIER_EXTRACTOR = "wcgan-classifier"
INCEPTION_EXTRACTOR = "wcgan-inception-v3"  # local weights file
DOWNLOADED_INCEPTION_EXTRACTOR = "inception-v3-compat"  # torch-fidelity's published weights file
# SHA-256 of torch-fidelity's published weights file (URL_INCEPTION_V3). The file name carries
# its first 8 hex digits (6726825d, torch.hub's naming convention); the full digest pins the
# whole file.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"

SNAPSHOT_BUDGET = ("iteration", "seconds", "device_seconds")
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


def extract_snapshot_features(network: FeatureNetwork, points: Sequence[dict]) -> list[dict[str, Any]]:
    """The features of every snapshot point's samples (``wcgan.files.load_snapshot_samples``):
    per point its iteration, seconds, device-seconds, generator (where the file names it), each
    sample's class ``indices`` and the samples' ``features`` and ``logits``."""
    featured = []
    for point in points:
        features, logits = network.extract(point["images"])
        kept = {key: point[key] for key in (*SNAPSHOT_BUDGET, "weights", "indices")}
        source = {"generator": point["generator"]} if "generator" in point else {}
        featured.append({**kept, **source, "features": features, "logits": logits})
    return featured


# --- map: per-label scores, moments and kept subsets -------------------------------------


def _kept(values: torch.Tensor, per_label: int | None, label: Label) -> torch.Tensor:
    return sample_rows(values, per_label, seed=SCORE_SEED + label.index).cpu().clone()


def _summed(moments: Sequence[Moments]) -> Moments:
    return functools.reduce(operator.add, moments)


def _budgets(units: Sequence[Sequence[dict]]) -> list[list[dict[str, Any]]]:
    """Each snapshot file's budget used at each of its points, whose weights the point's samples
    are of (``wcgan.sampling.snapshot_samples``) and, where the file names it, its generator."""
    return [
        [
            {
                **{key: float(point[key]) for key in SNAPSHOT_BUDGET},
                "weights": point["weights"],
                **({"generator": point["generator"]} if "generator" in point else {}),
            }
            for point in points
        ]
        for points in units
    ]


def _snapshot_parts(
    units: Sequence[Sequence[dict]], labels: Sequence[Label], per_label: int | None
) -> list[SnapshotPart]:
    """Each snapshot point of every training job's featured points
    (``extract_snapshot_features``): its moments, and its samples' kept subsets label by label."""
    if not units:
        return []
    counts = {len(points) for points in units}
    if len(counts) != 1:
        raise WcganError(f"the training jobs kept different numbers of snapshots {sorted(counts)}")
    parts = []
    for k in range(counts.pop()):
        points = [points[k] for points in units]
        features = torch.cat([point["features"] for point in points])
        logits = torch.cat([point["logits"] for point in points])
        indices = torch.cat([point["indices"] for point in points])
        rows = [indices == label.index for label in labels]

        def kept(values: torch.Tensor, rows: list[torch.Tensor] = rows) -> torch.Tensor:
            return torch.cat(
                [_kept(values[r], per_label, label) for r, label in zip(rows, labels, strict=True)]
            )

        parts.append(SnapshotPart(Moments.of(features), kept(features), kept(logits), kept(indices)))
    return parts


def score_chunk(
    labels: Sequence[LabelFeatures],
    *,
    overall_per_label: int | None = OVERALL_PER_LABEL,
    snapshots: Sequence[Sequence[dict]] = (),
    prc_max_images: int = PRC_MAX_IMAGES,
    seed: int = SCORE_SEED,
    device: torch.device | None = None,
    log: Callable[[str], None] = print,
) -> ChunkScores:
    """The map step's scores of a chunk's labels (``extract_label_features``), each label's
    on ``device``; ``snapshots``: each training job's featured snapshot points
    (``extract_snapshot_features``)."""
    labels = sorted(labels, key=lambda features: features.label.index)
    rows = []
    for features in labels:
        fake, real = (features.fake_features.to(device), features.real_features.to(device))
        values = metric_values(fake, real, precision_recall=True, prc_max_images=prc_max_images, seed=seed)
        log(f"label '{features.label.name}': {_shown(values)}")
        rows.append({"n_fake": len(fake), "n_real": len(real), **values})
    return ChunkScores(
        extractor=labels[0].extractor,
        labels=[features.label for features in labels],
        rows=rows,
        fake=_summed([Moments.of(features.fake_features) for features in labels]),
        real=_summed([Moments.of(features.real_features) for features in labels]),
        kept_fake=[_kept(f.fake_features, overall_per_label, f.label) for f in labels],
        kept_logits=[_kept(f.fake_logits, overall_per_label, f.label) for f in labels],
        kept_real=[_kept(f.real_features, overall_per_label, f.label) for f in labels],
        budgets=_budgets(snapshots),
        snapshots=_snapshot_parts(snapshots, [f.label for f in labels], overall_per_label),
    )


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


def merged_chunks(chunks: Iterable[tuple[ChunkScores, str | os.PathLike]]) -> ChunkScores:
    """Every chunk's scores (with the file each came from) folded into one chunk of all their
    labels, a chunk at a time, so that no more than two chunks' moments are held at once: the
    moments summed, rows and kept subsets in label order, snapshot points merged point by point
    (their samples in label order). Lists grow in place and each point's samples are joined
    once at the end, so the fold costs what the chunks hold. One extractor's, no label twice."""
    first, first_path, seen = None, None, {}  # seen: where each label index came from
    lists: dict[str, list] = {
        key: [] for key in ("labels", "rows", "kept_fake", "kept_logits", "kept_real", "budgets")
    }
    # Per point, each chunk's samples (not its moments, which are summed as they come).
    points: list[list[tuple[torch.Tensor, ...]]] = []
    point_moments: list[Moments] = []
    for chunk, path in chunks:
        repeat = first_repeat(((label.index, (label, path)) for label in chunk.labels), seen)
        if repeat is not None:
            (label, earlier), _ = repeat
            raise WcganError(f"chunk scores '{path}' repeat label '{label.name}' of '{earlier}'")
        if first is None:
            first, first_path, fake, real = chunk, path, chunk.fake, chunk.real
            points = [[] for _ in chunk.snapshots]
            point_moments = [part.fake for part in chunk.snapshots]
        else:
            check_one_extractor([first.extractor, chunk.extractor], [first_path, path])
            fake, real = fake + chunk.fake, real + chunk.real
        if len(chunk.snapshots) != len(points):
            raise WcganError(
                f"chunk scores '{path}' hold {len(chunk.snapshots)} snapshot points, other chunks "
                f"{len(points)}: the training jobs kept different numbers of snapshots"
            )
        for key, values in lists.items():
            values.extend(getattr(chunk, key))
        for k, part in enumerate(chunk.snapshots):
            points[k].append((part.features, part.logits, part.indices))
            if chunk is not first:
                point_moments[k] = point_moments[k] + part.fake
    if first is None:
        raise WcganError("no chunk scores to merge")
    order = sorted(range(len(lists["labels"])), key=lambda i: lists["labels"][i].index)
    ordered = {key: [values[i] for i in order] for key, values in lists.items() if key != "budgets"}
    return ChunkScores(
        first.extractor,
        fake=fake,
        real=real,
        budgets=lists["budgets"],
        snapshots=[
            _in_label_order(_joined(moments, parts))
            for moments, parts in zip(point_moments, points, strict=True)
        ],
        **ordered,
    )


def _joined(moments: Moments, samples: Sequence[tuple[torch.Tensor, ...]]) -> SnapshotPart:
    """One snapshot point of several chunks: their summed ``moments`` and their samples'
    (features, logits, indices) joined."""
    return SnapshotPart(moments, *(torch.cat(column) for column in zip(*samples, strict=True)))


def _in_label_order(part: SnapshotPart) -> SnapshotPart:
    """A point's samples by class index, each label's in their order (a stable sort): IS's
    splits and KID's subsets follow the order of the rows, whatever order the chunks came in."""
    order = torch.sort(part.indices, stable=True).indices
    return SnapshotPart(part.fake, part.features[order], part.logits[order], part.indices[order])


def load_chunk_score_files(paths: Sequence[str | os.PathLike]) -> ChunkScores:
    """Every chunk's scores file, read one at a time and merged (``merged_chunks``)."""
    return merged_chunks((load_chunk_scores(path), path) for path in paths)


# --- metrics ------------------------------------------------------------------------------


def metric_values(
    fake_features: torch.Tensor,
    real_features: torch.Tensor,
    fake_logits: torch.Tensor | None = None,
    *,
    precision_recall: bool = False,
    prc_max_images: int = PRC_MAX_IMAGES,
    seed: int = SCORE_SEED,
    moments: tuple[Moments, Moments] | None = None,
) -> dict[str, float]:
    """FID and KID of generated against real features, IS when ``fake_logits`` are given, and
    precision/recall on request, from at most ``prc_max_images`` of each side (a subset seeded
    by ``seed`` above that; ``prc_n_fake`` and ``prc_n_real`` say how many were used). FID from
    the features' ``moments`` (generated, real) when given: those of every feature where the
    features given are a subset.

    Torch-fidelity's definitions and arguments: FID, KID and precision/recall computed as
    ``wcgan.feature_stats`` does, IS by torch-fidelity's own function.
    """
    n_fake, n_real = len(fake_features), len(real_features)
    if n_fake < 2 or n_real < 2:
        raise WcganError(f"scoring needs at least 2 generated and 2 real images, got {n_fake} and {n_real}")
    values: dict[str, float] = {}
    if fake_logits is not None:
        values.update(isc_features_to_metric(fake_logits.cpu(), splits=min(10, n_fake), rng_seed=seed))
    values[torch_fidelity.KEY_METRIC_FID] = (
        frechet_distance_of_moments(*moments) if moments else frechet_distance(fake_features, real_features)
    )
    # KID's kernels and precision/recall's distances from the same products, computed once
    products = InnerProducts.of(fake_features, real_features) if InnerProducts.fit(n_fake, n_real) else None
    kid = kernel_distance(
        fake_features, real_features, subset_size=min(1000, n_fake, n_real), seed=seed, products=products
    )
    values[torch_fidelity.KEY_METRIC_KID_MEAN], values[torch_fidelity.KEY_METRIC_KID_STD] = kid
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
        whole = len(fake_subset) == n_fake and len(real_subset) == n_real
        values.update(precision_and_recall(fake_subset, real_subset, products=products if whole else None))
        sizes = {"prc_n_fake": len(fake_subset), "prc_n_real": len(real_subset)}
    return {ours: float(values[theirs]) for ours, theirs in METRIC_KEYS.items() if theirs in values} | sizes


def _shown(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4g}" for name, value in values.items())


# --- reduce -------------------------------------------------------------------------------


def merge_scores(
    run: ChunkScores,
    *,
    prc_max_images: int = PRC_MAX_IMAGES,
    seed: int = SCORE_SEED,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The metrics table of a run (every chunk merged, ``merged_chunks``): all labels merged (FID
    from every feature's moments; IS, KID, precision/recall from the kept subsets,
    ``kept_n_fake`` and ``kept_n_real`` features), then each label's own row from the map (FID,
    KID, precision/recall: a label's recall is how much of its real images its samples cover),
    labels in class-index order."""
    extractor = run.extractor

    def record(label: Label | None, values: dict) -> dict:
        return {
            "scope": "label" if label else "overall",
            "label": label.name if label else "",
            "slug": label.slug if label else "",
            "index": label.index if label else -1,
            "extractor": extractor.name,
            "extractor_weights": extractor.weights,
            "extractor_accuracy": extractor.accuracy,
            **values,
        }

    kept_fake, kept_real = torch.cat(run.kept_fake), torch.cat(run.kept_real)
    overall = metric_values(
        kept_fake,
        kept_real,
        torch.cat(run.kept_logits),
        precision_recall=True,
        prc_max_images=prc_max_images,
        seed=seed,
        moments=(run.fake, run.real),
    )
    log(f"all {len(run.labels)} labels: {_shown(overall)}")
    sizes = {
        "n_fake": run.fake.count,
        "n_real": run.real.count,
        "kept_n_fake": len(kept_fake),
        "kept_n_real": len(kept_real),
    }
    return [record(None, sizes | overall)] + [
        record(label, row) for label, row in zip(run.labels, run.rows, strict=True)
    ]


def merge_curve(
    run: ChunkScores,
    *,
    prc_max_images: int = PRC_MAX_IMAGES,
    seed: int = SCORE_SEED,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The quality-against-compute curve of a run (every chunk merged, ``merged_chunks``)."""
    kept_real = torch.cat(run.kept_real)
    return curve(
        run.budgets, run.snapshots, run.real, kept_real, run.labels, run.extractor,
        prc_max_images=prc_max_images, seed=seed, log=log,
    )  # fmt: skip


def curve(
    budgets: Sequence[Sequence[dict]],
    snapshots: Sequence[SnapshotPart],
    real: Moments,
    kept_real: torch.Tensor,
    labels: Sequence[Label],
    extractor: Extractor,
    *,
    prc_max_images: int = PRC_MAX_IMAGES,
    seed: int = SCORE_SEED,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """At each snapshot point of each of the generators' weights (the moving average's, the raw
    ones), the budget every training job used so far (``budgets``, per job and point;
    ``wcgan.compare.curve_rows``) and IS, FID, KID and precision/recall of every label's
    snapshot samples merged (``snapshots``, a point each, in the same order) against the real
    features of ``labels`` (FID from the moments, the others from the kept subsets, in
    label-index order; precision/recall from at most ``prc_max_images`` of them)."""
    wanted = sorted(label.index for label in labels)
    rows = []
    for row, part in zip(curve_rows(budgets), snapshots, strict=True):
        where = f"snapshot {row['point']} ({row['weights']} weights)"
        if part.indices.unique().tolist() != wanted:
            raise WcganError(f"{where}: the samples do not cover the real images' labels")
        values = metric_values(
            part.features, kept_real, part.logits, precision_recall=True, prc_max_images=prc_max_images,
            seed=seed, moments=(part.fake, real),
        )  # fmt: skip
        log(f"{where}: {_shown(values)}")
        rows.append({**row, **values, "extractor": extractor.name})
    return rows


# --- map and reduce in one process --------------------------------------------------------


def score_run(
    samples: Sequence[tuple[torch.Tensor, Label]],
    shards: Sequence[Shard],
    network: FeatureNetwork,
    max_real_per_label: int | None = None,
    *,
    overall_per_label: int | None = OVERALL_PER_LABEL,
    prc_max_images: int = PRC_MAX_IMAGES,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The metrics table of every label's samples in one process: ``merge_scores`` of one chunk
    of every label."""
    features = extract_label_features(network, samples, shards, max_real_per_label, log)
    scores = score_chunk(
        features,
        overall_per_label=overall_per_label,
        prc_max_images=prc_max_images,
        device=network.device,
        log=log,
    )
    return merge_scores(scores, prc_max_images=prc_max_images, log=log)


def score_snapshots(
    points_per_unit: Sequence[Sequence[dict]],
    shards: Sequence[Shard],
    network: FeatureNetwork,
    max_real_per_label: int | None = None,
    *,
    overall_per_label: int | None = OVERALL_PER_LABEL,
    prc_max_images: int = PRC_MAX_IMAGES,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The curve of every training job's snapshot samples (``wcgan.files.load_snapshot_samples``)
    in one process."""
    units = [extract_snapshot_features(network, points) for points in points_per_unit]
    real = extract_real_features(network, shards, max_real_per_label)
    labels = [shard.label for shard in shards]
    return curve(
        _budgets(units),
        [_in_label_order(part) for part in _snapshot_parts(units, labels, overall_per_label)],
        _summed([Moments.of(features) for features in real]),
        torch.cat(
            [_kept(features, overall_per_label, label) for label, features in zip(labels, real, strict=True)]
        ),
        labels,
        network.extractor,
        prc_max_images=prc_max_images,
        log=log,
    )
