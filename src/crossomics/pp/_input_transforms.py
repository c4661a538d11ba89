"""Fixed PCA and LSI input transforms: fitted once, then applied identically to any cells.

Each transform has one home here: the numpy fit (:func:`fit_pca`, :func:`fit_lsi`,
:meth:`StandardizedPCA.fit`), its numpy ``transform`` and its torch form
(:class:`LogNormalizedPCA`, :class:`TfidfLSI`, :class:`StandardizedPCA`), which the models
store as buffers (``PCATransform.module()``). Every step is spelled out in the class
docstrings and uses only element-wise operations, row sums and one matrix product, and
tests/pp/test_input_transforms.py checks that both forms agree on real data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData
from sklearn.utils.extmath import randomized_svd, svd_flip
from torch import nn

from crossomics._validation import check_nonnegative, check_number, get_matrix
from crossomics.nn._transforms import _TOTAL_FLOOR, _buffer, _csr_entries, _csr_like, _is_csr

from ._normalize import TOTAL_FLOOR, as_float32_csr, column_moments, log_normalize, row_sums, scale_rows

CLIP_VALUE = 10.0
"""Standardised values are clipped to ``[-CLIP_VALUE, CLIP_VALUE]`` before the PCA projection."""
STD_FLOOR = 1e-6
"""Standard deviations below this are replaced by 1, so constant features map to 0."""
LSI_SCALE = 1e4
"""TF-IDF values are multiplied by this before ``log1p`` (as in Signac/ArchR's LSI)."""
_CHUNK_SIZE = 10_000


def _floored_std(values: np.ndarray) -> np.ndarray:
    std = np.asarray(values, dtype=np.float32).copy()
    std[std < STD_FLOOR] = 1.0
    return std


def _row_chunks(n_rows: int) -> Iterator[slice]:
    # the standardised PCA input is dense; chunking keeps its memory bounded on large data
    for start in range(0, n_rows, _CHUNK_SIZE):
        yield slice(start, min(start + _CHUNK_SIZE, n_rows))


def top_right_singular_vectors(X, n_components: int, random_state: int) -> np.ndarray:
    """First ``n_components`` right singular vectors of ``X`` (no centring), with fixed signs."""
    u, _, vt = randomized_svd(X, n_components=n_components, n_iter=7, random_state=random_state)
    # without a sign convention two fits could return mirrored components
    _, vt = svd_flip(u, vt, u_based_decision=False)
    return np.ascontiguousarray(vt, dtype=np.float32)


def _check_input(X, n_features: int | None, name: str):
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D cells x features matrix, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features but the transform was fitted on {n_features}; "
            "subset the data to the fitted features (see the transform's feature_names)"
        )
    check_nonnegative(X, name, hint=" (pass raw or normalised counts, not scaled data)")


def _check_n_components(X, n_components: int) -> None:
    limit = min(X.shape)
    is_int = isinstance(n_components, int | np.integer) and not isinstance(n_components, bool)
    if not is_int or not 1 <= n_components <= limit:
        raise ValueError(
            f"n_components={n_components!r} is invalid for a {X.shape[0]} x {X.shape[1]} matrix; "
            f"choose 1 <= n_components <= {limit}, an integer"
        )


def _as_names(feature_names: Sequence[str] | None, n_features: int) -> np.ndarray | None:
    if feature_names is None:
        return None
    names = np.asarray(feature_names, dtype=object)
    if names.shape != (n_features,):
        raise ValueError(f"feature_names has {names.size} entries but the data have {n_features} features")
    return names


@dataclass(frozen=True, eq=False)
class PCATransform:
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

    @property
    def n_features(self) -> int:
        """Number of input features the transform expects."""
        return self.components.shape[1]

    @property
    def n_components(self) -> int:
        """Number of output dimensions."""
        return self.components.shape[0]

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
        _check_input(X, self.n_features, "X")
        out = np.empty((X.shape[0], self.n_components), dtype=np.float32)
        for rows in _row_chunks(X.shape[0]):
            out[rows] = self.standardize(X[rows]) @ self.components.T
        return out

    def module(self) -> LogNormalizedPCA:
        """The torch form of this transform (buffers), for dense or CSR tensors."""
        return LogNormalizedPCA(self.components, self.mean, self.std, self.target_sum, self.clip_value)


