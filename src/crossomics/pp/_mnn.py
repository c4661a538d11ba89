"""Mutual-nearest-neighbour (MNN) batch correction (after Haghverdi et al., 2018)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from crossomics._validation import check_finite

_KERNEL_CHUNK = 1024


def cosine_normalize(X: np.ndarray) -> np.ndarray:
    """Scale every row to unit L2 norm (all-zero rows stay zero), as float32."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, np.float32(1e-12))


def _knn_indicator(query: np.ndarray, data: np.ndarray, k: int) -> sp.csr_matrix:
    """``(n_query, n_data)`` 0/1 matrix with a 1 at each query row's ``k`` nearest data rows."""
    neighbours = NearestNeighbors(n_neighbors=k).fit(data).kneighbors(query, return_distance=False)
    rows = np.repeat(np.arange(query.shape[0]), k)
    return sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, neighbours.ravel())),
        shape=(query.shape[0], data.shape[0]),
    )


def mutual_nearest_neighbors(
    reference: np.ndarray, target: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(reference row, target row)`` that are among each other's ``k`` nearest neighbours."""
    target_to_reference = _knn_indicator(target, reference, min(k, reference.shape[0]))
    reference_to_target = _knn_indicator(reference, target, min(k, target.shape[0]))
    mutual = target_to_reference.multiply(reference_to_target.T).tocoo()
    return mutual.col.astype(np.int64), mutual.row.astype(np.int64)


def _neighbourhood_means(data: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Mean of each requested row's ``k`` nearest neighbours within ``data`` (itself included)."""
    unique_rows, position = np.unique(rows, return_inverse=True)
    k = min(k, data.shape[0])
    means = (_knn_indicator(data[unique_rows], data, k) @ data) / np.float32(k)
    return means[position]


def _smoothed_correction(
    target: np.ndarray,
    anchors: np.ndarray,
    anchor_vectors: np.ndarray,
    anchor_weights: np.ndarray,
    sigma: float,
) -> np.ndarray:
    """Gaussian-kernel average of the anchor correction vectors, for every target cell.

    ``correction_i = sum_a w_a exp(-|x_i - x_a|^2 / sigma^2) v_a / sum_a (same weights)``,
    where ``w_a`` is the number of MNN pairs of anchor ``a`` (so dense pair regions count more).
    """
    anchor_sq_norms = (anchors**2).sum(axis=1)
    log_weights = np.log(anchor_weights)
    correction = np.empty_like(target)
    for start in range(0, target.shape[0], _KERNEL_CHUNK):
        block = target[start : start + _KERNEL_CHUNK]
        sq_dist = (block**2).sum(axis=1)[:, None] + anchor_sq_norms[None, :] - 2.0 * block @ anchors.T
        logits = log_weights[None, :] - np.maximum(sq_dist, 0.0) / sigma**2
        # shifting by the row maximum keeps exp() finite for cells far from every anchor
        kernel = np.exp(logits - logits.max(axis=1, keepdims=True))
        correction[start : start + _KERNEL_CHUNK] = (kernel @ anchor_vectors) / kernel.sum(
            axis=1, keepdims=True
        )
    return correction


def _correct_towards(reference: np.ndarray, target: np.ndarray, k: int, sigma: float) -> np.ndarray:
    ref_rows, target_rows = mutual_nearest_neighbors(reference, target, k)
    if ref_rows.size == 0:
        warnings.warn("no mutual nearest neighbours found; this data set is left uncorrected", stacklevel=3)
        return target
    pair_vectors = _neighbourhood_means(reference, ref_rows, k) - _neighbourhood_means(target, target_rows, k)
    # average the pair vectors of each anchor (a target cell with at least one MNN pair)
    anchor_rows, anchor_of_pair, pairs_per_anchor = np.unique(
        target_rows, return_inverse=True, return_counts=True
    )
    pair_to_anchor = sp.csr_matrix(
        (np.ones(ref_rows.size, dtype=np.float32), (anchor_of_pair, np.arange(ref_rows.size))),
        shape=(anchor_rows.size, ref_rows.size),
    )
    anchor_vectors = (pair_to_anchor @ pair_vectors) / pairs_per_anchor[:, None].astype(np.float32)
    correction = _smoothed_correction(
        target, target[anchor_rows], anchor_vectors, pairs_per_anchor.astype(np.float32), sigma
    )
    return target + correction


def mnn_correct(matrices: Sequence[np.ndarray], k: int = 20, sigma: float = 1.0) -> list[np.ndarray]:
    """Mutual-nearest-neighbour correction of several data sets measured on the same features.

    An own implementation of the MNN idea of Haghverdi et al. (Nat Biotechnol 36, 2018):

    1. cosine-normalise every cell (rows scaled to unit L2 norm);
    2. find the mutual nearest neighbours between the reference and the next data set
       (each is among the other's ``k`` nearest neighbours, Euclidean on the normalised rows);
    3. the correction vector of a pair joins the centres of mass of the two cells'
       ``k``-neighbourhoods within their own data sets (target to reference). Using
       neighbourhood centres rather than the cells themselves (as fastMNN does) removes the
       pull towards the facing edge of the reference cluster, where MNN pairs concentrate;
       the vectors of each target cell in pairs (an anchor) are averaged;
    4. every target cell receives the Gaussian-kernel weighted mean of the anchor vectors,
       weights ``n_pairs(a) * exp(-|x - x_a|^2 / sigma^2)``, and is shifted by it.

    Data sets are merged in the given order: the first is the reference, each corrected data
    set joins the reference before the next one is corrected.

    Parameters
    ----------
    matrices
        Two or more dense cells x features arrays with the same features (e.g. scaled
        log-expression of common genes). Not modified.
    k
        Neighbours searched in each direction.
    sigma
        Kernel bandwidth in cosine-normalised units (squared distances lie in ``[0, 4]``);
        smaller values make the correction more local.

    Returns
    -------
    list of numpy.ndarray
        Corrected float32 arrays in the cosine-normalised space, same shapes and order as the
        input; the first is the normalised reference itself. A data set with no MNN pair is
        returned normalised but uncorrected, with a warning.

    Examples
    --------
    >>> import numpy as np
    >>> import crossomics as co
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(200, 30))
    >>> b = a[::-1] + 3.0  # the same cells with a batch shift
    >>> corrected = co.pp.mnn_correct([a, b], k=10)
    >>> [m.shape for m in corrected]
    [(200, 30), (200, 30)]
    """
    if len(matrices) < 2:
        raise ValueError(f"mnn_correct needs at least 2 data sets, got {len(matrices)}")
    n_features = {np.shape(m)[1] for m in matrices}
    if len(n_features) != 1:
        raise ValueError(
            f"all data sets must have the same features; got feature counts {sorted(n_features)}"
        )
    if k < 1 or sigma <= 0:
        raise ValueError(f"k must be >= 1 and sigma > 0, got k={k}, sigma={sigma}")
    normalised = []
    for index, matrix in enumerate(matrices):
        check_finite(np.asarray(matrix), f"matrices[{index}]")
        normalised.append(cosine_normalize(matrix))

    corrected = [normalised[0]]
    reference = normalised[0]
    for target in normalised[1:]:
        corrected.append(_correct_towards(reference, target, k, sigma))
        reference = np.vstack([reference, corrected[-1]])
    return corrected
