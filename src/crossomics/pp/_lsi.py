"""The fixed latent semantic indexing (TF-IDF -> log1p -> truncated SVD -> standardise) input
transform of ATAC: numpy fit and transform, :func:`lsi` for an AnnData, and its torch form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from crossomics._docs import shared_docs
from crossomics._validation import get_matrix
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
from ._normalize import TOTAL_FLOOR, as_float32_csr, row_sums, scale_rows

LSI_SCALE = 1e4
"""TF-IDF values are multiplied by this before ``log1p`` (as in Signac/ArchR's LSI)."""


@dataclass(frozen=True, eq=False)
class LSITransform(FittedProjection):
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
        return (self._projected(X, self.tfidf) - self.component_mean) / self.component_std

    def module(self) -> TfidfLSI:
        """The torch form of this transform (buffers), for dense or CSR tensors."""
        return TfidfLSI(self.components, self.idf, self.component_mean, self.component_std, self.scale)


def _log_tfidf(X, idf: np.ndarray, scale: float) -> sp.csr_matrix:
    tf = scale_rows(X, 1.0 / np.maximum(row_sums(X), TOTAL_FLOOR))
    v = as_float32_csr(tf) @ sp.diags(np.asarray(idf, dtype=np.float32) * np.float32(scale))
    v = v.tocsr()
    v.data = np.log1p(v.data)
    return v


@shared_docs.dedent
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
    %(param_random_state_svd)s
    %(param_feature_names)s

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
    check_transform_input(X, None, "X")
    check_n_components(X, n_components)
    cells_with_feature = np.asarray((X != 0).sum(axis=0), dtype=np.float64).ravel()
    idf = (X.shape[0] / (1.0 + cells_with_feature)).astype(np.float32)
    v = _log_tfidf(X, idf, LSI_SCALE)
    components = top_right_singular_vectors(v, n_components, random_state)
    u = np.asarray(v @ components.T, dtype=np.float32)
    return LSITransform(
        idf=idf,
        components=components,
        component_mean=u.mean(axis=0, dtype=np.float64).astype(np.float32),
        component_std=floored_std(u.std(axis=0, dtype=np.float64)),
        feature_names=as_names(feature_names, X.shape[1]),
    )


@shared_docs.dedent
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
    %(param_random_state_svd)s
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


class TfidfLSI(ComponentProjection):
    """LSI: ``standardise(log1p(x / total * idf * scale) @ components.T)``.

    The torch form of :class:`LSITransform` (see its ``transform``), with the same numbers.
    """

    def __init__(self, components, idf, output_mean, output_std, scale: float = LSI_SCALE):
        super().__init__()
        self.register_buffer("components", _buffer(components))
        self.register_buffer("idf", _buffer(idf))
        self.register_buffer("output_mean", _buffer(output_mean))
        self.register_buffer("output_std", _buffer(output_std))
        self.scale = float(scale)

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
