"""Training plan of the MINNET Siamese network: optimisation and logging only."""

from __future__ import annotations

import math

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
    restore_best
        At the end of training, put back the weights of the epoch with the lowest validation
        loss (the authors also kept their best validated model). The Siamese network overfits
        small training sets within a few epochs, so the last epoch is rarely the best.
    """

    def __init__(
        self, module: MINNETModule, lr: float = 1e-3, weight_decay: float = 1e-6, restore_best: bool = True
    ):
        super().__init__()
        self.module = module
        self.lr = lr
        self.weight_decay = weight_decay
        self.restore_best = restore_best
        self.best_epoch: int | None = None
        self._best_loss = math.inf
        self._best_state: dict[str, torch.Tensor] | None = None
        self._epoch_loss_sum = 0.0
        self._epoch_cells = 0

    def forward(self, batch: dict[str, torch.Tensor]):
        """Run the module on a minibatch and return its ``LossOutput``."""
        _, _, loss_output = self.module(batch)
        return loss_output

    def _log_step(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        loss_output = self(batch)
        n_cells = loss_output.n_obs_minibatch
        if prefix == "validation":
            self._epoch_loss_sum += float(loss_output.loss) * n_cells
            self._epoch_cells += n_cells
        self.log(
            f"{prefix}_loss",
            loss_output.loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=n_cells,
        )
        for name, value in loss_output.extra_metrics.items():
            self.log(f"{prefix}_{name}", value, on_step=False, on_epoch=True, batch_size=n_cells)
        return loss_output.loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step on a Siamese minibatch."""
        return self._log_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss on held-out paired cells with fixed negative pairs."""
        self._log_step(batch, "validation")

    def on_validation_epoch_end(self) -> None:
        """Keep a copy of the weights whenever the validation loss reaches a new minimum."""
        loss_sum, n_cells = self._epoch_loss_sum, self._epoch_cells
        self._epoch_loss_sum, self._epoch_cells = 0.0, 0
        if n_cells == 0 or self.trainer.sanity_checking:
            return
        loss = loss_sum / n_cells
        if loss < self._best_loss:
            self._best_loss, self.best_epoch = loss, self.current_epoch
            self._best_state = {
                key: value.detach().clone() for key, value in self.module.state_dict().items()
            }

    def on_train_end(self) -> None:
        """Restore the best validated weights (see ``restore_best``)."""
        if self.restore_best and self._best_state is not None:
            self.module.load_state_dict(self._best_state)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over all module parameters."""
        return torch.optim.Adam(self.module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
