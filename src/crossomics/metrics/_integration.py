"""Integration metrics of a joint embedding as defined in the scCross paper (eq. 26-29)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from numpy.typing import ArrayLike
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from ._inputs import as_embedding, as_labels
from ._modality_mixing import modality_mixing
from ._neighbors import exact_neighbors


def integration_metrics(
    latent: ArrayLike,
    labels: ArrayLike,
    modality: ArrayLike,
    n_neighbors: int = 15,
    resolution: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Cell-type conservation and modality mixing of a joint embedding (scCross paper, Methods).

    The cells of all modalities are stacked: row ``i`` of ``latent`` is one cell of modality
    ``modality[i]`` with cell type ``labels[i]``. One exact Euclidean kNN graph (``n_neighbors``
    including the cell itself, UMAP connectivities as in :func:`scanpy.pp.neighbors`) is built on
    all rows and used for clustering and graph connectivity.

    Parameters
    ----------
    latent
        Joint embedding, shape ``(n_rows, n_dims)``, one row per cell per modality.
    labels
        Cell type of each row.
    modality
        Modality of each row (e.g. ``"rna"``, ``"atac"``); at least two distinct values.
    n_neighbors
        Neighbours per cell in the kNN graph (the paper uses 15).
    resolution
        Leiden resolution (the paper uses 1).
    seed
        Seed of the Leiden clustering.

    Returns
    -------
    Dictionary of scores, all **higher is better** and in ``[0, 1]`` (``modality_mixing`` can
    slightly exceed 1):

    - ``"nmi"``, ``"ari"``: normalised mutual information and adjusted Rand index between the
      labels and a Leiden clustering of the joint graph, computed on the rows of each modality and
      averaged over modalities (the paper scores "each omic separately and then averaged").
      ARI can be slightly negative for clusterings worse than chance.
    - ``"cell_type_asw"``: eq. 26, the mean cell-type silhouette rescaled as ``(s + 1) / 2``
      (:func:`scib_metrics.silhouette_label`).
    - ``"modality_mixing_asw"``: eq. 27-28, within each cell type the modality silhouette ``s``
      turned into ``1 - |s|`` and averaged, then averaged over cell types
      (:func:`scib_metrics.silhouette_batch`). Cell types seen in only one modality are skipped;
      NaN if no type is seen in two.
    - ``"graph_connectivity"``: eq. 29, the mean over cell types of the fraction of the type's
      cells in the largest connected component of the type's subgraph of the (undirected) kNN graph.
    - ``"modality_mixing"``: :func:`modality_mixing` with ``labels``: the share of each cell's
      ``n_neighbors`` nearest other cells that come from another modality, divided by its
      expectation under random mixing within the cell type (1 = mixed as if at random, 0 =
      separate islands). Unlike the silhouette it reads each cell's nearest neighbours, on which
      Leiden clusters and UMAPs are built; NaN if no type is seen in two modalities.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import integration_metrics
    >>> rng = np.random.default_rng(0)
    >>> cell_type = np.repeat(["B", "T", "NK"], 40)
    >>> centres = {"B": 0.0, "T": 10.0, "NK": 20.0}
    >>> rna = np.array([centres[t] for t in cell_type])[:, None] + rng.normal(size=(120, 8))
    >>> atac = rna + 0.5 * rng.normal(size=rna.shape)
    >>> scores = integration_metrics(
    ...     np.vstack([rna, atac]),
    ...     np.concatenate([cell_type, cell_type]),
    ...     np.repeat(["rna", "atac"], 120),
    ... )
    >>> sorted(scores)
    ['ari', 'cell_type_asw', 'graph_connectivity', 'modality_mixing', 'modality_mixing_asw', 'nmi']
    >>> scores["graph_connectivity"]
    1.0
    """
    # scanpy and scib-metrics (JAX) are slow to import; load them only when this metric runs
    import scanpy as sc
    import scib_metrics

    latent = as_embedding(latent, "latent")
    labels = as_labels(labels, latent.shape[0], "labels")
    modality = as_labels(modality, latent.shape[0], "modality")
    modalities = np.unique(modality)
    if modalities.size < 2:
        raise ValueError(
            f"modality has a single value ({str(modalities[0])!r}); stack the embeddings of at least two "
            "modalities and pass one modality name per row"
        )

    neighbors = exact_neighbors(latent, n_neighbors)
    connectivities = sp.csr_matrix(neighbors.knn_graph_connectivities)

    clustering = AnnData(obs=pd.DataFrame(index=pd.RangeIndex(latent.shape[0]).astype(str)))
    sc.tl.leiden(
        clustering,
        resolution=resolution,
        adjacency=connectivities,
        flavor="igraph",
        n_iterations=-1,
        directed=False,
        random_state=seed,
    )
    clusters = clustering.obs["leiden"].to_numpy()
    per_modality = [
        (
            normalized_mutual_info_score(labels[modality == m], clusters[modality == m]),
            adjusted_rand_score(labels[modality == m], clusters[modality == m]),
        )
        for m in modalities
    ]
    nmi, ari = np.mean(per_modality, axis=0)

    # silhouette_batch skips types whose cells all share one modality (or are one cell per modality)
    # and fails when it skips every type; the score is undefined then
    scorable = any(
        1 < np.unique(modality[labels == t]).size < np.count_nonzero(labels == t) for t in np.unique(labels)
    )
    mixing = scib_metrics.silhouette_batch(latent, labels, modality, rescale=True) if scorable else np.nan
    return {
        "nmi": float(nmi),
        "ari": float(ari),
        "cell_type_asw": float(scib_metrics.silhouette_label(latent, labels, rescale=True)),
        "modality_mixing_asw": float(mixing),
        "graph_connectivity": _graph_connectivity(connectivities, labels),
        "modality_mixing": modality_mixing(latent, labels=labels, n_neighbors=n_neighbors, groups=modality),
    }


def _graph_connectivity(graph: sp.csr_matrix, labels: np.ndarray) -> float:
    """Mean over labels of the largest connected component's share of the label's cells (eq. 29).

    scib-metrics' ``graph_connectivity`` takes strongly connected components of the *directed*
    kNN graph; eq. 29 uses the symmetric scanpy neighbour graph, so components here are undirected.
    """
    shares = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        _, component = connected_components(graph[members][:, members], directed=False)
        shares.append(np.bincount(component).max() / members.size)
    return float(np.mean(shares))
