"""Modality mixing: the cross-modal share of each cell's neighbours against its expectation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.neighbors import NearestNeighbors

from ._inputs import as_embedding, as_labels


def modality_mixing(
    embeddings: Mapping[str, ArrayLike] | Sequence[ArrayLike] | ArrayLike,
    labels: Mapping[str, ArrayLike] | Sequence[ArrayLike] | ArrayLike | None = None,
    n_neighbors: int = 15,
    groups: ArrayLike | None = None,
) -> float:
    """How well the modalities mix in a joint embedding: 1 = as if at random, 0 = apart.

    The embeddings of all modalities are stacked and every cell's ``n_neighbors`` nearest
    neighbours (Euclidean, the cell itself excluded) are found. Its observed share
    ``o_i`` of neighbours from another modality is compared with the share ``e_i`` expected if
    modality labels were shuffled at random: ``e_i = (N - n_m) / (N - 1)`` for a cell of
    modality ``m`` with ``n_m`` of the ``N`` cells. The score of modality ``m`` is
    ``sum(o_i) / sum(e_i)`` over its cells, and the result is the mean over modalities, so a
    small modality counts as much as a large one.

    With ``labels``, perfect mixing means a random draw *within the cell's own label*:
    ``N`` and ``n_m`` are counted among the cells of that label only. Then a cell type measured
    by one modality only (or in different proportions) does not lower the score. Cells whose
    label no other modality has have no expectation and are left out; the neighbours
    themselves are counted whatever their label. :doc:`/concepts` (Evaluation) explains the
    choice and compares the score with the scib iLISI.

    Parameters
    ----------
    embeddings
        The joint-space coordinates of each modality's cells: a mapping (modality name ->
        ``(n_cells, n_dims)`` array), a sequence of such arrays, or one stacked array with
        ``groups`` naming the modality of each row.
    labels
        Optional cell type of each cell, in the same form as ``embeddings`` (mapping with the
        same keys, sequence in the same order, or one array over the stacked rows).
    n_neighbors
        Neighbours of each cell, not counting itself. The embeddings must hold at least
        ``n_neighbors + 1`` cells.
    groups
        Modality of each row when ``embeddings`` is one stacked array; must be ``None``
        otherwise.

    Returns
    -------
    The mixing score; **higher is better**. 1 means each modality has as many cross-modal
    neighbours as under random mixing, 0 that no cell has one (separate islands). It can
    exceed 1 when cells have more cross-modal neighbours than chance would give, e.g. when
    each cell's partner in the other modality sits right next to it. NaN when ``labels`` is
    given and no label is shared by two modalities.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import modality_mixing
    >>> rng = np.random.default_rng(0)
    >>> mixed = {"rna": rng.normal(size=(200, 10)), "atac": rng.normal(size=(300, 10))}
    >>> round(modality_mixing(mixed), 1)
    1.0
    >>> apart = {"rna": rng.normal(size=(200, 10)), "atac": 20 + rng.normal(size=(300, 10))}
    >>> modality_mixing(apart)
    0.0
    """
    points, modality = _stack(embeddings, groups)
    n_cells = points.shape[0]
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int | np.integer) or n_neighbors < 1:
        raise ValueError(f"n_neighbors must be a positive integer, got {n_neighbors!r}")
    if n_cells < n_neighbors + 1:
        raise ValueError(
            f"n_neighbors={n_neighbors} needs at least {n_neighbors + 1} cells (each cell plus its "
            f"neighbours); the embeddings hold {n_cells}; lower n_neighbors"
        )
    cell_labels = np.zeros(n_cells, dtype=np.int64)
    if labels is not None:
        cell_labels = np.unique(_stack_labels(labels, embeddings, n_cells), return_inverse=True)[1].ravel()

    # kneighbors() without a query leaves each cell out of its own list, even among duplicates
    neighbours = NearestNeighbors(n_neighbors=n_neighbors).fit(points).kneighbors(return_distance=False)
    observed = (modality[neighbours] != modality[:, None]).mean(axis=1)

    n_modalities = modality.max() + 1
    per_label = np.bincount(cell_labels)
    per_label_modality = np.bincount(
        cell_labels * n_modalities + modality, minlength=per_label.size * n_modalities
    )
    same_label = per_label[cell_labels]
    other_modality = same_label - per_label_modality[cell_labels * n_modalities + modality]
    scorable = other_modality > 0
    expected = np.zeros(n_cells)
    expected[scorable] = other_modality[scorable] / (same_label[scorable] - 1)

    scores = [
        observed[in_modality].sum() / expected[in_modality].sum()
        for m in range(n_modalities)
        if (in_modality := (modality == m) & scorable).any()
    ]
    return float(np.mean(scores)) if scores else float("nan")


def _stack(embeddings, groups) -> tuple[np.ndarray, np.ndarray]:
    """Stacked coordinates and the integer modality of each row."""
    if isinstance(embeddings, Mapping) or _one_per_modality(embeddings, 2):
        if groups is not None:
            raise ValueError(
                "groups is only for one stacked embedding array; with one array per modality the "
                "modality of each row is already known (pass groups=None)"
            )
        items = list(embeddings.items()) if isinstance(embeddings, Mapping) else list(enumerate(embeddings))
        if len(items) < 2:
            raise ValueError(f"embeddings hold {len(items)} modality; pass at least two")
        arrays = [as_embedding(x, f"embeddings[{key!r}]") for key, x in items]
        first_key, first = items[0][0], arrays[0]
        for (key, _), array in zip(items[1:], arrays[1:], strict=True):
            if array.shape[1] != first.shape[1]:
                raise ValueError(
                    f"embeddings[{key!r}] has {array.shape[1]} dimensions but embeddings[{first_key!r}] "
                    f"has {first.shape[1]}; all modalities must be embedded in the same joint space"
                )
        modality = np.repeat(np.arange(len(arrays)), [a.shape[0] for a in arrays])
        return np.vstack(arrays), modality
    points = as_embedding(embeddings, "embeddings")
    if groups is None:
        raise ValueError(
            "embeddings is one array: pass groups= (the modality of each row), or pass one array "
            "per modality as a dict or list"
        )
    groups = as_labels(groups, points.shape[0], "groups")
    names, modality = np.unique(groups, return_inverse=True)
    if names.size < 2:
        raise ValueError(f"groups has a single value ({str(names[0])!r}); stack at least two modalities")
    return points, modality.ravel()


def _stack_labels(labels, embeddings, n_cells: int) -> np.ndarray:
    if isinstance(embeddings, Mapping):
        if not isinstance(labels, Mapping):
            return as_labels(labels, n_cells, "labels")
        missing = [key for key in embeddings if key not in labels]
        if missing:
            raise ValueError(
                f"labels has no entry for modalities {missing}; give one label array per embedding"
            )
        parts = [as_labels(labels[key], len(x), f"labels[{key!r}]") for key, x in embeddings.items()]
        return np.concatenate(parts)
    if _one_per_modality(embeddings, 2) and _one_per_modality(labels, 1):
        if len(labels) != len(embeddings):
            raise ValueError(
                f"labels holds {len(labels)} arrays but embeddings {len(embeddings)}; give one per modality"
            )
        return np.concatenate(
            [
                as_labels(y, len(x), f"labels[{i}]")
                for i, (x, y) in enumerate(zip(embeddings, labels, strict=True))
            ]
        )
    if isinstance(labels, Mapping):
        raise ValueError("labels is a dict but embeddings is not; pass labels in the same form as embeddings")
    return as_labels(labels, n_cells, "labels")


def _one_per_modality(x, ndim: int) -> bool:
    # a list of arrays, one per modality (2-D coordinates, 1-D labels), rather than one nested
    # list that is itself the stacked matrix or label vector
    return isinstance(x, list | tuple) and len(x) > 0 and all(np.ndim(item) == ndim for item in x)
