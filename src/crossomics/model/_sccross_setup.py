"""Registration of a MuData for SCCROSS (``setup_mudata``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pandas as pd
from anndata import AnnData
from mudata import MuData

from crossomics import pp
from crossomics._constants import ATAC, MODALITY_KINDS
from crossomics.datasets._loaders import genome_from_var
from crossomics.model._registration import check_mudata, check_setup_kwargs, register_or_undo
from crossomics.model._sccross_checks import checked_modalities
from crossomics.model._sccross_inputs import (
    check_modality_data,
    data_manager,
    pair_rows,
    pairing_table,
)
from crossomics.nn._likelihoods import LIKELIHOODS
from crossomics.pp._annotation_files import annotation_argument
from crossomics.pp._common_genes import DEFAULT_LIKELIHOOD, has_genomic_features
from crossomics.pp._modality_kinds import infer_modality_kind

logger = logging.getLogger(__name__)


def _per_modality(value, modalities: Sequence[str], name: str, default=None) -> dict:
    """Expand a scalar or a mapping into ``{modality: value}``, rejecting unknown names."""
    if isinstance(value, Mapping):
        unknown = set(value) - set(modalities)
        if unknown:
            raise ValueError(
                f"{name} names modalities {sorted(unknown)} that are not in modalities={list(modalities)}"
            )
        return {m: value.get(m, default) for m in modalities}
    return dict.fromkeys(modalities, value if value is not None else default)


class SCCROSSSetupMixin:
    """``setup_mudata`` of :class:`crossomics.SCCROSS`."""

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        modalities: Sequence[str],
        layers: str | Mapping[str, str | None] | None = None,
        likelihoods: str | Mapping[str, str] | None = None,
        batch_keys: str | Mapping[str, str | None] | None = None,
        kinds: Mapping[str, str] | None = None,
        gene_annotation: str | pd.DataFrame | None = None,
        protein_to_gene: Mapping[str, str] | None = None,
        paired: bool | pd.DataFrame | Mapping[str, Sequence[str]] = True,
        **kwargs,
    ):
        """Register a MuData for SCCROSS.

        Every field lives on its own modality (``mod_key``), so unpaired and partly paired
        MuData work. The inputs are validated before anything is registered: a failed check
        leaves ``mdata`` untouched. Registration adds scvi-tools' ``_scvi_*`` columns to each
        modality's ``.obs`` (as every scvi-tools model does).

        Parameters
        ----------
        mdata
            The MuData.
        modalities
            Names of the K >= 2 modalities to integrate (keys of ``mdata.mod``).
        layers
            Layer holding the data, for all modalities (str) or per modality (mapping);
            ``None`` uses ``.X``.
        likelihoods
            ``"nb"`` (default; paper), ``"zinb"``, ``"bernoulli"`` (binarised ATAC or binary
            methylation calls), ``"ziln"`` (default for methylation rates) or ``"normal"``
            (continuous data), for all or per modality. Count likelihoods need non-negative
            integer data. With ``"normal"`` or ``"ziln"`` the data are used as given
            (log-normalised expression, TF-IDF, z-scores, rates): the MNN prior, the
            common-gene views and the gene-set scores map them to genes without normalising
            them again, and no raw counts are needed.
        batch_keys
            ``.obs`` column of batch labels, for all or per modality. Decoders get batch-specific
            scale, bias and dispersion (paper eq. 33-35).
        kinds
            What each modality holds (``"rna"``, ``"atac"``, ``"protein"`` or
            ``"methylation"``): chooses the input projection and the common-gene view of the
            MNN prior. Inferred from the modality names (``rna``/``gex``, ``atac``/``peaks``,
            ``adt``/``protein``, ``methylation``/``snmc``) when not given, else from peak-like
            features (:func:`crossomics.pp.common_gene_views` infers the same). Methylation
            features are genes (gene-level fractions) or CpG sites / bins (``chr1:12345``,
            ``chr1_12345``, ``chr1:100-200``), which are mapped to genes like peaks; in the
            common-gene view methylation enters negated, as it anti-correlates with expression.
        gene_annotation
            Genome (``"mm10"``/``"hg38"``, also ``"GRCm38"``/``"GRCh38"``), a GTF/GFF3 file
            (read with :func:`crossomics.pp.read_gene_annotation`; the model keeps the genes,
            not the path) or a gene-body table, needed when a modality is ATAC or methylation
            sites (gene activity for the MNN prior and the gene-set
            features). ``None`` reads the genome from ``var["genome"]`` (as 10x writes it) when
            the modalities name one. Setup fails, naming the likely genome, when fewer than
            half of the peaks overlap a gene of the annotation; chromosome names ``1`` and
            ``chr1`` are the same.
        protein_to_gene
            Antibody -> gene symbol table for protein modalities (default: name matching).
        paired
            Cells of two modalities that share an ``obs_name`` are one cell measured twice (true
            pairs: an alignment and a translation term). Setup logs how many there are, and
            training finds them again from the names, so a filtered modality never pairs the
            wrong cells. ``False`` treats every cell as unpaired, e.g. when names repeat across
            modalities by chance. An explicit pairing for cells named differently in each
            modality: a DataFrame (or dict of equally long lists) with one column of cell names
            per modality, one row per cell, missing where a cell lacks a modality.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_mudata(mdata, "SCCROSS")
        check_setup_kwargs(kwargs, cls.setup_mudata)
        modalities = checked_modalities(mdata, modalities)
        layers = _per_modality(layers, modalities, "layers")
        likelihoods = _per_modality(likelihoods, modalities, "likelihoods")
        batch_keys = _per_modality(batch_keys, modalities, "batch_keys")
        kinds = _per_modality(kinds, modalities, "kinds")
        if gene_annotation is None:
            gene_annotation = genome_from_var([mdata.mod[m] for m in modalities])
        else:
            gene_annotation = annotation_argument(gene_annotation)
        for m in modalities:
            adata = mdata.mod[m]
            kinds[m] = kinds[m] or infer_modality_kind(m, adata.var)
            if kinds[m] not in MODALITY_KINDS:
                raise ValueError(f"kinds[{m!r}]={kinds[m]!r}; choose one of {list(MODALITY_KINDS)}")
            likelihoods[m] = likelihoods[m] or DEFAULT_LIKELIHOOD[kinds[m]]
            if likelihoods[m] not in LIKELIHOODS:
                raise ValueError(f"likelihoods[{m!r}]={likelihoods[m]!r}; choose one of {list(LIKELIHOODS)}")
            positional = has_genomic_features(kinds[m], adata.var)
            if positional and gene_annotation is None:
                raise ValueError(
                    f"modality {m!r} is {kinds[m]} with genomic features: pass gene_annotation='mm10'/'hg38' "
                    "(or a gene-body table) so they can be mapped to genes for the MNN prior"
                )
            check_modality_data(m, adata, layers[m], likelihoods[m], batch_keys[m])
            if kinds[m] == ATAC:
                pp.check_genome(adata, gene_annotation, f"modality {m!r}")
        setup_method_args["setup_args"]["gene_annotation"] = gene_annotation
        adatas = {m: mdata.mod[m] for m in modalities}
        paired = pairing_table(paired, adatas, modalities)
        if paired is not False:
            explicit = None if paired is True else paired
            for (h, j), (rows, _) in pair_rows(adatas, modalities, explicit).items():
                source = "shared obs_names" if explicit is None else "explicit pairing"
                logger.info("%d cells are paired between %r and %r (%s)", len(rows), h, j, source)
        setup_method_args["setup_args"].update(
            modalities=modalities,
            layers=layers,
            likelihoods=likelihoods,
            batch_keys=batch_keys,
            kinds=kinds,
            paired=paired,
        )
        adata_manager = data_manager(modalities, layers, likelihoods, batch_keys, setup_method_args)
        register_or_undo(adata_manager, mdata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_anndata(cls, adata: AnnData, **kwargs):
        """Not supported: SCCROSS needs several modalities; use :meth:`setup_mudata`."""
        raise NotImplementedError(
            "SCCROSS integrates several modalities; build a MuData and call setup_mudata"
        )
