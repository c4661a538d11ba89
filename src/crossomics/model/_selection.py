"""Features and cell groups selected by name: genes to return or perturb, groups of an ``.obs``
column, and the groups a differential test compares."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from crossomics._validation import check_indices


def obs_labels(adata: AnnData, groupby: str, name: str) -> pd.Series:
    """:func:`group_labels` of the column ``groupby`` of ``adata.obs`` (``name`` names the data in errors)."""
    if groupby not in adata.obs:
        raise ValueError(f"{groupby!r} is not a column of {name}.obs; available: {list(adata.obs.columns)}")
    return group_labels(adata.obs[groupby])


def group_labels(values: pd.Series) -> pd.Series:
    """Labels as strings for matching a group name; missing labels stay missing, so a cell
    without a label never joins a group (``astype(str)`` alone would make them a group "nan")."""
    return values.astype(str).where(values.notna(), None)


def selected_genes(genes, features: pd.Index, modality: str, argument: str = "genes") -> list:
    """Selected features: all (``None``), one name, or a list of distinct feature names."""
    if genes is None:
        return list(features)
    gene_list = [genes] if isinstance(genes, str) else list(genes)
    if not gene_list:
        raise ValueError(
            f"{argument}={genes!r} selects no gene; pass at least one gene name, or {argument}=None for all"
        )
    missing = [g for g in gene_list if g not in features]
    if missing:
        raise ValueError(
            f"{len(missing)} genes are not features of {modality!r}: {missing[:5]}; pass names from "
            f"model.feature_names_[{modality!r}]"
        )
    names = pd.Index(gene_list)
    repeated = list(names[names.duplicated()].unique())
    if repeated:
        raise ValueError(f"{argument} lists {repeated[0]!r} twice; list each gene once")
    return gene_list


def compared_groups(
    adata: AnnData, source: str, groupby, group1, group2, idx1, idx2, measured: np.ndarray
) -> list[tuple[str, np.ndarray, str, np.ndarray]]:
    """``(label1, rows1, label2, rows2)`` per tested group, rows among the measured cells only."""
    n_cells = adata.n_obs
    if idx1 is not None:
        if groupby is not None or group1 is not None or group2 is not None:
            raise ValueError("give the groups either as idx1/idx2 or as groupby/group1/group2, not both")
        rows1 = check_indices(idx1, n_cells, f"idx1 (cells of {source!r})")
        rows2 = (
            np.setdiff1d(np.arange(n_cells), rows1)
            if idx2 is None
            else check_indices(idx2, n_cells, f"idx2 (cells of {source!r})")
        )
        return [
            _checked_pair(
                "idx1", rows1[measured[rows1]], "idx2" if idx2 is not None else "Rest", rows2[measured[rows2]]
            )
        ]
    if idx2 is not None:
        raise ValueError("idx2 needs idx1; pass both, or use groupby/group1/group2")
    if groupby is None:
        raise ValueError("pass groupby= (an .obs column of the cells) or idx1= to define the groups")
    if groupby not in adata.obs:
        raise ValueError(
            f"groupby={groupby!r} is not an .obs column of the {source!r} cells; columns: {list(adata.obs.columns)}"
        )
    labels = group_labels(adata.obs[groupby]).to_numpy()
    present = pd.unique(labels[pd.notna(labels)])
    if group1 is None:
        group1 = list(adata.obs[groupby].astype("category").cat.categories.astype(str))
        group1 = [g for g in group1 if g in set(present)]
        if len(group1) < 2:
            raise ValueError(f"column {groupby!r} has only the group(s) {group1}; a test needs two")
    group1 = [group1] if isinstance(group1, str) else [str(g) for g in group1]
    for group in [*group1, *([] if group2 is None else [str(group2)])]:
        if group not in set(present):
            raise ValueError(f"group {group!r} is not in column {groupby!r}; groups: {sorted(present)}")
    pairs = []
    for group in group1:
        rows1 = np.flatnonzero((labels == group) & measured)
        if group2 is None:
            rows2 = np.flatnonzero((labels != group) & pd.notna(labels) & measured)
            pairs.append(_checked_pair(group, rows1, "Rest", rows2))
        else:
            pairs.append(
                _checked_pair(group, rows1, str(group2), np.flatnonzero((labels == str(group2)) & measured))
            )
    return pairs


def _checked_pair(label1: str, rows1: np.ndarray, label2: str, rows2: np.ndarray):
    for label, rows in ((label1, rows1), (label2, rows2)):
        if not len(rows):
            raise ValueError(f"group {label!r} has no cells with counts; a test needs cells in both groups")
    if np.intersect1d(rows1, rows2).size:
        raise ValueError(f"groups {label1!r} and {label2!r} share cells; pass disjoint groups")
    return label1, rows1, label2, rows2
