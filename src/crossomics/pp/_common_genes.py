"""Gene-level count views of several modalities over the genes they all share."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from crossomics._validation import check_counts, get_matrix

from ._gene_activity import gene_activity
from ._normalize import aggregate_columns
from ._peaks import resolve_annotation
from ._protein_genes import antibody_genes

logger = logging.getLogger(__name__)

MODALITY_KINDS = ("rna", "atac", "protein")
_NAME_HINTS = {
    "rna": ("rna", "gex", "gene", "expression"),
    "atac": ("atac", "peak", "chromatin"),
    "protein": ("adt", "protein", "cite", "antibod"),
}


def infer_modality_kinds(modalities: Sequence[str], kinds: Mapping[str, str] | None = None) -> dict[str, str]:
    """Kind (``rna``, ``atac`` or ``protein``) of each modality: given, or guessed from its name."""
    kinds = dict(kinds or {})
    resolved = {}
    for modality in modalities:
        if modality in kinds:
            kind = kinds[modality]
            if kind not in MODALITY_KINDS:
                raise ValueError(f"kinds[{modality!r}] is {kind!r}; use one of {list(MODALITY_KINDS)}")
        else:
            name = modality.lower()
            guesses = [kind for kind, hints in _NAME_HINTS.items() if any(hint in name for hint in hints)]
            if len(guesses) != 1:
                raise ValueError(
                    f"cannot infer the kind of modality {modality!r} from its name; pass "
                    f"kinds={{{modality!r}: 'rna' | 'atac' | 'protein'}}"
                )
            kind = guesses[0]
        resolved[modality] = kind
    return resolved


def check_modalities(mdata: MuData, modalities: Sequence[str]) -> list[str]:
    """Return ``modalities`` as a list, raising if one is not in ``mdata.mod``."""
    if isinstance(modalities, str):
        modalities = [modalities]
    modalities = list(modalities)
    unknown = [m for m in modalities if m not in mdata.mod]
    if unknown:
        raise ValueError(f"modalities {unknown} are not in mdata.mod; available: {list(mdata.mod)}")
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities {modalities} list a modality twice")
    return modalities


def common_gene_views(
    mdata: MuData,
    modalities: Sequence[str],
    kinds: Mapping[str, str] | None = None,
    gene_annotation: pd.DataFrame | str | None = None,
    protein_to_gene: Mapping[str, str] | pd.Series | None = None,
    layers: Mapping[str, str | None] | None = None,
) -> dict[str, AnnData]:
    """Cells x common-genes count matrices of several modalities (paper eq. 21, the x-hat).

    Every modality is first turned into gene-level counts:

    - ``rna``: its own counts;
    - ``atac``: :func:`gene_activity` (needs ``gene_annotation``);
    - ``protein``: each antibody is assigned the gene encoding its target, from
      ``protein_to_gene`` first, else by matching its name to a gene symbol of the other
      modalities (ignoring case and punctuation), else from a built-in table of CD names
      (``CD3`` -> ``CD3E``, ``CD16`` -> ``FCGR3A``, ``HLA-DR`` -> ``HLA-DRA``...). Antibodies
      with the same gene (``CD45RA``/``CD45RO`` -> ``PTPRC``) are summed; unmatched ones
      are dropped. The number matched is logged at INFO level.

    The genes shared by all modalities (compared ignoring case) are then kept, in the order of
    the first modality and spelled as there.

    Parameters
    ----------
    mdata
        Multimodal data; not modified.
    modalities
        Names in ``mdata.mod`` to use (at least one).
    kinds
        Modality -> ``"rna"``, ``"atac"`` or ``"protein"``. Missing entries are guessed from
        the name: rna/gex/gene -> rna, atac/peak/chromatin -> atac,
        adt/protein/cite/antibody -> protein.
    gene_annotation
        Gene bodies for ATAC modalities: a genome name (``"mm10"``, ``"hg38"``) or a
        DataFrame as :func:`crossomics.datasets.gene_annotation` returns.
    protein_to_gene
        Antibody name -> gene symbol, overriding the automatic matching; a missing value
        excludes an antibody.
    layers
        Modality -> layer holding raw counts; modalities not listed use ``X``.

    Returns
    -------
    dict
        Modality -> new AnnData with float32 CSR counts (cells x common genes), ``obs`` copied
        from the modality and ``var['n_source_features']`` (features summed into each gene:
        1 for RNA, peaks for ATAC, antibodies for protein).

    Raises
    ------
    ValueError
        For unknown modality names, kinds that cannot be inferred, ATAC without
        ``gene_annotation``, non-count data, or when the modalities share no gene (the message
        gives each modality's feature count).

    Examples
    --------
    >>> import crossomics as co
    >>> mdata = co.datasets.bmmc_cite()
    >>> views = co.pp.common_gene_views(mdata, ["rna", "adt"])
    >>> views["rna"].var_names.equals(views["adt"].var_names)
    True
    """
    modalities = check_modalities(mdata, modalities)
    kinds = infer_modality_kinds(modalities, kinds)
    layers = dict(layers or {})
    if "atac" in kinds.values():
        if gene_annotation is None:
            atac_names = [m for m in modalities if kinds[m] == "atac"]
            raise ValueError(
                f"modalities {atac_names} are ATAC; pass gene_annotation= ('mm10', 'hg38' or a DataFrame "
                "of gene bodies) to compute their gene activity"
            )
        gene_annotation = resolve_annotation(gene_annotation)

    gene_level: dict[str, tuple] = {}
    # proteins are matched against the genes the other modalities measure, so those come first
    for modality in sorted(modalities, key=lambda m: kinds[m] == "protein"):
        adata = mdata.mod[modality]
        layer = layers.get(modality)
        counts = get_matrix(adata, layer, name=f"modality {modality!r}")
        where = f"modality {modality!r} " + (f"layer {layer!r}" if layer else "X")
        check_counts(
            counts,
            where,
            hint=f" for the common-gene views (pass layers={{{modality!r}: <raw count layer>}})",
        )
        if kinds[modality] == "atac":
            activity = gene_activity(adata, gene_annotation, layer=layer)
            gene_level[modality] = (activity.X, activity.var_names, activity.var["n_peaks"].to_numpy())
            continue
        if kinds[modality] == "rna":
            gene_level[modality] = (counts, adata.var_names, np.ones(adata.n_vars, dtype=np.int64))
            continue
        universe = np.concatenate([np.asarray(names) for _, names, _ in gene_level.values()] or [[]])
        genes = antibody_genes(adata.var_names, universe, protein_to_gene)
        mapped = np.flatnonzero(pd.notna(genes))
        logger.info("modality %r: %d of %d antibodies mapped to genes", modality, mapped.size, adata.n_vars)
        gene_level[modality] = (
            counts[:, mapped],
            pd.Index(genes[mapped]),
            np.ones(mapped.size, dtype=np.int64),
        )

    return _restrict_to_common_genes(mdata, modalities, gene_level)


def _restrict_to_common_genes(mdata: MuData, modalities: list[str], gene_level: dict) -> dict[str, AnnData]:
    keyed = {}
    for modality in modalities:
        counts, genes, n_source = gene_level[modality]
        keys = pd.Index(genes).astype(str).str.upper()
        summed, unique_keys = aggregate_columns(counts, keys)
        source_counts, _ = aggregate_columns(n_source[None, :], keys)
        spelling = pd.Series(np.asarray(genes, dtype=object)).groupby(keys.to_numpy()).first()
        keyed[modality] = (summed, pd.Index(unique_keys), source_counts.toarray().ravel(), spelling)

    common = keyed[modalities[0]][1]
    for modality in modalities[1:]:
        common = common[common.isin(keyed[modality][1])]
    if common.empty:
        sizes = ", ".join(
            f"{m!r}: {mdata.mod[m].n_vars} features -> {len(keyed[m][1])} genes" for m in modalities
        )
        raise ValueError(
            f"modalities {modalities} share no gene ({sizes}); check that they come from the same species "
            "and that feature names are gene symbols (or pass protein_to_gene= for antibodies)"
        )

    gene_names = pd.Index(keyed[modalities[0]][3].loc[common].to_numpy(), dtype=str)
    views = {}
    for modality in modalities:
        summed, unique_keys, n_source, _ = keyed[modality]
        columns = unique_keys.get_indexer(common)
        var = pd.DataFrame({"n_source_features": n_source[columns].astype(np.int64)}, index=gene_names)
        views[modality] = AnnData(X=summed[:, columns], obs=mdata.mod[modality].obs.copy(), var=var)
    return views
