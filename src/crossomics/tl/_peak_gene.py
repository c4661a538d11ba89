"""Correlation of gene expression with the accessibility of nearby peaks (cis-regulatory inference)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy.stats import rankdata

from crossomics._validation import check_nonnegative, check_number, get_matrix
from crossomics.pp import parse_peaks, peak_to_gene_matrix
from crossomics.pp._normalize import log_normalize
from crossomics.pp._peaks import resolve_annotation

PAIR_CHUNK = 200_000
"""Gene-peak pairs correlated at once; bounds the temporary groups x pairs arrays."""


def _window_pairs(rna: AnnData, atac: AnnData, annotation: pd.DataFrame, distance: int) -> pd.DataFrame:
    """All (gene, peak) pairs with the peak within ``distance`` bp of the gene's TSS."""
    annotation = annotation.loc[annotation.index.isin(rna.var_names)]
    if annotation.empty:
        raise ValueError(
            f"no gene of rna.var_names is in the annotation (e.g. {list(rna.var_names[:3])}); "
            "check the genome and that var_names are gene symbols"
        )
    overlaps, genes = peak_to_gene_matrix(
        atac.var, annotation, upstream=distance, downstream=distance, gene_body=False
    )
    peak_index, gene_index = overlaps.tocsc().nonzero()
    return pd.DataFrame(
        {"gene": np.asarray(genes)[gene_index], "peak": np.asarray(atac.var_names)[peak_index]}
    )


def _signed_distances(pairs: pd.DataFrame, atac: AnnData, annotation: pd.DataFrame) -> np.ndarray:
    """Peak centre minus TSS in the gene's direction (negative = upstream); NaN for unknown genes."""
    known = pairs["gene"].isin(annotation.index).to_numpy()
    distances = np.full(len(pairs), np.nan)
    genes = annotation.loc[pairs["gene"][known]]
    minus = genes["strand"].astype(str).to_numpy() == "-"
    # BED end is exclusive, so a minus-strand gene starts transcription at end - 1
    tss = np.where(minus, genes["end"].to_numpy() - 1, genes["start"].to_numpy())
    peaks = parse_peaks(atac.var).loc[pairs["peak"][known]]
    centre = (peaks["start"].to_numpy() + peaks["end"].to_numpy()) // 2
    distances[known] = np.where(minus, tss - centre, centre - tss)
    return distances


def _standardised_columns(X: sp.spmatrix | np.ndarray, method: str) -> np.ndarray:
    """Columns ranked (Spearman) or not (Pearson), centred and scaled to unit norm; constant -> NaN."""
    dense = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    values = rankdata(dense, axis=0) if method == "spearman" else dense.astype(np.float64)
    centred = values - values.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return centred / np.where(norm > 0, norm, np.nan)


def peak_gene_correlation(
    rna: AnnData,
    atac: AnnData,
    annotation: pd.DataFrame | str | None,
    distance: int = 150_000,
    method: Literal["spearman", "pearson"] = "spearman",
    links: pd.DataFrame | None = None,
    layer: str | None = None,
    normalize: bool = True,
) -> pd.DataFrame:
    """Correlate each gene's expression with the accessibility of peaks near its TSS.

    MinNet's cis-regulatory inference: across matched observations, usually mini-bulks from
    :func:`crossomics.tl.minibulk` (optionally of :func:`crossomics.tl.knn_smooth`-ed counts),
    a gene and a peak with a high correlation suggest a regulatory link. Works with any joint
    embedding used to build the mini-bulks (MINNET, SCCROSS, true pairs).

    Parameters
    ----------
    rna
        Observations x genes counts, ``var_names`` gene symbols.
    atac
        Observations x peaks counts with the same ``obs_names`` in the same order as ``rna``
        (paired cells or matched mini-bulks); peak coordinates as :func:`crossomics.pp.parse_peaks`
        reads them.
    annotation
        Gene bodies (table or genome name ``"mm10"`` / ``"hg38"``) giving TSSs and strands. May be
        ``None`` when ``links`` is given; the ``distance`` column is then NaN.
    distance
        Window half-width around the TSS in bp (paper: 150 kb).
    method
        ``"spearman"`` (paper) or ``"pearson"``.
    links
        Optional DataFrame with ``gene`` and ``peak`` columns: correlate exactly these pairs
        instead of all pairs in the window (e.g. known or curated links).
    layer
        Layer holding the counts in both objects; ``None`` uses ``X``.
    normalize
        Scale each observation to 10,000 counts and ``log1p`` before correlating, so groups of
        different sizes are comparable. Turn off for already normalised data.

    Returns
    -------
    pandas.DataFrame
        One row per pair with columns ``gene``, ``peak``, ``distance`` (peak centre minus TSS in
        bp, in the gene's direction, negative upstream) and ``correlation`` (NaN when a feature
        is constant across observations).

    Examples
    --------
    >>> bulk_rna, bulk_atac = co.tl.minibulk([rna, atac], groupby="cell_type", use_rep="X_minnet")
    >>> links = co.tl.peak_gene_correlation(bulk_rna, bulk_atac, "mm10", distance=150_000)
    >>> links.sort_values("correlation", ascending=False).head()
    """
    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    if not rna.obs_names.equals(atac.obs_names):
        raise ValueError(
            "rna and atac must hold matched observations (same obs_names, same order), e.g. the two "
            "outputs of co.tl.minibulk([rna, atac], ...)"
        )
    if rna.n_obs < 3:
        raise ValueError(f"correlations need at least 3 matched observations, got {rna.n_obs}")
    check_number(distance, "distance", 150_000, low=0)
    distance = int(distance)  # bp; 1.5e5 is as good as 150_000
    if annotation is None and links is None:
        raise ValueError(
            "pass annotation= (to find peaks near each TSS) or links= (explicit gene-peak pairs)"
        )
    annotation = resolve_annotation(annotation) if annotation is not None else None
    if links is not None:
        missing = {"gene", "peak"} - set(links.columns)
        if missing:
            raise ValueError(
                f"links lacks columns {sorted(missing)}; pass a DataFrame with 'gene' and 'peak' columns"
            )
        pairs = links[["gene", "peak"]].reset_index(drop=True)
        pairs = pairs[pairs["gene"].isin(rna.var_names) & pairs["peak"].isin(atac.var_names)]
    else:
        pairs = _window_pairs(rna, atac, annotation, distance)
    if pairs.empty:
        raise ValueError("no gene-peak pair has both features in the data")

    matrices = []
    for data, name in ((rna, "rna"), (atac, "atac")):
        counts = get_matrix(data, layer, name=name)
        check_nonnegative(counts, name)
        matrices.append(log_normalize(counts) if normalize else counts)
    gene_columns, gene_of_pair = np.unique(rna.var_names.get_indexer(pairs["gene"]), return_inverse=True)
    peak_columns, peak_of_pair = np.unique(atac.var_names.get_indexer(pairs["peak"]), return_inverse=True)
    genes = _standardised_columns(sp.csc_matrix(matrices[0])[:, gene_columns], method)
    peaks = _standardised_columns(sp.csc_matrix(matrices[1])[:, peak_columns], method)
    correlation = np.concatenate(
        [
            np.einsum(
                "op,op->p",
                genes[:, gene_of_pair[start : start + PAIR_CHUNK]],
                peaks[:, peak_of_pair[start : start + PAIR_CHUNK]],
            )
            for start in range(0, len(pairs), PAIR_CHUNK)
        ]
    )
    result = pairs.reset_index(drop=True)
    result["distance"] = _signed_distances(result, atac, annotation) if annotation is not None else np.nan
    result["correlation"] = correlation
    return result
