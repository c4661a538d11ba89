"""Gene-level count views of several modalities over the genes they all share."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from mudata import MuData

from crossomics._constants import ATAC, METHYLATION, PROTEIN, RNA
from crossomics._validation import check_counts, check_finite, get_matrix

from ._modality_kinds import infer_modality_kinds
from ._normalize import aggregate_columns, as_float32_csr
from ._peaks import has_coordinates, parse_sites, peak_to_gene_matrix, resolve_annotation
from ._protein_genes import antibody_genes

logger = logging.getLogger(__name__)

DEFAULT_LIKELIHOOD = {RNA: "nb", ATAC: "nb", PROTEIN: "nb", METHYLATION: "ziln"}
"""A model's likelihood of each kind when none is given (the paper's: ZILN for methylation rates)."""
METHYLATION_SIGN = -1.0
"""Gene-body methylation anti-correlates with expression, so it enters the common-gene view
negated (docs/concepts.md, "Normalised and continuous inputs")."""


def has_genomic_features(kind: str, var: pd.DataFrame) -> bool:
    """Whether a modality's features are genomic positions mapped to genes through an
    annotation: always for ATAC, for methylation when they are sites, bins or regions."""
    return kind == ATAC or (kind == METHYLATION and has_coordinates(var))


def check_modalities(mdata: MuData, modalities: Sequence[str]) -> list[str]:
    """Return ``modalities`` as a list, raising if one is not in ``mdata.mod``."""
    if isinstance(modalities, str):
        modalities = [modalities]
    modalities = list(modalities)
    unknown = [m for m in modalities if m not in mdata.mod]
    if unknown:
        raise ValueError(f"modalities {unknown} are not in mdata.mod; available: {list(mdata.mod)}")
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities {modalities} list a modality twice; list each modality once")
    return modalities


def common_gene_views(
    mdata: MuData,
    modalities: Sequence[str],
    kinds: Mapping[str, str] | None = None,
    gene_annotation: pd.DataFrame | str | None = None,
    protein_to_gene: Mapping[str, str] | pd.Series | None = None,
    layers: Mapping[str, str | None] | None = None,
    normalized: Collection[str] = (),
) -> dict[str, AnnData]:
    """Cells x common-genes matrices of several modalities (paper eq. 21, the x-hat).

    Every modality is first turned into gene-level values (counts, or the given values for
    modalities in ``normalized``):

    - ``rna``: its own counts;
    - ``atac``: :func:`gene_activity` (needs ``gene_annotation``);
    - ``protein``: each antibody is assigned the gene encoding its target, from
      ``protein_to_gene`` first, else by matching its name to a gene symbol of the other
      modalities (ignoring case and punctuation), else from a built-in table of CD names
      (``CD3`` -> ``CD3E``, ``CD16`` -> ``FCGR3A``, ``HLA-DR`` -> ``HLA-DRA``...). Numbered
      clones map like their target (``cd4.1``, ``cd4.2`` -> ``CD4``). Antibodies with the same
      gene (``CD45RA``/``CD45RO`` -> ``PTPRC``) are summed; unmatched ones are dropped. The
      number matched is logged at INFO level;
    - ``methylation``: gene-level methylation fractions as they are (features named by gene),
      or CpG sites / bins / regions (features named ``chr1:12345``, ``chr1_12345`` or
      ``chr1:100-200``, or a ``var`` with ``chrom``/``chromStart``/``chromEnd``) summed over
      each gene's window like ATAC peaks (needs ``gene_annotation``). The view is negated:
      gene-body methylation anti-correlates with expression.

    The genes shared by all modalities (compared ignoring case) are then kept, in the order of
    the first modality and spelled as there.

    Parameters
    ----------
    mdata
        Multimodal data; not modified.
    modalities
        Names in ``mdata.mod`` to use (at least one).
    kinds
        Modality -> ``"rna"``, ``"atac"``, ``"protein"`` or ``"methylation"``. Missing entries
        are guessed from the name (rna/gex/gene -> rna, atac/peak/chromatin -> atac,
        adt/protein/cite/antibody -> protein, methyl/snmc/mcg -> methylation), else from the
        features: peak names or coordinates -> atac (as ``SCCROSS.setup_mudata`` does).
    gene_annotation
        Gene bodies for ATAC modalities: a genome name (``"mm10"``, ``"hg38"``) or a
        DataFrame as :func:`crossomics.datasets.gene_annotation` returns.
    protein_to_gene
        Antibody name -> gene symbol, overriding the automatic matching; a missing value
        excludes an antibody.
    layers
        Modality -> layer holding the data; modalities not listed use ``X``.
    normalized
        Modalities whose data are already normalised or continuous (log-normalised
        expression, TF-IDF, z-scores, methylation rates): their values are mapped to genes as
        given and need not be counts. Other modalities must hold raw counts.

    Returns
    -------
    dict
        Modality -> new AnnData with float32 CSR values (cells x common genes), ``obs`` copied
        from the modality and ``var['n_source_features']`` (features summed into each gene:
        1 for RNA, peaks for ATAC, antibodies for protein, sites for methylation).

    Raises
    ------
    ValueError
        For unknown modality names, kinds that cannot be inferred, ATAC (or methylation sites)
        without ``gene_annotation``, non-count data outside ``normalized``, or when the modalities share no gene (the message
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
    values = checked_values(mdata, modalities, layers, normalized)
    gene_names, maps = common_gene_maps(mdata, modalities, kinds, gene_annotation, protein_to_gene)
    views = {}
    for modality in modalities:
        var = pd.DataFrame(
            {"n_source_features": np.diff(maps[modality].tocsc().indptr).astype(np.int64)}, index=gene_names
        )
        views[modality] = AnnData(
            X=as_float32_csr(values[modality]) @ maps[modality], obs=mdata.mod[modality].obs.copy(), var=var
        )
    return views


def checked_values(
    mdata: MuData,
    modalities: Sequence[str],
    layers: Mapping[str, str | None] | None = None,
    normalized: Collection[str] = (),
) -> dict:
    """Each modality's data matrix (``layers[m]`` or ``X``): raw counts, checked as such, or
    finite values for the modalities in ``normalized``."""
    layers = dict(layers or {})
    unknown = sorted(set(normalized) - set(modalities))
    if unknown:
        raise ValueError(f"normalized names {unknown}, which are not among the modalities {list(modalities)}")
    values = {}
    for modality in modalities:
        layer = layers.get(modality)
        values[modality] = get_matrix(mdata.mod[modality], layer, name=f"modality {modality!r}")
        where = f"modality {modality!r} " + (f"layer {layer!r}" if layer else "X")
        if modality in normalized:
            check_finite(values[modality], where)
            continue
        check_counts(
            values[modality],
            where,
            hint=f" for the common-gene views (pass layers={{{modality!r}: <raw count layer>}}, or "
            f"normalized=[{modality!r}] for normalised data)",
        )
    return values


def common_gene_maps(
    mdata: MuData,
    modalities: Sequence[str],
    kinds: Mapping[str, str] | None = None,
    gene_annotation: pd.DataFrame | str | None = None,
    protein_to_gene: Mapping[str, str] | pd.Series | None = None,
) -> tuple[pd.Index, dict[str, sp.csr_matrix]]:
    """The linear maps behind :func:`common_gene_views`: ``view = counts @ map``.

    Every map is a float32 CSR matrix (features x common genes) of ones (minus ones for
    methylation) that sums each modality's features into the genes all modalities share
    (peaks or sites overlapping a gene's window for ATAC and methylation, antibodies targeting
    a gene for protein, the gene itself for RNA). Only ``var`` is read,
    so the maps also apply to query cells with the same features.

    Returns
    -------
    tuple
        The common gene names (spelled as in the first modality) and modality -> map.
    """
    modalities = check_modalities(mdata, modalities)
    kinds = infer_modality_kinds(modalities, kinds, {m: mdata.mod[m].var for m in modalities})
    positional = [m for m in modalities if has_genomic_features(kinds[m], mdata.mod[m].var)]
    if positional:
        if gene_annotation is None:
            raise ValueError(
                f"modalities {positional} have genomic features (peaks or sites); pass gene_annotation= "
                "('mm10', 'hg38' or a DataFrame of gene bodies) to map them to genes"
            )
        gene_annotation = resolve_annotation(gene_annotation)

    gene_level: dict[str, tuple[sp.csr_matrix, pd.Index]] = {}
    # proteins are matched against the genes the other modalities measure, so those come first
    for modality in sorted(modalities, key=lambda m: kinds[m] == PROTEIN):
        adata = mdata.mod[modality]
        if kinds[modality] == ATAC:
            peak_gene, genes = peak_to_gene_matrix(adata.var, gene_annotation)
            gene_level[modality] = (sp.csr_matrix(peak_gene, dtype=np.float32), genes)
            continue
        if kinds[modality] == METHYLATION:
            if modality in positional:
                site_gene, genes = peak_to_gene_matrix(parse_sites(adata.var), gene_annotation)
            else:
                site_gene, genes = sp.identity(adata.n_vars, dtype=np.float32, format="csr"), adata.var_names
            gene_level[modality] = (sp.csr_matrix(site_gene * METHYLATION_SIGN, dtype=np.float32), genes)
            continue
        if kinds[modality] == RNA:
            gene_level[modality] = (
                sp.identity(adata.n_vars, dtype=np.float32, format="csr"),
                adata.var_names,
            )
            continue
        universe = np.concatenate([np.asarray(names) for _, names in gene_level.values()] or [[]])
        genes = antibody_genes(adata.var_names, universe, protein_to_gene)
        mapped = np.flatnonzero(pd.notna(genes))
        unmapped = list(adata.var_names[pd.isna(genes)])
        logger.info(
            "modality %r: %d of %d antibodies mapped to genes of the other modalities; left out of the "
            "common-gene view (no target gene known or measured; protein_to_gene= maps more): %s",
            modality,
            mapped.size,
            adata.n_vars,
            ", ".join(unmapped) or "none",
        )
        selection = sp.csr_matrix(
            (np.ones(mapped.size, dtype=np.float32), (mapped, np.arange(mapped.size))),
            shape=(adata.n_vars, mapped.size),
        )
        gene_level[modality] = (selection, pd.Index(genes[mapped]))
    return _restrict_to_common_genes(mdata, modalities, gene_level)


def _restrict_to_common_genes(
    mdata: MuData, modalities: list[str], gene_level: dict
) -> tuple[pd.Index, dict[str, sp.csr_matrix]]:
    keyed = {}
    for modality in modalities:
        feature_map, genes = gene_level[modality]
        keys = pd.Index(genes).astype(str).str.upper()
        summed, unique_keys = aggregate_columns(feature_map, keys)
        spelling = pd.Series(np.asarray(genes, dtype=object)).groupby(keys.to_numpy()).first()
        keyed[modality] = (summed, pd.Index(unique_keys), spelling)

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

    gene_names = pd.Index(keyed[modalities[0]][2].loc[common].to_numpy(), dtype=str)
    maps = {}
    for modality in modalities:
        summed, unique_keys, _ = keyed[modality]
        maps[modality] = sp.csr_matrix(summed[:, unique_keys.get_indexer(common)])
    return gene_names, maps
