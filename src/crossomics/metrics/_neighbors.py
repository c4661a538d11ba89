"""Exact k-nearest-neighbour graphs in the format scib-metrics expects."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors


def exact_neighbors(x: np.ndarray, n_neighbors: int):
    """Exact Euclidean kNN of every row of ``x``, each cell being its own first neighbour.

    Returns a :class:`scib_metrics.nearest_neighbors.NeighborsResults`. As in
    :func:`scanpy.pp.neighbors`, ``n_neighbors`` counts the cell itself.
    """
    # scib-metrics pulls in JAX; import it only when a metric needs it
    from scib_metrics.nearest_neighbors import NeighborsResults

    n_cells = x.shape[0]
    is_int = isinstance(n_neighbors, int | np.integer) and not isinstance(n_neighbors, bool)
    if not is_int or not 2 <= n_neighbors < n_cells:
        raise ValueError(
            f"n_neighbors must be at least 2 and below the number of cells ({n_cells}), got {n_neighbors}"
        )
    # kneighbors() without a query excludes each cell from its own list, even among duplicates
    distances, indices = NearestNeighbors(n_neighbors=n_neighbors - 1).fit(x).kneighbors()
    return NeighborsResults(
        indices=np.column_stack([np.arange(n_cells), indices]),
        distances=np.column_stack([np.zeros(n_cells), distances]),
    )
