"""Training plan of the MINNET Siamese network: optimisation and logging only."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from crossomics.module._minnet import MINNETModule


class MINNETTrainingPlan(pl.LightningModule):
    """Adam on the classification + flexible-margin contrastive loss of :class:`MINNETModule`.

    Logs per epoch ``train_loss`` (and ``validation_loss`` when there is a validation set),
    plus the ``classification_loss``, ``contrastive_loss`` and ``accuracy`` components with
    the ``train_`` / ``validation_`` prefix; they end up in ``model.history``.

    Parameters
    ----------
    module
        The network.
    lr
        Adam learning rate.
    weight_decay
        Adam weight decay (authors' code: 1e-6).
    """

    def __init__(self, module: MINNETModule, lr: float = 1e-3, weight_decay: float = 1e-6):
        super().__init__()
        self.module = module
        self.lr = lr
        self.weight_decay = weight_decay

    def forward(self, batch: dict[str, torch.Tensor]):
        """Run the module on a minibatch and return its ``LossOutput``."""
        _, _, loss_output = self.module(batch)
        return loss_output

    def _log_step(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        loss_output = self(batch)
        n_cells = loss_output.n_obs_minibatch
        self.log(f"{prefix}_loss", loss_output.loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n_cells)
        for name, value in loss_output.extra_metrics.items():
            self.log(f"{prefix}_{name}", value, on_step=False, on_epoch=True, batch_size=n_cells)
        return loss_output.loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step on a Siamese minibatch."""
        return self._log_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss on held-out paired cells with fixed negative pairs."""
        self._log_step(batch, "validation")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over all module parameters."""
        return torch.optim.Adam(self.module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
