"""Similarity of real and generated profiles: Pearson per cell, Pearson per feature, RMSE."""

from __future__ import annotations

import numpy as np

from crossomics._docs import shared_docs

from ._inputs import Matrix, as_matrix, check_same_shape, iter_row_blocks


def _paired_matrices(real: Matrix, generated: Matrix):
    real = as_matrix(real, "real")
    generated = as_matrix(generated, "generated")
    check_same_shape(real, generated, "real", "generated")
    return real, generated


def pearson_from_centered_sums(cross: np.ndarray, ss_a: np.ndarray, ss_b: np.ndarray) -> np.ndarray:
    """Pearson r from centred cross-products and sums of squares; NaN where a side is constant."""
    denom = np.sqrt(ss_a * ss_b)
    return np.divide(cross, denom, out=np.full_like(cross, np.nan), where=denom > 0)


@shared_docs.dedent
def pearson_per_cell(real: Matrix, generated: Matrix) -> np.ndarray:
    """Pearson correlation between the real and generated profile of each cell.

    Parameters
    ----------
    %(param_real)s
    generated
        Generated (e.g. cross-modal predicted) values for the same cells and features.

    Returns
    -------
    Pearson r per cell (across features), shape ``(n_cells,)``, in ``[-1, 1]``; **higher is better**.
    NaN for a cell whose real or generated profile is constant (e.g. all zero); summarise with
    :func:`numpy.nanmean`. Sparse inputs are densified a block of rows at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import pearson_per_cell
    >>> real = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    >>> pearson_per_cell(real, 2 * real + 1)
    array([1., 1.])
    """
    real, generated = _paired_matrices(real, generated)
    out = np.empty(real.shape[0])
    for rows, real_block, generated_block in iter_row_blocks(real, generated):
        real_block -= real_block.mean(axis=1, keepdims=True)
        generated_block -= generated_block.mean(axis=1, keepdims=True)
        out[rows] = pearson_from_centered_sums(
            np.einsum("ij,ij->i", real_block, generated_block),
            np.einsum("ij,ij->i", real_block, real_block),
            np.einsum("ij,ij->i", generated_block, generated_block),
        )
    return out


@shared_docs.dedent
def pearson_per_feature(real: Matrix, generated: Matrix) -> np.ndarray:
    """Pearson correlation between real and generated values of each feature across cells.

    Parameters
    ----------
    %(param_real)s
    %(param_generated)s

    Returns
    -------
    Pearson r per feature (across cells), shape ``(n_features,)``, in ``[-1, 1]``; **higher is better**.
    NaN for a feature that is constant in the real or the generated data (e.g. never detected in
    these cells); summarise with :func:`numpy.nanmean`. Memory stays bounded for sparse inputs:
    column means come first, then centred sums are accumulated over blocks of rows.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import pearson_per_feature
    >>> real = np.array([[1.0, 0.0, 5.0], [2.0, 0.0, 3.0], [3.0, 0.0, 1.0]])
    >>> pearson_per_feature(real, real[::-1])
    array([-1., nan, -1.])
    """
    real, generated = _paired_matrices(real, generated)
    real_means = np.asarray(real.mean(axis=0)).ravel()
    generated_means = np.asarray(generated.mean(axis=0)).ravel()
    cross = np.zeros(real.shape[1])
    ss_real = np.zeros(real.shape[1])
    ss_generated = np.zeros(real.shape[1])
    for _, real_block, generated_block in iter_row_blocks(real, generated):
        real_block -= real_means
        generated_block -= generated_means
        cross += np.einsum("ij,ij->j", real_block, generated_block)
        ss_real += np.einsum("ij,ij->j", real_block, real_block)
        ss_generated += np.einsum("ij,ij->j", generated_block, generated_block)
    return pearson_from_centered_sums(cross, ss_real, ss_generated)


@shared_docs.dedent
def rmse(real: Matrix, generated: Matrix) -> float:
    """Root-mean-square error between real and generated values over all entries.

    Parameters
    ----------
    %(param_real)s
    %(param_generated)s

    Returns
    -------
    :math:`\\sqrt{\\mathrm{mean}_{ij} (\\mathrm{real}_{ij} - \\mathrm{generated}_{ij})^2}`, in
    ``[0, inf)`` and in the units of the data; **lower is better**.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import rmse
    >>> rmse(np.zeros((2, 2)), np.array([[1.0, -1.0], [1.0, -1.0]]))
    1.0
    """
    real, generated = _paired_matrices(real, generated)
    if real.shape[0] * real.shape[1] == 0:
        raise ValueError("real and generated are empty; RMSE needs at least one entry")
    squared_error = 0.0
    for _, real_block, generated_block in iter_row_blocks(real, generated):
        real_block -= generated_block
        squared_error += float(np.einsum("ij,ij->", real_block, real_block))
    return float(np.sqrt(squared_error / (real.shape[0] * real.shape[1])))
