"""Matrices that stay on disk: a backed AnnData's ``.X`` or layer, read a block of rows at a time.

A MuData read with ``mudata.read_h5mu(path, backed=True)`` keeps every count matrix in the
file. :class:`BackedRows` stands for such a matrix, or a selection of its rows and columns, with
the few operations SCCROSS needs (``shape``, row selection, column order, row sums and blocks of
rows in memory), so the model reads as many rows at once as a minibatch or a chunk needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import h5py
import numpy as np
import scipy.sparse as sp
from anndata.abc import CSCDataset, CSRDataset

# rows read at once by whole-matrix passes (row sums, checks, encoder inputs); for a
# 25,734-peak ATAC modality at ~3,000 counts per cell one block holds ~100 MB
READ_BLOCK = 8192


def is_backed(X) -> bool:
    """True for a matrix that stays on disk (an HDF5 dataset or a backed sparse matrix)."""
    return isinstance(X, CSRDataset | CSCDataset | h5py.Dataset)


class BackedRows:
    """Rows ``rows`` (all when ``None``) and columns ``columns`` of an on-disk matrix.

    Indexing with rows (a mask or integer positions, a second index selecting columns) gives
    another :class:`BackedRows` and reads nothing; :meth:`read` and :meth:`blocks` read.
    """

    def __init__(
        self, source, rows: np.ndarray | None = None, columns: np.ndarray | None = None, name: str = "X"
    ):
        if isinstance(source, CSCDataset):
            raise ValueError(
                f"{name} is stored column by column (CSC) on disk, and cells are read a block of rows at "
                "a time; write it as CSR first (adata.X = adata.X.tocsr() before adata.write), or load "
                "it into memory (adata.to_memory())"
            )
        self.source, self.rows, self.columns, self.name = source, rows, columns, name

    @property
    def shape(self) -> tuple[int, int]:
        n_rows = self.source.shape[0] if self.rows is None else len(self.rows)
        n_columns = self.source.shape[1] if self.columns is None else len(self.columns)
        return n_rows, n_columns

    @property
    def dtype(self):
        return self.source.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> BackedRows:
        rows, columns = key if isinstance(key, tuple) else (key, slice(None))
        positions = np.arange(self.shape[0])[rows]
        selected = positions if self.rows is None else self.rows[positions]
        if not (isinstance(columns, slice) and columns == slice(None)):
            columns = np.arange(self.shape[1])[columns]
            columns = columns if self.columns is None else self.columns[columns]
        else:
            columns = self.columns
        return BackedRows(self.source, np.asarray(selected, dtype=np.int64), columns, self.name)

    def read(self, start: int = 0, stop: int | None = None):
        """Rows ``start:stop`` of the selection in memory (scipy CSR, or numpy for dense data)."""
        stop = self.shape[0] if stop is None else min(stop, self.shape[0])
        if self.rows is None:
            block = self.source[start:stop]
        else:
            wanted = self.rows[start:stop]
            if len(wanted) and (np.diff(wanted) == 1).all():
                block = self.source[int(wanted[0]) : int(wanted[-1]) + 1]
            else:
                # HDF5 reads need increasing, unique positions
                unique, inverse = np.unique(wanted, return_inverse=True)
                block = self.source[unique]
                if not np.array_equal(unique, wanted):
                    block = block[inverse]
        if self.columns is not None:
            block = block[:, self.columns]
        return sp.csr_matrix(block) if sp.issparse(block) else np.asarray(block)

    def blocks(self, size: int = READ_BLOCK) -> Iterator[tuple[int, object]]:
        """``(start, rows start:start+size in memory)`` over the whole selection."""
        for start in range(0, self.shape[0], size):
            yield start, self.read(start, start + size)

    def to_memory(self):
        """The whole selection in memory."""
        blocks = [block for _, block in self.blocks()]
        if not blocks:
            return sp.csr_matrix(self.shape, dtype=self.dtype)
        return sp.vstack(blocks, format="csr") if sp.issparse(blocks[0]) else np.concatenate(blocks)

    def sum(self, axis: int | None = None):
        """Row sums (``axis=1``, as an ``(n, 1)`` array like scipy's) or the total."""
        if axis not in (1, -1, None):
            raise NotImplementedError("BackedRows sums over rows (axis=1) or everything (axis=None)")
        integer = np.issubdtype(self.dtype, np.integer) or np.issubdtype(self.dtype, np.bool_)
        sums = np.zeros((self.shape[0], 1), dtype=np.int64 if integer else np.float64)
        for start, block in self.blocks():
            sums[start : start + block.shape[0], 0] = np.asarray(block.sum(axis=1)).ravel()
        return sums if axis is not None else float(sums.sum())


def as_rows(X, name: str = "X"):
    """``X`` as :class:`BackedRows` when it stays on disk; in-memory sparse matrices as CSR."""
    if isinstance(X, BackedRows):
        return X
    if is_backed(X):
        return BackedRows(X, name=name)
    return sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)


def read_rows(X, start: int, stop: int):
    """Rows ``start:stop`` of ``X`` in memory, whether ``X`` is in memory or on disk."""
    return X.read(start, stop) if isinstance(X, BackedRows) else X[start:stop]
