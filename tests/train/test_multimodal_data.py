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


def test_training_batches_carry_the_encoder_input_of_their_own_cells():
    """The fixed encoder input is computed once per training run; every minibatch (modality
    rows and true pairs) must carry the rows of its own cells."""
    import scvi
    import torch

    import crossomics as co
    from crossomics._constants import FEATURES_KEY, X_KEY
    from crossomics.train._multimodal_data import MultiModalDataModule, nest_pairs

    scvi.settings.seed = 0
    mdata = co.datasets.bmmc_multiome()[:150].copy()
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
    model = co.SCCROSS(mdata, n_hidden=16, n_latent=4, n_components=8, n_graph_reference=100, gene_sets=None)
    rows = {m: np.arange(150) for m in ("rna", "atac")}
    data = MultiModalDataModule(
        model.adata_manager,
        rows=rows,
        priors={m: model.mnn_prior_[m].astype(np.float32) for m in rows},
        pairs={("rna", "atac"): (np.arange(150), np.arange(150))},
        batch_size=32,
        features={m: model._encoder_inputs(m, model._modality_data(m)[0], rows[m]) for m in rows},
    )
    batch = next(iter(data.train_dataloader()))
    tensors = nest_pairs(batch[0] if isinstance(batch, tuple) else batch)
    blocks = [tensors[m] for m in rows] + [tensors["pairs"][("rna", "atac")][m] for m in rows]
    modalities = list(rows) * 2
    with torch.no_grad():
        for m, block in zip(modalities, blocks, strict=True):
            expected = model.module.encoder_input(m, torch.as_tensor(block[X_KEY]))
            np.testing.assert_allclose(
                np.asarray(block[FEATURES_KEY]), expected.numpy(), rtol=1e-4, atol=1e-4
            )
