"""differential_expression / differential_accessibility on a small unpaired mouse cortex model."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scvi
import torch

import crossomics as co

FAST = {"enable_progress_bar": False, "enable_model_summary": False}
N_CELLS, GROUP, N_TOP = 800, "Astro", 50


@pytest.fixture(scope="module")
def cortex():
    torch.set_num_threads(1)
    full = co.datasets.mouse_motor_cortex()
    labels = full.mod["rna"].obs["cell_type"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    astro = np.flatnonzero(labels == GROUP)
    others = rng.choice(np.flatnonzero(labels != GROUP), N_CELLS - 150, replace=False)
    rows = np.sort(np.concatenate([rng.choice(astro, 150, replace=False), others]))
    rna, atac = full.mod["rna"][rows].copy(), full.mod["atac"][rows].copy()
    atac.obs_names = [f"atac_{name}" for name in atac.obs_names]
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({"rna": rna, "atac": atac})
    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
    model = co.SCCROSS(mdata)
    model.train(max_epochs=12, batch_size=128, **FAST)
    return mdata, model


def _wilcoxon_top(adata: ad.AnnData, n: int) -> set[str]:
    logn = ad.AnnData(adata.X.astype(np.float32), obs=adata.obs[["cell_type"]].copy(), var=adata.var[[]])
    sc.pp.normalize_total(logn, target_sum=1e4)
    sc.pp.log1p(logn)
    sc.tl.rank_genes_groups(logn, "cell_type", groups=[GROUP], reference="rest", method="wilcoxon")
    return set(logn.uns["rank_genes_groups"]["names"][GROUP][:n])


def test_markers_agree_with_wilcoxon_far_above_chance(cortex):
    """The top 50 of Astro vs rest (the table's own order) share genes with scanpy's Wilcoxon top 50 far
    beyond chance (50 * 50 / 1,677 = 1.5 genes), for measured RNA and for RNA generated from the
    ATAC cells of the same nuclei, and beyond a control group of as many random cells. The
    model is tiny (800 cells, 12 epochs); the full-cortex overlaps are in
    benchmarks/results/differential_mouse_cortex.md."""
    mdata, model = cortex
    wilcoxon = _wilcoxon_top(mdata.mod["rna"], N_TOP)
    n_group = int((mdata.mod["rna"].obs["cell_type"] == GROUP).sum())
    random_cells = np.random.default_rng(1).choice(mdata.mod["rna"].n_obs, n_group, replace=False)
    for source, at_least in (("rna", 10), ("atac", 4)):
        table = model.differential_expression(
            modality="rna", source=source, groupby="cell_type", group1=GROUP
        )
        assert table.index.is_unique and set(table["comparison"]) == {f"{GROUP} vs Rest"}
        assert (table["scale1"] - table["scale2"]).is_monotonic_decreasing
        overlap = len(set(table.index[:N_TOP]) & wilcoxon)
        control = model.differential_expression(modality="rna", source=source, idx1=random_cells)
        control_overlap = len(set(control.index[:N_TOP]) & wilcoxon)
        assert overlap >= at_least and overlap >= control_overlap + 3, (source, overlap, control_overlap)
    expected = {"raw_mean1", "non_zeros_proportion1", "raw_normalized_mean1", "is_de_fdr_0.05", "lfc_mean"}
    assert expected <= set(model.differential_expression(groupby="cell_type", group1=GROUP).columns)


def test_same_seed_same_table_and_user_state_untouched(cortex):
    mdata, model = cortex
    obs_before = mdata.mod["rna"].obs.copy()
    # the legacy global generator is what scvi-tools' DE draws from: it must come back unchanged
    np.random.seed(123)  # noqa: NPY002
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    first = model.differential_expression(groupby="cell_type", group1=GROUP, seed=3)
    assert np.array_equal(np.random.get_state()[1], state), "the global numpy generator was changed"  # noqa: NPY002
    second = model.differential_expression(groupby="cell_type", group1=GROUP, seed=3)
    pd.testing.assert_frame_equal(first, second)
    other = model.differential_expression(groupby="cell_type", group1=GROUP, seed=4)
    assert not np.array_equal(first["lfc_mean"].to_numpy(), other.loc[first.index, "lfc_mean"].to_numpy())
    pd.testing.assert_frame_equal(mdata.mod["rna"].obs, obs_before)


def test_every_group_against_the_rest_and_vanilla_mode(cortex):
    _, model = cortex
    table = model.differential_expression(groupby="cell_type", silent=True)
    present = set(model.adata.mod["rna"].obs["cell_type"].astype(str))
    assert set(table["group1"]) == present
    assert (table.groupby("group1").size() == len(model.feature_names_["rna"])).all()
    vanilla = model.differential_expression(groupby="cell_type", group1=GROUP, mode="vanilla")
    assert (vanilla["scale1"] - vanilla["scale2"]).is_monotonic_decreasing and "proba_m1" in vanilla


def test_accessibility_effect_follows_the_observed_detection_rates(cortex):
    """The estimated difference in opening probability tracks the observed difference in the
    fraction of cells with the peak open, and the table is ordered by prob_da."""
    _, model = cortex
    table = model.differential_accessibility(groupby="cell_type", group1=GROUP)
    assert len(table) == len(model.feature_names_["atac"])
    assert table["prob_da"].is_monotonic_decreasing
    assert np.corrcoef(table["effect_size"], table["emp_effect"])[0, 1] > 0.5
    np.testing.assert_allclose(table["effect_size"], table["est_prob1"] - table["est_prob2"], rtol=1e-6)
