import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import crossomics as co


def _knn_accuracy(embedding, labels) -> float:
    folds = KFold(5, shuffle=True, random_state=0)
    return cross_val_score(KNeighborsClassifier(15), embedding, labels, cv=folds).mean()


def test_lsi_writes_what_the_transform_computes(cortex_subset, assert_unchanged):
    atac = cortex_subset["atac"]
    with assert_unchanged(atac):
        result = co.pp.lsi(atac, n_components=20, copy=True)
    transform = co.pp.fit_lsi(atac.X, n_components=20)
    np.testing.assert_allclose(result.obsm["X_lsi"], transform.transform(atac.X), rtol=1e-5, atol=1e-5)
    assert result.obsm["X_lsi"].dtype == np.float32
    # every component is standardised on the training cells, none is dropped
    np.testing.assert_allclose(result.obsm["X_lsi"].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(result.obsm["X_lsi"].std(axis=0), 1, atol=1e-3)


def test_lsi_in_place_adds_only_its_key(cortex_subset):
    atac = cortex_subset["atac"].copy()
    assert co.pp.lsi(atac, n_components=10, key_added="X_peaks_lsi") is None
    assert list(atac.obsm) == ["X_peaks_lsi"]
    assert atac.obsm["X_peaks_lsi"].shape == (atac.n_obs, 10)


def test_lsi_transform_of_subset_is_subset_of_transform(cortex_subset):
    X = cortex_subset["atac"].X
    transform = co.pp.fit_lsi(X, n_components=20, feature_names=cortex_subset["atac"].var_names)
    full = transform.transform(X)
    rows = np.arange(0, X.shape[0], 7)
    np.testing.assert_allclose(transform.transform(X[rows]), full[rows], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(transform.transform(X[rows].toarray()), full[rows], rtol=1e-5, atol=1e-5)
    assert transform.n_features == X.shape[1]
    assert list(transform.feature_names[:2]) == list(cortex_subset["atac"].var_names[:2])


def test_lsi_follows_its_documented_formula(cortex_subset):
    counts = cortex_subset["atac"].X
    transform = co.pp.fit_lsi(counts, n_components=15)
    np.testing.assert_allclose(transform.idf, counts.shape[0] / (1 + counts.getnnz(axis=0)), rtol=1e-6)
    X = counts[:300].toarray().astype(np.float64)
    tf = X / np.maximum(X.sum(axis=1, keepdims=True), 1e-12)
    u = np.log1p(tf * transform.idf * 1e4) @ transform.components.T
    expected = (u - transform.component_mean) / transform.component_std
    np.testing.assert_allclose(transform.transform(X), expected, rtol=1e-4, atol=1e-4)


def test_lsi_separates_cell_types(cortex_subset):
    atac = cortex_subset["atac"]
    embedding = co.pp.fit_lsi(atac.X, n_components=30).transform(atac.X)
    labels = atac.obs["cell_type"].to_numpy()
    majority = (labels == atac.obs["cell_type"].value_counts().index[0]).mean()
    # measured 0.47 against a majority-class baseline of 0.37 (SNARE-seq ATAC is very sparse)
    assert _knn_accuracy(embedding, labels) > majority + 0.05


def test_pca_follows_its_documented_formula(cortex_subset):
    rna = cortex_subset["rna"]
    transform = co.pp.fit_pca(rna.X, n_components=20, target_sum=1e4)
    X = rna.X[:200].toarray().astype(np.float64)
    y = np.log1p(X / np.maximum(X.sum(axis=1, keepdims=True), 1e-12) * 1e4)
    z = np.clip((y - transform.mean) / transform.std, -10, 10)
    np.testing.assert_allclose(
        transform.transform(rna.X[:200]), z @ transform.components.T, rtol=1e-4, atol=1e-4
    )
    assert transform.components.dtype == np.float32
    assert transform.std.min() >= 1e-6


def test_pca_transform_of_subset_is_subset_of_transform(cortex_subset):
    rna = cortex_subset["rna"]
    transform = co.pp.fit_pca(rna.X, n_components=20)
    full = transform.transform(rna.X)
    rows = np.arange(3, rna.n_obs, 11)
    np.testing.assert_allclose(transform.transform(rna.X[rows]), full[rows], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(transform.transform(rna.X[rows].toarray()), full[rows], rtol=1e-5, atol=1e-5)
    # same seed, same components: the SVD signs are fixed
    np.testing.assert_array_equal(co.pp.fit_pca(rna.X, n_components=20).components, transform.components)


def test_pca_separates_cell_types(cortex_subset):
    rna = cortex_subset["rna"]
    embedding = co.pp.fit_pca(rna.X, n_components=30).transform(rna.X)
    # measured 0.78 (majority class 0.37)
    assert _knn_accuracy(embedding, rna.obs["cell_type"].to_numpy()) > 0.7


def test_transforms_reject_wrong_inputs(cortex_subset):
    rna = cortex_subset["rna"]
    transform = co.pp.fit_pca(rna.X, n_components=5)
    with pytest.raises(ValueError, match="has 1676 features but the transform was fitted on 1677"):
        transform.transform(rna.X[:, 1:])
    with pytest.raises(ValueError, match="negative values"):
        co.pp.fit_lsi(-sp.csr_matrix(rna.X, dtype=np.float32), n_components=5)
    with pytest.raises(ValueError, match="choose 1 <= n_components <= 1677"):
        co.pp.fit_pca(rna.X, n_components=5000)


@pytest.mark.parametrize("kind", ["pca", "lsi"])
def test_numpy_and_torch_forms_agree(cortex_subset, kind):
    """The model's buffers (torch form) compute what the numpy transform computes, dense or CSR."""
    import torch

    from crossomics.nn._transforms import to_torch_rows

    X = cortex_subset["rna" if kind == "pca" else "atac"].X[:300]
    fit = (co.pp.fit_pca if kind == "pca" else co.pp.fit_lsi)(X, n_components=20)
    expected = fit.transform(X)
    module = fit.module()
    with torch.no_grad():
        dense = module(torch.as_tensor(X.toarray(), dtype=torch.float32)).numpy()
        sparse = module(to_torch_rows(X)).numpy()
    assert np.abs(expected).max() > 1  # real, non-trivial projections
    np.testing.assert_allclose(dense, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sparse, expected, rtol=1e-4, atol=1e-4)
