"""AUROC of generated scores against a binary target (e.g. ATAC accessibility)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from crossomics._validation import check_positive_int

from ._inputs import Matrix, as_matrix, check_same_shape


def auroc_binary(
    real_binary: Matrix,
    scores: Matrix,
    max_entries: int | None = 10_000_000,
    seed: int = 0,
) -> float:
    """Area under the ROC curve of generated scores for a binary target, over all matrix entries.

    Every (cell, feature) entry is one sample: entries with ``real_binary > 0`` are positives, so raw
    ATAC counts can be passed directly. The AUROC is exact (scikit-learn, ties handled) when the
    matrix has at most ``max_entries`` entries. Larger matrices (a 10k x 100k peak matrix has 10^9)
    are scored on ``max_entries`` entries drawn uniformly with replacement using ``seed``. The
    estimate is reproducible for a given seed and its standard error is at most about
    ``0.5 / sqrt(number of sampled positives)``, e.g. 0.002 when 0.5% of entries are positive.

    Parameters
    ----------
    real_binary
        Measured target, shape ``(n_cells, n_features)``, dense or sparse; entries > 0 are positive.
    scores
        Generated scores for the same cells and features, e.g. predicted accessibility probabilities;
        only their order matters.
    max_entries
        Largest number of entries scored exactly; ``None`` always scores all entries.
    seed
        Seed of the entry sample for large matrices.

    Returns
    -------
    AUROC in ``[0, 1]``; **higher is better**, 0.5 is chance.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import auroc_binary
    >>> real = np.array([[1, 0, 0], [0, 1, 1]])
    >>> auroc_binary(real, np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.4]]))
    1.0
    """
    if max_entries is not None:
        check_positive_int(max_entries, "max_entries", 10_000_000, why=", or None to score every entry")
    real_binary = as_matrix(real_binary, "real_binary")
    scores = as_matrix(scores, "scores")
    check_same_shape(real_binary, scores, "real_binary", "scores")
    n_cells, n_features = real_binary.shape
    n_entries = n_cells * n_features
    if max_entries is not None and n_entries > max_entries:
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, n_cells, size=max_entries)
        cols = rng.integers(0, n_features, size=max_entries)
        truth = _entries(real_binary, rows, cols) > 0
        values = _entries(scores, rows, cols)
    else:
        truth = _dense(real_binary).ravel() > 0
        values = _dense(scores).ravel()
    n_positive = int(truth.sum())
    if n_positive in (0, truth.size):
        raise ValueError(
            "real_binary has only one class (all entries "
            f"{'> 0' if n_positive else '== 0'}); AUROC needs both positive and negative entries"
        )
    return float(roc_auc_score(truth, values))


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else matrix


def _entries(matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return np.asarray(matrix[rows, cols]).ravel()
