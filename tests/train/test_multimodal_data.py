"""Minibatch loaders: shards of multi-process training."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import Dataset

from crossomics.train._multimodal_data import _batched_loader, shard_rows


class _Rows(Dataset):
    """Returns the rows it is asked for, so a loader's batches can be checked."""

    def __len__(self):
        return 10**6

    def __getitem__(self, rows):
        return np.asarray(rows)


@pytest.mark.parametrize(
    ("n_rows", "world_size", "batch_size"), [(1000, 2, 128), (257, 2, 256), (301, 3, 50), (5, 2, 256)]
)
def test_shards_are_disjoint_cover_the_rows_and_have_equal_batch_counts(n_rows, world_size, batch_size):
    rows = np.arange(n_rows) * 3 + 7  # rows of a modality need not start at 0 or be contiguous
    seen, counts = [], []
    for rank in range(world_size):
        loader = _batched_loader(_Rows(), rows, batch_size, True, seed=4, rank=rank, world_size=world_size)
        epochs = [[np.asarray(b) for b in loader] for _ in range(2)]
        counts.append(len(epochs[0]))
        for batches in epochs:
            assert min(len(b) for b in batches) >= 2 or n_rows < 2 * world_size
            assert max(len(b) for b in batches) <= batch_size
        shard = np.concatenate(epochs[0])
        assert np.array_equal(np.sort(shard), np.sort(np.concatenate(epochs[1])))  # same shard, reshuffled
        assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1])) or len(shard) < 3
        seen.append(shard)
    everything = np.concatenate(seen)
    assert len(everything) == len(np.unique(everything)) == n_rows  # disjoint, and together all rows
    assert set(everything) == set(rows)
    assert len(set(counts)) == 1  # a rank that ran out of batches would leave the others waiting


def test_shard_rows_deals_a_seeded_permutation():
    rows = np.arange(11)
    shards = [shard_rows(rows, r, 2, seed=0) for r in range(2)]
    assert sorted(map(len, shards)) == [5, 6]
    assert np.array_equal(shards[0], shard_rows(rows, 0, 2, seed=0))
    assert not np.array_equal(shards[0], shard_rows(rows, 0, 2, seed=1))
