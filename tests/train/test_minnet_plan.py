"""MINNET early stopping and best-weight restore on tiny real data (SNARE-seq mouse cortex)."""

from __future__ import annotations

import lightning.pytorch as pl
import mudata as md
import numpy as np
import scvi
import torch

import crossomics as co
from crossomics.model import MINNET


class _EpochWeights(pl.Callback):
    """The module's weights after each training epoch (validation sees the same weights), and
    the plan's best epoch once training ends."""

    def __init__(self):
        self.states: list[dict[str, torch.Tensor]] = []
        self.best_epoch: int | None = None

    def on_train_epoch_end(self, trainer, pl_module):
        self.states.append({k: v.detach().clone() for k, v in pl_module.module.state_dict().items()})

    def on_train_end(self, trainer, pl_module):
        self.best_epoch = pl_module.best_epoch


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_stops_when_validation_stalls_and_restores_the_best_weights():
    torch.set_num_threads(1)
    cortex = co.datasets.mouse_motor_cortex()
    cells = np.sort(np.random.default_rng(0).permutation(cortex.n_obs)[:300])
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({m: cortex[m][cells].copy() for m in ("rna", "atac")})
    scvi.settings.seed = 0
    MINNET.setup_mudata(mdata, modalities=["rna", "atac"], labels_key="cell_type")
    model = MINNET(mdata, n_hidden=64)
    weights = _EpochWeights()
    model.train(
        max_epochs=40,
        batch_size=64,
        lr=1e-2,  # overfits 300 cells within a few epochs
        early_stopping=True,
        early_stopping_patience=2,
        callbacks=[weights],
        enable_progress_bar=False,
    )
    losses = model.history["validation_loss"]["validation_loss"].to_numpy(dtype=float)
    best = int(np.argmin(losses))
    # stopped `patience` epochs after the best validation loss, long before max_epochs
    assert len(losses) == len(weights.states) == best + 3 < 40
    assert weights.best_epoch == best
    final = model.module.state_dict()
    assert _equal(final, weights.states[best])
    assert not _equal(final, weights.states[-1])
