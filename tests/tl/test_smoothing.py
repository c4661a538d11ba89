"""KNN smoothing over a joint embedding."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData

from crossomics import tl
from crossomics.tl._smoothing import smoothing_graph


def line_cells() -> AnnData:
    """Six cells on a line (positions 0-4 and an outlier at 100) with one-hot counts."""
    positions = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 100.0])
    adata = AnnData(X=sp.csr_matrix(np.eye(6, dtype=np.float32)))
    adata.obsm["X_joint"] = np.column_stack([positions, np.zeros(6)])
    return adata


def test_each_cell_sums_itself_and_its_close_neighbours():
    adata = line_cells()
    tl.knn_smooth(adata, use_rep="X_joint", n_neighbors=2, percentile=90)

    smoothed = adata.layers["smoothed"]
    assert sp.issparse(smoothed)
    # cell 2 adds its two nearest cells (1 and 3)
    np.testing.assert_array_equal(smoothed[2].toarray().ravel(), [0, 1, 1, 1, 0, 0])
    # the outlier's neighbours lie beyond the 90th distance percentile: it keeps only itself
    np.testing.assert_array_equal(smoothed[5].toarray().ravel(), [0, 0, 0, 0, 0, 1])
    assert adata.uns["smoothed"]["params"]["n_neighbors"] == 2
    np.testing.assert_array_equal(adata.X.toarray(), np.eye(6))


def test_copy_leaves_the_input_untouched():
    adata = line_cells()
    result = tl.knn_smooth(adata, use_rep="X_joint", n_neighbors=1, key_added="knn1", copy=True)
    assert "knn1" in result.layers and not adata.layers and "knn1" not in adata.uns


def test_graph_always_includes_self_even_with_duplicate_cells():
    embedding = np.zeros((5, 2))
    graph = smoothing_graph(embedding, n_neighbors=2, percentile=100)
    assert np.all(graph.diagonal() == 1)
    np.testing.assert_array_equal(np.asarray(graph.sum(axis=1)).ravel(), 3)


def test_missing_embedding_and_bad_parameters_are_reported():
    adata = line_cells()
    with pytest.raises(ValueError, match="no 'X_minnet'"):
        tl.knn_smooth(adata, use_rep="X_minnet")
    with pytest.raises(ValueError, match="n_neighbors must be between"):
        tl.knn_smooth(adata, use_rep="X_joint", n_neighbors=6)
