"""Map antibody (ADT) names to the genes that encode their targets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

# Antibody target names that are not themselves gene symbols, mapped to the (human, HGNC)
# symbol of the gene encoding the target. Names that already are symbols (CD4, CD14, TIGIT,
# HLA-E...) match directly and are not listed. Isoform-specific antibodies (CD45RA/RO) map to
# the common gene; multi-gene targets map to one representative gene.
_ANTIBODY_TARGET_GENES = {
    "CD3": "CD3E",
    "CD8": "CD8A",
    "CD10": "MME",
    "CD11a": "ITGAL",
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
    "CD49f": "ITGA6",
    "CD54": "ICAM1",
    "CD56": "NCAM1",
    "CD57": "B3GAT1",
    "CD61": "ITGB3",
    "CD62E": "SELE",
    "CD62L": "SELL",
    "CD62P": "SELP",
    "CD64": "FCGR1A",
    "CD66b": "CEACAM8",
    "CD71": "TFRC",
    "CD73": "NT5E",
    "CD85j": "LILRB1",
    "CD88": "C5AR1",
    "CD90": "THY1",
    "CD94": "KLRD1",
    "CD95": "FAS",
    "CD103": "ITGAE",
    "CD105": "ENG",
    "CD107a": "LAMP1",
    "CD112": "NECTIN2",
    "CD115": "CSF1R",
    "CD116": "CSF2RA",
    "CD117": "KIT",
    "CD119": "IFNGR1",
    "CD122": "IL2RB",
    "CD123": "IL3RA",
    "CD124": "IL4R",
    "CD127": "IL7R",
    "CD133": "PROM1",
    "CD134": "TNFRSF4",
    "CD135": "FLT3",
    "CD137": "TNFRSF9",
    "CD141": "THBD",
    "CD142": "F3",
    "CD146": "MCAM",
    "CD152": "CTLA4",
    "CD154": "CD40LG",
    "CD155": "PVR",
    "CD158": "KIR2DL1",
    "CD158a": "KIR2DL1",
    "CD158b": "KIR2DL3",
    "CD158e1": "KIR3DL1",
    "CD161": "KLRB1",
    "CD162": "SELPLG",
    "CD169": "SIGLEC1",
    "CD172a": "SIRPA",
    "CD183": "CXCR3",
    "CD184": "CXCR4",
    "CD185": "CXCR5",
    "CD186": "CXCR6",
    "CD192": "CCR2",
    "CD194": "CCR4",
    "CD195": "CCR5",
    "CD196": "CCR6",
    "CD197": "CCR7",
    "CD223": "LAG3",
    "CD224": "GGT1",
    "CD235a": "GYPA",
    "CD268": "TNFRSF13C",
    "CD270": "TNFRSF14",
    "CD272": "BTLA",
    "CD273": "PDCD1LG2",
    "CD278": "ICOS",
    "CD279": "PDCD1",
    "CD303": "CLEC4C",
    "CD304": "NRP1",
    "CD314": "KLRK1",
    "CD319": "SLAMF7",
    "CD328": "SIGLEC7",
    "CD335": "NCR1",
    "CD352": "SLAMF6",
    "CD366": "HAVCR2",
    "HLA-DR": "HLA-DRA",
    "HLA-ABC": "HLA-A",
    "HLA-A-B-C": "HLA-A",
    "B7-H4": "VTCN1",
    "PD-1": "PDCD1",
    "PD-L1": "CD274",
    "PD-L2": "PDCD1LG2",
    "TIM-3": "HAVCR2",
    "LOX-1": "OLR1",
    "Podoplanin": "PDPN",
    "IgM": "IGHM",
    "IgD": "IGHD",
    "integrinB7": "ITGB7",
    "FceRIa": "FCER1A",
    "TCRVa7.2": "TRAV1-2",
    "TCRVd2": "TRDV2",
}


def _name_key(name: str) -> str:
    # 'HLA-DR', 'HLA.DR' (R make.names) and 'hla_dr' are the same antibody
    return re.sub(r"[^0-9A-Z]", "", str(name).upper())


_TARGET_GENE_BY_KEY = {_name_key(name): gene for name, gene in _ANTIBODY_TARGET_GENES.items()}


def antibody_genes(
    antibodies: Sequence[str] | pd.Index,
    gene_universe: Iterable[str],
    protein_to_gene: Mapping[str, str] | pd.Series | None = None,
) -> np.ndarray:
    """Gene symbol for each antibody, or ``None`` where no gene is known.

    Order of precedence: ``protein_to_gene`` (exact antibody name); a gene of
    ``gene_universe`` whose symbol equals the antibody name ignoring case and punctuation
    (``CD4`` -> ``Cd4``, ``IL.21R`` -> ``IL21R``); the built-in table of CD and other target
    names (``CD3`` -> ``CD3E``, ``HLA-DR`` -> ``HLA-DRA``, ``CD45RA`` -> ``PTPRC``).
    A ``None``/NaN value in ``protein_to_gene`` excludes that antibody.
    """
    explicit = dict(protein_to_gene.items()) if protein_to_gene is not None else {}
    universe_by_key = {}
    for gene in gene_universe:
        universe_by_key.setdefault(_name_key(gene), gene)
    genes = []
    for antibody in antibodies:
        if antibody in explicit:
            # a missing value (None/NaN) in the user's mapping excludes the antibody
            gene = explicit[antibody]
            genes.append(gene if isinstance(gene, str) and gene else None)
            continue
        key = _name_key(antibody)
        genes.append(universe_by_key.get(key, _TARGET_GENE_BY_KEY.get(key)))
    return np.asarray(genes, dtype=object)
