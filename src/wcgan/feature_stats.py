"""FID and KID of two feature sets as torch-fidelity defines them, computed exactly but faster,
and the moments from which FID merges over jobs ([Metrics](../../docs/metrics.md#fast-exact-metrics)).

FID's trace of the matrix square root comes from the eigenvalues of a symmetric matrix instead
of scipy's general eigenvalues of a product; KID draws torch-fidelity's subsets from its random
stream and reads each subset's sums from kernel matrices computed once. Everything runs on the
device of the features given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import (
    KEY_METRIC_F_SCORE,
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    prc_features_to_metric,
)

# KID's kernel matrices of all features at once above this many elements (a merged run's
# features): torch-fidelity's loop over subsets instead, which holds one subset's at a time.
KERNEL_MATRIX_LIMIT = 16_000_000


@dataclass(frozen=True)
class Moments:
    """What FID needs of a feature set, summed so that sets merge exactly: the count, the sum
    and the sum of outer products of the rows, in float64."""

    count: int
    total: torch.Tensor  # D
    outer: torch.Tensor  # D x D

    @classmethod
    def of(cls, features: torch.Tensor) -> Moments:
        rows = features.double()
        return cls(len(rows), rows.sum(0), rows.T @ rows)

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.count + other.count, self.total + other.total, self.outer + other.outer)

    def mean_covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and the unbiased covariance (numpy's ``cov``, which torch-fidelity uses)."""
        mean = self.total / self.count
        return mean, (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)

    def packed(self) -> dict:
        """The moments as plain values and tensors, the symmetric ``outer`` as its upper
        triangle: half the bytes of a file of them (16 MB for 2,048-d features)."""
        rows, columns = torch.triu_indices(*self.outer.shape)
        return {"count": self.count, "total": self.total, "upper": self.outer[rows, columns]}

    @classmethod
    def unpacked(cls, count: int, total: torch.Tensor, upper: torch.Tensor) -> Moments:
        """The moments of ``packed``; a ValueError when the parts do not fit together."""
        dims = len(total)
        if total.dim() != 1 or upper.shape != (dims * (dims + 1) // 2,):
            raise ValueError("not a D vector and the upper triangle of a D x D matrix")
        rows, columns = torch.triu_indices(dims, dims)
        outer = torch.zeros(dims, dims, dtype=upper.dtype)
        outer[rows, columns] = upper
        outer[columns, rows] = upper
        return cls(count, total, outer)


def _covariance_factor(covariance: torch.Tensor) -> torch.Tensor:
    """F with F^T F = ``covariance`` (symmetric, positive semi-definite up to rounding)."""
    values, vectors = torch.linalg.eigh(covariance)
    return values.clamp_min(0).sqrt()[:, None] * vectors.T


def _sum_of_square_roots(symmetric: torch.Tensor) -> torch.Tensor:
    return torch.linalg.eigvalsh(symmetric).clamp_min(0).sqrt().sum()


def _trace_sqrt_product(factor_1: torch.Tensor, factor_2: torch.Tensor) -> torch.Tensor:
    """tr sqrt(C1 C2) for C1 = F1^T F1, C2 = F2^T F2: the eigenvalues of C1 C2 that are not zero
    are those of G G^T with G = F1 F2^T, a symmetric matrix of the smaller side of G."""
    product = factor_1 @ factor_2.T
    return _sum_of_square_roots(
        product @ product.T if len(product) <= product.shape[1] else product.T @ product
    )


def _mean_and_factor(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and a covariance factor of ``features``: the centred rows themselves when they
    are fewer than the dimensions (a label's 1,000 samples of 2,048-d features), else the
    factor of the D x D covariance."""
    rows = features.double()
    mean = rows.mean(0)
    if len(rows) <= rows.shape[1]:
        return mean, (rows - mean) / (len(rows) - 1) ** 0.5
    return mean, _covariance_factor(torch.cov(rows.T))


def _frechet(mean_1, mean_2, trace_1, trace_2, trace_sqrt_product) -> float:
    return float((mean_1 - mean_2).square().sum() + trace_1 + trace_2 - 2 * trace_sqrt_product)


def frechet_distance(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    """FID of two feature sets: torch-fidelity's ``fid_statistics_to_metric`` of their
    statistics, in float64."""
    mean_1, factor_1 = _mean_and_factor(features_1)
    mean_2, factor_2 = _mean_and_factor(features_2)
    traces = factor_1.square().sum(), factor_2.square().sum()
    return _frechet(mean_1, mean_2, *traces, _trace_sqrt_product(factor_1, factor_2))


def frechet_distance_of_moments(moments_1: Moments, moments_2: Moments) -> float:
    """FID of two feature sets given by their (merged) moments: with C1 = F^T F, the eigenvalues
    of C1 C2 are those of the symmetric F C2 F^T."""
    mean_1, covariance_1 = moments_1.mean_covariance()
    mean_2, covariance_2 = moments_2.mean_covariance()
    factor_1 = _covariance_factor(covariance_1)
    trace_sqrt_product = _sum_of_square_roots(factor_1 @ covariance_2 @ factor_1.T)
    return _frechet(mean_1, mean_2, covariance_1.trace(), covariance_2.trace(), trace_sqrt_product)


@dataclass(frozen=True)
class InnerProducts:
    """The inner products of two feature sets, within each and between them, in float32 as
    torch-fidelity takes them: KID's kernels and precision/recall's distances both read them,
    so a label's three n x n products are computed once for both."""

    within_1: torch.Tensor  # n_1 x n_1
    within_2: torch.Tensor  # n_2 x n_2
    between: torch.Tensor  # n_1 x n_2

    @staticmethod
    def fit(n_1: int, n_2: int) -> bool:
        """Whether the products of sets this large are held at once (KERNEL_MATRIX_LIMIT)."""
        return (n_1 + n_2) ** 2 <= KERNEL_MATRIX_LIMIT

    @classmethod
    def of(cls, features_1: torch.Tensor, features_2: torch.Tensor) -> InnerProducts:
        first, second = features_1.float(), features_2.float()
        return cls(first @ first.T, second @ second.T, first @ second.T)


def _polynomial_kernel(products: torch.Tensor, dims: int) -> torch.Tensor:
    # torch-fidelity's default kernel: (x.y / D + 1) ** 3, of the float32 products.
    gamma = DEFAULTS["kid_kernel_poly_gamma"] or 1.0 / dims
    return (products.double() * gamma + DEFAULTS["kid_kernel_poly_coef0"]) ** DEFAULTS[
        "kid_kernel_poly_degree"
    ]


def kernel_distance(
    features_1: torch.Tensor,
    features_2: torch.Tensor,
    *,
    subset_size: int,
    seed: int,
    subsets: int = DEFAULTS["kid_subsets"],
    products: InnerProducts | None = None,
) -> tuple[float, float]:
    """KID (mean, standard deviation over ``subsets``) of two feature sets: torch-fidelity's
    ``kid_features_to_metric`` with its polynomial kernel, the same subsets (drawn from its
    random stream in its order). Each subset's kernel sums come from the three kernel matrices
    of all features, computed once (or given as ``products``): a product with the subsets'
    indicator rows."""
    n_1, n_2 = len(features_1), len(features_2)
    if not InnerProducts.fit(n_1, n_2):
        values = kid_features_to_metric(
            features_1.cpu(), features_2.cpu(), kid_subsets=subsets, kid_subset_size=subset_size,
            rng_seed=seed, verbose=False,
        )  # fmt: skip
        return tuple(float(value) for value in values.values())
    rng = np.random.RandomState(seed)
    picks_1, picks_2 = [], []
    for _ in range(subsets):
        picks_1.append(rng.choice(n_1, subset_size, replace=False))
        picks_2.append(rng.choice(n_2, subset_size, replace=False))
    device = features_1.device
    rows = torch.arange(subsets, device=device)[:, None]
    indicator_1 = torch.zeros(subsets, n_1, dtype=torch.float64, device=device)
    indicator_2 = torch.zeros(subsets, n_2, dtype=torch.float64, device=device)
    indicator_1[rows, torch.as_tensor(np.stack(picks_1), device=device)] = 1
    indicator_2[rows, torch.as_tensor(np.stack(picks_2), device=device)] = 1

    def subset_sums(kernel: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return ((left @ kernel) * right).sum(1)

    products = products or InnerProducts.of(features_1, features_2)
    dims = features_1.shape[1]
    kernel_11 = _polynomial_kernel(products.within_1, dims)
    kernel_22 = _polynomial_kernel(products.within_2, dims)
    within_1 = subset_sums(kernel_11, indicator_1, indicator_1) - indicator_1 @ kernel_11.diagonal()
    within_2 = subset_sums(kernel_22, indicator_2, indicator_2) - indicator_2 @ kernel_22.diagonal()
    del kernel_11, kernel_22
    between = subset_sums(_polynomial_kernel(products.between, dims), indicator_1, indicator_2)
    m = subset_size
    mmd = (within_1 + within_2) / (m * (m - 1)) - 2 * between / (m * m)
    return float(mmd.mean()), float(mmd.std(correction=0))


def precision_and_recall(
    features_1: torch.Tensor,
    features_2: torch.Tensor,
    *,
    neighborhood: int = DEFAULTS["prc_neighborhood"],
    products: InnerProducts | None = None,
) -> dict[str, float]:
    """torch-fidelity's ``prc_features_to_metric``: the share of ``features_1`` within the
    ``neighborhood``-th nearest neighbour distance of some row of ``features_2`` (precision)
    and the other way round (recall), and their F-score. The squared distances come from the
    inner products (``|x|^2 + |y|^2 - 2 x.y``, as ``torch.cdist`` computes them for sets this
    large) computed once or given as ``products``; above KERNEL_MATRIX_LIMIT, torch-fidelity's
    own function, which holds a batch of distances at a time."""
    if not InnerProducts.fit(len(features_1), len(features_2)):
        return prc_features_to_metric(
            features_1, features_2, prc_neighborhood=neighborhood, save_cpu_ram=True, verbose=False
        )
    products = products or InnerProducts.of(features_1, features_2)
    norms_1, norms_2 = products.within_1.diagonal(), products.within_2.diagonal()

    def squared_distances(inner: torch.Tensor, norms_left: torch.Tensor, norms_right: torch.Tensor):
        return (norms_left[:, None] + norms_right[None, :] - 2 * inner).clamp_min(0)

    # the (k + 1)-th smallest distance of a row to its own set: the row itself comes first
    radius_1 = squared_distances(products.within_1, norms_1, norms_1).kthvalue(neighborhood + 1).values
    radius_2 = squared_distances(products.within_2, norms_2, norms_2).kthvalue(neighborhood + 1).values
    between = squared_distances(products.between, norms_1, norms_2)
    precision = (between <= radius_2[None, :]).any(1).float().mean().item()
    recall = (between <= radius_1[:, None]).any(0).float().mean().item()
    return {
        KEY_METRIC_PRECISION: precision,
        KEY_METRIC_RECALL: recall,
        KEY_METRIC_F_SCORE: 2 * precision * recall / max(1e-5, precision + recall),
    }
