"""Input checks shared by preprocessing and models.

Every check raises a ``ValueError`` that names the offending input and says how to fix it,
and none of them modifies its argument. Matrix checks read a matrix left on disk (a backed
AnnData's) one block of rows at a time.
"""

from __future__ import annotations

import functools
from numbers import Real

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from crossomics._backed import BackedRows, is_backed


def get_matrix(adata: AnnData, layer: str | None = None, name: str = "adata"):
    """Return ``adata.layers[layer]`` (or ``adata.X``), raising a clear error if it is missing;
    a matrix left on disk (backed AnnData) as :class:`~crossomics._backed.BackedRows`."""
    if layer is None:
        if adata.X is None:
            raise ValueError(f"{name} has no .X; pass layer= naming the layer that holds the data")
        X = adata.X
    elif layer not in adata.layers:
        raise ValueError(f"{name} has no layer {layer!r}; available layers: {list(adata.layers)}")
    else:
        X = adata.layers[layer]
    return BackedRows(X, name=name) if is_backed(X) else X


def _values(X) -> np.ndarray:
    if sp.issparse(X):
        return X.data
    return np.asarray(X)


def _blockwise(check):
    """``check`` of a matrix, applied to a matrix left on disk one block of rows at a time."""

    @functools.wraps(check)
    def checked(X, *args, **kwargs) -> None:
        if isinstance(X, BackedRows):
            for _, block in X.blocks():
                check(block, *args, **kwargs)
        else:
            check(X, *args, **kwargs)

    return checked


@_blockwise
def check_finite(X, name: str) -> None:
    """Raise if ``X`` holds NaN or infinite values."""
    values = _values(X)
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        n_bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"{name} has {n_bad} NaN/inf values; remove or impute them before use")


@_blockwise
def check_counts(X, name: str, hint: str = "") -> None:
    """Raise if ``X`` is not a matrix of non-negative integer counts."""
    check_finite(X, name)
    values = _values(X)
    if values.size and values.min() < 0:
        raise ValueError(f"{name} has negative values; raw counts are required{hint}")
    if np.issubdtype(values.dtype, np.floating) and values.size:
        # checking a sample keeps this cheap on large matrices; non-integer data are never subtle
        sample = values if values.size <= 1_000_000 else values[:: values.size // 1_000_000]
        if not np.all(np.equal(np.mod(sample, 1), 0)):
            raise ValueError(f"{name} has non-integer values; raw counts are required{hint}")


def empty_cells(X) -> np.ndarray:
    """Boolean mask of the rows (cells) of ``X`` that sum to zero."""
    return np.asarray(X.sum(axis=1)).ravel() == 0


def is_count_matrix(X) -> bool:
    """True when ``X`` holds only non-negative integers."""
    try:
        check_counts(X, "X")
    except ValueError:
        return False
    return True


@_blockwise
def check_nonnegative(X, name: str, hint: str = "") -> None:
    """Raise if ``X`` holds NaN, infinite or negative values."""
    check_finite(X, name)
    values = _values(X)
    if values.size and values.min() < 0:
        raise ValueError(f"{name} has negative values; non-negative data are required{hint}")


def check_positive_int(value, name: str, example: int, minimum: int = 1, why: str = "") -> None:
    """Refuse anything but an integer of at least ``minimum`` (``True``, ``2.5``, ``0`` included)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name}={value!r}; pass {wanted}{why} (e.g. {name}={example})")


def check_number(
    value,
    name: str,
    example: float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Refuse anything but a finite real number in the interval from ``low`` to ``high``.

    ``True``, NaN, infinities and strings are refused too; open ends exclude the bound.
    """
    ok = isinstance(value, Real) and not isinstance(value, bool) and bool(np.isfinite(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    if high is not None:
        wanted = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low == 0:
        wanted = "a positive number" if low_open else "a non-negative number"
    elif low is not None:
        wanted = f"a number {'>' if low_open else '>='} {low}"
    else:
        wanted = "a finite number"
    raise ValueError(f"{name}={value!r}; pass {wanted} (e.g. {name}={example})")


def check_indices(indices, n_rows: int, name: str) -> np.ndarray:
    """Row positions from integer positions or a boolean mask, checked against ``n_rows``."""
    indices = np.asarray(indices)
    if indices.dtype == bool:
        if indices.shape != (n_rows,):
            raise ValueError(
                f"{name}: a boolean mask must have one entry per cell ({n_rows}), not {indices.shape}"
            )
        return np.flatnonzero(indices)
    if indices.size == 0:
        return np.zeros(0, dtype=np.int64)
    if indices.ndim != 1 or indices.dtype.kind not in "iu":
        raise ValueError(
            f"{name}: indices must be integer row positions or a boolean mask, got dtype {indices.dtype}"
        )
    out_of_range = indices[(indices < -n_rows) | (indices >= n_rows)]
    if out_of_range.size:
        raise ValueError(f"{name}: indices {out_of_range[:3].tolist()} are outside the {n_rows} cells")
    return indices
