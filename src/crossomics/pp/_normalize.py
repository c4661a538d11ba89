"""Row normalisation helpers shared by the preprocessing functions (private).

They work on scipy sparse or dense matrices, return new objects and never touch their input.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from crossomics._constants import CLIP_VALUE, STD_FLOOR, TARGET_SUM

TOTAL_FLOOR = 1e-12
"""Lower bound on a row total before dividing by it; rows that sum to zero stay zero."""


def as_float32_csr(X) -> sp.csr_matrix:
    """Return ``X`` as a float32 CSR matrix (a copy whenever the format or dtype changes)."""
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float32)
    return sp.csr_matrix(np.asarray(X, dtype=np.float32))


def row_sums(X) -> np.ndarray:
    """Per-row totals of ``X`` as a float64 vector."""
    return np.asarray(X.sum(axis=1), dtype=np.float64).ravel()


def scale_rows(X, factors: np.ndarray):
    """Multiply row ``i`` of ``X`` by ``factors[i]``; sparse stays sparse."""
    factors = np.asarray(factors, dtype=np.float32)
    if sp.issparse(X):
        return sp.diags(factors) @ as_float32_csr(X)
    return np.asarray(X, dtype=np.float32) * factors[:, None]


def log_normalize(X, target_sum: float = TARGET_SUM):
    """``log1p(X / row_total * target_sum)``, float32; rows summing to zero stay zero.

    Sparse input gives a CSR matrix, dense input a dense array.
    """
    # the floor keeps empty rows at zero instead of dividing by zero
    factors = target_sum / np.maximum(row_sums(X), TOTAL_FLOOR)
    normalised = scale_rows(X, factors)
    if sp.issparse(normalised):
        normalised = normalised.tocsr()
        normalised.data = np.log1p(normalised.data)
        return normalised
    return np.log1p(normalised)


def gene_level_expression(view, normalized: bool = False):
    """Expression of a gene-level view: ``log_normalize`` of counts, or values as given.

    ``normalized=True`` marks data that are already on a continuous scale (log-normalised
    expression, TF-IDF, z-scores, methylation rates): a second normalisation would distort
    them, so they are only cast to float32 (sparse stays sparse).
    """
    if not normalized:
        return log_normalize(view)
    if sp.issparse(view):
        return as_float32_csr(view)
    return np.asarray(view, dtype=np.float32)


def column_moments(X) -> tuple[np.ndarray, np.ndarray]:
    """Float64 column means and (population) variances of a sparse or dense matrix, from sums of
    values and squares, so a sparse matrix is never densified. Rounding can leave a variance
    slightly below zero; callers taking a square root clip it."""
    mean = np.asarray(X.mean(axis=0), dtype=np.float64).ravel()
    squares = X.multiply(X) if sp.issparse(X) else np.square(np.asarray(X, dtype=np.float64))
    return mean, np.asarray(squares.mean(axis=0), dtype=np.float64).ravel() - mean**2


def column_mean_std(X) -> tuple[np.ndarray, np.ndarray]:
    """Float32 column means and standard deviations; near-constant columns get a std of 1."""
    dense = (X.toarray() if sp.issparse(X) else np.asarray(X)).astype(np.float32)
    std = dense.std(axis=0)
    std[std < STD_FLOOR] = 1.0
    return dense.mean(axis=0), std


def standardize_columns(
    X: np.ndarray, clip: float = CLIP_VALUE, mean: np.ndarray | None = None, std: np.ndarray | None = None
) -> np.ndarray:
    """Zero-mean, unit-variance columns clipped to ``[-clip, clip]`` (constant columns become 0).

    ``mean`` and ``std`` default to the columns' own (:func:`column_mean_std`); pass stored
    ones to apply a fitted standardisation to new rows.
    """
    dense = (X.toarray() if sp.issparse(X) else np.asarray(X)).astype(np.float32)
    if mean is None or std is None:
        mean, std = column_mean_std(dense)
    return np.clip((dense - mean) / std, -clip, clip)


def aggregate_columns(X, keys) -> tuple[sp.csr_matrix, np.ndarray]:
    """Sum the columns of ``X`` that share a key.

    Returns the summed float32 CSR matrix and the unique keys in order of first appearance.
    """
    keys = np.asarray(keys, dtype=object)
    unique_keys, first_index, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first_index)
    rank_of_unique = np.empty_like(order)
    rank_of_unique[order] = np.arange(order.size)
    column_to_group = rank_of_unique[inverse]
    summing = sp.csr_matrix(
        (np.ones(keys.size, dtype=np.float32), (np.arange(keys.size), column_to_group)),
        shape=(keys.size, unique_keys.size),
    )
    return as_float32_csr(X) @ summing, unique_keys[order]


def aggregate_rows(X, labels: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Sum the rows of ``X`` that share a label.

    Returns the summed float32 CSR matrix (one row per unique label, sorted) and, for each
    input row, the index of its output row.
    """
    _, group_of_row = np.unique(labels, return_inverse=True)
    n_groups = int(group_of_row.max()) + 1
    summing = sp.csr_matrix(
        (np.ones(group_of_row.size, dtype=np.float32), (group_of_row, np.arange(group_of_row.size))),
        shape=(n_groups, group_of_row.size),
    )
    return summing @ as_float32_csr(X), group_of_row
