"""Map antibody (ADT) names to the genes that encode their targets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

# Antibody target names that are not themselves gene symbols, mapped to the (human, HGNC)
# symbol of the gene encoding the target. Source and licence: docs/data.md, "Antibody-to-gene
# table" (compiled for crossomics from the HCDM CD nomenclature and HGNC symbols; MIT). Names that already are symbols (CD4, CD14, TIGIT,
# HLA-E...) match directly and are not listed. Isoform-specific antibodies (CD45RA/RO) map to
# the common gene; multi-gene targets (CD66a/c/e, TCR alpha/beta, LFA-1) map to one
# representative gene. Greek letters are dropped by the name keys, so 'TCR Vα7.2' is also
# found as 'tcr.v.7.2' (the lower-case, R make.names spelling of the Hao et al. 2021 panel).
_ANTIBODY_TARGET_GENES = {
    "CD3": "CD3E",
    "CD8": "CD8A",
    "CD10": "MME",
    "CD11a": "ITGAL",
    "CD11a/CD18": "ITGAL",
    "CD11b": "ITGAM",
    "CD11c": "ITGAX",
    "CD13": "ANPEP",
    "CD15": "FUT4",
    "CD16": "FCGR3A",
    "CD18": "ITGB2",
    "CD20": "MS4A1",
    "CD21": "CR2",
    "CD23": "FCER2",
    "CD25": "IL2RA",
    "CD26": "DPP4",
    "CD29": "ITGB1",
    "CD30": "TNFRSF8",
    "CD31": "PECAM1",
    "CD32": "FCGR2A",
    "CD35": "CR1",
    "CD39": "ENTPD1",
    "CD41": "ITGA2B",
    "CD42b": "GP1BA",
    "CD43": "SPN",
    "CD45": "PTPRC",
    "CD45RA": "PTPRC",
    "CD45RB": "PTPRC",
    "CD45RO": "PTPRC",
    "CD49a": "ITGA1",
    "CD49b": "ITGA2",
    "CD49d": "ITGA4",
    "CD49e": "ITGA5",
    "CD49f": "ITGA6",
    "CD54": "ICAM1",
    "CD56": "NCAM1",
    "CD57": "B3GAT1",
    "CD61": "ITGB3",
    "CD62E": "SELE",
    "CD62L": "SELL",
    "CD62P": "SELP",
    "CD64": "FCGR1A",
    "CD66a/c/e": "CEACAM1",
    "CD66b": "CEACAM8",
    "CD71": "TFRC",
    "CD73": "NT5E",
    "CD85g": "LILRA4",
    "CD85j": "LILRB1",
    "CD88": "C5AR1",
    "CD90": "THY1",
    "CD94": "KLRD1",
    "CD95": "FAS",
    "CD98": "SLC3A2",
    "CD102": "ICAM2",
    "CD103": "ITGAE",
    "CD105": "ENG",
    "CD106": "VCAM1",
    "CD107a": "LAMP1",
    "CD110": "MPL",
    "CD112": "NECTIN2",
    "CD115": "CSF1R",
    "CD116": "CSF2RA",
    "CD117": "KIT",
    "CD119": "IFNGR1",
    "CD122": "IL2RB",
    "CD123": "IL3RA",
    "CD124": "IL4R",
    "CD126": "IL6R",
    "CD127": "IL7R",
    "CD133": "PROM1",
    "CD134": "TNFRSF4",
    "CD135": "FLT3",
    "CD137": "TNFRSF9",
    "CD138": "SDC1",
    "CD140a": "PDGFRA",
    "CD140b": "PDGFRB",
    "CD141": "THBD",
    "CD142": "F3",
    "CD144": "CDH5",
    "CD146": "MCAM",
    "CD152": "CTLA4",
    "CD154": "CD40LG",
    "CD155": "PVR",
    "CD158": "KIR2DL1",
    "CD158a": "KIR2DL1",
    "CD158b": "KIR2DL3",
    "CD158e1": "KIR3DL1",
    "CD158f": "KIR2DL5A",
    "CD161": "KLRB1",
    "CD162": "SELPLG",
    "CD169": "SIGLEC1",
    "CD171": "L1CAM",
    "CD172a": "SIRPA",
    "CD178": "FASLG",
    "CD183": "CXCR3",
    "CD184": "CXCR4",
    "CD185": "CXCR5",
    "CD186": "CXCR6",
    "CD192": "CCR2",
    "CD193": "CCR3",
    "CD194": "CCR4",
    "CD195": "CCR5",
    "CD196": "CCR6",
    "CD197": "CCR7",
    "CD199": "CCR9",
    "CD201": "PROCR",
    "CD202b": "TEK",
    "CD203c": "ENPP3",
    "CD204": "MSR1",
    "CD205": "LY75",
    "CD206": "MRC1",
    "CD223": "LAG3",
    "CD224": "GGT1",
    "CD235a": "GYPA",
    "CD235a-b": "GYPA",
    "CD235ab": "GYPA",
    "CD243": "ABCB1",
    "CD252": "TNFSF4",
    "CD253": "TNFSF10",
    "CD267": "TNFRSF13B",
    "CD268": "TNFRSF13C",
    "CD269": "TNFRSF17",
    "CD270": "TNFRSF14",
    "CD271": "NGFR",
    "CD272": "BTLA",
    "CD273": "PDCD1LG2",
    "CD275": "ICOSLG",
    "CD278": "ICOS",
    "CD279": "PDCD1",
    "CD284": "TLR4",
    "CD294": "PTGDR2",
    "CD301": "CLEC10A",
    "CD303": "CLEC4C",
    "CD304": "NRP1",
    "CD305": "LAIR1",
    "CD307c": "FCRL3",
    "CD307c/FcRL3": "FCRL3",
    "CD307d": "FCRL4",
    "CD307e": "FCRL5",
    "CD309": "KDR",
    "CD314": "KLRK1",
    "CD319": "SLAMF7",
    "CD324": "CDH1",
    "CD325": "CDH2",
    "CD326": "EPCAM",
    "CD328": "SIGLEC7",
    "CD335": "NCR1",
    "CD336": "NCR2",
    "CD337": "NCR3",
    "CD338": "ABCG2",
    "CD340": "ERBB2",
    "CD352": "SLAMF6",
    "CD354": "TREM1",
    "CD357": "TNFRSF18",
    "CD366": "HAVCR2",
    "CD370": "CLEC9A",
    "B7-H4": "VTCN1",
    "C5L2": "C5AR2",
    "FceRIa": "FCER1A",
    "Galectin-9": "LGALS9",
    "gp130": "IL6ST",
    "HLA-A-B-C": "HLA-A",
    "HLA-ABC": "HLA-A",
    "HLA-DR": "HLA-DRA",
    "IgD": "IGHD",
    "IgG": "IGHG1",
    "IgM": "IGHM",
    "IL-21R": "IL21R",
    "integrin β7": "ITGB7",
    "integrinB7": "ITGB7",
    "LOX-1": "OLR1",
    "PD-1": "PDCD1",
    "PD-L1": "CD274",
    "PD-L2": "PDCD1LG2",
    "Podoplanin": "PDPN",
    "Siglec-8": "SIGLEC8",
    "TCR Vα24-Jα18": "TRAV10",
    "TCR Vα7.2": "TRAV1-2",
    "TCR Vγ9": "TRGV9",
    "TCR Vδ2": "TRDV2",
    "TCRab": "TRAC",
    "TCRgd": "TRDC",
    "TCRVa7.2": "TRAV1-2",
    "TCRVd2": "TRDV2",
    "TIM-3": "HAVCR2",
    "TIM-4": "TIMD4",
    "TSLPR": "CRLF2",
    "VEGFR-3": "FLT4",
}


def _separated_key(name: str) -> str:
    # 'HLA-DR', 'HLA.DR' (R make.names), 'hla_dr' and 'HLA DR' are the same antibody; the
    # separators are kept as '-' so that a numbered clone 'CD4-1' stays apart from 'CD41'
    return re.sub(r"[^0-9A-Z]+", "-", str(name).upper()).strip("-")


def _compact_key(name: str) -> str:
    # separators ignored altogether: 'IL.21R' -> 'IL21R', 'TCRVa7.2' -> 'TCRVA72'
    return re.sub(r"[^0-9A-Z]", "", str(name).upper())


# A panel with two antibodies against one target numbers them: 'CD4.1', 'cd4_2', 'CD56-1'.
_CLONE_SUFFIX = re.compile(r"^(?P<stem>.+)-(?P<clone>\d{1,2})$")
_CD_NAME = re.compile(r"^CD\d+[A-Z]?\d*$")


def _keyed(names: Iterable[str], key) -> dict[str, str]:
    table = {}
    for name in names:
        table.setdefault(key(name), name)
    return table


_TABLE_BY_SEPARATED = {_separated_key(name): gene for name, gene in _ANTIBODY_TARGET_GENES.items()}
_TABLE_BY_COMPACT = {_compact_key(name): gene for name, gene in _ANTIBODY_TARGET_GENES.items()}


class _AntibodyResolver:
    """Looks antibody names up in the built-in table and a gene universe."""

    def __init__(self, gene_universe: Iterable[str]):
        genes = list(gene_universe)
        self._genes_by_separated = _keyed(genes, _separated_key)
        self._genes_by_compact = _keyed(genes, _compact_key)

    def _without_clone_suffix(self, name: str) -> str | None:
        found = _CLONE_SUFFIX.match(_separated_key(name))
        if found is None:
            return None
        stem = found.group("stem")
        # 'LOX-1', 'Siglec-8' and 'TIM-4' end in a number too; only a stem that names an
        # antibody on its own (a CD name or a known target) marks a numbered clone
        if _CD_NAME.match(_compact_key(stem)) or self._lookup(stem) is not None:
            return stem
        return None

    def _lookup(self, name: str) -> str | None:
        separated, compact = _separated_key(name), _compact_key(name)
        for table, key in (
            (self._genes_by_separated, separated),
            (self._genes_by_compact, compact),
            (_TABLE_BY_SEPARATED, separated),
            (_TABLE_BY_COMPACT, compact),
        ):
            if key in table:
                return table[key]
        return None

    def gene(self, antibody: str) -> str | None:
        separated = _separated_key(antibody)
        if separated in _TABLE_BY_SEPARATED or separated in self._genes_by_separated:
            return self._lookup(antibody)
        stem = self._without_clone_suffix(antibody)
        # a clone never falls back to its run-together name: 'CD4.1' is not CD41 (ITGA2B)
        return self._lookup(stem) if stem is not None else self._lookup(antibody)


def antibody_genes(
    antibodies: Sequence[str] | pd.Index,
    gene_universe: Iterable[str],
    protein_to_gene: Mapping[str, str] | pd.Series | None = None,
) -> np.ndarray:
    """Gene symbol for each antibody, or ``None`` where no gene is known.

    Names are compared ignoring case and punctuation (``HLA-DR``, ``hla.dr`` and ``HLA_DR``
    are one antibody). Order of precedence:

    1. ``protein_to_gene`` (exact antibody name); a ``None``/NaN value excludes that antibody;
    2. a gene of ``gene_universe`` whose symbol equals the antibody name (``CD4`` -> ``Cd4``,
       ``IL.21R`` -> ``IL21R``);
    3. the built-in table of CD and other target names (``CD3`` -> ``CD3E``, ``HLA-DR`` ->
       ``HLA-DRA``, ``CD45RA`` -> ``PTPRC``, ``CD62P`` -> ``SELP``, ``TCR Vα7.2`` ->
       ``TRAV1-2``).

    A numbered clone (``cd4.1``, ``CD56_2``, ``CD45-1``: a CD name or a known target followed
    by ``.``/``_``/``-`` and one or two digits) maps like its target without the number, so
    two clones against one protein map to the same gene (and are summed in the common-gene
    views). Names whose number is part of the target (``LOX-1``, ``Siglec-8``, ``TIM-4``) are
    matched whole.

    Examples
    --------
    >>> antibody_genes(["cd4.1", "cd62p", "hla.dr", "cd45ra", "lox.1"], ["CD4"])
    array(['CD4', 'SELP', 'HLA-DRA', 'PTPRC', 'OLR1'], dtype=object)
    """
    explicit = dict(protein_to_gene.items()) if protein_to_gene is not None else {}
    resolver = _AntibodyResolver(gene_universe)
    genes = []
    for antibody in antibodies:
        if antibody in explicit:
            # a missing value (None/NaN) in the user's mapping excludes the antibody
            gene = explicit[antibody]
            genes.append(gene if isinstance(gene, str) and gene else None)
            continue
        genes.append(resolver.gene(antibody))
    return np.asarray(genes, dtype=object)
