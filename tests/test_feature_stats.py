"""FID and KID computed faster than torch-fidelity, against torch-fidelity's own functions."""

import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

import wcgan.feature_stats
from wcgan.feature_stats import (
    InnerProducts,
    Moments,
    frechet_distance,
    frechet_distance_of_moments,
    kernel_distance,
    precision_and_recall,
)


def feature_sets(n_1: int, n_2: int, dims: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative features of two slightly different distributions, like pooled activations."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.rand(dims, generator=generator)
    first = torch.rand(n_1, dims, generator=generator) * scale
    second = torch.rand(n_2, dims, generator=generator) * scale * 1.2 + 0.01
    return first, second


def torch_fidelity_fid(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    statistics = [fid_features_to_statistics(f.double()) for f in (features_1, features_2)]
    return fid_statistics_to_metric(*statistics, verbose=False)["frechet_inception_distance"]


# Fewer rows than dimensions on one side, on both, and more rows than dimensions on both.
SIZES = [(40, 90, 64), (30, 50, 64), (300, 200, 16)]


@pytest.mark.parametrize(("n_1", "n_2", "dims"), SIZES)
def test_fid_from_symmetric_eigenvalues_is_torch_fidelitys(n_1, n_2, dims):
    first, second = feature_sets(n_1, n_2, dims)
    expected = torch_fidelity_fid(first, second)
    assert frechet_distance(first, second) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(second, first) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(first, first) == pytest.approx(0, abs=1e-7)


@pytest.mark.parametrize(("n_1", "n_2", "dims"), SIZES)
def test_fid_from_merged_moments_is_fid_from_the_features(n_1, n_2, dims):
    first, second = feature_sets(n_1, n_2, dims)
    merged = Moments.of(first[: n_1 // 3]) + Moments.of(first[n_1 // 3 :])  # two jobs' moments
    assert merged.count == n_1
    torch.testing.assert_close(merged.outer, Moments.of(first).outer, rtol=1e-12, atol=1e-12)
    packed = merged.packed()
    assert packed["upper"].numel() == dims * (dims + 1) // 2  # a file holds the upper triangle
    assert torch.equal(Moments.unpacked(**packed).outer, merged.outer)
    with pytest.raises(ValueError, match="not a D vector and the upper triangle"):
        Moments.unpacked(n_1, merged.total, packed["upper"][1:])
    from_moments = frechet_distance_of_moments(merged, Moments.of(second))
    # rel 1e-7: the square roots of eigenvalues that are zero but for rounding (40 rows, 64-d)
    assert from_moments == pytest.approx(frechet_distance(first, second), rel=1e-7)
    assert from_moments == pytest.approx(torch_fidelity_fid(first, second), rel=1e-6)


@pytest.mark.parametrize(("n_1", "n_2", "dims"), [(90, 180, 8), (300, 200, 64)])
def test_kid_has_torch_fidelitys_subsets_and_value(n_1, n_2, dims, monkeypatch):
    first, second = feature_sets(n_1, n_2, dims)
    size = min(n_1, n_2) - 10  # subsets that differ from one another on both sides
    ours = kernel_distance(first, second, subset_size=size, seed=2020)
    # torch-fidelity's definition evaluated in float64, and its own float32 evaluation.
    exact = kid_features_to_metric(first.double(), second.double(), kid_subset_size=size, rng_seed=2020)
    assert ours == pytest.approx(tuple(exact.values()), rel=1e-7, abs=1e-9)
    rounded = kid_features_to_metric(first, second, kid_subset_size=size, rng_seed=2020)
    assert ours == pytest.approx(tuple(rounded.values()), abs=1e-7)
    other_seed = kernel_distance(first, second, subset_size=size, seed=1)
    assert other_seed != ours
    # Above the size of kernel matrices held at once, torch-fidelity's loop over subsets.
    monkeypatch.setattr(wcgan.feature_stats, "KERNEL_MATRIX_LIMIT", 10)
    assert kernel_distance(first, second, subset_size=size, seed=2020) == tuple(rounded.values())


# Sizes and a shrink of the second set at which neither is all inside the other's neighbourhoods.
@pytest.mark.parametrize(
    ("n_1", "n_2", "dims", "shrink"), [(90, 180, 8, 0.9), (300, 200, 64, 0.9), (300, 200, 2048, 0.8)]
)
def test_precision_recall_from_inner_products_is_torch_fidelitys(n_1, n_2, dims, shrink, monkeypatch):
    first, second = feature_sets(n_1, n_2, dims, seed=2)
    second = second * shrink
    theirs = prc_features_to_metric(first, second, save_cpu_ram=True, verbose=False)
    ours = precision_and_recall(first, second)
    assert 0 < ours["f_score"] < 1
    assert ours == theirs
    assert precision_and_recall(first, second, products=InnerProducts.of(first, second)) == theirs
    assert precision_and_recall(second, first) == prc_features_to_metric(second, first, verbose=False)
    # Above the size of products held at once, torch-fidelity's own function.
    monkeypatch.setattr(wcgan.feature_stats, "KERNEL_MATRIX_LIMIT", 10)
    assert precision_and_recall(first, second) == theirs
