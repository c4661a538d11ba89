"""The cells SCCROSS fits its fixed transforms and its MNN prior on, and the prior of the others.

Above ``n_fit_cells`` cells in a modality, the projections, gene-set scores, common-gene space,
decoder initialisation and MNN prior are fitted on a sample stratified by batch, so a model's
construction costs the same at a million cells as at ``n_fit_cells`` and reads only the sample
into memory; every other cell takes the mean prior of its nearest sampled cells
(``docs/concepts.md``, "Data larger than memory").
"""

from __future__ import annotations

import numpy as np
import torch

from crossomics._backed import read_rows
from crossomics.nn._transforms import to_torch_rows

# sampled cells whose prior rows are averaged for a cell outside the sample
PRIOR_NEIGHBOURS = 15
_BLOCK = 4096


def stratified_sample(rows: np.ndarray, codes: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """At most ``size`` of ``rows`` (sorted), each batch (``codes`` of the rows) in proportion.

    ``size=None``, or ``size`` at least the number of rows, keeps every row. Batches get
    ``size * share`` rows rounded by largest remainder, so every batch of at least
    ``len(rows) / size`` cells is represented.
    """
    rows = np.asarray(rows)
    if size is None or len(rows) <= size:
        return rows
    rng = np.random.default_rng(seed)
    batches, counts = np.unique(codes, return_counts=True)
    quota = size * counts / counts.sum()
    taken = np.floor(quota).astype(int)
    taken[np.argsort(taken - quota)[: size - taken.sum()]] += 1
    chosen = [
        rng.choice(rows[codes == batch], size=n, replace=False)
        for batch, n in zip(batches, taken, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


@torch.inference_mode()
def extend_prior(space, X, sample_coordinates: np.ndarray, sample_prior: np.ndarray) -> np.ndarray:
    """Prior rows of the cells of ``X`` (in memory or :class:`~crossomics._backed.BackedRows`)
    from the sampled cells' prior rows and coordinates ``sample_coordinates`` in ``space`` (the
    modality's fixed common-gene projection).

    A cell takes the mean prior of its ``PRIOR_NEIGHBOURS`` nearest sampled cells, plus its own
    offset from their mean coordinates through the least-squares linear map from coordinates
    to prior fitted on the sample: the neighbours place it, the map keeps what sets it apart
    from them, which a plain neighbour mean averages away.
    """
    coordinates = torch.as_tensor(sample_coordinates, dtype=torch.float32)
    prior = torch.as_tensor(sample_prior, dtype=torch.float32)
    with_intercept = np.column_stack([sample_coordinates, np.ones(len(sample_coordinates))])
    slope = torch.as_tensor(
        np.linalg.lstsq(with_intercept, sample_prior, rcond=None)[0][:-1], dtype=torch.float32
    )
    k = min(PRIOR_NEIGHBOURS, len(coordinates))
    out = np.empty((X.shape[0], prior.shape[1]), dtype=np.float32)
    for start in range(0, X.shape[0], _BLOCK):
        c = space(to_torch_rows(read_rows(X, start, start + _BLOCK)))
        neighbours = torch.cdist(c, coordinates).topk(k, dim=1, largest=False).indices
        local = prior[neighbours].mean(1) + (c - coordinates[neighbours].mean(1)) @ slope
        out[start : start + len(c)] = local.numpy()
    return out
