"""FOSCTTM: fraction of samples closer than the true match (scCross paper eq. 30)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from crossomics._validation import check_positive_int

from ._inputs import as_embedding


def foscttm_per_cell(x: ArrayLike, y: ArrayLike, chunk_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell fraction of samples closer than the true match, in both directions.

    Row ``i`` of ``x`` and row ``i`` of ``y`` are the same cell measured in two modalities and
    embedded in one joint space. Distances are Euclidean.

    Parameters
    ----------
    x
        Embedding of the first modality, shape ``(n_cells, n_dims)``.
    y
        Embedding of the second modality, same shape; row ``i`` is the true match of ``x[i]``.
    chunk_size
        Number of cells whose distances are computed at once. Memory use is about
        ``16 * chunk_size * n_cells`` bytes, so 50,000 cells need ~200 MB with the default;
        no ``n_cells x n_cells`` matrix is ever built.

    Returns
    -------
    x_to_y
        For each cell ``i`` of ``x``: the fraction of the ``n_cells`` cells of ``y`` that are closer to
        ``x[i]`` than its true match ``y[i]`` (:math:`n_2^{(i)} / N` in the scCross paper, eq. 30).
        Cells exactly as close as the true match count half, so an embedding that collapses
        cells onto one point scores about 0.5 (random), not 0.
    y_to_x
        For each cell ``i`` of ``y``: the fraction of cells of ``x`` closer to ``y[i]`` than ``x[i]``
        (:math:`n_1^{(i)} / N`).

    Both lie in ``[0, (n_cells - 1) / n_cells]``; lower is better, 0 means the true match is the nearest.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import foscttm_per_cell
    >>> x = np.array([[0.0], [1.0], [2.0]])
    >>> y = np.array([[0.0], [1.6], [1.2]])
    >>> x_to_y, y_to_x = foscttm_per_cell(x, y)
    >>> x_to_y.round(3).tolist(), y_to_x.round(3).tolist()
    ([0.0, 0.333, 0.333], [0.0, 0.333, 0.333])
    """
    x = as_embedding(x, "x")
    y = as_embedding(y, "y")
    if x.shape != y.shape:
        raise ValueError(
            f"x has shape {x.shape} but y has shape {y.shape}; FOSCTTM needs the same cells in the "
            "same order in both (row i of x is the true match of row i of y) and the same latent size"
        )
    check_positive_int(chunk_size, "chunk_size", 256)
    return _fraction_closer(x, y, chunk_size), _fraction_closer(y, x, chunk_size)


def foscttm(x: ArrayLike, y: ArrayLike, chunk_size: int = 256) -> float:
    """Fraction of samples closer than the true match (FOSCTTM), averaged over both directions.

    Implements eq. 30 of the scCross paper: for every cell, count the cells of the other modality
    that are closer (Euclidean) than its true match, divide by ``n_cells``, and average over all
    cells of both modalities. The computation is chunked (see :func:`foscttm_per_cell`), so it scales
    to tens of thousands of cells without an ``n_cells x n_cells`` matrix.

    Parameters
    ----------
    x
        Embedding of the first modality, shape ``(n_cells, n_dims)``.
    y
        Embedding of the second modality, same shape; row ``i`` is the true match of ``x[i]``.
    chunk_size
        Number of cells whose distances are computed at once (memory ~ ``16 * chunk_size * n_cells`` bytes).

    Returns
    -------
    FOSCTTM in ``[0, 1)``; **lower is better**. 0 means every cell's nearest neighbour in the other
    modality is its true match; about 0.5 means the embeddings carry no pairing information.
    The value is symmetric in ``x`` and ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import foscttm
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(200, 10))
    >>> foscttm(z, z)
    0.0
    >>> round(foscttm(z, z + 0.3 * rng.normal(size=z.shape)), 3) < 0.05
    True
    """
    x_to_y, y_to_x = foscttm_per_cell(x, y, chunk_size=chunk_size)
    return float((x_to_y.mean() + y_to_x.mean()) / 2)


def _fraction_closer(a: np.ndarray, b: np.ndarray, chunk_size: int) -> np.ndarray:
    """For each row ``i`` of ``a``: fraction of rows of ``b`` closer to ``a[i]`` than ``b[i]`` is,
    rows at exactly the same distance counting half."""
    n_cells = a.shape[0]
    b_sq_norms = np.einsum("ij,ij->i", b, b)
    fractions = np.empty(n_cells)
    for start in range(0, n_cells, chunk_size):
        stop = min(start + chunk_size, n_cells)
        # ||a_i - b_t||^2 minus the constant ||a_i||^2: the ranking within a row is unchanged,
        # and the true-match entry comes from the same expression, so it never counts itself.
        shifted_sq_dist = b_sq_norms[None, :] - 2.0 * (a[start:stop] @ b.T)
        true_match = shifted_sq_dist[np.arange(stop - start), np.arange(start, stop)]
        closer = np.count_nonzero(shifted_sq_dist < true_match[:, None], axis=1)
        # cells exactly as close as the true match count half (the true match itself excluded):
        # ties carry no pairing information, so a collapsed embedding scores about 0.5, not 0
        ties = np.count_nonzero(shifted_sq_dist == true_match[:, None], axis=1) - 1
        fractions[start:stop] = (closer + 0.5 * ties) / n_cells
    return fractions
