"""Peak coordinates and the peak -> gene overlap matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ._annotation_files import is_annotation_file, read_gene_annotation

PEAK_NAME_FORMATS = ("chr1:100-200", "chr1-100-200", "chr1_100_200")
_PEAK_NAME_PATTERN = r"^(?P<chrom>.+?)[:\-_](?P<start>\d+)[\-_](?P<end>\d+)$"
_SITE_NAME_PATTERN = r"^(?P<chrom>(?:chr)?[0-9A-Za-z]+?)[:_](?P<position>\d+)$"
_COORDINATE_COLUMNS = ("chrom", "chromStart", "chromEnd")
# Chromosome codes are packed above the position bits so that all chromosomes can be searched
# in one sorted array; 2**34 bp exceeds every known chromosome.
_CHROM_SHIFT = np.int64(2**34)


def parse_peaks(atac_var_or_names: AnnData | pd.DataFrame | Sequence[str] | pd.Index) -> pd.DataFrame:
    """Genomic coordinates of ATAC peaks.

    Parameters
    ----------
    atac_var_or_names
        An ATAC AnnData, its ``var`` DataFrame, or peak names. When the ``var`` has columns
        ``chrom``, ``chromStart`` and ``chromEnd`` they are used; otherwise the names are
        parsed. Accepted name formats: ``chr1:100-200``, ``chr1-100-200`` and
        ``chr1_100_200``. Coordinates are taken as BED-like (0-based start, exclusive end).

    Returns
    -------
    pandas.DataFrame
        Columns ``chrom`` (str), ``start`` and ``end`` (int64), indexed by the peak names.

    Raises
    ------
    ValueError
        If some names cannot be parsed (up to 3 are shown) or a peak has ``end < start``.

    Examples
    --------
    >>> import crossomics as co
    >>> co.pp.parse_peaks(["chr1:100-200", "chrX-5-10"])
                 chrom  start  end
    chr1:100-200  chr1    100  200
    chrX-5-10     chrX      5   10
    """
    if isinstance(atac_var_or_names, AnnData):
        atac_var_or_names = atac_var_or_names.var
    if isinstance(atac_var_or_names, pd.DataFrame) and set(_COORDINATE_COLUMNS) <= set(
        atac_var_or_names.columns
    ):
        var = atac_var_or_names
        peaks = pd.DataFrame(
            {
                "chrom": var["chrom"].astype(str).to_numpy(),
                "start": var["chromStart"].to_numpy(dtype=np.int64),
                "end": var["chromEnd"].to_numpy(dtype=np.int64),
            },
            index=var.index.copy(),
        )
    else:
        names = (
            atac_var_or_names.index
            if isinstance(atac_var_or_names, pd.DataFrame)
            else pd.Index(atac_var_or_names)
        )
        peaks = _parse_peak_names(names)
    inverted = peaks.index[peaks["end"].to_numpy() < peaks["start"].to_numpy()]
    if len(inverted):
        raise ValueError(
            f"{len(inverted)} peaks end before they start, e.g. {list(inverted[:3])}; swap their start "
            "and end coordinates, or drop those peaks"
        )
    return peaks


def parse_sites(var_or_names: pd.DataFrame | Sequence[str] | pd.Index) -> pd.DataFrame:
    """Coordinates of methylation features: regions as :func:`parse_peaks` reads them, or
    single sites named ``chr1:12345`` / ``chr1_12345`` (the base at that position, 0-based).

    Returns a ``var``-like DataFrame with columns ``chrom``, ``chromStart``, ``chromEnd``
    indexed by the feature names, which :func:`peak_to_gene_matrix` accepts.
    """
    if isinstance(var_or_names, pd.DataFrame) and set(_COORDINATE_COLUMNS) <= set(var_or_names.columns):
        return var_or_names[list(_COORDINATE_COLUMNS)]
    names = var_or_names.index if isinstance(var_or_names, pd.DataFrame) else pd.Index(var_or_names)
    sites = names.astype(str).str.extract(_SITE_NAME_PATTERN)
    is_site = sites["chrom"].notna().to_numpy()
    regions = _parse_peak_names(names[~is_site])
    chrom = np.empty(len(names), dtype=object)
    start = np.empty(len(names), dtype=np.int64)
    end = np.empty(len(names), dtype=np.int64)
    chrom[is_site] = sites.loc[is_site, "chrom"].to_numpy()
    start[is_site] = sites.loc[is_site, "position"].to_numpy().astype(np.int64)
    end[is_site] = start[is_site] + 1
    chrom[~is_site] = regions["chrom"].to_numpy()
    start[~is_site] = regions["start"].to_numpy()
    end[~is_site] = regions["end"].to_numpy()
    return pd.DataFrame(
        {"chrom": chrom.astype(str), "chromStart": start, "chromEnd": end}, index=names.copy()
    )


def has_coordinates(var: pd.DataFrame) -> bool:
    """Whether features are genomic positions (coordinate columns, or every name a site or region)."""
    if set(_COORDINATE_COLUMNS) <= set(var.columns):
        return True
    text = var.index.astype(str)
    return bool(len(text)) and bool(
        (text.str.match(_SITE_NAME_PATTERN) | text.str.match(_PEAK_NAME_PATTERN)).all()
    )


def _parse_peak_names(names: pd.Index) -> pd.DataFrame:
    parts = names.astype(str).str.extract(_PEAK_NAME_PATTERN)
    unparsed = parts["chrom"].isna().to_numpy()
    if unparsed.any():
        examples = list(names[unparsed][:3])
        raise ValueError(
            f"cannot parse {int(unparsed.sum())} of {len(names)} peak names, e.g. {examples}; "
            f"accepted formats are {', '.join(PEAK_NAME_FORMATS)}, or pass a var DataFrame with "
            f"columns {', '.join(_COORDINATE_COLUMNS)}"
        )
    return pd.DataFrame(
        {
            "chrom": parts["chrom"].to_numpy(dtype=object).astype(str),
            "start": parts["start"].to_numpy().astype(np.int64),
            "end": parts["end"].to_numpy().astype(np.int64),
        },
        index=names.copy(),
    )


def resolve_annotation(annotation: pd.DataFrame | str) -> pd.DataFrame:
    """Return ``annotation`` itself, the genes of a GTF/GFF3 file, or the bundled one when given
    a genome name."""
    if is_annotation_file(annotation):
        return read_gene_annotation(annotation)
    if isinstance(annotation, str):
        from crossomics.datasets import gene_annotation

        return gene_annotation(annotation)
    missing = {"chrom", "start", "end", "strand"} - set(annotation.columns)
    if missing:
        raise ValueError(
            f"gene annotation lacks columns {sorted(missing)}; pass a genome name ('mm10', 'hg38') "
            "or a DataFrame like crossomics.datasets.gene_annotation() returns"
        )
    if not annotation.index.is_unique:
        duplicated = list(annotation.index[annotation.index.duplicated()][:3])
        raise ValueError(f"gene annotation index must hold unique gene names; duplicated: {duplicated}")
    return annotation


def gene_windows(
    annotation: pd.DataFrame, upstream: int = 2000, downstream: int = 0, gene_body: bool = True
) -> pd.DataFrame:
    """Strand-aware regulatory window of every gene, BED-like (``chrom``, ``start``, ``end``).

    With ``gene_body=True`` the window is the gene body extended by ``upstream`` bp before the
    TSS and ``downstream`` bp after the gene end; otherwise it is the promoter window
    ``[TSS - upstream, TSS + downstream]``. Starts are clipped at 0.
    """
    if upstream < 0 or downstream < 0:
        raise ValueError(f"upstream and downstream must be >= 0, got {upstream} and {downstream}")
    start = annotation["start"].to_numpy(dtype=np.int64)
    end = annotation["end"].to_numpy(dtype=np.int64)
    minus = annotation["strand"].astype(str).to_numpy() == "-"
    # BED end is exclusive: the last base of a '-' gene, i.e. its TSS, is end - 1
    tss = np.where(minus, end - 1, start)
    if gene_body:
        window_start = np.where(minus, start - downstream, start - upstream)
        window_end = np.where(minus, end + upstream, end + downstream)
    else:
        window_start = np.where(minus, tss - downstream, tss - upstream)
        window_end = np.where(minus, tss + upstream, tss + downstream) + 1
    return pd.DataFrame(
        {
            "chrom": annotation["chrom"].astype(str).to_numpy(),
            "start": np.maximum(window_start, 0),
            "end": window_end,
        },
        index=annotation.index,
    )


def canonical_chromosomes(chroms) -> np.ndarray:
    """Chromosome names with UCSC (``chr1``, ``chrM``) and Ensembl (``1``, ``MT``) styles made one.

    The ``chr`` prefix is dropped and the mitochondrial ``M`` becomes ``MT``, so peaks named
    ``1:100-200`` (Ensembl, as 10x writes for some references) meet a UCSC annotation.
    """
    names = (
        pd.Series(np.asarray(chroms, dtype=object))
        .astype(str)
        .str.replace(r"^chr", "", case=False, regex=True)
    )
    return names.replace({"M": "MT"}).to_numpy(dtype=object)


def _packed_positions(chrom_codes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return chrom_codes.astype(np.int64) * _CHROM_SHIFT + positions


def _overlapping_pairs(peaks: pd.DataFrame, windows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """All (peak, window) index pairs whose half-open intervals overlap, without Python loops.

    Peaks are sorted by start. A peak overlaps window ``[ws, we)`` when ``start < we`` and
    ``end > ws``; since ``end <= start + max_width``, only peaks with
    ``ws - max_width < start < we`` need checking, a contiguous run of the sorted peaks.
    """
    peak_chroms, window_chroms = (
        canonical_chromosomes(peaks["chrom"]),
        canonical_chromosomes(windows["chrom"]),
    )
    chroms = pd.Index(np.unique(np.concatenate([peak_chroms, window_chroms])))
    peak_start = _packed_positions(chroms.get_indexer(peak_chroms), peaks["start"].to_numpy())
    peak_end = peak_start + (peaks["end"].to_numpy() - peaks["start"].to_numpy())
    window_start = _packed_positions(chroms.get_indexer(window_chroms), windows["start"].to_numpy())
    window_end = window_start + (windows["end"].to_numpy() - windows["start"].to_numpy())

    order = np.argsort(peak_start, kind="stable")
    sorted_start = peak_start[order]
    max_width = int((peak_end - peak_start).max(initial=0))
    first = np.searchsorted(sorted_start, window_start - max_width, side="right")
    stop = np.searchsorted(sorted_start, window_end, side="left")
    n_candidates = np.maximum(stop - first, 0)

    window_of_candidate = np.repeat(np.arange(len(windows)), n_candidates)
    offset_in_run = np.arange(n_candidates.sum()) - np.repeat(
        np.cumsum(n_candidates) - n_candidates, n_candidates
    )
    peak_of_candidate = order[np.repeat(first, n_candidates) + offset_in_run]
    overlaps = peak_end[peak_of_candidate] > window_start[window_of_candidate]
    return peak_of_candidate[overlaps], window_of_candidate[overlaps]


def peak_to_gene_matrix(
    peaks: AnnData | pd.DataFrame | Sequence[str] | pd.Index,
    annotation: pd.DataFrame | str,
    upstream: int = 2000,
    downstream: int = 0,
    gene_body: bool = True,
) -> tuple[sp.csr_matrix, pd.Index]:
    """Binary peak x gene matrix: which peaks fall in each gene's regulatory window.

    A peak maps to a gene when it overlaps the gene body extended by ``upstream`` bp on the TSS
    side and ``downstream`` bp past the gene end (strand-aware), or, with
    ``gene_body=False``, the promoter window from ``upstream`` bp before to ``downstream`` bp
    after the TSS. Intervals are BED-like (0-based start, exclusive end).

    Parameters
    ----------
    peaks
        Anything :func:`parse_peaks` accepts: an ATAC AnnData, its ``var`` or peak names.
    annotation
        Gene bodies with columns ``chrom``, ``start``, ``end``, ``strand``, indexed by gene
        symbol (as :func:`crossomics.datasets.gene_annotation` returns), or a bundled genome
        name: ``"mm10"`` or ``"hg38"``.
    upstream, downstream
        Window extensions in bp (see above).
    gene_body
        Include the gene body (``True``) or only the promoter window (``False``).

    Returns
    -------
    matrix
        ``scipy.sparse.csr_matrix`` float32 of shape ``(n_peaks, n_genes)`` with ones where a
        peak maps to a gene.
    gene_names
        The genes of the columns, in annotation order. Genes without any peak are dropped.

    Raises
    ------
    ValueError
        For an unknown genome name, unparsable peaks, or when no peak overlaps any gene
        (usually a genome or chromosome-naming mismatch; the message lists both namings).

    Examples
    --------
    >>> import crossomics as co
    >>> atac = co.datasets.mouse_motor_cortex()["atac"]
    >>> matrix, genes = co.pp.peak_to_gene_matrix(atac, "mm10")
    >>> matrix.shape[0] == atac.n_vars
    True
    """
    annotation = resolve_annotation(annotation)
    peak_table = parse_peaks(peaks)
    windows = gene_windows(annotation, upstream=upstream, downstream=downstream, gene_body=gene_body)
    peak_index, gene_index = _overlapping_pairs(peak_table, windows)
    if peak_index.size == 0:
        raise ValueError(
            "no peak overlaps any gene window; check that peaks and annotation use the same genome "
            f"and chromosome names (peaks: {sorted(set(peak_table['chrom']))[:5]}, "
            f"annotation: {sorted(set(windows['chrom']))[:5]})"
        )
    kept_genes, gene_column = np.unique(gene_index, return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(peak_index.size, dtype=np.float32), (peak_index, gene_column)),
        shape=(len(peak_table), kept_genes.size),
    )
    return matrix, pd.Index(annotation.index[kept_genes])


def peak_overlap_map(
    query_peaks: AnnData | pd.DataFrame | Sequence[str] | pd.Index,
    reference_peaks: AnnData | pd.DataFrame | Sequence[str] | pd.Index,
) -> sp.csr_matrix:
    """Map peaks of one ATAC run onto the peaks of another by genomic overlap.

    Peak calling gives every 10x run its own peak set, so a query's peaks rarely share names
    with a reference's. Each query peak is assigned to the reference peak it overlaps most (in
    bp; the first such peak on a tie), so multiplying a query count matrix by the map sums the
    counts of all query peaks that fall on each reference peak and counts every read once.
    Query peaks that overlap no reference peak map nowhere.

    Parameters
    ----------
    query_peaks, reference_peaks
        Anything :func:`parse_peaks` accepts: an ATAC AnnData, its ``var`` or peak names.
        Both must use the same genome and chromosome names.

    Returns
    -------
    ``scipy.sparse.csr_matrix`` float32 of shape ``(n_query_peaks, n_reference_peaks)`` with at
    most one 1 per row: ``query_counts @ map`` are the query's counts on the reference peaks.

    Examples
    --------
    >>> import crossomics as co
    >>> mapping = co.pp.peak_overlap_map(["chr1:90-150", "chr1:160-210", "chr2:5-9"], ["chr1:100-200"])
    >>> mapping.toarray()
    array([[1.],
           [1.],
           [0.]], dtype=float32)
    """
    query = parse_peaks(query_peaks)
    reference = parse_peaks(reference_peaks)
    query_index, reference_index = _overlapping_pairs(query, reference)
    overlap = np.minimum(query["end"].to_numpy()[query_index], reference["end"].to_numpy()[reference_index])
    overlap = overlap - np.maximum(
        query["start"].to_numpy()[query_index], reference["start"].to_numpy()[reference_index]
    )
    # per query peak, the pair of largest overlap: sort by (query, -overlap, reference), keep the first
    order = np.lexsort((reference_index, -overlap, query_index))
    query_index, reference_index = query_index[order], reference_index[order]
    first = np.r_[True, query_index[1:] != query_index[:-1]] if query_index.size else np.zeros(0, bool)
    return sp.csr_matrix(
        (np.ones(int(first.sum()), dtype=np.float32), (query_index[first], reference_index[first])),
        shape=(len(query), len(reference)),
    )


def check_genome(peaks: AnnData | pd.DataFrame | Sequence[str] | pd.Index, annotation, where: str) -> None:
    """Refuse an annotation on which fewer than half of the peaks fall in a gene's window.

    ATAC peaks lie mostly in gene bodies and promoters: with the right genome most peaks
    overlap a gene window (2 kb upstream plus the body), with the other genome fewer than half
    (measured in ``docs/concepts.md``, "Where crossomics had to choose"). Below one half the
    error names the bundled genome that fits the peaks better, when one does.
    """
    from crossomics.datasets import gene_annotation

    peak_table = parse_peaks(peaks)

    def coverage(table: pd.DataFrame) -> float:
        hits, _ = _overlapping_pairs(peak_table, gene_windows(table, upstream=2000))
        return np.unique(hits).size / max(len(peak_table), 1)

    given = coverage(resolve_annotation(annotation))
    if given >= 0.5:
        return
    name = annotation if isinstance(annotation, str) else "the gene annotation given"
    others = {g: coverage(gene_annotation(g)) for g in ("mm10", "hg38")}
    best = max(others, key=others.get)
    if others[best] >= 0.5:
        hint = (
            f"with {best!r} {others[best]:.0%} do: the data look like {best}; pass gene_annotation={best!r}"
        )
    else:
        hint = (
            f"neither bundled genome fits better (mm10 {others['mm10']:.0%}, hg38 {others['hg38']:.0%}); "
            "check the genome and chromosome names, or pass the matching gene-body table"
        )
    raise ValueError(
        f"only {given:.0%} of the {len(peak_table)} peaks of {where} overlap a gene of {name} (a gene "
        f"body or the 2 kb upstream of it; with the right genome it is most peaks); {hint}"
    )
