import mudata as md
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

import crossomics as co
from crossomics.metrics import foscttm


def _paired(mdata: md.MuData, rna_cells, atac_cells) -> md.MuData:
    with md.set_options(pull_on_update=False):
        return md.MuData({"rna": mdata["rna"][rna_cells].copy(), "atac": mdata["atac"][atac_cells].copy()})


def test_rna_atac_prior_pairs_cells(cortex_subset, assert_unchanged):
    with assert_unchanged(cortex_subset):
        prior = co.pp.mnn_prior(cortex_subset, ["rna", "atac"], gene_annotation="mm10")
    assert list(prior) == ["rna", "atac"]
    for modality in prior:
        assert prior[modality].shape == (2000, 50)
        assert prior[modality].dtype == np.float32
        assert np.isfinite(prior[modality]).all()
    # measured 0.222 on these 2,000 cells (0.194 on all 10,309); random rows give 0.5
    assert foscttm(prior["rna"], prior["atac"]) < 0.26


def test_prior_rows_follow_each_modality_order(cortex_subset):
    cells = np.arange(cortex_subset.n_obs)
    shuffled = np.random.default_rng(1).permutation(cells)
    mdata = _paired(cortex_subset, cells, shuffled)
    prior = co.pp.mnn_prior(mdata, ["rna", "atac"], gene_annotation="mm10", n_comps=30)
    assert foscttm(prior["rna"], prior["atac"]) > 0.45  # rows are now unrelated cells
    realigned = prior["atac"][mdata["atac"].obs_names.get_indexer(mdata["rna"].obs_names)]
    assert foscttm(prior["rna"], realigned) < 0.26


def test_key_added_writes_obsm(cortex_subset):
    mdata = _paired(cortex_subset, slice(0, 400), slice(0, 400))
    prior = co.pp.mnn_prior(
        mdata, ["atac", "rna"], gene_annotation="mm10", n_comps=10, key_added="X_mnn_prior"
    )
    for modality in ("rna", "atac"):
        assert list(mdata[modality].obsm) == ["X_mnn_prior"]
        np.testing.assert_array_equal(mdata[modality].obsm["X_mnn_prior"], prior[modality])


def test_metacell_prior(cortex_subset):
    prior = co.pp.mnn_prior(cortex_subset, ["rna", "atac"], gene_annotation="mm10", n_metacells=200)
    for modality in prior:
        assert prior[modality].shape == (2000, 50)
        # every cell carries its meta-cell's row
        assert len(np.unique(prior[modality], axis=0)) <= 200
    # measured 0.379: coarser than per cell (0.222), still far from random (0.5)
    assert foscttm(prior["rna"], prior["atac"]) < 0.43


def test_auto_metacells_leave_small_data_alone(cortex_subset):
    mdata = _paired(cortex_subset, slice(0, 300), slice(0, 300))
    automatic = co.pp.mnn_prior(
        mdata, ["rna", "atac"], gene_annotation="mm10", n_comps=10, n_metacells="auto"
    )
    plain = co.pp.mnn_prior(mdata, ["rna", "atac"], gene_annotation="mm10", n_comps=10)
    np.testing.assert_array_equal(automatic["atac"], plain["atac"])
    with pytest.raises(ValueError, match="n_metacells must be None, 'auto' or a positive int"):
        co.pp.mnn_prior(mdata, ["rna", "atac"], gene_annotation="mm10", n_metacells="many")


def test_highly_variable_gene_selection(cortex_subset):
    prior = co.pp.mnn_prior(cortex_subset, ["rna", "atac"], gene_annotation="mm10", n_hvg=500)
    assert prior["rna"].shape == (2000, 50)
    # measured 0.250 with 500 of the 1,639 genes (random genes: 0.34)
    assert foscttm(prior["rna"], prior["atac"]) < 0.29


def test_rna_protein_prior(cite, assert_unchanged):
    with (
        assert_unchanged(cite),
        pytest.warns(UserWarning, match="9 instead of n_comps=50 dimensions: only 10"),
    ):
        prior = co.pp.mnn_prior(cite, ["rna", "adt"])
    assert prior["rna"].shape == prior["adt"].shape == (600, 9)
    assert all(np.isfinite(p).all() for p in prior.values())
    # 10 shared genes (measured 0.250)
    assert foscttm(prior["rna"], prior["adt"]) < 0.3


def test_rna_atac_prior_on_human_multiome(multiome):
    with pytest.warns(UserWarning, match="dimensions"):
        prior = co.pp.mnn_prior(multiome, ["rna", "atac"], gene_annotation="hg38")
    assert prior["rna"].shape == prior["atac"].shape == (500, 35)
    # only 36 genes are shared by 600 genes and 600 peaks: weak but better than random (measured 0.464)
    assert foscttm(prior["rna"], prior["atac"]) < 0.49


def test_three_modality_prior(cortex):
    """RNA + ATAC of libraries 09A-F and the RNA of other cells, from libraries 09G-L."""
    first_libraries = cortex["rna"].obs["batch"].astype(str).isin(["09A", "09B", "09C", "09D", "09E", "09F"])
    first = np.flatnonzero(first_libraries)[::3]
    second = np.flatnonzero(~first_libraries)[::3]
    with md.set_options(pull_on_update=False):
        mdata = md.MuData(
            {
                "rna": cortex["rna"][first].copy(),
                "atac": cortex["atac"][first].copy(),
                "rna_other_cells": cortex["rna"][second].copy(),
            }
        )
    prior = co.pp.mnn_prior(mdata, ["rna", "atac", "rna_other_cells"], gene_annotation="mm10")
    assert [p.shape for p in prior.values()] == [(1744, 50), (1744, 50), (1693, 50)]
    # measured 0.22
    assert foscttm(prior["rna"], prior["atac"]) < 0.27
    # cell types carry over between the unpaired RNA sets (measured 0.81; majority class 0.38)
    labels = {m: mdata[m].obs["cell_type"].astype(str).to_numpy() for m in prior}
    knn = KNeighborsClassifier(15).fit(prior["rna"], labels["rna"])
    assert (knn.predict(prior["rna_other_cells"]) == labels["rna_other_cells"]).mean() > 0.7


def test_prior_needs_two_modalities(cortex_subset):
    with pytest.raises(ValueError, match="at least two modalities"):
        co.pp.mnn_prior(cortex_subset, ["rna"])
