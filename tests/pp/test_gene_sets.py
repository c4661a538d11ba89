import gzip

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import crossomics as co
from crossomics.pp._normalize import log_normalize

GMT_TEXT = (
    "GO:0000001\tmitochondrion inheritance\tGENE1\tGENE2\tGENE2\n"
    "HALLMARK_X\thttp://www.gsea-msigdb.org/x\tGENE3\n"
    "\n"
    "SET_NA\tna\tGENE1\tGENE4\n"
)


@pytest.mark.parametrize("compressed", [False, True])
def test_read_gmt_names_and_genes(tmp_path, compressed):
    path = tmp_path / ("sets.gmt.gz" if compressed else "sets.gmt")
    if compressed:
        with gzip.open(path, "wt") as handle:
            handle.write(GMT_TEXT)
    else:
        path.write_text(GMT_TEXT)
    sets = co.pp.read_gmt(path)
    assert sets == {
        "GO:0000001 mitochondrion inheritance": ["GENE1", "GENE2"],
        "HALLMARK_X": ["GENE3"],
        "SET_NA": ["GENE1", "GENE4"],
    }


def test_read_gmt_rejects_repeated_sets(tmp_path):
    path = tmp_path / "twice.gmt"
    path.write_text("A\tx\tG1\nA\tx\tG2\n")
    with pytest.raises(ValueError, match="twice.gmt:2 repeats the gene set 'A x'"):
        co.pp.read_gmt(path)


def test_bundled_go_sets_are_read():
    sets = co.datasets.go_biological_process()
    assert len(sets) == 6482
    sizes = np.array([len(genes) for genes in sets.values()])
    assert sizes.min() >= 10 and sizes.max() <= 499
    assert sets["GO:0001553 luteinization"][:3] == ["A2M", "FZD4", "GDF9"]


def test_membership_is_sparse_case_insensitive_and_size_filtered():
    var_names = pd.Index(["Gapdh", "Actb", "Cd4", "Mbp"])
    sets = {"small": ["GAPDH"], "two": ["GAPDH", "CD4", "NOT_MEASURED"], "three": ["actb", "cd4", "MBP"]}
    membership, names = co.pp.gene_set_membership(var_names, sets, min_size=2, max_size=2)
    assert sp.issparse(membership) and membership.format == "csr" and membership.dtype == np.float32
    assert list(names) == ["two"]  # 'two' matches 2 genes; NOT_MEASURED does not count
    np.testing.assert_array_equal(membership.toarray().ravel(), [1, 0, 1, 0])

    strict, strict_names = co.pp.gene_set_membership(var_names, sets, min_size=1, case_sensitive=True)
    assert list(strict_names) == []
    assert strict.shape == (4, 0)


def test_gene_set_scores_are_mean_log_expression(cortex_subset, assert_unchanged):
    rna = cortex_subset["rna"]
    go = co.datasets.go_biological_process()
    with assert_unchanged(rna):
        scored = co.pp.gene_set_scores(rna, go, copy=True)
    scores, names = scored.obsm["X_gene_sets"], scored.uns["X_gene_sets_names"]
    assert scores.shape == (rna.n_obs, len(names)) and scores.dtype == np.float32
    assert 1000 < len(names) < len(go)  # the size filter applies to the ~1,700 measured genes

    name = "GO:0042552 myelination"
    column = list(names).index(name)
    members = rna.var_names.str.upper().isin(go[name])
    expected = np.asarray(log_normalize(rna.X)[:, members].mean(axis=1)).ravel()
    np.testing.assert_allclose(scores[:, column], expected, rtol=1e-5, atol=1e-6)

    # myelination genes are expressed most in oligodendrocytes (measured 1.23 vs <= 0.63 elsewhere)
    by_type = pd.Series(scores[:, column]).groupby(rna.obs["cell_type"].to_numpy(), observed=True).mean()
    assert by_type.idxmax() == "Oligo"


def test_gene_set_scores_in_place_and_errors(cortex_subset):
    rna = cortex_subset["rna"][:100].copy()
    assert co.pp.gene_set_scores(rna, co.datasets.go_biological_process(), key_added="X_go") is None
    assert list(rna.obsm) == ["X_go"] and list(rna.uns) == ["X_go_names"]
    with pytest.raises(ValueError, match="no gene set has between 10 and 500 genes"):
        co.pp.gene_set_scores(rna, {"tiny": ["Mbp"]})
    rna.layers["lognorm"] = log_normalize(rna.X)
    with pytest.raises(ValueError, match="adata layer 'lognorm' has non-integer values"):
        co.pp.gene_set_scores(rna, {"tiny": ["Mbp"]}, layer="lognorm", min_size=1)
