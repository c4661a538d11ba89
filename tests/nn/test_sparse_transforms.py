"""The fixed input transforms give the same output for dense and CSR minibatches."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import crossomics as co
from crossomics.model._sccross_inputs import fit_gene_set_features, fit_projection


def _csr(matrix: sp.csr_matrix) -> torch.Tensor:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    return torch.sparse_csr_tensor(
        torch.as_tensor(matrix.indptr, dtype=torch.int64),
        torch.as_tensor(matrix.indices, dtype=torch.int64),
        torch.as_tensor(matrix.data),
        matrix.shape,
    )


@pytest.fixture(scope="module")
def multiome():
    return co.datasets.bmmc_multiome()


@pytest.mark.parametrize(
    ("modality", "kind", "likelihood"),
    [("rna", "rna", "nb"), ("atac", "atac", "nb"), ("rna", "rna", "normal")],
)
def test_projection_dense_equals_csr(multiome, modality, kind, likelihood):
    counts = sp.csr_matrix(multiome[modality].X, dtype=np.float32)
    projection = fit_projection(kind, likelihood, counts, 10, 0)
    rows = counts[:64]
    dense = projection(torch.as_tensor(rows.toarray()))
    sparse = projection(_csr(rows))
    assert sparse.shape == (64, 10)
    np.testing.assert_allclose(sparse.numpy(), dense.numpy(), rtol=1e-4, atol=1e-4)


def test_gene_set_scores_dense_equals_csr(multiome):
    atac = multiome["atac"]
    counts = sp.csr_matrix(atac.X, dtype=np.float32)
    sets = co.datasets.go_biological_process()
    scores = fit_gene_set_features("atac", atac, counts, sets, co.datasets.gene_annotation("hg38"), 5, 0)
    assert scores is not None and scores.feature_to_gene is not None
    rows = counts[:64]
    np.testing.assert_allclose(
        scores(_csr(rows)).numpy(), scores(torch.as_tensor(rows.toarray())).numpy(), rtol=1e-4, atol=1e-4
    )
