"""The fixed log-normalise -> standardise -> PCA input transform (RNA, protein), and the
standardised PCA of continuous data: numpy fit and transform, and their torch forms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from crossomics._constants import CLIP_VALUE, STD_FLOOR, TARGET_SUM
from crossomics._docs import shared_docs
from crossomics._validation import check_number
from crossomics.nn._transforms import (
    _TOTAL_FLOOR,
    ComponentProjection,
    _buffer,
    _csr_entries,
    _csr_like,
    _is_csr,
)

from ._input_transforms import (
    FittedProjection,
    as_names,
    check_n_components,
    check_transform_input,
    floored_std,
    top_right_singular_vectors,
)
from ._normalize import column_moments, log_normalize


@dataclass(frozen=True, eq=False)
class PCATransform(FittedProjection):
    """A fitted log-normalise -> standardise -> PCA projection (see :func:`fit_pca`).

    For a cell with feature values ``x`` (length ``n_features``)::

        total = max(sum(x), 1e-12)                      # empty cells stay all-zero
        y = log1p(x / total * target_sum)
        z = clip((y - mean) / std, -10, 10)             # mean, std stored (std floored to 1)
        embedding = z @ components.T                    # shape (n_components,)

    ``components`` are the top right singular vectors of the training ``z`` (not re-centred:
    ``z`` has zero column means by construction, apart from the clipping).

    Attributes
    ----------
    mean, std
        float32 per-feature mean and standard deviation of ``y`` on the training cells;
        standard deviations below ``1e-6`` are stored as 1.
    components
        float32 array of shape ``(n_components, n_features)``.
    target_sum
        Per-cell total after normalisation.
    feature_names
        Training feature names, or ``None`` when they were not given.
    """

    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray
    target_sum: float
    feature_names: np.ndarray | None = None
    clip_value: float = CLIP_VALUE

    def standardize(self, X) -> np.ndarray:
        """Return ``z`` (clipped, standardised log-normalised values) as a dense float32 array."""
        y = log_normalize(X, self.target_sum)
        y = y.toarray() if sp.issparse(y) else y
        return np.clip((y - self.mean) / self.std, -self.clip_value, self.clip_value)

    def transform(self, X) -> np.ndarray:
        """Project cells (sparse or dense, cells x ``n_features``) to ``(n_cells, n_components)``.

        Examples
        --------
        >>> import crossomics as co
        >>> rna = co.datasets.mouse_motor_cortex()["rna"]
        >>> pca = co.pp.fit_pca(rna.X, n_components=20)
        >>> pca.transform(rna.X[:5]).shape
        (5, 20)
        """
        return self._projected(X, self.standardize)

    def module(self) -> LogNormalizedPCA:
        """The torch form of this transform (buffers), for dense or CSR tensors."""
        return LogNormalizedPCA(self.components, self.mean, self.std, self.target_sum, self.clip_value)


@shared_docs.dedent
def fit_pca(
    X,
    n_components: int = 50,
    target_sum: float = TARGET_SUM,
    random_state: int = 0,
    feature_names: Sequence[str] | None = None,
) -> PCATransform:
    """Fit the log-normalise -> standardise -> PCA input transform on a cells x features matrix.

    This is the RNA input of the paper (normalise, log-transform, scale, PCA), frozen so that
    training, inference, generation and perturbation all see the same projection.

    Parameters
    ----------
    X
        Non-negative cells x features matrix (raw counts), sparse or dense. Not modified.
    n_components
        Number of principal components, at most ``min(n_cells, n_features)``.
    target_sum
        Per-cell total after normalisation.
    %(param_random_state_svd)s
    %(param_feature_names)s

    Returns
    -------
    PCATransform
        The fitted transform; its docstring gives the exact formula.

    Examples
    --------
    >>> import crossomics as co
    >>> rna = co.datasets.mouse_motor_cortex()["rna"]
    >>> pca = co.pp.fit_pca(rna.X, n_components=30, feature_names=rna.var_names)
    >>> pca.components.shape
    (30, 1677)
    """
    check_transform_input(X, None, "X")
    check_n_components(X, n_components)
    check_number(target_sum, "target_sum", TARGET_SUM, low=0, low_open=True)
    y = log_normalize(X, target_sum)
    y = y.toarray() if sp.issparse(y) else y
    mean = y.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = floored_std(y.std(axis=0, dtype=np.float64))
    z = np.clip((y - mean) / std, -CLIP_VALUE, CLIP_VALUE)
    return PCATransform(
        mean=mean,
        std=std,
        components=top_right_singular_vectors(z, n_components, random_state),
        target_sum=float(target_sum),
        feature_names=as_names(feature_names, X.shape[1]),
    )


# ---------------------------------------------------------------- torch forms (model buffers)
class LogNormalizedPCA(ComponentProjection):
    """``standardise(log1p(x / total * target_sum)) @ components.T`` with clipping.

    The torch form of :class:`PCATransform` (see its ``transform``), with the same numbers.
    """

    def __init__(
        self, components, feature_mean, feature_std, target_sum: float = TARGET_SUM, clip: float = CLIP_VALUE
    ):
        super().__init__()
        self.register_buffer("components", _buffer(components))
        self.register_buffer("feature_mean", _buffer(feature_mean))
        self.register_buffer("feature_std", _buffer(feature_std))
        self.target_sum = float(target_sum)
        self.clip = float(clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense ``x``, or a CSR ``x`` (inference): zeros standardise to a per-feature constant."""
        if _is_csr(x):
            rows, cols, values, totals = _csr_entries(x)
            logged = torch.log1p(values / totals[rows].clamp_min(_TOTAL_FLOOR) * self.target_sum)
            zero_scaled = (-self.feature_mean / self.feature_std).clamp(-self.clip, self.clip)
            scaled = ((logged - self.feature_mean[cols]) / self.feature_std[cols]).clamp(
                -self.clip, self.clip
            )
            change = torch.sparse.mm(_csr_like(x, scaled - zero_scaled[cols]), self.components.T)
            return change + zero_scaled @ self.components.T
        total = x.sum(-1, keepdim=True).clamp_min(_TOTAL_FLOOR)
        logged = torch.log1p(x / total * self.target_sum)
        scaled = ((logged - self.feature_mean) / self.feature_std).clamp(-self.clip, self.clip)
        return scaled @ self.components.T


