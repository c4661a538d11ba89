"""One-call summary of how well generated profiles reproduce real ones."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from crossomics._constants import TARGET_SUM

from ._auroc import auroc_binary
from ._cell_type_agreement import marker_correlation
from ._inputs import Matrix, as_matrix, check_same_shape
from ._profile_similarity import pearson_per_cell, pearson_per_feature, rmse


def generation_fidelity(
    real: Matrix,
    generated: Matrix,
    labels: ArrayLike | None = None,
    binary: bool = False,
    log_normalize: bool = True,
) -> dict[str, float]:
    """Summarise the agreement of generated and real profiles of the same cells.

    Count-like targets (RNA, protein) are compared after library-size normalisation to 10,000
    and ``log1p`` of **both** matrices (set ``log_normalize=False`` if they are already
    normalised). Binary targets (ATAC accessibility) are compared as is: ``real > 0`` against the
    generated scores (probabilities), and the AUROC is added.

    Parameters
    ----------
    real
        Measured data, shape ``(n_cells, n_features)``, dense or sparse (raw counts by default).
    generated
        Generated data for the same cells and features (counts, means or probabilities).
    labels
        Cell type of each cell; when given, :func:`marker_correlation` is added.
    binary
        Treat the target as binary (ATAC): binarise ``real``, skip normalisation, add the AUROC.
    log_normalize
        Normalise each cell to 10,000 total and apply ``log1p`` before comparing (ignored when
        ``binary=True``).

    Returns
    -------
    Dictionary with

    - ``"pearson_per_cell"``: mean over cells of :func:`pearson_per_cell` (NaNs skipped), higher is better;
    - ``"pearson_per_feature"``: mean over features of :func:`pearson_per_feature` (NaNs skipped,
      i.e. features constant in either matrix are left out), higher is better;
    - ``"rmse"``: :func:`rmse`, lower is better;
    - ``"auroc"``: :func:`auroc_binary`, only when ``binary=True``, higher is better;
    - ``"marker_correlation"`` and ``"marker_correlation_own"``: :func:`marker_correlation` with
      5 markers per type over the full (types x markers) matrix and over each type's own
      markers, only when ``labels`` are given, higher is better.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import generation_fidelity
    >>> rng = np.random.default_rng(0)
    >>> real = rng.poisson(2.0, size=(100, 30))
    >>> scores = generation_fidelity(real, real + rng.poisson(0.2, size=real.shape))
    >>> sorted(scores)
    ['pearson_per_cell', 'pearson_per_feature', 'rmse']
    >>> scores["pearson_per_cell"] > 0.9
    True
    """
    real = as_matrix(real, "real")
    generated = as_matrix(generated, "generated")
    check_same_shape(real, generated, "real", "generated")
    if binary:
        real = _binarize(real)
    elif log_normalize:
        real = _log_normalize(real, "real")
        generated = _log_normalize(generated, "generated")

    summary = {
        "pearson_per_cell": float(np.nanmean(pearson_per_cell(real, generated))),
        "pearson_per_feature": float(np.nanmean(pearson_per_feature(real, generated))),
        "rmse": rmse(real, generated),
    }
    if binary:
        summary["auroc"] = auroc_binary(real, generated)
    if labels is not None:
        summary["marker_correlation"] = marker_correlation(real, generated, labels)
        summary["marker_correlation_own"] = marker_correlation(real, generated, labels, entries="own")
    return summary


def _binarize(matrix):
    """``matrix > 0`` as booleans (one byte per entry; metrics convert blocks to float as needed)."""
    if sp.issparse(matrix):
        out = matrix > 0
        out.eliminate_zeros()
        return out
    return matrix > 0


def _log_normalize(matrix, name: str, target_sum: float = TARGET_SUM):
    """``log1p`` of each row scaled to ``target_sum`` in total; all-zero rows stay zero."""
    values = matrix.data if sp.issparse(matrix) else matrix
    if values.size and values.min() < 0:
        raise ValueError(
            f"{name} has negative values, so it is not counts; pass log_normalize=False for data "
            "that are already normalised"
        )
    totals = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    if sp.issparse(matrix):
        out = sp.csr_matrix(sp.diags(scale) @ matrix)
        np.log1p(out.data, out=out.data)
        return out
    return np.log1p(matrix * scale[:, None])
