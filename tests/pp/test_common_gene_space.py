import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.decomposition import PCA

import crossomics as co
from crossomics.pp._mnn import cosine_normalize
from crossomics.pp._normalize import log_normalize, standardize_columns


def test_maps_rebuild_the_views(cite):
    views = co.pp.common_gene_views(cite, ["rna", "adt"])
    genes, maps = co.pp.common_gene_maps(cite, ["rna", "adt"])
    assert genes.equals(views["rna"].var_names)
    for m in ("rna", "adt"):
        assert maps[m].shape == (cite[m].n_vars, len(genes))
        assert abs(sp.csr_matrix(cite[m].X, dtype=np.float32) @ maps[m] - views[m].X).max() == 0


def test_space_is_the_joint_pca_of_the_standardised_views(cortex_subset, assert_unchanged):
    with assert_unchanged(cortex_subset):
        space = co.pp.fit_common_gene_space(
            cortex_subset, ["rna", "atac"], gene_annotation="mm10", n_comps=20
        )
    assert space.n_components == 20 and len(space.kept) <= 2000
    views = co.pp.common_gene_views(cortex_subset, ["rna", "atac"], gene_annotation="mm10")
    # the same steps written out with each modality's own statistics
    scaled = [
        cosine_normalize(standardize_columns(log_normalize(views[m].X)[:, space.kept]))
        for m in ("rna", "atac")
    ]
    stacked = np.vstack(scaled)
    expected = PCA(20, random_state=0).fit(stacked).transform(stacked)
    got = np.vstack([space.transform(m, cortex_subset[m].X) for m in ("rna", "atac")])
    # components are defined up to sign
    signs = np.sign((expected * got).sum(0))
    np.testing.assert_allclose(got * signs, expected, atol=2e-4)
    # the unpaired views already share a space: true partners are closer than random cells
    assert co.metrics.foscttm(got[: cortex_subset.n_obs], got[cortex_subset.n_obs :]) < 0.35


def test_subsampled_fit_still_transforms_every_cell(cortex_subset):
    space = co.pp.fit_common_gene_space(
        cortex_subset, ["rna", "atac"], gene_annotation="mm10", n_comps=10, max_cells=500
    )
    assert space.transform("atac", cortex_subset["atac"].X).shape == (cortex_subset.n_obs, 10)


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_torch_projection_matches_numpy(cortex_subset, layout):
    space = co.pp.fit_common_gene_space(cortex_subset, ["rna", "atac"], gene_annotation="mm10", n_comps=15)
    counts = sp.csr_matrix(cortex_subset["atac"].X[:300], dtype=np.float32)
    module = space.module("atac", output_std=np.full(15, 2.0))
    if layout == "dense":
        x = torch.as_tensor(counts.toarray())
    else:
        x = torch.sparse_csr_tensor(
            torch.as_tensor(counts.indptr, dtype=torch.int64),
            torch.as_tensor(counts.indices, dtype=torch.int64),
            torch.as_tensor(counts.data),
            counts.shape,
        )
    with torch.no_grad():
        got = module(x).numpy()
    np.testing.assert_allclose(got, space.transform("atac", counts) / 2.0, atol=1e-4)