class StandardizedPCA(ComponentProjection):
    """``clip((x - mean) / std) @ components.T`` for continuous (already normalised) data."""

    def __init__(self, components, feature_mean, feature_std, clip: float = CLIP_VALUE):
        super().__init__()
        self.register_buffer("components", _buffer(components))
        self.register_buffer("feature_mean", _buffer(feature_mean))
        self.register_buffer("feature_std", _buffer(feature_std))
        self.clip = float(clip)

    @classmethod
    def fit(cls, X, n_components: int, seed: int = 0, max_cells: int = 10_000) -> StandardizedPCA:
        """Fit means, standard deviations (all cells) and the top principal axes of ``X``.

        The axes come from at most ``max_cells`` random cells, densified in float32: wide
        continuous data (TF-IDF over 100,000 peaks) would not fit in memory densified whole.
        """
        mean, variance = column_moments(X)
        std = np.sqrt(np.maximum(variance, 0.0))
        std[std < STD_FLOOR] = 1.0
        rows = np.arange(X.shape[0])
        if X.shape[0] > max_cells:
            rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_cells, replace=False))
        sample = X[rows].toarray() if sp.issparse(X) else np.asarray(X)[rows]
        scaled = np.clip(
            (sample.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32),
            -CLIP_VALUE,
            CLIP_VALUE,
        )
        return cls(top_right_singular_vectors(scaled - scaled.mean(0), n_components, seed), mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _is_csr(x):
            x = x.to_dense()  # continuous data have few features; centring densifies anyway
        return ((x - self.feature_mean) / self.feature_std).clamp(-self.clip, self.clip) @ self.components.T
