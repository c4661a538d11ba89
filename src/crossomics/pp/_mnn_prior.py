"""The common-gene MNN prior of scCross (paper eq. 21), optionally on meta-cells."""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from itertools import pairwise
from typing import Literal

import numpy as np
import pandas as pd
from mudata import MuData
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA, TruncatedSVD

from crossomics._validation import check_positive_int

from ._common_genes import common_gene_views
from ._mnn import cosine_normalize, mnn_correct
from ._normalize import aggregate_rows, column_moments, gene_level_expression, scale_rows, standardize_columns

AUTO_METACELL_MIN_CELLS = 50_000
"""With ``n_metacells="auto"``, meta-cells are used when all modalities together exceed this."""
AUTO_CELLS_PER_METACELL = 10
AUTO_MAX_METACELLS = 20_000
_METACELL_SVD_COMPONENTS = 30


def _auto_metacells(
    n_cells: dict[str, int], n_metacells: int | Literal["auto"] | None
) -> dict[str, int | None]:
    if n_metacells is None:
        return dict.fromkeys(n_cells)
    if n_metacells == "auto":
        if sum(n_cells.values()) <= AUTO_METACELL_MIN_CELLS:
            return dict.fromkeys(n_cells)
        return {
            m: min(AUTO_MAX_METACELLS, math.ceil(n / AUTO_CELLS_PER_METACELL)) for m, n in n_cells.items()
        }
    if isinstance(n_metacells, str) or n_metacells < 1:
        raise ValueError(f"n_metacells must be None, 'auto' or a positive int, got {n_metacells!r}")
    return {m: n_metacells if n_metacells < n else None for m, n in n_cells.items()}


def metacell_labels(counts, n_metacells: int, random_state: int = 0, normalized: bool = False) -> np.ndarray:
    """Meta-cell of every cell: k-means on the top SVD components of log-normalised counts.

    Mini-batch k-means (``n_metacells`` clusters, one initialisation) runs on the first 30
    truncated-SVD components of ``log1p(normalize_total(counts, 1e4))``. The SVD works on the
    sparse matrix (no centring, no dense copy) and mini-batch k-means scales linearly with the
    cells, which is what atlas-scale data need. The paper clusters with Leiden instead; k-means
    lets the caller choose the number of meta-cells.

    Parameters
    ----------
    counts
        Cells x features counts, sparse or dense. Not modified.
    normalized
        ``counts`` already holds normalised values, used as they are instead of
        log-normalised.
    n_metacells
        Number of clusters; fewer labels are returned when clusters end up empty.
    random_state
        Seed of the SVD and k-means.

    Returns
    -------
    numpy.ndarray
        Integer label per cell, from 0 to the number of non-empty clusters minus one.

    Examples
    --------
    >>> import crossomics as co
    >>> rna = co.datasets.mouse_motor_cortex()["rna"]
    >>> labels = co.pp.metacell_labels(rna.X, n_metacells=500)
    >>> labels.shape, int(labels.max()) < 500
    ((10309,), True)
    """
    check_positive_int(n_metacells, "n_metacells", 500)
    expression = gene_level_expression(counts, normalized)
    n_components = max(1, min(_METACELL_SVD_COMPONENTS, min(expression.shape) - 1))
    embedding = TruncatedSVD(n_components=n_components, random_state=random_state).fit_transform(expression)
    kmeans = MiniBatchKMeans(n_clusters=n_metacells, random_state=random_state, n_init=1, batch_size=4096)
    labels = kmeans.fit_predict(embedding)
    return np.unique(labels, return_inverse=True)[1]


def _highly_variable_columns(expressions: list, n_hvg: int) -> np.ndarray:
    """The ``n_hvg`` columns with the best mean rank of log-expression variance over the views.

    Plain variance of log-normalised values is used rather than scanpy's normalised dispersion:
    on the sparse mouse cortex views the dispersion ranking did no better than random genes,
    the variance ranking did (measured in ``docs/concepts.md``, "Common-gene MNN prior").
    """
    ranks = [np.argsort(np.argsort(-column_moments(e)[1], kind="stable")) for e in expressions]
    return np.sort(np.argsort(np.mean(ranks, axis=0), kind="stable")[:n_hvg])


