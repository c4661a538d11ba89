"""Siamese pair sampling for MINNET: minibatches of paired cells with fresh negative pairs.

Every minibatch holds ``B`` paired cells, i.e. ``B`` positive pairs (a cell's two modalities).
It adds ``negative_ratio * B`` negative pairs (paper: about 3 negatives per positive), drawn
anew for every batch and epoch, each with the graph distance its margin needs:

* the anchor of a negative pair is one of ``n_sources`` cells of the batch, the partner is any
  other cell of the batch. The pairs are uniform over cells, as in the paper, but the
  shortest paths need only ``n_sources`` Dijkstra searches per batch instead of one per pair;
* ``"between"`` strategy: anchor and partner come from different modalities; ``"within"``:
  from the same modality (chosen at random per pair).

Randomness comes from a seed drawn from torch's generator when the data module is set up, so
``scvi.settings.seed`` makes the pairs, and thus training, reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ._graph_margin import GraphDistances

NEGATIVE_STRATEGIES = ("between", "within")
MIN_BATCH_CELLS = 3
"""A trailing batch with fewer cells is dropped (its cells come back shuffled next epoch)."""


class SiamesePairDataset(Dataset):
    """Builds one minibatch (inputs, labels and negative pairs) from a batch of cell indices."""

    def __init__(
        self,
        inputs: tuple[sp.csr_matrix, sp.csr_matrix],
        labels: np.ndarray,
        distances: GraphDistances,
        negative_ratio: int = 3,
        n_sources: int = 32,
        negative_strategy: Literal["between", "within"] = "between",
    ):
        if negative_strategy not in NEGATIVE_STRATEGIES:
            raise ValueError(
                f"negative_strategy must be one of {NEGATIVE_STRATEGIES}, got {negative_strategy!r}"
            )
        if negative_ratio < 1 or n_sources < 1:
            raise ValueError(f"negative_ratio and n_sources must be >= 1, got {negative_ratio}, {n_sources}")
        self.inputs = inputs
        self.labels = np.asarray(labels, dtype=np.int64)
        self.distances = distances
        self.negative_ratio = negative_ratio
        self.n_sources = n_sources
        self.negative_strategy = negative_strategy

    def __len__(self) -> int:
        return len(self.labels)

    def sample_negatives(self, cells: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Negative pairs among ``cells`` (positions within the batch) and their graph distances."""
        n_cells = cells.size
        n_pairs = self.negative_ratio * n_cells
        sources = rng.choice(n_cells, size=min(self.n_sources, n_cells), replace=False)
        anchor = sources[rng.integers(sources.size, size=n_pairs)]
        # drawing from n - 1 positions and skipping the anchor's gives any other cell uniformly
        partner = rng.integers(n_cells - 1, size=n_pairs)
        partner = partner + (partner >= anchor)
        anchor_modality = rng.integers(2, size=n_pairs)
        partner_modality = 1 - anchor_modality if self.negative_strategy == "between" else anchor_modality
        return {
            "negative_anchor": anchor,
            "negative_partner": partner,
            "negative_anchor_modality": anchor_modality,
            "negative_partner_modality": partner_modality,
            "negative_distance": self.distances.between(cells[anchor], cells[partner]).astype(np.float32),
        }

    def __getitem__(self, item: tuple[np.ndarray, int]) -> dict[str, torch.Tensor]:
        cells, seed = item
        batch = {
            "x_first": self.inputs[0][cells].toarray(),
            "x_second": self.inputs[1][cells].toarray(),
            "labels": self.labels[cells],
            **self.sample_negatives(cells, np.random.default_rng(seed)),
        }
        return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in batch.items()}


class ShuffledBatchSampler(Sampler):
    """Yields ``(cell_indices, seed)`` minibatches; reshuffles every epoch unless ``shuffle=False``.

    With ``shuffle=False`` (validation) the batches and their seeds are the same every epoch,
    so validation losses are comparable across epochs.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int, shuffle: bool = True):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _bounds(self) -> list[tuple[int, int]]:
        starts = range(0, self.indices.size, self.batch_size)
        bounds = [(start, min(start + self.batch_size, self.indices.size)) for start in starts]
        return [(a, b) for a, b in bounds if b - a >= MIN_BATCH_CELLS]

    def __len__(self) -> int:
        return len(self._bounds())

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        rng = self._rng if self.shuffle else np.random.default_rng(self.seed)
        order = rng.permutation(self.indices) if self.shuffle else self.indices
        for start, stop in self._bounds():
            yield order[start:stop], int(rng.integers(2**31))


class SiamesePairDataModule(pl.LightningDataModule):
    """Training and validation loaders of Siamese minibatches over paired, labelled cells.

    Parameters
    ----------
    dataset
        The :class:`SiamesePairDataset` over all registered cells.
    train_indices, validation_indices
        Cells (rows of the dataset) used for training and validation.
    batch_size
        Paired cells per minibatch.
    num_workers
        Worker processes building minibatches (the graph searches run there).
    """

    def __init__(
        self,
        dataset: SiamesePairDataset,
        train_indices: np.ndarray,
        validation_indices: np.ndarray,
        batch_size: int = 256,
        num_workers: int = 0,
    ):
        super().__init__()
        if len(train_indices) < MIN_BATCH_CELLS:
            raise ValueError(f"training needs at least {MIN_BATCH_CELLS} cells, got {len(train_indices)}")
        self.dataset = dataset
        self.train_idx = np.asarray(train_indices)
        self.val_idx = np.asarray(validation_indices)
        self.test_idx = np.array([], dtype=np.int64)
        self.n_train = len(self.train_idx)
        self.n_val = len(self.val_idx)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._seeds: tuple[int, int] | None = None

    def setup(self, stage: str | None = None) -> None:
        """Draw the sampling seeds from torch's (``scvi.settings.seed``-controlled) generator."""
        if self._seeds is None:
            self._seeds = tuple(int(s) for s in torch.randint(2**31, (2,)))

    def _loader(self, indices: np.ndarray, seed: int, shuffle: bool) -> DataLoader:
        sampler = ShuffledBatchSampler(indices, self.batch_size, seed, shuffle=shuffle)
        return DataLoader(
            self.dataset,
            sampler=sampler,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training minibatches with new negative pairs every epoch."""
        return self._loader(self.train_idx, self._seeds[0], shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Fixed validation minibatches, or no loader when there is no validation set."""
        if self.n_val < MIN_BATCH_CELLS:
            return []
        return self._loader(self.val_idx, self._seeds[1], shuffle=False)
