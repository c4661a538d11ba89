"""Model-based KNN smoothing of counts (MinNet, Methods "Smoothing")."""

from __future__ import annotations

from numbers import Real

import numpy as np
import scipy.sparse as sp
from anndata import AnnData
from sklearn.neighbors import NearestNeighbors

from crossomics._validation import check_finite, get_matrix


def embedding_of(adata: AnnData, use_rep: str) -> np.ndarray:
    """``adata.obsm[use_rep]`` as a finite float array, with a clear error when it is missing."""
    if use_rep not in adata.obsm:
        raise ValueError(
            f"adata.obsm has no {use_rep!r}; store a joint embedding there first, e.g. "
            f"adata.obsm[{use_rep!r}] = model.get_latent_representation(...). Available: {list(adata.obsm)}"
        )
    embedding = np.asarray(adata.obsm[use_rep], dtype=np.float64)
    check_finite(embedding, f"adata.obsm[{use_rep!r}]")
    return embedding


def smoothing_graph(embedding: np.ndarray, n_neighbors: int = 5, percentile: float = 95.0) -> sp.csr_matrix:
    """Binary cells x cells matrix: each cell, plus its nearest neighbours that are close enough.

    Row ``i`` has ones at ``i`` and at its ``n_neighbors`` nearest cells (Euclidean, exact),
    except neighbours farther than the ``percentile``-th percentile of all neighbour distances.
    Memory is O(n * n_neighbors).
    """
    n_cells = embedding.shape[0]
    is_int = isinstance(n_neighbors, int | np.integer) and not isinstance(n_neighbors, bool)
    if not is_int or not 1 <= n_neighbors < n_cells:
        raise ValueError(
            f"n_neighbors must be between 1 and n_cells - 1 ({n_cells - 1}), got {n_neighbors!r}; "
            "pass an integer, e.g. n_neighbors=5"
        )
    if isinstance(percentile, bool) or not isinstance(percentile, Real) or not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}; e.g. percentile=95")
    distances, neighbours = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(embedding).kneighbors(embedding)
    # a cell is normally its own first neighbour, but duplicates may take that place: drop self explicitly
    is_self = neighbours == np.arange(n_cells)[:, None]
    keep_other = ~is_self
    keep_other[keep_other.sum(axis=1) > n_neighbors, -1] = False
    cutoff = np.percentile(distances[keep_other], percentile)
    keep = keep_other & (distances <= cutoff)
    rows = np.concatenate([np.arange(n_cells), np.nonzero(keep)[0]])
    columns = np.concatenate([np.arange(n_cells), neighbours[keep]])
    return sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, columns)), shape=(n_cells, n_cells))


def knn_smooth(
    adata: AnnData,
    use_rep: str,
    n_neighbors: int = 5,
    percentile: float = 95.0,
    layer: str | None = None,
    key_added: str = "smoothed",
    copy: bool = False,
) -> AnnData | None:
    """Smooth counts over each cell's nearest neighbours in a joint embedding.

    The paper's model-based smoothing: the raw counts are multiplied by a binarised KNN
    connectivity, so each cell's profile becomes the sum of its own counts and those of its
    ``n_neighbors`` nearest cells of the same modality, leaving out neighbours farther than the
    ``percentile``-th percentile of all neighbour distances. It fills dropouts before building
    mini-bulks (:func:`crossomics.tl.minibulk`). Works with any embedding (MINNET, SCCROSS, ...);
    everything stays sparse.

    Unlike ``scanpy.pp.neighbors``, ``n_neighbors`` counts other cells only (the cell itself
    is always included) and the neighbourhoods are not symmetrised.

    Parameters
    ----------
    adata
        Cells of one modality with raw counts and an embedding in ``obsm[use_rep]``.
    use_rep
        Key of the embedding in ``adata.obsm``.
    n_neighbors
        Neighbours added to each cell (paper: 5, also 10-20).
    percentile
        Neighbours farther than this percentile of all neighbour distances are dropped (paper: 95).
    layer
        Layer with the counts; ``None`` uses ``X``.
    key_added
        Name of the output layer.
    copy
        Return a new AnnData instead of writing into ``adata``.

    Returns
    -------
    AnnData or None
        Writes float32 CSR smoothed counts to ``layers[key_added]`` and the parameters to
        ``uns[key_added]`` of ``adata`` (or of the returned copy when ``copy=True``). ``X`` and
        the other fields are left unchanged.

    Examples
    --------
    >>> rna.obsm["X_minnet"] = model.get_latent_representation("rna", adata=rna)
    >>> co.tl.knn_smooth(rna, use_rep="X_minnet", n_neighbors=5)
    >>> rna.layers["smoothed"]
    """
    counts = get_matrix(adata, layer)
    check_finite(counts, "counts" if layer is None else f"layer {layer!r}")
    graph = smoothing_graph(embedding_of(adata, use_rep), n_neighbors, percentile)
    smoothed = sp.csr_matrix(graph @ sp.csr_matrix(counts, dtype=np.float32), dtype=np.float32)
    target = adata.copy() if copy else adata
    target.layers[key_added] = smoothed
    target.uns[key_added] = {
        "params": {
            "use_rep": use_rep,
            "n_neighbors": n_neighbors,
            "percentile": percentile,
            "layer": layer or "X",
        }
    }
    return target if copy else None
