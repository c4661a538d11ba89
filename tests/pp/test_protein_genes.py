import numpy as np
import pandas as pd
import pytest

import crossomics as co
from crossomics.pp._protein_genes import _ANTIBODY_TARGET_GENES, _compact_key, _separated_key, antibody_genes


@pytest.mark.parametrize(
    ("antibody", "gene"),
    [
        ("cd62p", "SELP"),
        ("CD62P", "SELP"),
        ("cd39", "ENTPD1"),
        ("cd45ra", "PTPRC"),
        ("CD45RO", "PTPRC"),
        ("hla.dr", "HLA-DRA"),
        ("HLA_DR", "HLA-DRA"),
        ("cd107a", "LAMP1"),
        ("cd11a.cd18", "ITGAL"),
        ("cd66a.c.e", "CEACAM1"),
        ("tcr.v.7.2", "TRAV1-2"),
        ("TCRVa7.2", "TRAV1-2"),
        ("tcr.v.24.j.18", "TRAV10"),
        ("integrin.7", "ITGB7"),
        ("galectin.9", "LGALS9"),
        ("cd307c.fcrl3", "FCRL3"),
        # numbered clones map like their target ...
        ("cd4.1", "CD4"),
        ("cd4_2", "CD4"),
        ("CD56-1", "NCAM1"),
        ("cd3.2", "CD3E"),
        ("cd11b.1", "ITGAM"),
        ("cd45.2", "PTPRC"),
        ("cd138.1", "SDC1"),
        # ... while a number that belongs to the name is kept
        ("lox.1", "OLR1"),
        ("tim.4", "TIMD4"),
        ("siglec.8", "SIGLEC8"),
        ("cd41", "ITGA2B"),
        ("cd31", "PECAM1"),
    ],
)
def test_antibody_names_map_to_target_genes(antibody, gene):
    assert antibody_genes([antibody], ["CD4", "GAPDH"]).tolist() == [gene]


def test_symbols_match_the_universe_case_insensitively():
    genes = antibody_genes(["cd19", "Cd4.1", "CD99", "klrg1"], ["Cd19", "Cd4", "Klrg1"])
    # CD99 is neither in the universe nor a table name
    assert genes.tolist() == ["Cd19", "Cd4", None, "Klrg1"]


def test_clone_of_an_unknown_target_is_not_read_as_another_cd():
    # 'cd4.1' must not become CD41 (ITGA2B), nor 'cd14.1' CD141 (THBD), when the target's own
    # gene is missing from the universe; a clone of a table name still maps through the table
    genes = antibody_genes(["cd4.1", "cd14.1", "cd3.1"], ["ITGA2B", "THBD", "PECAM1"])
    assert genes.tolist() == [None, None, "CD3E"]


def test_explicit_mapping_wins_and_none_excludes():
    genes = antibody_genes(["cd4.1", "cd62p"], ["CD4"], protein_to_gene={"cd4.1": "CD8A", "cd62p": None})
    assert genes.tolist() == ["CD8A", None]


def test_table_keys_do_not_collide():
    for key in (_separated_key, _compact_key):
        seen = {}
        for name, gene in _ANTIBODY_TARGET_GENES.items():
            assert seen.setdefault(key(name), gene) == gene, name


def test_mosaic_panel_coverage():
    mosaic = co.datasets.pbmc_mosaic()
    adt, rna = mosaic["adt"].var_names, mosaic["rna"].var_names
    human = co.datasets.gene_annotation("hg38").index.union(rna)
    genes = antibody_genes(adt, human)
    unmapped = pd.isna(genes)
    # only 'folate' and 'cadherin' (a receptor family / a protein family, not one gene) stay unmapped
    assert sorted(adt[unmapped]) == ["cadherin", "folate"]
    mapped = genes[~unmapped].astype(str)
    assert mapped.size == 222
    in_rna = np.isin(mapped, rna)
    assert in_rna.sum() == 70
    assert np.unique(mapped[in_rna]).size == 66
    # against the RNA genes alone, the table names still map: 181 of 224
    assert pd.notna(antibody_genes(adt, rna)).sum() == 181
    lookup = dict(zip(adt, genes, strict=True))
    assert lookup["cd4.1"] == lookup["cd4.2"] == "CD4"
    assert lookup["cd56.1"] == lookup["cd56.2"] == "NCAM1"
    assert {lookup[n] for n in ("cd45ra", "cd45rb", "cd45ro", "cd45.1", "cd45.2")} == {"PTPRC"}
