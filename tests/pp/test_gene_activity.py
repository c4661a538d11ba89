import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData

import crossomics as co
from crossomics.pp._normalize import aggregate_rows, log_normalize

MARKERS = [
    "Slc17a7",
    "Gad1",
    "Gad2",
    "Mbp",
    "Plp1",
    "Mog",
    "Rorb",
    "Pvalb",
    "Cux2",
    "Fezf2",
    "Tle4",
    "Cx3cr1",
    "Flt1",
]


def _column_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    return (a * b).sum(axis=0) / np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))


def _log_expression(X, columns) -> np.ndarray:
    return log_normalize(X)[:, columns].toarray()


def test_gene_activity_is_counts_times_peak_gene_matrix(cortex_subset, assert_unchanged):
    atac = cortex_subset["atac"]
    with assert_unchanged(atac):
        activity = co.pp.gene_activity(atac, "mm10")
    matrix, genes = co.pp.peak_to_gene_matrix(atac, "mm10")
    assert activity.var_names.equals(genes)
    assert activity.obs_names.equals(atac.obs_names)
    assert activity.obs is not atac.obs and activity.obs.equals(atac.obs)
    assert sp.issparse(activity.X) and activity.X.dtype == np.float32
    assert abs(activity.X - atac.X.astype(np.float32) @ matrix).max() == 0
    np.testing.assert_array_equal(activity.var["n_peaks"], matrix.getnnz(axis=0))
    assert {"chrom", "start", "end", "strand"} <= set(activity.var.columns)


def test_gene_activity_tracks_rna_of_markers_in_single_cells(cortex_subset):
    rna, atac = cortex_subset["rna"], cortex_subset["atac"]
    activity = co.pp.gene_activity(atac, "mm10")
    markers = [g for g in MARKERS if g in activity.var_names]
    assert len(markers) == len(MARKERS)
    expression = _log_expression(rna.X, rna.var_names.get_indexer(markers))
    accessibility = _log_expression(activity.X, activity.var_names.get_indexer(markers))

    # single SNARE-seq cells hold ~80 ATAC fragments, so per-cell correlations are small: the
    # markers of rare types (Gad1, Cx3cr1) are ~0 (measured marker mean 0.040; cell shuffle -0.002)
    per_cell = _column_pearson(expression, accessibility)
    shuffled = _column_pearson(expression, accessibility[np.random.default_rng(0).permutation(rna.n_obs)])
    assert per_cell.mean() > 0.02
    assert per_cell.mean() > shuffled.mean() + 0.02


def test_gene_activity_tracks_rna_of_markers_within_cell_types(cortex):
    rna = cortex["rna"]
    activity = co.pp.gene_activity(cortex["atac"], "mm10")
    # summed within each of the 15 cell types the agreement is strong (measured mean 0.64,
    # all 13 markers positive); all 10,309 cells are needed for the rare types (22 Endo cells)
    labels = rna.obs["cell_type"].to_numpy()
    markers = MARKERS
    expression_by_type = _log_expression(aggregate_rows(rna.X, labels)[0], rna.var_names.get_indexer(markers))
    activity_by_type = _log_expression(
        aggregate_rows(activity.X, labels)[0], activity.var_names.get_indexer(markers)
    )
    per_type = _column_pearson(expression_by_type, activity_by_type)
    assert per_type.mean() > 0.5
    assert (per_type > 0).all()


def test_gene_activity_of_bmmc_multiome_with_hg38(multiome):
    atac = multiome["atac"]
    activity = co.pp.gene_activity(atac, "hg38")
    assert activity.shape == (500, 637)
    # 10x peaks sit near genes: measured 84% of them in a gene body or 2 kb upstream
    fraction_mapped = (co.pp.peak_to_gene_matrix(atac, "hg38")[0].getnnz(axis=1) > 0).mean()
    assert fraction_mapped > 0.8
    assert activity.var["n_peaks"].min() >= 1


def test_gene_activity_rejects_non_counts(cortex_subset, assert_unchanged):
    atac = cortex_subset["atac"][:50].copy()
    atac.layers["lognorm"] = log_normalize(atac.X)
    with (
        assert_unchanged(atac),
        pytest.raises(ValueError, match="atac layer 'lognorm' has non-integer values"),
    ):
        co.pp.gene_activity(atac, "mm10", layer="lognorm")
    with pytest.raises(ValueError, match="atac has no layer 'counts'"):
        co.pp.gene_activity(atac, "mm10", layer="counts")


def test_gene_activity_rejects_unknown_genome(cortex_subset, assert_unchanged):
    atac = cortex_subset["atac"]
    with (
        assert_unchanged(atac),
        pytest.raises(ValueError, match=r"unknown genome 'mm9'.*mm10 \(GRCm38\) and hg38 \(GRCh38\)"),
    ):
        co.pp.gene_activity(atac, "mm9")


def test_gene_activity_rejects_unparsable_peaks(assert_unchanged):
    atac = AnnData(
        X=sp.csr_matrix(np.ones((3, 2), dtype=np.float32)),
        var={"kind": ["a", "b"]},
    )
    atac.var_names = ["peak_1", "peak_2"]
    with assert_unchanged(atac), pytest.raises(ValueError, match=r"cannot parse 2 of 2 peak names.*'peak_1'"):
        co.pp.gene_activity(atac, "hg38")
