"""Gene activity: ATAC peak counts summed over each gene's regulatory window."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from crossomics._validation import check_counts, get_matrix

from ._normalize import as_float32_csr
from ._peaks import peak_to_gene_matrix, resolve_annotation


def gene_activity(
    atac: AnnData,
    annotation: pd.DataFrame | str,
    upstream: int = 2000,
    downstream: int = 0,
    gene_body: bool = True,
    layer: str | None = None,
) -> AnnData:
    """Cells x genes activity counts from ATAC peak counts.

    The activity of a gene in a cell is the sum of the cell's counts over all peaks that
    overlap the gene's window (``counts @ peak_to_gene_matrix``), the gene-centric view the
    paper uses for gene sets and the common-gene MNN prior. A peak inside several windows
    counts for each gene.

    Parameters
    ----------
    atac
        Cells x peaks AnnData with raw counts; peak coordinates come from :func:`parse_peaks`.
        Not modified.
    annotation
        Gene bodies (see :func:`peak_to_gene_matrix`) or a bundled genome name,
        ``"mm10"`` or ``"hg38"``.
    upstream, downstream, gene_body
        Window definition, see :func:`peak_to_gene_matrix`.
    layer
        Layer holding the counts; ``None`` uses ``X``.

    Returns
    -------
    AnnData
        New object with float32 CSR counts in ``X``, ``obs`` copied from ``atac``, gene symbols
        as ``var_names`` (genes without any peak are dropped) and ``var`` columns ``chrom``,
        ``start``, ``end``, ``strand`` (the gene body) and ``n_peaks``.

    Raises
    ------
    ValueError
        If the data are not raw counts, the genome is unknown, or no peak overlaps a gene.

    Examples
    --------
    >>> import crossomics as co
    >>> atac = co.datasets.mouse_motor_cortex()["atac"]
    >>> activity = co.pp.gene_activity(atac, "mm10")
    >>> activity.n_obs == atac.n_obs
    True
    """
    counts = get_matrix(atac, layer, name="atac")
    where = f"atac layer {layer!r}" if layer is not None else "atac.X"
    check_counts(
        counts, where, hint=" for gene activity (pass layer= naming the raw peak counts, if you keep them)"
    )
    annotation = resolve_annotation(annotation)
    peak_gene, genes = peak_to_gene_matrix(
        atac.var, annotation, upstream=upstream, downstream=downstream, gene_body=gene_body
    )
    var = annotation.loc[genes, ["chrom", "start", "end", "strand"]].copy()
    var["n_peaks"] = np.diff(peak_gene.tocsc().indptr).astype(np.int64)
    return AnnData(X=as_float32_csr(counts) @ peak_gene, obs=atac.obs.copy(), var=var)
