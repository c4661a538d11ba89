"""Two-stage adversarial training of the scCross module (paper eq. 23-25)."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
from scvi.module.base import LossOutput
from torch.nn.parallel import DistributedDataParallel

from crossomics._constants import PAIRS_KEY
from crossomics.module._sccross import SCCROSSModule
from crossomics.train._multimodal_data import nest_pairs


class SCCROSSTrainingPlan(pl.LightningModule):
    """Lightning plan with manual optimisation: one VAE optimiser, one discriminator optimiser.

    Stage 1 (epochs ``< pretrain_epochs``) trains each modality's VAE alone (eq. 23). Stage 2
    adds the aligners, the discriminators D_z / D_ge and the MNN prior (eq. 24-25). Each stage-2
    step runs the generator forward once: the discriminators are updated on detached outputs,
    then the generator is updated against the refreshed discriminators. D_ge's reference
    profiles are the generator's own reconstructions, so they cost no extra decoder pass.

    The module computes every loss at its weight: ``module(tensors)`` returns its
    ``LossOutput`` (``SCCROSSModule.loss``), and the adversarial terms come from
    ``discriminator_loss`` and ``with_adversarial_loss``. The plan only picks the stage and
    orders the two optimiser steps. ``train_loss``, like ``validation_loss``, is the generator
    loss without the adversarial term (logged as ``train_adversarial``).

    Both optimisers are RMSprop without momentum, as in the paper, for stable adversarial
    training.

    Early stopping (``patience`` epochs without a relative improvement of ``min_delta`` in the
    logged ``validation_loss``) ends stage 1 early and then ends training; the monitored loss is
    always the current stage's generator loss without the adversarial terms, which rise and fall
    by design and would make a poor stopping signal.
    """

    def __init__(
        self,
        module: SCCROSSModule,
        pretrain_epochs: int,
        lr: float = 2e-3,
        discriminator_lr: float | None = None,
        weight_decay: float = 0.0,
        gradient_clip: float = 5.0,
        early_stopping: bool = False,
        patience: int = 8,
        min_delta: float = 1e-3,
    ):
        super().__init__()
        self.module = module
        self.automatic_optimization = False
        self.pretrain_epochs = pretrain_epochs
        self.lr = lr
        self.discriminator_lr = discriminator_lr if discriminator_lr is not None else lr
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.early_stopping = early_stopping
        self.patience = patience
        self.min_delta = min_delta
        self.stage_two_start: int | None = None
        self._best = math.inf
        self._best_stage = 1
        self._epochs_without_improvement = 0
        self._validation_losses: list[torch.Tensor] = []

    @property
    def stage(self) -> int:
        """1 while pre-training the per-modality VAEs, 2 once the joint stage has begun."""
        start = self.pretrain_epochs if self.stage_two_start is None else self.stage_two_start
        return 2 if self.current_epoch >= start else 1

    def configure_optimizers(self):
        # foreach: one multi-tensor update instead of a loop over ~100 parameters (CPU too)
        generator = torch.optim.RMSprop(
            self.module.generator_parameters(),
            lr=self.lr,
            weight_decay=self.weight_decay,
            momentum=0.0,
            foreach=True,
        )
        discriminator = torch.optim.RMSprop(
            self.module.discriminator_parameters(),
            lr=self.discriminator_lr,
            weight_decay=self.weight_decay,
            foreach=True,
        )
        return [generator, discriminator]

    @property
    def _distributed(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def _leave_gradients_to_the_plan(self) -> None:
        """Keep DDP's reducer out of this step's backwards (Lightning re-enables it after each
        step): it expects every parameter in every backward, while a stage-1 step leaves the
        aligners and discriminators out and a stage-2 step has two backwards over different
        parameters. :meth:`_average_gradients` averages them instead."""
        if self._distributed and isinstance(self.trainer.model, DistributedDataParallel):
            self.trainer.model.require_backward_grad_sync = False

    def _average_gradients(self, optimizer) -> None:
        """Mean of every rank's gradients (one all-reduce per optimiser step under DDP).

        A parameter without a gradient on every rank keeps none, as in one process, so that
        RMSprop leaves it alone.
        """
        if not self._distributed:
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        if not params:
            return
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.device)
        flat = torch.cat(
            [present] + [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
        )
        torch.distributed.all_reduce(flat)
        flat /= self.trainer.world_size
        offset = len(params)
        for i, p in enumerate(params):
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone() if flat[i] > 0 else None
            offset += n

    def on_train_epoch_end(self) -> None:
        """Under DDP, give every rank the mean of the BatchNorm statistics: each rank's only
        saw its own shard, and evaluation uses them."""
        if not self._distributed:
            return
        norms = (m for m in self.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
        for buffer in (b for norm in norms for b in norm.buffers()):
            if buffer.is_floating_point():
                torch.distributed.all_reduce(buffer)
                buffer /= self.trainer.world_size
            else:
                torch.distributed.broadcast(buffer, src=0)

    def _step_optimizer(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self._leave_gradients_to_the_plan()
        self.manual_backward(loss)
        self._average_gradients(optimizer)
        self._adjust_gradients()
        self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def _adjust_gradients(self) -> None:
        """Change gradients between backward and step (nothing here; see :class:`SCCROSSQueryPlan`)."""

    def _loss_output(self, tensors: dict, stage: int, **loss_kwargs) -> tuple[dict, dict, LossOutput]:
        """The module's inference and generative outputs and its ``LossOutput`` at ``stage``."""
        return self.module(
            tensors, generative_kwargs={"stage": stage}, loss_kwargs={"stage": stage, **loss_kwargs}
        )

    def _log_epoch_mean(self, name: str, value: torch.Tensor, n_cells: int, prog_bar: bool = False) -> None:
        self.log(
            name,
            value,
            on_epoch=True,
            on_step=False,
            batch_size=n_cells,
            prog_bar=prog_bar,
            sync_dist=self._distributed,
        )

    def _log_training_losses(self, loss_output: LossOutput, monitored_loss: torch.Tensor) -> None:
        """Each term of ``loss_output`` (``train_reconstruction``, ``train_kl`` and the extra
        metrics: ``train_mnn``, ``train_adversarial``, ...) and, as ``train_loss``,
        ``monitored_loss``: the generator loss without the adversarial term, the quantity of
        ``validation_loss``."""
        terms = {**loss_output.reconstruction_loss, **loss_output.kl_local, **loss_output.extra_metrics}
        n_cells = loss_output.n_obs_minibatch
        for name, value in terms.items():
            self._log_epoch_mean(f"train_{name}", value, n_cells)
        self._log_epoch_mean("train_loss", monitored_loss, n_cells, prog_bar=True)

    def _record_validation_loss(self, loss_output: LossOutput) -> None:
        self._validation_losses.append(loss_output.loss.detach())
        self._log_epoch_mean("validation_loss", loss_output.loss, loss_output.n_obs_minibatch, prog_bar=True)

    def training_step(self, batch, batch_idx):
        tensors = nest_pairs(batch)
        generator_optimizer, discriminator_optimizer = self.optimizers()
        stage = self.stage
        encoded, decoded, loss_output = self._loss_output(tensors, stage)
        monitored_loss, n_cells = loss_output.loss, loss_output.n_obs_minibatch
        if stage == 2:
            generated = self.module.cross_generated_views(tensors, encoded, decoded)
            discriminator_loss = self.module.discriminator_loss(encoded, generated)
            self._step_optimizer(discriminator_optimizer, discriminator_loss)
            self._log_epoch_mean("train_discriminator_loss", discriminator_loss, n_cells)
            loss_output = self.module.with_adversarial_loss(loss_output, encoded, generated)
        # the discriminators must not move during the generator step
        discriminator_optimizer.zero_grad(set_to_none=True)
        self._step_optimizer(generator_optimizer, loss_output.loss)
        self._log_training_losses(loss_output, monitored_loss)
        self._log_epoch_mean("stage", float(stage), n_cells)

    def validation_step(self, batch, batch_idx):
        tensors = nest_pairs(batch)
        # validation batches carry no pairs; the modality pairs that have them take no prior anchors
        paired_modalities = set(getattr(self.trainer.datamodule, "pairs", None) or ())
        self._record_validation_loss(
            self._loss_output(tensors, self.stage, paired_modalities=paired_modalities)[2]
        )

    def on_validation_epoch_end(self):
        if not self._validation_losses or self.trainer.sanity_checking:
            self._validation_losses.clear()
            return
        value = torch.stack(self._validation_losses).mean()
        self._validation_losses.clear()
        if self._distributed:
            # every rank must take the same early-stopping decision
            value = self.trainer.strategy.reduce(value, reduce_op="mean")
        value = float(value)
        if not self.early_stopping:
            return
        if self.stage != self._best_stage:
            # losses of the two stages are not comparable: restart the patience count
            self._best, self._best_stage, self._epochs_without_improvement = math.inf, self.stage, 0
        # a stage's first loss always improves (inf - min_delta * inf would be nan)
        if math.isinf(self._best) or value < self._best - self.min_delta * abs(self._best):
            self._best = value
            self._epochs_without_improvement = 0
            return
        self._epochs_without_improvement += 1
        if self._epochs_without_improvement < self.patience:
            return
        if self.stage == 1:
            # stage 1 has converged: move on to the joint stage at the next epoch
            self.stage_two_start = self.current_epoch + 1
        else:
            self.trainer.should_stop = True


