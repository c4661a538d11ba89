from __future__ import annotations

from importlib import resources
from pathlib import Path

import anndata as ad
import mudata as md
import pandas as pd

from ._gmt import read_gmt

_GENOME_ALIASES = {"mm10": "mm10", "grcm38": "mm10", "hg38": "hg38", "grch38": "hg38"}


def _data_path(*parts: str) -> Path:
    path = Path(str(resources.files("crossomics.datasets").joinpath("data", *parts)))
    if not path.exists():
        raise FileNotFoundError(
            f"bundled data file {path} is missing; reinstall crossomics (the data ship inside the package)"
        )
    return path


def _read_mudata(filename: str) -> md.MuData:
    # Without this mudata copies every modality column into mdata.obs as 'rna:...'.
    with md.set_options(pull_on_update=False):
        mdata = md.read_h5mu(_data_path(filename))
    return mdata


def mouse_motor_cortex() -> md.MuData:
    """Adult mouse cerebral cortex, SNARE-seq (paired RNA + ATAC in the same nuclei).

    10,309 cells; modality ``rna`` (1,677 genes) and ``atac`` (25,734 peaks, ``var`` columns
    ``chrom``, ``chromStart``, ``chromEnd`` and ``linked_gene``). ``X`` holds raw int32 counts.
    ``obs`` of each modality carries ``batch`` (12 libraries), ``cell_type`` (15) and
    ``cell_subtype`` (23).

    Source: Chen, Lake & Zhang, Nat Biotechnol 37 (2019), as processed by scMoMaT
    (Zhang et al., Nat Commun 14, 2023); MIT licence.

    Examples
    --------
    >>> import crossomics as co
    >>> mdata = co.datasets.mouse_motor_cortex()
    >>> mdata.mod["atac"].shape
    (10309, 25734)
    """
    return _read_mudata("mop_snare2.h5mu")


def bmmc_multiome() -> md.MuData:
    """Human bone-marrow mononuclear cells, 10x Multiome starter subset (NeurIPS 2021).

    500 paired cells; ``rna`` (600 genes) and ``atac`` (600 peaks named ``chr-start-end``).
    ``obs``: ``cell_type`` (21) and ``batch`` (2 donors). Raw int32 counts. MIT licence.
    """
    return _read_mudata("bmmc_multiome_starter.h5mu")


def bmmc_cite() -> md.MuData:
    """Human bone-marrow mononuclear cells, CITE-seq starter subset (NeurIPS 2021).

    600 paired cells; ``rna`` (1,000 genes) and ``adt`` (134 antibody-derived tags).
    ``obs``: ``cell_type`` and ``batch``. Raw int32 counts. MIT licence.
    """
    return _read_mudata("bmmc_cite_starter.h5mu")


def pbmc_mosaic() -> md.MuData:
    """Human PBMC CITE-seq arranged as a mosaic: RNA-only, protein-only and paired batches.

    1,600 cells in 4 batches of 400 (``obs['batch']``):

    - ``p1_0``: RNA only;
    - ``p2_0``: protein only;
    - ``p3_0`` and ``p4_0``: RNA and protein of the same cells (800 pairs).

    Modality ``rna`` holds 1,200 cells x 500 highly variable genes (symbols), ``adt`` 1,200
    cells x 224 antibody-derived tags named by antibody in lower case (``cd62p``, ``hla.dr``,
    numbered clones ``cd4.1``/``cd4.2``); :func:`crossomics.pp.common_gene_views` maps them to
    genes. Paired cells share ``obs_names``, so SCCROSS pairs them and the other cells
    stay unpaired. ``obs`` of each modality and of the MuData: ``batch`` and ``cell_type`` (8:
    CD4 T, Mono, CD8 T, NK, B, other T, DC, other). Raw int32 counts. All cells and features
    of the source are kept.

    Source: Hao et al., Cell 184 (2021), as arranged by MIDAS (He et al., Nat Biotechnol
    2024); MIT licence. See ``docs/data.md``.

    Examples
    --------
    >>> import crossomics as co
    >>> mdata = co.datasets.pbmc_mosaic()
    >>> mdata.shape, mdata.mod["rna"].shape, mdata.mod["adt"].shape
    ((1600, 724), (1200, 500), (1200, 224))
    >>> co.SCCROSS.setup_mudata(mdata, modalities=["rna", "adt"], batch_keys="batch")
    """
    return _read_mudata("pbmc_mosaic_cite.h5mu")


def pbmc_ifnb() -> ad.AnnData:
    """Kang et al. 2018 IFN-beta stimulated PBMC, 832-cell subset (RNA only).

    ``obs``: ``condition`` (CTRL / STIM) and ``cell_type`` (6). 14,053 genes, raw int32
    counts. MIT licence (seuratTools package).
    """
    return ad.read_h5ad(_data_path("kang_ifnb1k.h5ad"))


def genome_name(genome: str) -> str:
    """The bundled genome a name refers to: ``"mm10"`` or ``"hg38"``.

    Accepts the UCSC and GRC names in any case, with 10x's release suffix (``GRCh38``,
    ``GRCh38-2020-A``, ``GRCm38``, ``mm10-2020-A``: what 10x writes into ``var["genome"]``).
    """
    key = str(genome).strip().lower()
    for prefix, name in _GENOME_ALIASES.items():
        if key == prefix or key.startswith(prefix + "-"):
            return name
    raise ValueError(
        f"unknown genome {genome!r}; bundled annotations exist for mm10 (GRCm38) and hg38 (GRCh38). "
        "For another genome pass a gene-body table (columns chrom, start, end, strand, indexed by gene)"
    )


def genome_from_var(adatas) -> str | None:
    """The bundled genome named by the ``var["genome"]`` columns of ``adatas``, if they agree on one."""
    names = set()
    for adata in adatas:
        if "genome" in adata.var:
            names.update(adata.var["genome"].dropna().astype(str).unique())
    if len(names) != 1:
        return None
    try:
        return genome_name(names.pop())
    except ValueError:
        return None


def gene_annotation(genome: str) -> pd.DataFrame:
    """Gene bodies for ``"mm10"`` or ``"hg38"`` (also named ``"GRCm38"`` / ``"GRCh38"``).

    Returns a DataFrame indexed by unique gene symbol with columns ``chrom`` (UCSC style),
    ``start`` (0-based), ``end`` (half-open) and ``strand`` (``+``/``-``).

    Examples
    --------
    >>> ann = co.datasets.gene_annotation("mm10")
    >>> ann.loc["Gapdh", ["chrom", "strand"]].tolist()
    ['chr6', '-']
    """
    genome = genome_name(genome)
    table = pd.read_csv(
        _data_path("annotations", f"{genome}_genes.tsv.gz"),
        sep="\t",
        dtype={"chrom": str, "start": "int64", "end": "int64", "strand": str, "gene_name": str},
    )
    table = table.set_index("gene_name")
    table.index.name = None
    table.attrs["genome"] = genome
    return table


def go_biological_process() -> dict[str, list[str]]:
    """GO Biological Process gene sets (human symbols), 6,482 sets of 10-499 genes.

    Returns a dict mapping ``"GO:xxxxxxx term name"`` to its gene symbols, read with
    :func:`crossomics.pp.read_gmt`. Built from org.Hs.eg.db / GO.db 3.16.0; CC BY 4.0.
    For mouse data, :func:`crossomics.pp.gene_set_scores` matches symbols case-insensitively.
    """
    return read_gmt(_data_path("genesets", "go_bp_human_10_500.gmt.gz"))
