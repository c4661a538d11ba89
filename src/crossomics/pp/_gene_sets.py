"""Gene sets: sparse gene x set membership and per-cell set scores (``read_gmt`` lives in
``datasets``, beside the bundled GMT file, and is re-exported here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from crossomics._validation import check_counts, get_matrix

from ._normalize import log_normalize


def gene_set_membership(
    var_names: Sequence[str] | pd.Index,
    gene_sets: Mapping[str, Sequence[str]],
    min_size: int = 10,
    max_size: int = 500,
    case_sensitive: bool = False,
) -> tuple[sp.csr_matrix, pd.Index]:
    """Sparse feature x gene-set membership matrix (paper eq. 1, the binary matrix).

    Parameters
    ----------
    var_names
        Feature (gene) names of the data.
    gene_sets
        Set name -> gene symbols, e.g. from :func:`crossomics.pp.read_gmt`.
    min_size, max_size
        Keep sets whose number of **matched** features lies in ``[min_size, max_size]``.
    case_sensitive
        By default symbols match case-insensitively, so human sets (``GAPDH``) work on mouse
        genes (``Gapdh``).

    Returns
    -------
    membership
        ``scipy.sparse.csr_matrix`` float32 of shape ``(n_features, n_sets)``; 1 where the
        feature belongs to the set. A set symbol matching several features marks all of them.
    set_names
        Names of the kept sets, in the order of ``gene_sets``.

    Examples
    --------
    >>> import crossomics as co
    >>> membership, names = co.pp.gene_set_membership(
    ...     ["Gapdh", "Actb", "Cd4"], {"a": ["GAPDH", "CD4"], "b": ["XIST"]}, min_size=1
    ... )
    >>> membership.toarray(), list(names)
    (array([[1.],
           [0.],
           [1.]], dtype=float32), ['a'])
    """
    features = pd.Index(var_names).astype(str)
    set_names = pd.Index(list(gene_sets.keys()))
    sizes = np.fromiter((len(genes) for genes in gene_sets.values()), dtype=np.int64, count=len(gene_sets))
    set_genes = pd.Series(np.concatenate([np.asarray(g, dtype=object) for g in gene_sets.values()] or [[]]))
    set_of_gene = np.repeat(np.arange(len(gene_sets)), sizes)
    feature_keys = pd.Series(features)
    if not case_sensitive:
        set_genes = set_genes.str.upper()
        feature_keys = feature_keys.str.upper()
    pairs = pd.DataFrame({"set": set_of_gene, "key": set_genes.to_numpy()}).merge(
        pd.DataFrame({"feature": np.arange(len(features)), "key": feature_keys.to_numpy()}), on="key"
    )
    pairs = pairs.drop_duplicates(["feature", "set"])
    matched = np.bincount(pairs["set"].to_numpy(dtype=np.int64), minlength=len(gene_sets))
    kept = np.flatnonzero((matched >= min_size) & (matched <= max_size))
    column_of_set = np.full(len(gene_sets), -1)
    column_of_set[kept] = np.arange(kept.size)
    pairs = pairs[column_of_set[pairs["set"].to_numpy(dtype=np.int64)] >= 0]
    membership = sp.csr_matrix(
        (
            np.ones(len(pairs), dtype=np.float32),
            (pairs["feature"].to_numpy(dtype=np.int64), column_of_set[pairs["set"].to_numpy(dtype=np.int64)]),
        ),
        shape=(len(features), kept.size),
    )
    return membership, set_names[kept]


def gene_set_scores(
    adata: AnnData,
    gene_sets: Mapping[str, Sequence[str]],
    layer: str | None = None,
    min_size: int = 10,
    max_size: int = 500,
    key_added: str = "X_gene_sets",
    copy: bool = False,
) -> AnnData | None:
    """Per-cell gene-set scores: the mean log-normalised expression of each set's genes.

    ``scores = log1p(normalize_total(counts, 1e4)) @ membership / set_size``. The paper's
    eq. 1 is the plain product with the binary membership matrix; dividing by the number of
    matched genes keeps large and small sets on the same scale, so set size does not dominate
    the encoder input. For ATAC, score the output of :func:`gene_activity`.

    Parameters
    ----------
    adata
        Cells x genes AnnData with raw counts (expression or gene activity).
    gene_sets
        Set name -> gene symbols, e.g. :func:`crossomics.datasets.go_biological_process`.
    layer
        Layer holding the counts; ``None`` uses ``X``.
    min_size, max_size
        Size filter on the matched genes, see :func:`gene_set_membership`.
    key_added
        ``obsm`` key for the float32 ``(n_cells, n_sets)`` scores; the set names go to
        ``uns[key_added + "_names"]``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    AnnData or None
        A copy with the scores when ``copy=True``; otherwise ``None`` and ``adata`` gains
        ``obsm[key_added]`` and ``uns[key_added + "_names"]`` (its only changes).

    Raises
    ------
    ValueError
        If the data are not counts or no gene set passes the size filter.

    Examples
    --------
    >>> import crossomics as co
    >>> rna = co.datasets.mouse_motor_cortex()["rna"]
    >>> co.pp.gene_set_scores(rna, co.datasets.go_biological_process(), min_size=5)
    >>> rna.obsm["X_gene_sets"].shape[1] == len(rna.uns["X_gene_sets_names"])
    True
    """
    counts = get_matrix(adata, layer)
    check_counts(counts, "adata" if layer is None else f"adata layer {layer!r}", hint=" for gene-set scores")
    membership, set_names = gene_set_membership(
        adata.var_names, gene_sets, min_size=min_size, max_size=max_size
    )
    if not len(set_names):
        raise ValueError(
            f"no gene set has between {min_size} and {max_size} genes among the {adata.n_vars} features; "
            "check that var_names are gene symbols, or lower min_size"
        )
    set_sizes = np.asarray(membership.sum(axis=0), dtype=np.float32).ravel()
    scores = log_normalize(counts) @ membership
    scores = np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32) / set_sizes
    target = adata.copy() if copy else adata
    target.obsm[key_added] = scores
    target.uns[f"{key_added}_names"] = np.asarray(set_names, dtype=object)
    return target if copy else None
