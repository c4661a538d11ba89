"""Input checks and conversions shared by the metrics.

Every check raises a ``ValueError`` that names the offending argument; none modifies its input.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike

#: A cells x features matrix: dense (anything :func:`numpy.asarray` accepts) or scipy sparse.
Matrix = ArrayLike | sp.spmatrix | sp.sparray

# dense row blocks hold at most this many entries (32 MiB of float64)
_BLOCK_ENTRIES = 4_000_000


def as_embedding(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a finite 2-D float64 array (cells x dimensions)."""
    if sp.issparse(x):
        raise ValueError(f"{name} is sparse; embeddings must be dense arrays (cells x dimensions)")
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (cells x dimensions), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has NaN or infinite values; remove those cells first")
    return arr


def as_matrix(x: Matrix, name: str) -> np.ndarray | sp.csr_matrix:
    """Return ``x`` as a 2-D numeric dense array or CSR matrix without copying when possible.

    Sparse input stays sparse and numeric dtypes are kept, so large float32 or integer matrices
    are not duplicated; the metrics convert one block of rows at a time to float64.
    """
    out = sp.csr_matrix(x) if sp.issparse(x) else np.asarray(x)
    if out.dtype.kind not in "biuf":
        out = out.astype(np.float64)
    if out.ndim != 2:
        raise ValueError(f"{name} must be 2-D (cells x features), got shape {out.shape}")
    values = out.data if sp.issparse(out) else out
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return out


def as_labels(labels: ArrayLike, n_obs: int, name: str) -> np.ndarray:
    """Return ``labels`` as a 1-D array of length ``n_obs``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per cell), got shape {arr.shape}")
    if arr.shape[0] != n_obs:
        raise ValueError(f"{name} has {arr.shape[0]} entries but the data have {n_obs} cells (rows)")
    if pd.isna(arr).any():
        raise ValueError(f"{name} has missing values; drop or label those cells first")
    return arr


def check_same_shape(a, b, name_a: str, name_b: str) -> None:
    """Raise if two matrices do not have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; "
            "they must hold the same cells (rows) and features (columns) in the same order"
        )


def iter_row_blocks(a, b) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield ``(rows, dense_a_block, dense_b_block)`` over row blocks of two equally shaped matrices.

    The blocks are float64 copies, so callers may modify them in place.
    """
    n_obs, n_features = a.shape
    step = max(1, _BLOCK_ENTRIES // max(n_features, 1))
    for start in range(0, n_obs, step):
        rows = slice(start, min(start + step, n_obs))
        yield rows, _dense_copy(a[rows]), _dense_copy(b[rows])


def _dense_copy(block) -> np.ndarray:
    if sp.issparse(block):
        block = block.toarray()
    return np.array(block, dtype=np.float64)
