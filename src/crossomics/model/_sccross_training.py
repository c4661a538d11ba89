"""Training of SCCROSS: both stages, or the fine-tuning of a query."""

from __future__ import annotations

import warnings

import numpy as np
from scvi import settings

from crossomics._docs import shared_docs
from crossomics._validation import check_positive_int
from crossomics.model._regional_alignment import fit_regional_alignment
from crossomics.model._sccross_checks import check_train_arguments
from crossomics.model._sccross_data import SCCROSSDataMixin
from crossomics.model._sccross_inputs import pair_rows
from crossomics.model._train_arguments import check_split_arguments, resolve_validation_size, run_training
from crossomics.train._multimodal_data import MultiModalDataModule
from crossomics.train._sccross_plan import SCCROSSQueryPlan


class SCCROSSTrainingMixin(SCCROSSDataMixin):
    """``train`` of :class:`crossomics.SCCROSS`."""

    @shared_docs.dedent
    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = 256,
        lr: float = 2e-3,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        early_stopping: bool = False,
        early_stopping_patience: int = 8,
        early_stopping_monitor: str = "validation_loss",
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        pretrain_epochs: int | None = None,
        **trainer_kwargs,
    ):
        """Train both stages, or fine-tune a query model made by :meth:`load_query_data`.

        Parameters
        ----------
        max_epochs
            Total epochs of both stages; default 100, or 20 when fine-tuning a query (only its
            new batch parameters, and encoders if asked, train). An epoch is one pass over the
            largest modality.
        batch_size
            Cells per modality per step.
        lr
            RMSprop learning rate of the generator (and of the discriminators unless
            ``plan_kwargs["discriminator_lr"]`` is set).
        accelerator, devices
            Passed to Lightning (``accelerator="gpu"`` trains on a GPU with no other change).
            ``devices=N, strategy="ddp"`` trains N processes (CPU or GPU), each on its own shard
            of every modality and of the true pairs, with gradients averaged every step; add
            ``num_nodes=`` for several machines (``docs/concepts.md``, "Several processes").
        %(param_train_size)s
            The held-out cells also leave the true pairs.
        %(param_shuffle_set_split)s
        early_stopping
            End a stage when ``validation_loss`` stops improving for ``early_stopping_patience``
            epochs (stage 1 hands over to stage 2; stage 2 ends training). Off by default, as
            in MINNET.
        early_stopping_patience
            Epochs without improvement before a stage ends.
        %(param_early_stopping_monitor)s
        plan_kwargs
            Extra arguments of :class:`~crossomics.train.SCCROSSTrainingPlan` (of
            ``SCCROSSQueryPlan`` for a query).
        %(param_datasplitter_kwargs)s
        pretrain_epochs
            Epochs of stage 1 (per-modality VAEs) at the start of ``max_epochs``; default 40%%.
            A query has no stage 1.
        %(param_trainer_kwargs)s
        """
        is_query = self.reference_batches_ is not None
        if max_epochs is None:
            max_epochs = 20 if is_query else 100
        check_positive_int(max_epochs, "max_epochs", 100)
        validation_size = resolve_validation_size(train_size, validation_size)
        check_train_arguments(pretrain_epochs, batch_size, lr, validation_size)
        check_split_arguments(
            "SCCROSS",
            shuffle_set_split,
            early_stopping_monitor,
            datasplitter_kwargs,
            "splits and batches each modality itself (one loader per modality and per paired modality pair)",
        )
        pretrain_epochs = self._checked_pretrain_epochs(is_query, pretrain_epochs, max_epochs)
        data_module, pairs = self._training_data(is_query, batch_size, validation_size, shuffle_set_split)
        plan_kwargs = {"lr": lr, **(plan_kwargs or {})}
        if is_query:
            training_plan = SCCROSSQueryPlan(
                self.module,
                n_reference_batches=self.reference_batches_,
                train_encoders=self.train_encoders_,
                early_stopping=early_stopping,
                patience=early_stopping_patience,
                **plan_kwargs,
            )
        else:
            training_plan = self._training_plan_cls(
                self.module,
                pretrain_epochs=pretrain_epochs,
                early_stopping=early_stopping,
                patience=early_stopping_patience,
                **plan_kwargs,
            )
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        # the data module shards every loader itself under multi-process training
        trainer_kwargs.setdefault("use_distributed_sampler", False)
        if data_module.n_val == 0:
            trainer_kwargs["limit_val_batches"] = 0
        if not is_query:
            self.n_pairs_ = {f"{h}:{j}": len(r[0]) for (h, j), r in pairs.items()}
        with warnings.catch_warnings():
            if is_query:  # a query keeps its frozen layers in evaluation mode on purpose
                warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
            result = run_training(
                self, training_plan, data_module, max_epochs, accelerator, devices, **trainer_kwargs
            )
        if not is_query:
            self._fit_regional_alignment()
        return result

    def _fit_regional_alignment(self) -> None:
        """Fit the map of ``n_alignment_regions`` (see :class:`SCCROSS`) on the training cells'
        joint embeddings; queries reuse the reference's map."""
        self.regional_alignment_ = None
        n_regions = self.init_params_["non_kwargs"].get("n_alignment_regions")
        modalities = [m for m in self.modalities_ if m in self.adata.mod]
        if n_regions is None or len(modalities) < 2:
            return
        embeddings, batches = {}, {}
        for m in modalities:
            z = self._latent(m, None, None, aligned=False)
            measured = ~np.isnan(z).any(1)
            embeddings[m], batches[m] = z[measured], self._modality_data(m)[2][measured]
        self.regional_alignment_ = fit_regional_alignment(
            embeddings, n_regions, seed=settings.seed or 0, batches=batches
        )

    def _checked_pretrain_epochs(self, is_query: bool, pretrain_epochs: int | None, max_epochs: int) -> int:
        """Epochs of stage 1 (default 40% of ``max_epochs``, none for a query), checked, once the
        model is known to hold registered training data."""
        if pretrain_epochs is None:
            pretrain_epochs = 0 if is_query else int(round(0.4 * max_epochs))
        if not 0 <= pretrain_epochs <= max_epochs:
            raise ValueError(f"pretrain_epochs={pretrain_epochs} must lie in [0, max_epochs={max_epochs}]")
        if is_query and pretrain_epochs:
            raise ValueError(f"pretrain_epochs={pretrain_epochs}; fine-tuning a query has no stage 1, pass 0")
        if self.adata_manager is None:
            raise RuntimeError(
                "this SCCROSS model was loaded from a file and holds no registered training data; "
                "train a new model (SCCROSS.setup_mudata(mdata, ...); SCCROSS(mdata)) or map query "
                "data onto it (SCCROSS.load_query_data(query, model)) to train"
            )
        return pretrain_epochs

    def _training_data(self, is_query: bool, batch_size, validation_size, shuffle_set_split):
        """The data module of every modality's measured cells (with their MNN prior rows and
        fixed encoder inputs) and of the true pairs between modalities, and those pairs."""
        mdata = self.adata
        modalities = [m for m in self.modalities_ if m in mdata.mod]
        if not is_query and self.mnn_prior_ is None:
            raise RuntimeError("this model has no MNN prior; construct it with SCCROSS(mdata) to fit one")
        matrices = {m: self._modality_data(m)[0] for m in modalities}
        rows = {m: np.flatnonzero(self._measured_cells(m, matrices[m])) for m in modalities}
        paired = self.adata_manager.registry["setup_args"].get("paired", True)
        pairs = {}
        if paired is not False and not is_query:
            explicit = None if paired is True else paired
            pairs = pair_rows({m: mdata.mod[m] for m in modalities}, modalities, explicit)
        # a pair needs both cells measured
        pairs = {
            (h, j): (rows_h[keep], rows_j[keep])
            for (h, j), (rows_h, rows_j) in pairs.items()
            if (keep := np.isin(rows_h, rows[h]) & np.isin(rows_j, rows[j])).any()
        }
        priors = {
            m: None if is_query else np.asarray(self.mnn_prior_[m], dtype=np.float32) for m in modalities
        }
        data_module = MultiModalDataModule(
            self.adata_manager,
            rows=rows,
            priors=priors,
            pairs=pairs,
            batch_size=batch_size,
            validation_size=validation_size,
            shuffle_set_split=shuffle_set_split,
            seed=settings.seed or 0,
            features={m: self._encoder_inputs(m, matrices[m], rows[m]) for m in modalities},
        )
        return data_module, pairs
