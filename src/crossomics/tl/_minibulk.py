"""Mini-bulks: cells of one cell type aggregated into groups that are contiguous in a joint embedding."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from crossomics._validation import check_positive_int, get_matrix

from ._smoothing import embedding_of

LEAF_SIZE = 16
"""Cells below which :func:`principal_order` stops splitting and sorts along the leading axis."""


def _leading_projection(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    # the leading right singular vector of the centred points is their first principal axis
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[0]


def principal_order(embedding: np.ndarray, leaf_size: int = LEAF_SIZE) -> np.ndarray:
    """Order cells so that neighbours in the embedding are neighbours in the order.

    Recursive bisection: split the cells at the median of their first principal axis, order
    each half the same way, and concatenate. This is a hierarchical (divisive) order, like the
    paper's hierarchical clustering, with O(n) memory and O(n log n) time instead of the
    O(n^2) pairwise distances of ``pdist``.

    Returns
    -------
    numpy.ndarray
        A permutation of ``range(n_cells)``.
    """
    order = []
    pending = [np.arange(embedding.shape[0])]
    while pending:
        cells = pending.pop()
        if cells.size <= leaf_size:
            order.append(
                cells[np.argsort(_leading_projection(embedding[cells]), kind="stable")]
                if cells.size > 1
                else cells
            )
            continue
        ranked = cells[np.argsort(_leading_projection(embedding[cells]), kind="stable")]
        half = ranked.size // 2
        # popped last-in first-out: the first half is processed (and emitted) first
        pending.extend([ranked[half:], ranked[:half]])
    return np.concatenate(order)


def _groups_per_type(counts: pd.DataFrame, n_groups: int) -> pd.Series:
    """Split ``n_groups`` over cell types in proportion to their cells (largest remainder).

    ``counts`` is types x modalities; a type gets at least one group and never more groups than
    it has cells in any modality.
    """
    total = counts.sum(axis=1)
    quota = n_groups * total / total.sum()
    allocation = np.floor(quota).astype(int)
    remainder = n_groups - allocation.sum()
    allocation[(quota - allocation).sort_values(ascending=False).index[:remainder]] += 1
    return allocation.clip(lower=1, upper=counts.min(axis=1))


def _cut(ranks: np.ndarray, n_groups: int) -> np.ndarray:
    """Group index of each cell when cells sorted by ``ranks`` are cut into equal consecutive parts."""
    position = np.empty(ranks.size, dtype=np.int64)
    position[np.argsort(ranks, kind="stable")] = np.arange(ranks.size)
    return position * n_groups // ranks.size


def _assign_groups(
    embeddings: list[np.ndarray], labels: list[np.ndarray], n_groups: int, groupby: str
) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Mini-bulk name of every cell of every input ("" when its type is skipped), and the groups."""
    sizes = [e.shape[0] for e in embeddings]
    input_of = np.repeat(np.arange(len(embeddings)), sizes)
    stacked, stacked_labels = np.vstack(embeddings), np.concatenate(labels)
    counts = pd.crosstab(stacked_labels, input_of).reindex(columns=range(len(embeddings)), fill_value=0)
    absent = counts.index[(counts == 0).any(axis=1)]
    if len(absent):
        warnings.warn(
            f"cell types {list(absent)} are missing from some inputs and get no mini-bulk",
            UserWarning,
            stacklevel=3,
        )
        counts = counts.drop(index=absent)
    group_of_cell = np.full(stacked_labels.size, "", dtype=object)
    names_all, types_all, positions_all = [], [], []
    for cell_type, n_type_groups in _groups_per_type(counts, n_groups).items():
        members = np.flatnonzero(stacked_labels == cell_type)
        names = np.array([f"{cell_type}_{k}" for k in range(n_type_groups)], dtype=object)
        rank = np.empty(members.size, dtype=np.int64)
        rank[principal_order(stacked[members])] = np.arange(members.size)
        # every input is cut at the same quantiles of the shared order, so groups match up
        for source in range(len(embeddings)):
            in_source = input_of[members] == source
            part = _cut(rank[in_source], n_type_groups)
            group_of_cell[members[in_source]] = names[part]
        names_all += list(names)
        types_all += [cell_type] * n_type_groups
        positions_all += list(range(n_type_groups))
    bounds = np.cumsum([0, *sizes])
    groups = [group_of_cell[start:stop] for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
    # built column by column so that any groupby name (even "group") is a plain column
    table = pd.DataFrame(
        {groupby: types_all, "position": positions_all}, index=pd.Index(names_all, name="group")
    )
    return groups, table


def _aggregate(
    adata: AnnData, layer: str | None, groups: np.ndarray, table: pd.DataFrame, aggregate: str
) -> AnnData:
    row = table.index.get_indexer(groups)
    kept = row >= 0
    membership = sp.csr_matrix(
        (np.ones(int(kept.sum()), dtype=np.float32), (row[kept], np.flatnonzero(kept))),
        shape=(len(table), adata.n_obs),
    )
    n_cells = np.asarray(membership.sum(axis=1)).ravel()
    profiles = membership @ sp.csr_matrix(get_matrix(adata, layer), dtype=np.float32)
    if aggregate == "mean":
        profiles = sp.diags(1.0 / np.maximum(n_cells, 1)).astype(np.float32) @ profiles
    obs = table.copy()
    obs["n_cells"] = n_cells.astype(np.int64)
    return AnnData(X=sp.csr_matrix(profiles, dtype=np.float32), obs=obs, var=adata.var.copy())


def minibulk(
    adata: AnnData | Sequence[AnnData],
    groupby: str,
    use_rep: str,
    n_groups: int = 100,
    layer: str | None = None,
    paired: bool = False,
    aggregate: Literal["sum", "mean"] = "sum",
    key_added: str | None = None,
) -> AnnData | list[AnnData]:
    """Aggregate cells into mini-bulks: groups of one cell type that are close in an embedding.

    MinNet builds ~100 mini-bulks of the aligned RNA and ATAC cells for correlating genes with
    peaks (:func:`crossomics.tl.peak_gene_correlation`). ``n_groups`` is split over the cell
    types in proportion to their cells. Within a cell type, cells are put in a hierarchical order
    along the embedding (recursive bisection on the principal axis, see :func:`principal_order`;
    memory linear in n) and cut into consecutive groups of equal size.

    With several inputs (modalities sharing one embedding space, e.g. unpaired RNA and ATAC in
    a MINNET co-embedding) the order is computed jointly and each input's cells are cut at the
    same quantiles of it, so group ``k`` of every input covers the same region and groups match
    one to one. With ``paired=True`` the inputs hold the same cells: cells are grouped once, on
    the first input's embedding, and every input is summed over the same cells (true-pair
    mini-bulks).

    Parameters
    ----------
    adata
        One AnnData or a list of AnnData (one per modality), each with ``obs[groupby]`` and
        ``obsm[use_rep]``.
    groupby
        Cell-type column; groups never mix cell types.
    use_rep
        Embedding key in ``obsm`` (shared space across inputs).
    n_groups
        Total number of mini-bulks (paper: 100); a cell type gets at least one and never more
        than its number of cells in any input. Types missing from an input are skipped.
    layer
        Layer with the counts to aggregate (e.g. ``"smoothed"`` from :func:`knn_smooth`);
        ``None`` uses ``X``.
    paired
        The inputs hold the same cells in the same order.
    aggregate
        ``"sum"`` or ``"mean"`` of the cells' profiles.
    key_added
        If given, each input's ``obs[key_added]`` receives its cells' mini-bulk names.

    Returns
    -------
    AnnData or list of AnnData
        Per input (a list when a list is given), groups x features float32 CSR profiles with the
        input's ``var``, ``obs_names`` like ``"<cell type>_<k>"`` (same names across inputs) and
        ``obs`` columns ``groupby`` (the cell type), ``position`` (index along the embedding order within the
        type) and ``n_cells``.

    Examples
    --------
    >>> rna.obsm["X_minnet"] = model.get_latent_representation("rna", adata=rna)
    >>> atac.obsm["X_minnet"] = model.get_latent_representation("atac", adata=atac)
    >>> bulk_rna, bulk_atac = co.tl.minibulk([rna, atac], groupby="cell_type", use_rep="X_minnet")
    """
    adatas = [adata] if isinstance(adata, AnnData) else list(adata)
    if not adatas:
        raise ValueError("adata is an empty list; pass at least one AnnData")
    check_positive_int(n_groups, "n_groups", 100)
    if aggregate not in ("sum", "mean"):
        raise ValueError(f"aggregate must be 'sum' or 'mean', got {aggregate!r}")
    if groupby in ("position", "n_cells"):
        raise ValueError(f"groupby={groupby!r} clashes with an output obs column; rename that column")
    for position, data in enumerate(adatas):
        if groupby not in data.obs:
            raise ValueError(
                f"input {position} has no obs column {groupby!r}; available: {list(data.obs.columns)}"
            )
        n_missing = int(data.obs[groupby].isna().sum())
        if n_missing:
            raise ValueError(
                f"{n_missing} cells have no label in obs[{groupby!r}] of input {position} (NaN); "
                "drop those cells or label them, since a mini-bulk never mixes cell types"
            )
    if paired and any(not data.obs_names.equals(adatas[0].obs_names) for data in adatas):
        raise ValueError("paired=True needs inputs with identical obs_names in the same order")
    # paired inputs are the same cells: group them once, on the first input's embedding
    grouped = adatas[:1] if paired else adatas
    embeddings = [embedding_of(data, use_rep) for data in grouped]
    if len({e.shape[1] for e in embeddings}) > 1:
        raise ValueError(
            f"obsm[{use_rep!r}] has different dimensions across inputs; they must share one embedding"
        )
    labels = [data.obs[groupby].astype(str).to_numpy() for data in grouped]
    groups, table = _assign_groups(embeddings, labels, n_groups, groupby)
    if paired:
        groups = groups * len(adatas)
    results = [
        _aggregate(data, layer, cell_groups, table, aggregate)
        for data, cell_groups in zip(adatas, groups, strict=True)
    ]
    if key_added is not None:
        for data, cell_groups in zip(adatas, groups, strict=True):
            data.obs[key_added] = pd.Categorical(np.where(cell_groups == "", None, cell_groups))
    return results[0] if isinstance(adata, AnnData) else results
