"""Rows of a matrix left on disk (:class:`crossomics._backed.BackedRows`)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from crossomics._backed import BackedRows, as_rows, read_rows
from crossomics._validation import empty_cells, get_matrix


@pytest.fixture(params=["csr", "dense"])
def on_disk(request, tmp_path):
    rng = np.random.default_rng(0)
    values = rng.poisson(0.7, size=(40, 12)).astype(np.float32)
    values[[3, 17]] = 0
    X = sp.csr_matrix(values) if request.param == "csr" else values
    ad.AnnData(X).write_h5ad(tmp_path / "x.h5ad")
    adata = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    return values, get_matrix(adata, name="x")


def _dense(block) -> np.ndarray:
    return block.toarray() if sp.issparse(block) else np.asarray(block)


def test_selections_compose_and_read_like_numpy(on_disk):
    values, X = on_disk
    assert isinstance(X, BackedRows) and X.shape == (40, 12)
    rows = np.array([30, 2, 2, 11, 39, 5])  # unsorted, repeated
    columns = np.array([7, 0, 3])
    picked = X[rows][:, columns]
    assert picked.shape == (6, 3)
    np.testing.assert_array_equal(_dense(picked.read()), values[rows][:, columns])
    mask = np.arange(40) % 3 == 0
    np.testing.assert_array_equal(_dense(X[mask][2:].read(1, 4)), values[mask][2:][1:4])
    np.testing.assert_array_equal(_dense(read_rows(X, 10, 20)), values[10:20])
    np.testing.assert_array_equal(_dense(X[mask].to_memory()), values[mask])
    assert X.sum(1).dtype == np.float64 and X.sum() == values.sum()
    np.testing.assert_array_equal(X[rows].sum(axis=1).ravel(), values[rows].sum(1))
    np.testing.assert_array_equal(empty_cells(X), values.sum(1) == 0)
    assert [start for start, _ in X.blocks(size=16)] == [0, 16, 32]


def test_in_memory_matrices_pass_through():
    dense = np.ones((3, 2))
    assert as_rows(dense) is not None and not isinstance(as_rows(dense), BackedRows)
    assert sp.isspmatrix_csr(as_rows(sp.csc_matrix(dense)))
