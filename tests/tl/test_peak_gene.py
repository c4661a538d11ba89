"""Gene-peak correlation in TSS windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from crossomics import tl

ANNOTATION = pd.DataFrame(
    {"chrom": ["chr1", "chr1"], "start": [10_000, 500_000], "end": [20_000, 510_000], "strand": ["+", "-"]},
    index=["G1", "G2"],
)
PEAKS = ["chr1:10100-10300", "chr1:200000-200200", "chr1:509000-509200", "chr1:515000-515200"]


def matched_observations() -> tuple[AnnData, AnnData]:
    rng = np.random.default_rng(0)
    expression = rng.uniform(1, 10, size=(12, 2))
    accessibility = rng.uniform(1, 10, size=(12, 4))
    accessibility[:, 0] = expression[:, 0] ** 2  # monotone in G1: Spearman 1, Pearson < 1
    accessibility[:, 3] = -expression[:, 1]  # anti-correlated with G2
    names = [f"group{i}" for i in range(12)]
    rna = AnnData(X=expression, obs=pd.DataFrame(index=names), var=pd.DataFrame(index=["G1", "G2"]))
    atac = AnnData(
        X=accessibility - accessibility.min() + 1,
        obs=pd.DataFrame(index=names),
        var=pd.DataFrame(index=PEAKS),
    )
    return rna, atac


def test_window_pairs_distances_and_correlations():
    rna, atac = matched_observations()
    result = tl.peak_gene_correlation(rna, atac, ANNOTATION, distance=150_000, normalize=False)

    assert list(result.columns) == ["gene", "peak", "distance", "correlation"]
    table = result.set_index(["gene", "peak"])
    assert set(table.index) == {("G1", PEAKS[0]), ("G2", PEAKS[2]), ("G2", PEAKS[3])}
    # strand-aware: the minus-strand TSS is at 509,999; peak 4 lies 5.1 kb upstream of it
    assert table.loc[("G1", PEAKS[0]), "distance"] == 200
    assert table.loc[("G2", PEAKS[2]), "distance"] == 899
    assert table.loc[("G2", PEAKS[3]), "distance"] == -5101
    assert table.loc[("G1", PEAKS[0]), "correlation"] == pytest.approx(1.0)
    assert table.loc[("G2", PEAKS[3]), "correlation"] == pytest.approx(-1.0)


def test_pearson_and_explicit_links():
    rna, atac = matched_observations()
    links = pd.DataFrame({"gene": ["G1", "G1", "unknown"], "peak": [PEAKS[0], PEAKS[1], PEAKS[0]]})
    result = tl.peak_gene_correlation(rna, atac, None, links=links, method="pearson", normalize=False)

    assert len(result) == 2 and result["distance"].isna().all()
    expected = np.corrcoef(rna.X[:, 0], atac.X[:, 0])[0, 1]
    assert result["correlation"].iloc[0] == pytest.approx(expected)
    assert 0.9 < expected < 1.0


def test_constant_features_give_nan():
    rna, atac = matched_observations()
    atac.X[:, 0] = 3.0
    result = tl.peak_gene_correlation(rna, atac, ANNOTATION, normalize=False)
    assert np.isnan(result.loc[result["peak"] == PEAKS[0], "correlation"]).all()


def test_unmatched_observations_and_missing_inputs_are_errors():
    rna, atac = matched_observations()
    with pytest.raises(ValueError, match="matched observations"):
        tl.peak_gene_correlation(rna, atac[::-1].copy(), ANNOTATION)
    with pytest.raises(ValueError, match="pass annotation= .* or links="):
        tl.peak_gene_correlation(rna, atac, None)
    with pytest.raises(ValueError, match="method must be"):
        tl.peak_gene_correlation(rna, atac, ANNOTATION, method="kendall")
