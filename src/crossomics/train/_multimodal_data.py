"""Minibatches for unpaired, paired and partly paired modalities.

scvi-tools' ``DataSplitter`` indexes one table of cells; an unpaired MuData has one table per
modality. Each modality therefore gets its own loader over its own rows, and Lightning's
``CombinedLoader`` (``max_size_cycle``) draws one batch from every modality per step, so small
modalities are cycled rather than starved. Truly paired cells (shared ``obs_names``) get an extra
loader that yields the same cells in every modality of a pair.
"""

from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from scvi.data import AnnDataManager
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from crossomics._constants import BATCH_KEY, FEATURES_KEY, PAIRS_KEY, PRIOR_KEY, X_KEY

_PAIR_PREFIX = f"{PAIRS_KEY}:"


def data_key(modality: str) -> str:
    """Registry key of a modality's data matrix."""
    return f"X_{modality}"


def batch_key(modality: str) -> str:
    """Registry key of a modality's batch codes."""
    return f"batch_{modality}"


class ModalityRows(Dataset):
    """Rows of one modality as ``{"x", "batch", "prior", "features"}`` dicts, fetched a minibatch
    at a time; ``prior`` and ``features`` (the encoder input, computed once) are optional."""

    def __init__(
        self,
        manager: AnnDataManager,
        modality: str,
        prior: np.ndarray | None,
        features: np.ndarray | None = None,
    ):
        self.modality = modality
        self.table = manager.create_torch_dataset(
            data_and_attributes={data_key(modality): np.float32, batch_key(modality): np.int64}
        )
        self.prior = prior
        self.features = features

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, rows):
        rows = np.sort(np.asarray(rows))
        fetched = self.table[rows]
        item = {X_KEY: fetched[data_key(self.modality)], BATCH_KEY: fetched[batch_key(self.modality)]}
        if self.prior is not None:
            item[PRIOR_KEY] = self.prior[rows]
        if self.features is not None:
            item[FEATURES_KEY] = self.features[rows]
        return item


class _PairRows(Dataset):
    """The same cells in two modalities: index ``i`` gives row ``rows_h[i]`` and ``rows_j[i]``."""

    def __init__(self, first: ModalityRows, second: ModalityRows, rows_first, rows_second):
        self.first, self.second = first, second
        self.rows_first, self.rows_second = np.asarray(rows_first), np.asarray(rows_second)

    def __len__(self) -> int:
        return len(self.rows_first)

    def __getitem__(self, positions):
        positions = np.asarray(positions)
        order_first = np.argsort(self.rows_first[positions])
        # both tables return rows sorted, so re-sort the partner rows into the same cell order
        first = self.first[self.rows_first[positions]]
        second_rows = self.rows_second[positions][order_first]
        second_order = np.argsort(np.argsort(second_rows))
        second = self.second[second_rows]
        second = {k: v[second_order] for k, v in second.items()}
        return {self.first.modality: first, self.second.modality: second}


class _Indexed(Dataset):
    """``dataset`` restricted to ``indices``: position ``i`` is row ``indices[i]``."""

    def __init__(self, dataset: Dataset, indices: np.ndarray):
        self.dataset, self.indices = dataset, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions):
        return self.dataset[self.indices[np.asarray(positions)]]


