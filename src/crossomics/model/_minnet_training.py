"""Training of MINNET on its registered paired cells (reference graph, Siamese pairs)."""

from __future__ import annotations

import logging
from typing import Literal

from scvi import REGISTRY_KEYS, settings

from crossomics._docs import shared_docs
from crossomics._validation import check_positive_int
from crossomics.model._train_arguments import (
    check_split_arguments,
    resolve_validation_size,
    run_training,
    split_rows,
)
from crossomics.train._graph_margin import GraphDistances, margin_graph
from crossomics.train._minnet_pairs import MIN_BATCH_CELLS, SiamesePairDataModule, SiamesePairDataset

logger = logging.getLogger(__name__)


class MINNETTrainingMixin:
    """``train`` of :class:`crossomics.MINNET`."""

    def _margin_distances(self, max_distance: float | None) -> GraphDistances:
        """Shortest paths on the reference KNN graph, built once per model instance."""
        if self._graph is None:
            batch = None
            if self.adata_manager.registry["setup_args"]["batch_key"] is not None:
                batch = self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel()
            self._graph = margin_graph(
                self._registered_inputs()[0],
                batch,
                n_pcs=self.init_params_["non_kwargs"]["n_pcs"],
                n_neighbors=self.init_params_["non_kwargs"]["n_neighbors"],
                random_state=0,
            )
        return GraphDistances(self._graph, max_distance=max_distance)

    @shared_docs.dedent
    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = 256,
        lr: float = 1e-3,
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
        negative_ratio: int = 3,
        negative_strategy: Literal["between", "within"] = "between",
        n_sources: int = 32,
        max_graph_distance: float | None = None,
        num_workers: int = 0,
        **trainer_kwargs,
    ):
        """Train on the registered paired cells.

        Before the first call the reference KNN graph is built (ComBat, PCA, KNN). Every
        minibatch then gets ``negative_ratio`` new negative pairs per positive pair, each anchored
        at one of ``n_sources`` cells of the batch; shortest paths come from one Dijkstra search
        per anchor, so the n x n distance matrix of the original code is never formed.

        Parameters
        ----------
        max_epochs
            Passes over the training cells; default 50.
        batch_size
            Paired cells per minibatch.
        lr
            Adam learning rate. The authors used 1e-4 with about 30 cells per batch; with the
            larger default batches here 1e-3 reaches the same fit in fewer epochs.
        accelerator, devices
            Lightning accelerator (``"cpu"``, ``"gpu"``, ``"auto"``) and devices.
        %(param_train_size)s
        %(param_shuffle_set_split)s
        early_stopping
            Stop when ``validation_loss`` has not improved for ``early_stopping_patience`` epochs
            (off by default, as in SCCROSS). The network overfits small training sets within a
            few epochs (``docs/concepts.md``, "Siamese network"), so training ends with the
            weights of the epoch with the lowest validation loss either way (``restore_best``);
            early stopping saves the epochs after it. Needs a validation set; without one it is
            turned off.
        early_stopping_patience
            Epochs without improvement before stopping.
        %(param_early_stopping_monitor)s
        plan_kwargs
            Extra arguments of :class:`~crossomics.train.MINNETTrainingPlan`: ``weight_decay``
            (Adam weight decay, default 1e-6 as the authors') and ``restore_best`` (end with the
            weights of the epoch with the lowest validation loss, as the authors kept their best
            validated model; default ``True``).
        %(param_datasplitter_kwargs)s
        negative_ratio
            Negative pairs per positive pair (paper: about 3).
        negative_strategy
            ``"between"``: negatives pair cells of different modalities (paper's choice for
            RNA + ATAC); ``"within"``: cells of the same modality (its choice for RNA + protein).
        n_sources
            Cells per minibatch that anchor negative pairs; one Dijkstra search runs from each,
            so the time per epoch grows as ``n_cells / batch_size * n_sources * n_edges``
            (quadratic in n) while memory stays ``n_sources x n_cells`` floats per batch. On the
            mouse cortex benchmark quality saturates at the default, level with one search per
            anchor as in the paper (measured in ``docs/concepts.md``, "Flexible margin from a
            kNN graph"). For large data use ``num_workers`` or ``max_graph_distance`` to cut
            the search time.
        max_graph_distance
            Optional Dijkstra ``limit``: searches stop there and farther pairs get this
            distance. ``None`` keeps the distances exact.
        num_workers
            Worker processes that build minibatches (and run the graph searches).
        %(param_trainer_kwargs)s

        Examples
        --------
        >>> model.train(max_epochs=30, batch_size=128)
        >>> model.history["train_loss"].tail(1)
        """
        if self.adata_manager is None:
            raise RuntimeError(
                "this MINNET model was loaded from a file and holds no registered training data; "
                "train a new model (MINNET.setup_mudata(mdata, ...); MINNET(mdata)) to train"
            )
        max_epochs = 50 if max_epochs is None else max_epochs
        check_positive_int(max_epochs, "max_epochs", 50)
        check_positive_int(
            batch_size,
            "batch_size",
            256,
            minimum=MIN_BATCH_CELLS,
            why=": negative pairs form within a minibatch",
        )
        validation_size = resolve_validation_size(train_size, validation_size)
        check_split_arguments(
            "MINNET",
            shuffle_set_split,
            early_stopping_monitor,
            datasplitter_kwargs,
            "builds its pair loader itself",
        )
        labels = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()
        dataset = SiamesePairDataset(
            self._registered_inputs(),
            labels,
            self._margin_distances(max_graph_distance),
            negative_ratio=negative_ratio,
            n_sources=n_sources,
            negative_strategy=negative_strategy,
        )
        train_indices, validation_indices = split_rows(
            labels.size, validation_size, shuffle_set_split, settings.seed or 0
        )
        data_module = SiamesePairDataModule(
            dataset, train_indices, validation_indices, batch_size=batch_size, num_workers=num_workers
        )
        if data_module.n_val > 0:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        elif early_stopping:
            logger.info("no validation cells (train_size=1): early stopping is turned off")
            early_stopping = False
        if early_stopping:
            trainer_kwargs["early_stopping_monitor"] = early_stopping_monitor
            trainer_kwargs["early_stopping_patience"] = early_stopping_patience
        training_plan = self._training_plan_cls(self.module, lr=lr, **(plan_kwargs or {}))
        return run_training(
            self,
            training_plan,
            data_module,
            max_epochs,
            accelerator,
            devices,
            early_stopping=early_stopping,
            **trainer_kwargs,
        )
