"""Regional alignment of the returned joint embedding: each modality's cloud moved onto the
common mean and spread of every region of the joint space (``docs/concepts.md``, "One joint
space").

After training, the joint embeddings of the training cells of all modalities are stacked and
split into regions by k-means. Within each region, each modality's cells are moved, dimension
by dimension, from their own mean and standard deviation onto those of the region's cells of
all modalities (weighted by cells). A cell's correction blends the regions' corrections by its
soft membership, so the map is smooth, and it depends only on the cell's embedding and
modality: new cells of a query are corrected by the same fitted map. The fit is repeated for
``n_rounds`` rounds, each on the output of the one before.

With batches, each batch of a modality is moved by its own statistics onto the same common
target, as Harmony moves batches: a mosaic's RNA-only batch and the RNA of its paired batches
may sit at different places. A region where a batch has too few cells, and cells of batches the
map was not fitted on (a query's new batches), use their modality's pooled statistics.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

# cells of a modality a region needs before that modality is moved within it
MIN_REGION_CELLS = 10
# the most a region may stretch or shrink a modality's spread along one dimension
MAX_SPREAD_RATIO = 3.0
# cells the k-means of one round is fitted on (the corrections use every cell)
MAX_KMEANS_CELLS = 50_000
# cells per chunk when soft memberships are computed
_CHUNK = 8192


def fit_regional_alignment(
    embeddings: dict[str, np.ndarray],
    n_regions: int,
    n_rounds: int = 2,
    seed: int = 0,
    batches: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """The rounds of the map (see the module docstring) fitted on ``embeddings``
    (``{modality: (cells, n_latent)}``) and, optionally, each cell's batch code
    (``{modality: (cells,)}``, codes 0, 1, ...); every value is a plain array, ready for a model
    file."""
    current = {m: np.asarray(z, dtype=np.float64) for m, z in embeddings.items()}
    batches = {m: _codes((batches or {}).get(m), m, len(z)) for m, z in current.items()}
    rounds = []
    rng = np.random.default_rng(seed)
    for _ in range(n_rounds):
        sample = _stacked_rows(current, rng)
        k = min(n_regions, len(sample))
        centroids = KMeans(k, n_init=3, random_state=seed).fit(sample).cluster_centers_
        nearest = _squared_distances(sample, centroids).min(1)
        # membership temperature: the median squared distance of a cell to its nearest centroid
        temperature = float(max(np.median(nearest), 1e-12))
        memberships = {m: _memberships(z, centroids, temperature) for m, z in current.items()}
        stats = {m: _region_moments(z, memberships[m]) for m, z in current.items()}
        total = sum(mass for mass, _, _ in stats.values())
        target_mean = sum(mass[:, None] * mean for mass, mean, _ in stats.values()) / total[:, None]
        target_var = (
            sum(mass[:, None] * (var + (mean - target_mean) ** 2) for mass, mean, var in stats.values())
            / total[:, None]
        )
        fitted = {
            "centroids": centroids,
            "temperature": temperature,
            "target": target_mean,
            "mean": {},
            "ratio": {},
            "batch_mean": {},
            "batch_ratio": {},
        }
        # a region a modality (almost) lacks leaves that modality's cells where they are
        identity = (target_mean, np.ones_like(target_mean))
        for m, moments in stats.items():
            fitted["mean"][m], fitted["ratio"][m] = _region_map(moments, target_mean, target_var, identity)
            if batches[m].max() == 0:
                continue  # one batch: its map is the modality's
            per_batch = [
                _region_map(
                    _region_moments(current[m][batches[m] == b], memberships[m][batches[m] == b]),
                    target_mean,
                    target_var,
                    (fitted["mean"][m], fitted["ratio"][m]),
                )
                for b in range(batches[m].max() + 1)
            ]
            fitted["batch_mean"][m] = np.stack([mean for mean, _ in per_batch])
            fitted["batch_ratio"][m] = np.stack([ratio for _, ratio in per_batch])
        rounds.append(fitted)
        # the next round fits on float32 embeddings, as returned to users
        current = {
            m: _move(z, memberships[m], fitted, m, batches[m])[0].astype(np.float32)
            for m, z in current.items()
        }
    return rounds


def _stacked_rows(embeddings: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """All modalities' rows stacked, or ``MAX_KMEANS_CELLS`` of them drawn at random: the same
    rows as indexing the stacked array, without building it (at a million cells per modality it
    was the largest array of the fit)."""
    sizes = [len(z) for z in embeddings.values()]
    if sum(sizes) <= MAX_KMEANS_CELLS:
        return np.concatenate(list(embeddings.values()))
    picks = rng.choice(sum(sizes), MAX_KMEANS_CELLS, replace=False)
    width = next(iter(embeddings.values())).shape[1]
    sample = np.empty((MAX_KMEANS_CELLS, width), dtype=np.result_type(*embeddings.values()))
    start = 0
    for z, size in zip(embeddings.values(), sizes, strict=True):
        mine = (picks >= start) & (picks < start + size)
        sample[mine] = z[picks[mine] - start]
        start += size
    return sample


def _codes(codes: np.ndarray | None, modality: str, n_cells: int) -> np.ndarray:
    """Batch codes of ``modality``'s cells (all 0 without batches), checked."""
    if codes is None:
        return np.zeros(n_cells, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    if codes.shape != (n_cells,) or (codes < 0).any():
        raise ValueError(f"batch codes of {modality!r} must be {n_cells} non-negative integers")
    return codes


def _region_moments(z: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each region's cell mass, mean and per-dimension variance of ``z`` under ``weights``."""
    mass = weights.sum(0)
    mean = weights.T @ z / np.maximum(mass, 1e-12)[:, None]
    second = weights.T @ z**2 / np.maximum(mass, 1e-12)[:, None]
    return mass, mean, np.maximum(second - mean**2, 0.0)


def _region_map(moments, target_mean, target_var, fallback) -> tuple[np.ndarray, np.ndarray]:
    """The per-region mean and spread ratio that move cells of ``moments`` onto the target;
    regions with fewer than ``MIN_REGION_CELLS`` cells take ``fallback``'s (mean, ratio)."""
    mass, mean, var = moments
    ratio = np.clip(np.sqrt(target_var / np.maximum(var, 1e-12)), 1 / MAX_SPREAD_RATIO, MAX_SPREAD_RATIO)
    few = mass < MIN_REGION_CELLS
    mean[few], ratio[few] = fallback[0][few], fallback[1][few]
    return mean, ratio


def apply_regional_alignment(
    z: np.ndarray, modality: str, rounds: list[dict], batches: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``z`` of ``modality`` (with its cells' batch codes) through every fitted round, and each
    cell's per-dimension stretch (the map's derivative, for variances). Rows of NaN (cells
    without data) stay NaN."""
    out = np.asarray(z, dtype=np.float64)
    codes = _codes(batches, modality, len(out))
    stretch = np.ones_like(out)
    for fitted in rounds:
        out, round_stretch = _move(
            out, _memberships(out, fitted["centroids"], fitted["temperature"]), fitted, modality, codes
        )
        stretch = stretch * round_stretch
    return out.astype(np.float32), stretch.astype(np.float32)


def _move(
    z: np.ndarray, weights: np.ndarray, fitted: dict, modality: str, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One round's map of ``z`` given its region memberships ``weights`` and batch ``codes``,
    and its stretch: the sum over regions r of ``w_r * ((z - mean_r) * ratio_r + target_r)``,
    with the mean and ratio of the cell's batch (its modality's for batches the map lacks)."""
    batch_mean, batch_ratio = fitted.get("batch_mean", {}), fitted.get("batch_ratio", {})
    n_fitted = len(batch_mean[modality]) if modality in batch_mean else 0
    out, stretch = np.empty_like(z), np.empty_like(z)
    groups = np.unique(codes)
    for code in groups:
        # one group (the usual case): every row, without copying the arrays through a mask
        rows = slice(None) if len(groups) == 1 else codes == code
        if code < n_fitted:
            mean, ratio = batch_mean[modality][code], batch_ratio[modality][code]
        else:
            mean, ratio = fitted["mean"][modality], fitted["ratio"][modality]
        stretch[rows] = weights[rows] @ ratio
        out[rows] = z[rows] * stretch[rows] + weights[rows] @ (fitted["target"] - mean * ratio)
    return out, stretch


def _memberships(z: np.ndarray, centroids: np.ndarray, temperature: float) -> np.ndarray:
    """Soft region memberships ``(cells, regions)``: a softmax of minus the squared distances
    to the centroids over ``temperature``; NaN rows get NaN."""
    out = np.empty((len(z), len(centroids)))
    for start in range(0, len(z), _CHUNK):
        logits = -_squared_distances(z[start : start + _CHUNK], centroids) / temperature
        logits -= logits.max(1, keepdims=True)
        weights = np.exp(logits)
        out[start : start + _CHUNK] = weights / weights.sum(1, keepdims=True)
    return out


def _squared_distances(z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return np.maximum((z**2).sum(1)[:, None] - 2 * z @ centroids.T + (centroids**2).sum(1)[None, :], 0.0)


def regional_alignment_from_file(rounds: list[dict] | None) -> list[dict] | None:
    """The fitted rounds as read from a model file (tensors) back as numpy arrays; ``None`` for
    files written before the alignment existed, whose embeddings stay as they were (files
    written before batches had their own maps move every batch by its modality's)."""
    if rounds is None:
        return None
    return [
        {
            "centroids": np.asarray(fitted["centroids"]),
            "temperature": float(fitted["temperature"]),
            "target": np.asarray(fitted["target"]),
            **{
                key: {m: np.asarray(v) for m, v in fitted[key].items()}
                for key in ("mean", "ratio", "batch_mean", "batch_ratio")
                if key in fitted
            },
        }
        for fitted in rounds
    ]
