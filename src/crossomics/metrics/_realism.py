"""Two-sample realism: can generated cells be told apart from real ones?"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crossomics._validation import check_positive_int

from ._generation_fidelity import _binarize, _log_normalize
from ._inputs import Matrix, as_labels, as_matrix
from ._modality_mixing import modality_mixing

_COLUMNS = ["n_real", "n_generated", "auc", "mixing"]


def two_sample_realism(
    real: Matrix,
    generated: Matrix,
    labels_real: ArrayLike | None = None,
    labels_generated: ArrayLike | None = None,
    *,
    binary: bool = False,
    log_normalize: bool = True,
    n_components: int = 30,
    n_neighbors: int = 15,
    n_folds: int = 3,
    min_cells: int = 20,
    mmd_permutations: int = 0,
    mmd_max_cells: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """How well generated (or simulated) cells pass for real ones, pooled and per cell type.

    Both sets are transformed alike (library size to 10,000 and ``log1p`` by default, or
    binarised with ``binary=True``) and projected onto one PCA of all cells together, so that any
    difference between the sets can show up in the projection. In that space:

    - ``auc``: a logistic regression on the standardised components is trained to tell real
      from generated cells; the score is the ROC AUC of its out-of-fold predictions
      (``n_folds``-fold stratified cross-validation). 0.5 = indistinguishable, 1 = always told
      apart. Class sizes do not change it.
    - ``mixing``: :func:`modality_mixing` of the two sets (``n_neighbors`` neighbours):
      1 = each cell has as many neighbours from the other set as random labels would give,
      0 = the sets lie apart.
    - with ``mmd_permutations > 0``, ``mmd``: the unbiased squared maximum mean discrepancy with
      a Gaussian kernel (bandwidth: the median distance between the cells compared) and
      ``mmd_pvalue``, its permutation p-value; each set is subsampled to at most
      ``mmd_max_cells`` cells for it.

    Parameters
    ----------
    real, generated
        Cells x features matrices (dense or sparse) over the same features in the same order;
        raw counts unless ``log_normalize=False`` or ``binary=True``. They may hold different
        numbers of cells.
    labels_real, labels_generated
        Cell type of each row. When both are given, every type with at least ``min_cells``
        cells in each set gets its own row, scored in the shared projection.
    binary
        Compare ``x > 0`` (ATAC accessibility) instead of normalised values.
    log_normalize
        Normalise each cell to 10,000 total and apply ``log1p`` (ignored when ``binary=True``).
        ``False`` for data that are already normalised.
    n_components
        PCA components of the shared projection.
    n_neighbors
        Neighbours of :func:`modality_mixing`.
    n_folds
        Cross-validation folds of the classifier.
    min_cells
        Fewest cells per set for a cell type to be scored (at least ``n_folds`` and
        ``n_neighbors + 1``).
    mmd_permutations
        Permutations of the MMD test; ``0`` leaves the MMD out.
    mmd_max_cells
        Cells per set used by the MMD.
    seed
        Seed of the PCA, the folds and the MMD subsampling and permutations.

    Returns
    -------
    DataFrame indexed by ``"all"`` and then each scored cell type, with columns ``n_real``,
    ``n_generated``, ``auc`` (**lower is better**, 0.5 best), ``mixing`` (**higher is better**,
    1 best) and, with ``mmd_permutations``, ``mmd`` (lower is better) and ``mmd_pvalue``.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import two_sample_realism
    >>> rng = np.random.default_rng(0)
    >>> rates = rng.gamma(2.0, 1.0, size=40)
    >>> real = rng.poisson(rates, size=(300, 40))
    >>> same = rng.poisson(rates, size=(300, 40))
    >>> shuffled = rng.poisson(rng.permutation(rates), size=(300, 40))
    >>> bool(two_sample_realism(real, same).loc["all", "auc"] < 0.6)
    True
    >>> bool(two_sample_realism(real, shuffled).loc["all", "auc"] > 0.95)
    True
    """
    real = as_matrix(real, "real")
    generated = as_matrix(generated, "generated")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(
            f"real has {real.shape[1]} features and generated {generated.shape[1]}; pass both over "
            "the same features in the same order (e.g. generated[:, real_adata.var_names])"
        )
    check_positive_int(n_components, "n_components", 30)
    check_positive_int(n_neighbors, "n_neighbors", 15)
    check_positive_int(seed, "seed", 0, minimum=0)
    check_positive_int(n_folds, "n_folds", 3, minimum=2)
    check_positive_int(mmd_permutations, "mmd_permutations", 200, minimum=0)
    check_positive_int(mmd_max_cells, "mmd_max_cells", 1000, minimum=2)
    check_positive_int(min_cells, "min_cells", 20, minimum=max(n_folds, n_neighbors + 1))
    if (labels_real is None) != (labels_generated is None):
        raise ValueError(
            "pass both labels_real and labels_generated (the cell type of each real and each "
            "generated cell) or neither"
        )
    for name, matrix in (("real", real), ("generated", generated)):
        if matrix.shape[0] < min_cells:
            raise ValueError(
                f"{name} has {matrix.shape[0]} cells; the scores need at least min_cells={min_cells}"
            )

    projected = _shared_projection(real, generated, binary, log_normalize, n_components, seed)
    is_generated = np.r_[np.zeros(real.shape[0], bool), np.ones(generated.shape[0], bool)]
    rows = {"all": np.ones(len(is_generated), bool)}
    if labels_real is not None:
        labels = np.r_[
            as_labels(labels_real, real.shape[0], "labels_real").astype(str),
            as_labels(labels_generated, generated.shape[0], "labels_generated").astype(str),
        ]
        for label in pd.unique(labels):
            cells = labels == label
            if min((cells & ~is_generated).sum(), (cells & is_generated).sum()) >= min_cells:
                rows[label] = cells

    rng = np.random.default_rng(seed)
    table = {}
    for name, cells in rows.items():
        points, side = projected[cells], is_generated[cells]
        scores = {
            "n_real": int((~side).sum()),
            "n_generated": int(side.sum()),
            "auc": _classifier_auc(points, side, n_folds, seed),
            "mixing": modality_mixing([points[~side], points[side]], n_neighbors=n_neighbors),
        }
        if mmd_permutations:
            scores["mmd"], scores["mmd_pvalue"] = _mmd_test(
                points[~side], points[side], mmd_permutations, mmd_max_cells, rng
            )
        table[name] = scores
    columns = _COLUMNS + (["mmd", "mmd_pvalue"] if mmd_permutations else [])
    return pd.DataFrame.from_dict(table, orient="index")[columns]


def _shared_projection(real, generated, binary: bool, log_normalize: bool, n_components: int, seed: int):
    """PCA coordinates of both sets after the same transform, fitted on all cells together."""
    if binary:
        real, generated = _binarize(real), _binarize(generated)
    elif log_normalize:
        real, generated = _log_normalize(real, "real"), _log_normalize(generated, "generated")
    if sp.issparse(real) or sp.issparse(generated):
        stacked = sp.vstack([sp.csr_matrix(real), sp.csr_matrix(generated)]).astype(np.float64)
        stacked = stacked.toarray()
    else:
        stacked = np.vstack([real, generated]).astype(np.float64)
    n_components = min(n_components, min(stacked.shape) - 1)
    return PCA(n_components, random_state=seed).fit_transform(stacked)


def _classifier_auc(points: np.ndarray, is_generated: np.ndarray, n_folds: int, seed: int) -> float:
    """Out-of-fold ROC AUC of a logistic regression telling generated from real cells."""
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    probability = cross_val_predict(classifier, points, is_generated, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(is_generated, probability))


def _mmd_test(x: np.ndarray, y: np.ndarray, n_permutations: int, max_cells: int, rng) -> tuple[float, float]:
    """Unbiased squared MMD (Gaussian kernel, median bandwidth) and its permutation p-value."""
    x = x[rng.permutation(len(x))[:max_cells]]
    y = y[rng.permutation(len(y))[:max_cells]]
    squared = euclidean_distances(np.vstack([x, y]), squared=True)
    bandwidth = np.median(squared[np.triu_indices(len(squared), 1)])
    kernel = np.exp(-squared / max(bandwidth, 1e-12))
    np.fill_diagonal(kernel, 0.0)
    first = np.r_[np.ones(len(x)), np.zeros(len(y))]

    def statistic(in_x: np.ndarray) -> float:
        # kernel sums within and between the two groups from two matrix-vector products
        in_y = 1.0 - in_x
        n, m = in_x.sum(), in_y.sum()
        to_x, to_y = kernel @ in_x, kernel @ in_y
        return float(in_x @ to_x / (n * (n - 1)) + in_y @ to_y / (m * (m - 1)) - 2 * (in_x @ to_y) / (n * m))

    observed = statistic(first)
    exceed = sum(statistic(rng.permutation(first)) >= observed for _ in range(n_permutations))
    return observed, (1 + exceed) / (1 + n_permutations)