@dataclass(frozen=True, eq=False)
class LSITransform:
    """A fitted TF-IDF -> log1p -> truncated SVD -> standardise projection (see :func:`fit_lsi`).

    For a cell with feature counts ``x`` (length ``n_features``)::

        total = max(sum(x), 1e-12)                      # empty cells stay all-zero
        tf = x / total
        v = log1p(tf * idf * 1e4)                       # idf stored
        u = v @ components.T                            # shape (n_components,)
        embedding = (u - component_mean) / component_std

    ``idf[j] = n_cells / (1 + n_cells_with_feature_j)`` on the training cells, where a cell
    "has" feature ``j`` when its value is non-zero. ``components`` are the top right singular
    vectors of the training ``v`` (no centring, as in latent semantic indexing).
    ``component_mean``/``component_std`` standardise each component on the training cells
    (std floored to 1 below ``1e-6``). No component is dropped: the first one often tracks
    sequencing depth, drop it downstream if that matters for your analysis.

    Attributes
    ----------
    idf
        float32 inverse document frequency per feature.
    components
        float32 array of shape ``(n_components, n_features)``.
    component_mean, component_std
        float32 arrays of length ``n_components``.
    feature_names
        Training feature names, or ``None`` when they were not given.
    """

    idf: np.ndarray
    components: np.ndarray
    component_mean: np.ndarray
    component_std: np.ndarray
    feature_names: np.ndarray | None = None
    scale: float = LSI_SCALE

    @property
    def n_features(self) -> int:
        """Number of input features the transform expects."""
        return self.components.shape[1]

    @property
    def n_components(self) -> int:
        """Number of output dimensions."""
        return self.components.shape[0]

    def tfidf(self, X) -> sp.csr_matrix:
        """Return ``v = log1p(tf * idf * 1e4)`` as a float32 CSR matrix."""
        return _log_tfidf(X, self.idf, self.scale)

    def transform(self, X) -> np.ndarray:
        """Project cells (sparse or dense, cells x ``n_features``) to ``(n_cells, n_components)``.

        Examples
        --------
        >>> import crossomics as co
        >>> atac = co.datasets.mouse_motor_cortex()["atac"]
        >>> lsi = co.pp.fit_lsi(atac.X, n_components=20)
        >>> lsi.transform(atac.X[:5]).shape
        (5, 20)
        """
        _check_input(X, self.n_features, "X")
        out = np.empty((X.shape[0], self.n_components), dtype=np.float32)
        for rows in _row_chunks(X.shape[0]):
            out[rows] = self.tfidf(X[rows]) @ self.components.T
        return (out - self.component_mean) / self.component_std

    def module(self) -> TfidfLSI:
        """The torch form of this transform (buffers), for dense or CSR tensors."""
        return TfidfLSI(self.components, self.idf, self.component_mean, self.component_std, self.scale)


def _log_tfidf(X, idf: np.ndarray, scale: float) -> sp.csr_matrix:
    tf = scale_rows(X, 1.0 / np.maximum(row_sums(X), TOTAL_FLOOR))
    v = as_float32_csr(tf) @ sp.diags(np.asarray(idf, dtype=np.float32) * np.float32(scale))
    v = v.tocsr()
    v.data = np.log1p(v.data)
    return v