class SCCROSSQueryPlan(SCCROSSTrainingPlan):
    """Fine-tuning of a reference model on query cells (reference mapping, scArches-style).

    Only the query's new decoder batches train, plus the modality encoders when
    ``train_encoders=True``; everything else, the aligners and decoders that define the joint
    space included, stays frozen, and frozen layers stay in evaluation mode, so their BatchNorm
    statistics are not moved by the query. The loss is the stage-2 ELBO of the query cells
    (``x -> z_k -> z -> z_k -> x``) without alignment terms: a frozen decoder only reconstructs
    the query well from latents where the reference put such cells, which is what keeps
    fine-tuned encoders in the reference's joint space.

    Parameters
    ----------
    module
        The reference module with the query's batches appended.
    n_reference_batches
        Per modality, how many leading rows of the batch tables belong to the reference (they
        stay fixed).
    train_encoders
        Also fine-tune the modality encoders.
    **kwargs
        As :class:`SCCROSSTrainingPlan` (``lr``, ``gradient_clip``, early stopping).
    """

    def __init__(
        self,
        module: SCCROSSModule,
        n_reference_batches: dict[str, int],
        train_encoders: bool = False,
        **kwargs,
    ):
        super().__init__(module, pretrain_epochs=0, **kwargs)
        self.n_reference_batches = dict(n_reference_batches)
        self.train_encoders = train_encoders
        self.batch_tables = [
            (table, self.n_reference_batches[m])
            for m in self.n_reference_batches
            for table in module.likelihood[m].batch_tables().values()
            if table.shape[0] > self.n_reference_batches[m]
        ]
        trainable = [table for table, _ in self.batch_tables]
        if train_encoders:
            trainable += [p for m in self.n_reference_batches for p in module.encoder[m].parameters()]
        if not trainable:
            raise ValueError(
                "the query adds no new batch and train_encoders=False, so nothing would be fine-tuned; "
                "the reference model already maps these cells (get_latent_representation, "
                "transfer_labels), or pass train_encoders=True"
            )
        for p in module.parameters():
            p.requires_grad_(False)
        for p in trainable:
            p.requires_grad_(True)
        self.trainable = trainable

    def train(self, mode: bool = True):
        super().train(mode)
        self.module.eval()
        if mode and self.train_encoders:
            for m in self.n_reference_batches:
                self.module.encoder[m].train()
        return self

    def configure_optimizers(self):
        return torch.optim.RMSprop(self.trainable, lr=self.lr, weight_decay=0.0, momentum=0.0)

    def _adjust_gradients(self) -> None:
        for table, n_reference in self.batch_tables:
            # the reference's own batches are part of the frozen reference
            table.grad[:n_reference] = 0.0

    def _query_loss(self, batch) -> LossOutput:
        """The stage-2 ELBO of a query minibatch (queries take no pairs)."""
        tensors = nest_pairs(batch)
        tensors.pop(PAIRS_KEY, None)
        return self._loss_output(tensors, stage=2, align=False)[2]

    def training_step(self, batch, batch_idx):
        loss_output = self._query_loss(batch)
        self._step_optimizer(self.optimizers(), loss_output.loss)
        self._log_training_losses(loss_output, loss_output.loss)

    def validation_step(self, batch, batch_idx):
        self._record_validation_loss(self._query_loss(batch))

    def on_train_end(self):
        for p in self.module.parameters():
            p.requires_grad_(True)
