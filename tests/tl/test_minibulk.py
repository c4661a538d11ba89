"""Mini-bulks ordered along a joint embedding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from crossomics import tl
from crossomics.tl._minibulk import principal_order


def cells_on_a_line(n_cells: int, types: list[str], seed: int, n_features: int = 4) -> AnnData:
    rng = np.random.default_rng(seed)
    position = rng.uniform(0, 10, size=n_cells)
    adata = AnnData(X=sp.csr_matrix(rng.poisson(2.0, size=(n_cells, n_features)).astype(np.float32)))
    adata.obs["cell_type"] = pd.Categorical(rng.choice(types, size=n_cells))
    adata.obs["position"] = position
    adata.obsm["X_joint"] = np.column_stack([position, 0.01 * rng.normal(size=n_cells)])
    return adata


def test_principal_order_follows_the_main_axis():
    rng = np.random.default_rng(0)
    position = rng.permutation(200).astype(float)
    order = principal_order(np.column_stack([position, 0.1 * rng.normal(size=200)]), leaf_size=8)
    assert sorted(order.tolist()) == list(range(200))
    ordered = position[order]
    assert np.all(np.diff(ordered) > 0) or np.all(np.diff(ordered) < 0)


def test_groups_stay_within_a_type_and_keep_all_counts():
    adata = cells_on_a_line(600, ["A", "B", "C"], seed=1)
    bulk = tl.minibulk(adata, groupby="cell_type", use_rep="X_joint", n_groups=12, key_added="minibulk")

    assert bulk.n_obs == 12 and bulk.n_vars == adata.n_vars
    assert bulk.obs["n_cells"].sum() == adata.n_obs
    np.testing.assert_allclose(bulk.X.sum(axis=0), adata.X.sum(axis=0))
    members = adata.obs.groupby("minibulk", observed=True)
    assert (members["cell_type"].nunique() == 1).all()
    # consecutive along the embedding: groups of one type do not overlap in position
    ranges = (
        members["position"]
        .agg(["min", "max"])
        .join(bulk.obs[["cell_type", "position"]].rename(columns={"position": "k"}))
    )
    for _, table in ranges.groupby("cell_type"):
        table = table.sort_values("min")
        assert np.all(table["max"].to_numpy()[:-1] <= table["min"].to_numpy()[1:])


def test_unpaired_inputs_get_matching_groups_and_means():
    rna = cells_on_a_line(500, ["A", "B"], seed=2)
    atac = cells_on_a_line(300, ["A", "B"], seed=3, n_features=6)
    bulk_rna, bulk_atac = tl.minibulk(
        [rna, atac], groupby="cell_type", use_rep="X_joint", n_groups=10, aggregate="mean", key_added="group"
    )

    assert bulk_rna.obs_names.equals(bulk_atac.obs_names)
    assert (bulk_rna.obs["n_cells"] > 0).all() and (bulk_atac.obs["n_cells"] > 0).all()
    # group k covers the same stretch of the embedding (here, of the line) in both inputs
    centre_rna = rna.obs.groupby("group", observed=True)["position"].mean()
    centre_atac = atac.obs.groupby("group", observed=True)["position"].mean()
    np.testing.assert_allclose(centre_rna[bulk_rna.obs_names], centre_atac[bulk_rna.obs_names], atol=1.0)
    # means of Poisson(2) counts
    np.testing.assert_allclose(bulk_atac.X.toarray().mean(), 2.0, atol=0.3)


def test_nothing_is_written_without_key_added():
    adata = cells_on_a_line(100, ["A"], seed=8)
    before = adata.obs.copy()
    tl.minibulk(adata, groupby="cell_type", use_rep="X_joint", n_groups=3)
    pd.testing.assert_frame_equal(adata.obs, before)


def test_paired_inputs_are_summed_over_the_same_cells():
    rna = cells_on_a_line(300, ["A", "B"], seed=4)
    atac = rna.copy()
    atac.X = rna.X * 2
    bulk_rna, bulk_atac = tl.minibulk(
        [rna, atac], groupby="cell_type", use_rep="X_joint", n_groups=6, paired=True
    )
    np.testing.assert_allclose(bulk_atac.X.toarray(), 2 * bulk_rna.X.toarray())


def test_types_missing_from_an_input_are_skipped_with_a_warning():
    rna = cells_on_a_line(200, ["A", "B"], seed=5)
    atac = cells_on_a_line(200, ["A"], seed=6)
    with pytest.warns(UserWarning, match="missing from some inputs"):
        bulk_rna, _ = tl.minibulk([rna, atac], groupby="cell_type", use_rep="X_joint", n_groups=4)
    assert set(bulk_rna.obs["cell_type"]) == {"A"}


def test_errors_name_the_missing_input():
    adata = cells_on_a_line(50, ["A"], seed=7)
    with pytest.raises(ValueError, match="no obs column 'celltype'"):
        tl.minibulk(adata, groupby="celltype", use_rep="X_joint")
    with pytest.raises(ValueError, match="paired=True needs"):
        tl.minibulk([adata, adata[::-1].copy()], groupby="cell_type", use_rep="X_joint", paired=True)


def test_minibulk_groupby_named_group():
    """A cell-type column called "group" (the index name of the result) works."""
    rng = np.random.default_rng(0)
    cells = AnnData(sp.csr_matrix(rng.poisson(1, (100, 5)).astype("float32")))
    cells.obs["group"] = np.repeat(["A", "B"], 50)
    cells.obsm["emb"] = rng.normal(size=(100, 3))
    bulk = tl.minibulk(cells, groupby="group", use_rep="emb", n_groups=4)
    assert bulk.n_obs == 4 and bulk.obs["n_cells"].sum() == 100
    assert sorted(bulk.obs["group"].unique()) == ["A", "B"]
    with pytest.raises(ValueError, match="clashes"):
        cells.obs["position"] = cells.obs["group"]
        tl.minibulk(cells, groupby="position", use_rep="emb", n_groups=4)
