import logging

import mudata as md
import numpy as np
import pytest

import crossomics as co


def test_rna_and_atac_views_share_genes(cortex_subset, assert_unchanged):
    with assert_unchanged(cortex_subset):
        views = co.pp.common_gene_views(cortex_subset, ["rna", "atac"], gene_annotation="mm10")
    rna, atac = views["rna"], views["atac"]
    assert rna.var_names.equals(atac.var_names)
    assert 1600 < rna.n_vars <= 1677  # measured 1,639 RNA genes have a peak in their window
    assert rna.obs_names.equals(cortex_subset["rna"].obs_names)
    columns = cortex_subset["rna"].var_names.get_indexer(rna.var_names)
    assert abs(rna.X - cortex_subset["rna"].X[:, columns]).max() == 0
    activity = co.pp.gene_activity(cortex_subset["atac"], "mm10")
    assert abs(atac.X - activity[:, rna.var_names].X).max() == 0
    np.testing.assert_array_equal(atac.var["n_source_features"], activity[:, rna.var_names].var["n_peaks"])


def test_protein_views_map_antibodies_to_genes(cite, caplog):
    with caplog.at_level(logging.INFO, logger="crossomics"):
        views = co.pp.common_gene_views(cite, ["rna", "adt"])
    assert "98 of 134 antibodies mapped to genes" in caplog.text
    genes = list(views["adt"].var_names)
    # only 10 of the mapped targets are among the 1,000 RNA genes of this subset
    assert genes == ["CD52", "ITGA4", "CCR2", "HLA-A", "HLA-E", "CD44", "CD63", "ITGAX", "CD93", "IL2RB"]
    adt = cite["adt"]
    # CD49d -> ITGA4 comes from the built-in table, CD52 from the symbol itself
    np.testing.assert_array_equal(
        views["adt"][:, "ITGA4"].X.toarray().ravel(), adt[:, "CD49d"].X.toarray().ravel()
    )
    np.testing.assert_array_equal(
        views["adt"][:, "CD52"].X.toarray().ravel(), adt[:, "CD52"].X.toarray().ravel()
    )


def test_protein_to_gene_overrides_and_sums(cite):
    # PTPRC (CD45) is not among the RNA genes of this subset, B2M is: route two antibodies to it
    mapping = {"CD45RA": "B2M", "CD45RO": "b2m", "CD52": None}
    views = co.pp.common_gene_views(cite, ["rna", "adt"], protein_to_gene=mapping)
    assert "CD52" not in views["adt"].var_names
    assert views["adt"].var.loc["B2M", "n_source_features"] == 2
    summed = cite["adt"][:, ["CD45RA", "CD45RO"]].X.sum(axis=1)
    np.testing.assert_array_equal(views["adt"][:, "B2M"].X.toarray(), np.asarray(summed))


def test_kinds_are_inferred_or_given(cite):
    with md.set_options(pull_on_update=False):
        renamed = md.MuData({"gex": cite["rna"], "surface": cite["adt"]})
    with pytest.raises(ValueError, match=r"cannot infer the kind of modality 'surface'.*kinds="):
        co.pp.common_gene_views(renamed, ["gex", "surface"])
    views = co.pp.common_gene_views(renamed, ["gex", "surface"], kinds={"surface": "protein"})
    assert views["surface"].n_vars == 10
    with pytest.raises(ValueError, match="use one of"):
        co.pp.common_gene_views(renamed, ["gex", "surface"], kinds={"surface": "proteins"})


def test_atac_needs_an_annotation(cortex_subset, assert_unchanged):
    with (
        assert_unchanged(cortex_subset),
        pytest.raises(
            ValueError, match=r"\['atac'\] have genomic features \(peaks or sites\); pass gene_annotation="
        ),
    ):
        co.pp.common_gene_views(cortex_subset, ["rna", "atac"])


def test_no_common_genes_names_the_modalities(cite, assert_unchanged):
    # a frequent mistake: RNA indexed by Ensembl IDs while antibodies are named by target
    rna = cite["rna"].copy()
    rna.var_names = rna.var["gene_ids"].astype(str)
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({"rna": rna, "adt": cite["adt"].copy()})
    with (
        assert_unchanged(mdata),
        pytest.raises(
            ValueError,
            match=r"share no gene \('rna': 1000 features -> 1000 genes, 'adt': 134 features -> 91 genes\)",
        ),
    ):
        co.pp.mnn_prior(mdata, ["rna", "adt"])


def test_unknown_modality_lists_the_available_ones(cortex_subset, assert_unchanged):
    with (
        assert_unchanged(cortex_subset),
        pytest.raises(
            ValueError, match=r"modalities \['chromatin'\] are not in mdata.mod; available: \['rna', 'atac'\]"
        ),
    ):
        co.pp.mnn_prior(cortex_subset, ["rna", "chromatin"], gene_annotation="mm10")


def test_unknown_genome_in_the_prior(cortex_subset, assert_unchanged):
    with assert_unchanged(cortex_subset), pytest.raises(ValueError, match="unknown genome 'GRCm39'"):
        co.pp.mnn_prior(cortex_subset, ["rna", "atac"], gene_annotation="GRCm39")


def test_non_count_rna_is_rejected(cortex_subset, assert_unchanged):
    rna = cortex_subset["rna"][:200].copy()
    rna.layers["scaled"] = rna.X.toarray() - 1.0
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({"rna": rna, "atac": cortex_subset["atac"][:200].copy()})
    with (
        assert_unchanged(mdata),
        pytest.raises(
            ValueError, match=r"modality 'rna' layer 'scaled' has negative values; raw counts are required"
        ),
    ):
        co.pp.mnn_prior(mdata, ["rna", "atac"], gene_annotation="mm10", layers={"rna": "scaled"})