def fit_pca(
    X,
    n_components: int = 50,
    target_sum: float = 1e4,
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
    random_state
        Seed of the randomised SVD.
    feature_names
        Optional feature names stored on the result, so callers can check feature order.

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
    _check_input(X, None, "X")
    _check_n_components(X, n_components)
    check_number(target_sum, "target_sum", 1e4, low=0, low_open=True)
    y = log_normalize(X, target_sum)
    y = y.toarray() if sp.issparse(y) else y
    mean = y.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = _floored_std(y.std(axis=0, dtype=np.float64))
    z = np.clip((y - mean) / std, -CLIP_VALUE, CLIP_VALUE)
    return PCATransform(
        mean=mean,
        std=std,
        components=top_right_singular_vectors(z, n_components, random_state),
        target_sum=float(target_sum),
        feature_names=_as_names(feature_names, X.shape[1]),
    )


def fit_lsi(
    X,
    n_components: int = 50,
    random_state: int = 0,
    feature_names: Sequence[str] | None = None,
) -> LSITransform:
    """Fit the latent semantic indexing (TF-IDF + truncated SVD) input transform.

    This is the ATAC input of the paper, frozen so that any later cells are projected with the
    training IDF, components and component scaling.

    Parameters
    ----------
    X
        Non-negative cells x peaks matrix (counts or binarised counts), sparse or dense.
        Not modified.
    n_components
        Number of LSI components (all kept, see :class:`LSITransform`).
    random_state
        Seed of the randomised SVD.
    feature_names
        Optional feature names stored on the result, so callers can check feature order.

    Returns
    -------
    LSITransform
        The fitted transform; its docstring gives the exact formula.

    Examples
    --------
    >>> import crossomics as co
    >>> atac = co.datasets.mouse_motor_cortex()["atac"]
    >>> lsi = co.pp.fit_lsi(atac.X, n_components=30, feature_names=atac.var_names)
    >>> lsi.transform(atac.X).std(axis=0).round(3)[:3]
    array([1., 1., 1.], dtype=float32)
    """
    _check_input(X, None, "X")
    _check_n_components(X, n_components)
    cells_with_feature = np.asarray((X != 0).sum(axis=0), dtype=np.float64).ravel()
    idf = (X.shape[0] / (1.0 + cells_with_feature)).astype(np.float32)
    v = _log_tfidf(X, idf, LSI_SCALE)
    components = top_right_singular_vectors(v, n_components, random_state)
    u = np.asarray(v @ components.T, dtype=np.float32)
    return LSITransform(
        idf=idf,
        components=components,
        component_mean=u.mean(axis=0, dtype=np.float64).astype(np.float32),
        component_std=_floored_std(u.std(axis=0, dtype=np.float64)),
        feature_names=_as_names(feature_names, X.shape[1]),
    )


def lsi(
    adata: AnnData,
    n_components: int = 50,
    layer: str | None = None,
    key_added: str = "X_lsi",
    random_state: int = 0,
    copy: bool = False,
) -> AnnData | None:
    """Latent semantic indexing of a cells x peaks AnnData, scanpy style.

    Fits :func:`fit_lsi` on ``adata`` and writes the standardised components to
    ``obsm[key_added]``.

    Parameters
    ----------
    adata
        Cells x peaks data with non-negative counts in ``X`` or ``layers[layer]``.
    n_components
        Number of LSI components.
    layer
        Layer holding the counts; ``None`` uses ``X``.
    key_added
        ``obsm`` key that receives the ``(n_cells, n_components)`` float32 embedding.
    random_state
        Seed of the randomised SVD.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    AnnData or None
        A copy with ``obsm[key_added]`` when ``copy=True``; otherwise ``None`` and ``adata``
        gains ``obsm[key_added]`` (its only change).

    Examples
    --------
    >>> import crossomics as co
    >>> atac = co.datasets.mouse_motor_cortex()["atac"]
    >>> co.pp.lsi(atac, n_components=20)
    >>> atac.obsm["X_lsi"].shape
    (10309, 20)
    """
    X = get_matrix(adata, layer)
    transform = fit_lsi(X, n_components=n_components, random_state=random_state)
    target = adata.copy() if copy else adata
    target.obsm[key_added] = transform.transform(X)
    return target if copy else None


# ---------------------------------------------------------------- torch forms (model buffers)
class LogNormalizedPCA(nn.Module):
    """``standardise(log1p(x / total * target_sum)) @ components.T`` with clipping.

    The torch form of :class:`PCATransform` (see its ``transform``), with the same numbers.
    """

    def __init__(self, components, feature_mean, feature_std, target_sum: float = 1e4, clip: float = 10.0):
        super().__init__()
        self.register_buffer("components", _buffer(components))
        self.register_buffer("feature_mean", _buffer(feature_mean))
        self.register_buffer("feature_std", _buffer(feature_std))
        self.target_sum = float(target_sum)
        self.clip = float(clip)

    @property
    def n_output(self) -> int:
        return self.components.shape[0]

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


class TfidfLSI(nn.Module):
    """LSI: ``standardise(log1p(x / total * idf * scale) @ components.T)``.

    The torch form of :class:`LSITransform` (see its ``transform``), with the same numbers.
    """

    def __init__(self, components, idf, output_mean, output_std, scale: float = 1e4):
        super().__init__()
        self.register_buffer("components", _buffer(components))
        self.register_buffer("idf", _buffer(idf))
        self.register_buffer("output_mean", _buffer(output_mean))
        self.register_buffer("output_std", _buffer(output_std))
        self.scale = float(scale)

    @property
    def n_output(self) -> int:
        return self.components.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense ``x``, or a CSR ``x`` (inference): TF-IDF keeps zeros at zero."""
        if _is_csr(x):
            rows, cols, values, totals = _csr_entries(x)
            tfidf = torch.log1p(values / totals[rows].clamp_min(_TOTAL_FLOOR) * self.idf[cols] * self.scale)
            projected = torch.sparse.mm(_csr_like(x, tfidf), self.components.T)
        else:
            total = x.sum(-1, keepdim=True).clamp_min(_TOTAL_FLOOR)
            projected = torch.log1p(x / total * self.idf * self.scale) @ self.components.T
        return (projected - self.output_mean) / self.output_std


class StandardizedPCA(nn.Module):
    """``clip((x - mean) / std) @ components.T`` for continuous (already normalised) data."""

    def __init__(self, components, feature_mean, feature_std, clip: float = 10.0):
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
        std[std < 1e-6] = 1.0
        rows = np.arange(X.shape[0])
        if X.shape[0] > max_cells:
            rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_cells, replace=False))
        sample = X[rows].toarray() if sp.issparse(X) else np.asarray(X)[rows]
        scaled = np.clip(
            (sample.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32), -10, 10
        )
        return cls(top_right_singular_vectors(scaled - scaled.mean(0), n_components, seed), mean, std)

    @property
    def n_output(self) -> int:
        return self.components.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _is_csr(x):
            x = x.to_dense()  # continuous data have few features; centring densifies anyway
        return ((x - self.feature_mean) / self.feature_std).clamp(-self.clip, self.clip) @ self.components.T
