"""Steps shared by the fixed PCA and LSI input transforms: input checks, floored standard
deviations, row chunks and the sign-fixed truncated SVD.

Each transform has one home, its own file: the numpy fit, its numpy ``transform`` and its torch
form (which the models store as buffers) are in ``_pca.py`` (:func:`fit_pca`,
:class:`LogNormalizedPCA`, :class:`StandardizedPCA` for continuous data) and ``_lsi.py``
(:func:`fit_lsi`, :class:`TfidfLSI`). Every step is spelled out in the class docstrings and uses
only element-wise operations, row sums and one matrix product, and
tests/pp/test_input_transforms.py checks that both forms agree on real data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.utils.extmath import randomized_svd, svd_flip

from crossomics._constants import STD_FLOOR
from crossomics._validation import check_nonnegative

_CHUNK_SIZE = 10_000


def floored_std(values: np.ndarray) -> np.ndarray:
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


def check_transform_input(X, n_features: int | None, name: str):
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D cells x features matrix, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features but the transform was fitted on {n_features}; "
            "subset the data to the fitted features (see the transform's feature_names)"
        )
    check_nonnegative(X, name, hint=" (pass raw or normalised counts, not scaled data)")


def check_n_components(X, n_components: int) -> None:
    limit = min(X.shape)
    is_int = isinstance(n_components, int | np.integer) and not isinstance(n_components, bool)
    if not is_int or not 1 <= n_components <= limit:
        raise ValueError(
            f"n_components={n_components!r} is invalid for a {X.shape[0]} x {X.shape[1]} matrix; "
            f"choose 1 <= n_components <= {limit}, an integer"
        )


def as_names(feature_names: Sequence[str] | None, n_features: int) -> np.ndarray | None:
    if feature_names is None:
        return None
    names = np.asarray(feature_names, dtype=object)
    if names.shape != (n_features,):
        raise ValueError(f"feature_names has {names.size} entries but the data have {n_features} features")
    return names


class FittedProjection:
    """What the fitted PCA and LSI transforms share: ``components`` of shape
    ``(n_components, n_features)`` and the chunked projection of their cells."""

    @property
    def n_features(self) -> int:
        """Number of input features the transform expects."""
        return self.components.shape[1]

    @property
    def n_components(self) -> int:
        """Number of output dimensions."""
        return self.components.shape[0]

    def _projected(self, X, values) -> np.ndarray:
        """``values(chunk) @ components.T`` for row chunks of the checked ``X``, as float32."""
        check_transform_input(X, self.n_features, "X")
        out = np.empty((X.shape[0], self.n_components), dtype=np.float32)
        for rows in _row_chunks(X.shape[0]):
            out[rows] = values(X[rows]) @ self.components.T
        return out