def mnn_prior(
    mdata: MuData,
    modalities: Sequence[str],
    kinds: Mapping[str, str] | None = None,
    gene_annotation: pd.DataFrame | str | None = None,
    protein_to_gene: Mapping[str, str] | pd.Series | None = None,
    layers: Mapping[str, str | None] | None = None,
    normalized: Collection[str] = (),
    n_comps: int = 50,
    k: int = 20,
    sigma: float = 1.0,
    n_hvg: int | None = 2000,
    n_metacells: int | Literal["auto"] | None = None,
    random_state: int = 0,
    key_added: str | None = None,
) -> dict[str, np.ndarray]:
    """Common-gene MNN prior ``G = PCA(MNN_CORRECT(x_1, ..., x_K))`` (paper eq. 21).

    1. :func:`common_gene_views` gives every modality as counts over the shared genes
       (RNA itself, ATAC gene activity, antibodies mapped to genes).
    2. Each view is log-normalised (``log1p`` of counts scaled to 1e4 per cell); when more
       than ``n_hvg`` genes are shared, the genes with the best mean rank (over the
       modalities) of the variance of their log-normalised values are kept. Each view is then standardised per gene
       (clipped at 10), which removes the modality-specific scale of expression vs. activity,
       and cosine-normalised per cell.
    3. All cells are projected on a joint PCA (``n_comps`` components) and
       :func:`mnn_correct` aligns the modalities there, in the order of ``modalities`` (the
       first is the reference). Searching neighbours in PCA space rather than gene space (as
       fastMNN does) matters for sparse data: in the gene space all cells are nearly
       equidistant, the smoothing kernel degenerates to one global shift, and the
       correction does nothing (measured in ``docs/concepts.md``, "Common-gene MNN prior").
    4. A final PCA of all corrected cells orders the dimensions by variance; the rows are
       split back per modality.

    With meta-cells (atlas scale, paper Methods) each modality is first clustered with
    :func:`metacell_labels`; steps 2-4 run on the summed counts of each meta-cell, and every
    cell gets its meta-cell's prior row.

    Parameters
    ----------
    mdata
        Multimodal data, paired or not; not modified unless ``key_added`` is given.
    modalities
        At least two names in ``mdata.mod``.
    kinds, gene_annotation, protein_to_gene, layers, normalized
        See :func:`common_gene_views`. Views of ``normalized`` modalities are used as given
        in step 2 (not log-normalised), and their meta-cells average their cells' values.
    n_comps
        Prior dimensions; reduced (with a warning) when fewer genes or rows are available.
    k, sigma
        Neighbours and kernel bandwidth of :func:`mnn_correct`.
    n_hvg
        Maximum number of common genes used; ``None`` keeps all.
    n_metacells
        ``None``: no meta-cells. An int: meta-cells per modality (modalities with fewer cells
        are used as they are). ``"auto"``: when all modalities together have more than 50,000
        cells, one meta-cell per 10 cells of each modality (at most 20,000), else none.
    random_state
        Seed for k-means and PCA.
    key_added
        When given, also write each modality's prior to ``mdata.mod[m].obsm[key_added]``
        (the only change to ``mdata``).

    Returns
    -------
    dict
        Modality -> float32 array ``(n_cells, n_comps)`` whose rows follow
        ``mdata.mod[m].obs_names``.

    Raises
    ------
    ValueError
        As :func:`common_gene_views`, and for fewer than two modalities.

    Examples
    --------
    >>> import crossomics as co
    >>> mdata = co.datasets.mouse_motor_cortex()
    >>> prior = co.pp.mnn_prior(mdata, ["rna", "atac"], gene_annotation="mm10", n_comps=30)
    >>> prior["atac"].shape
    (10309, 30)
    """
    if isinstance(modalities, str) or len(modalities) < 2:
        raise ValueError(f"mnn_prior needs at least two modalities, got {modalities!r}")
    check_positive_int(n_comps, "n_comps", 50)
    if n_hvg is not None:
        check_positive_int(n_hvg, "n_hvg", 2000, why=", or None to keep every common gene")
    views = common_gene_views(
        mdata,
        modalities,
        kinds=kinds,
        gene_annotation=gene_annotation,
        protein_to_gene=protein_to_gene,
        layers=layers,
        normalized=normalized,
    )
    modalities = list(views)
    n_metacells_of = _auto_metacells({m: views[m].n_obs for m in modalities}, n_metacells)

    expressions, row_of_cell = [], []
    for modality in modalities:
        view = views[modality].X
        values_given = modality in normalized
        if n_metacells_of[modality] is None:
            rows, group_of_cell = view, np.arange(view.shape[0])
        else:
            labels = metacell_labels(view, n_metacells_of[modality], random_state, normalized=values_given)
            rows, group_of_cell = aggregate_rows(view, labels)
            if values_given:  # meta-cells of counts sum their cells; of normalised values, average them
                rows = scale_rows(rows, 1.0 / np.bincount(group_of_cell))
        expressions.append(gene_level_expression(rows, values_given))
        row_of_cell.append(group_of_cell)

    n_genes = expressions[0].shape[1]
    if n_hvg is not None and n_genes > n_hvg:
        columns = _highly_variable_columns(expressions, n_hvg)
        expressions = [e[:, columns] for e in expressions]
    scaled = [cosine_normalize(standardize_columns(e)) for e in expressions]

    stacked = np.vstack(scaled)
    n_components = min(n_comps, min(stacked.shape) - 1)
    if n_components < n_comps:
        warnings.warn(
            f"the prior has {n_components} instead of n_comps={n_comps} dimensions: only "
            f"{stacked.shape[1]} common genes and {stacked.shape[0]} rows are available",
            stacklevel=2,
        )
    offsets = np.cumsum([0] + [s.shape[0] for s in scaled])
    joint = PCA(n_components=n_components, random_state=random_state).fit_transform(stacked)
    corrected = mnn_correct([joint[a:b] for a, b in pairwise(offsets)], k=k, sigma=sigma)
    embedding = PCA(n_components=n_components, random_state=random_state).fit_transform(np.vstack(corrected))
    embedding = embedding.astype(np.float32)

    prior = {}
    for modality, start, rows in zip(modalities, offsets[:-1], row_of_cell, strict=True):
        prior[modality] = embedding[start + rows]
        if key_added is not None:
            mdata.mod[modality].obsm[key_added] = prior[modality]
    return prior
