"""The fixed input transforms give the same output for dense and CSR minibatches."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import crossomics as co
from crossomics.model._sccross_inputs import fit_gene_set_features, fit_projection
from crossomics.nn._transforms import GeneSetScores, SparseLinearMap
from crossomics.nn._transforms import to_torch_rows as _csr


def test_to_torch_rows_keeps_sparse_rows_sparse():
    counts = sp.random(7, 40, density=0.2, format="csc", random_state=0, dtype=np.float64) * 5
    rows = _csr(counts)
    assert rows.layout == torch.sparse_csr and rows.dtype == torch.float32
    np.testing.assert_array_equal(rows.to_dense().numpy(), counts.toarray().astype(np.float32))
    dense = _csr(counts.toarray())
    assert dense.layout == torch.strided and dense.dtype == torch.float32
    np.testing.assert_array_equal(dense.numpy(), rows.to_dense().numpy())


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


def _dense_gene_set_scores(counts: sp.csr_matrix, membership, feature_to_gene, components, mean, std):
    """Paper eq. 1 step by step in float64 numpy: gene level, log1p per 1e4, set means,
    standardisation, projection."""
    genes = counts.toarray().astype(np.float64)
    if feature_to_gene is not None:
        genes = genes @ feature_to_gene.toarray()
    logged = np.log1p(genes / np.maximum(genes.sum(1, keepdims=True), 1e-12) * 1e4)
    members = membership.toarray().astype(np.float64)
    set_means = logged @ members / np.maximum(members.sum(0), 1)
    return ((set_means - mean) / std) @ np.asarray(components, dtype=np.float64).T


@pytest.mark.parametrize("with_peaks", [False, True])
def test_gene_set_scores_csr_equals_stepwise_dense(with_peaks):
    """The CSR path folds set means, standardisation and projection into one matrix."""
    rng = np.random.default_rng(0)
    n_cells, n_features, n_genes, n_sets = 80, 300, 120, 40
    counts = sp.random(n_cells, n_features, density=0.05, random_state=1, format="csr", dtype=np.float32)
    counts.data = np.ceil(counts.data * 5)
    empty = np.ones(n_cells, dtype=np.float32)
    empty[3] = 0  # an empty cell scores the set means of zeros
    counts = sp.csr_matrix(sp.diags(empty) @ counts, dtype=np.float32)
    counts.eliminate_zeros()
    feature_to_gene = None
    if with_peaks:
        feature_to_gene = sp.random(n_features, n_genes, density=0.02, random_state=2, format="csr")
        feature_to_gene.data[:] = 1.0
    else:
        n_genes = n_features
    membership = sp.random(n_genes, n_sets, density=0.1, random_state=3, format="csr")
    membership.data[:] = 1.0
    components = rng.normal(size=(6, n_sets))
    mean, std = rng.normal(size=n_sets), rng.uniform(0.2, 2.0, size=n_sets)
    scorer = GeneSetScores(membership, components, mean, std, feature_to_gene)
    expected = _dense_gene_set_scores(counts, membership, feature_to_gene, components, mean, std)
    with torch.inference_mode():
        sparse = scorer(_csr(counts)).numpy()
        dense = scorer(torch.as_tensor(counts.toarray())).numpy()
    atol = 1e-5 * np.abs(expected).max()
    np.testing.assert_allclose(dense, expected, rtol=1e-4, atol=atol)
    np.testing.assert_allclose(sparse, expected, rtol=1e-4, atol=atol)
    # the folded matrix is cached, and rebuilt when the buffers change (e.g. load_state_dict)
    state = {k: v.clone() for k, v in scorer.state_dict().items()}
    state["components"] = 2 * state["components"]
    scorer.load_state_dict(state)
    np.testing.assert_allclose(scorer(_csr(counts)).numpy(), 2 * expected, rtol=1e-4, atol=2 * atol)


def test_sparse_linear_map_csr_cache_follows_buffers():
    matrix = sp.random(50, 20, density=0.1, random_state=0, format="csr")
    x = sp.random(8, 50, density=0.3, random_state=1, format="csr", dtype=np.float32)
    linear = SparseLinearMap(matrix)
    expected = x.toarray() @ matrix.toarray()
    with torch.inference_mode():  # built inside inference mode, reused outside it
        np.testing.assert_allclose(linear(_csr(x)).to_dense().numpy(), expected, rtol=1e-5, atol=1e-6)
    product = linear(_csr(x))
    assert product.layout == torch.sparse_csr
    np.testing.assert_allclose(product.to_dense().numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(linear(torch.as_tensor(x.toarray())).numpy(), expected, rtol=1e-5, atol=1e-6)
    state = linear.state_dict()
    state["values"] = 3 * state["values"]
    linear.load_state_dict(state)
    np.testing.assert_allclose(linear(_csr(x)).to_dense().numpy(), 3 * expected, rtol=1e-5, atol=1e-6)