def _batched_loader(
    dataset: Dataset,
    indices: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Minibatches of ``dataset[indices]``; with ``world_size > 1`` only rank ``rank``'s shard."""
    if world_size > 1:
        # every rank splits its shard into as many batches as the largest shard needs, but
        # never so many that the smallest shard has a batch of one cell
        smallest, largest = len(indices) // world_size, -(-len(indices) // world_size)
        n_batches = max(1, min(-(-largest // batch_size), smallest // 2))
        indices = shard_rows(indices, rank, world_size, seed)
        batches = _EvenBatches(len(indices), n_batches, shuffle, seed + rank)
        return DataLoader(_Indexed(dataset, indices), sampler=batches, batch_size=None, num_workers=0)
    source = _Indexed(dataset, indices)
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(source, generator=generator) if shuffle else SequentialSampler(source)
    batch_size = min(batch_size, len(indices))
    # a training batch of one cell breaks BatchNorm; shuffled, a different cell sits out each epoch
    drop_last = shuffle and len(indices) > 1 and len(indices) % batch_size == 1
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(source, sampler=batches, batch_size=None, num_workers=0)


class _EvenBatches(Sampler):
    """One rank's minibatches under multi-process training: its shard of the rows split into
    ``n_batches`` nearly equal batches, reshuffled every epoch when ``shuffle``.

    Every rank gets the same number of batches (a rank that ran out would leave the others
    waiting in a collective), and none has a single cell (BatchNorm needs two).
    """

    def __init__(self, n_rows: int, n_batches: int, shuffle: bool, seed: int):
        self.n_rows, self.n_batches, self.shuffle = n_rows, n_batches, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        order = (
            torch.randperm(self.n_rows, generator=self.generator)
            if self.shuffle
            else torch.arange(self.n_rows)
        )
        yield from (chunk.tolist() for chunk in torch.tensor_split(order, self.n_batches))


def shard_rows(rows: np.ndarray, rank: int, world_size: int, seed: int) -> np.ndarray:
    """Rank ``rank``'s share of ``rows``: disjoint across ranks, together all of them, sizes
    differing by at most one (a seeded permutation dealt out in turn)."""
    order = np.random.default_rng(seed).permutation(np.asarray(rows))
    return np.sort(order[rank::world_size])


class MultiModalDataModule(LightningDataModule):
    """Train / validation loaders for every modality (and every truly paired modality pair).

    Parameters
    ----------
    manager
        The model's :class:`~scvi.data.AnnDataManager` over the MuData.
    rows
        Per modality, the rows of ``mdata.mod[m]`` to use.
    priors
        Per modality, the MNN prior of all rows of ``mdata.mod[m]`` (or ``None``).
    features
        Per modality, the encoder input of all rows of ``mdata.mod[m]`` (or ``None`` to
        compute it at every step).
    pairs
        ``{(h, j): (rows_h, rows_j)}`` for truly paired cells.
    batch_size
        Cells per modality per step.
    validation_size
        Fraction of each modality's rows held out for validation (and early stopping).
    seed
        Seed of the split and of the shuffling.
    shuffle_set_split
        Hold out random rows (default) or each modality's last rows.
    """

    def __init__(
        self,
        manager: AnnDataManager,
        rows: dict[str, np.ndarray],
        priors: dict[str, np.ndarray | None],
        pairs: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] | None = None,
        batch_size: int = 256,
        validation_size: float = 0.1,
        seed: int = 0,
        features: dict[str, np.ndarray] | None = None,
        shuffle_set_split: bool = True,
    ):
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed
        features = features or {}
        self.datasets = {m: ModalityRows(manager, m, priors.get(m), features.get(m)) for m in rows}
        rng = np.random.default_rng(seed)
        self.train_rows, self.validation_rows = {}, {}
        for m, r in rows.items():
            order = rng.permutation(np.asarray(r)) if shuffle_set_split else np.asarray(r)[::-1]
            n_validation = int(round(validation_size * len(order))) if len(order) >= 20 else 0
            self.validation_rows[m] = np.sort(order[:n_validation])
            self.train_rows[m] = np.sort(order[n_validation:])
        self.pairs = {}
        for (h, j), (rows_h, rows_j) in (pairs or {}).items():
            keep = np.isin(rows_h, self.train_rows[h]) & np.isin(rows_j, self.train_rows[j])
            if keep.any():
                self.pairs[(h, j)] = _PairRows(self.datasets[h], self.datasets[j], rows_h[keep], rows_j[keep])
        self.n_train = int(sum(len(r) for r in self.train_rows.values()))
        self.n_val = int(sum(len(r) for r in self.validation_rows.values()))

    def _processes(self) -> dict:
        """``rank`` and ``world_size`` of multi-process (DDP) training; 0 and 1 otherwise."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {"rank": 0, "world_size": 1}
        return {"rank": trainer.global_rank, "world_size": trainer.world_size}

    def train_dataloader(self):
        processes = self._processes()
        loaders = {
            m: _batched_loader(self.datasets[m], r, self.batch_size, True, self.seed + i, **processes)
            for i, (m, r) in enumerate(self.train_rows.items())
        }
        for i, ((h, j), ds) in enumerate(self.pairs.items()):
            loaders[f"{_PAIR_PREFIX}{h}:{j}"] = _batched_loader(
                ds, np.arange(len(ds)), self.batch_size, True, self.seed + 100 + i, **processes
            )
        return CombinedLoader(loaders, mode="max_size_cycle")

    def val_dataloader(self):
        processes = self._processes()
        loaders = {
            m: _batched_loader(self.datasets[m], r, self.batch_size, False, self.seed, **processes)
            for m, r in self.validation_rows.items()
            if len(r) >= processes["world_size"]
        }
        if not loaders:
            return []
        return CombinedLoader(loaders, mode="max_size_cycle")


def nest_pairs(batch: dict) -> dict:
    """Gather the flat ``"pairs:h:j"`` entries of a combined batch under ``batch["pairs"]``."""
    nested = {k: v for k, v in batch.items() if not k.startswith(_PAIR_PREFIX)}
    pairs = {
        tuple(k[len(_PAIR_PREFIX) :].split(":", 1)): v for k, v in batch.items() if k.startswith(_PAIR_PREFIX)
    }
    if pairs:
        nested[PAIRS_KEY] = pairs
    return nested
