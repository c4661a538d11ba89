"""MINNET: the MinNet supervised Siamese integration model (Liu, Wang & Liu 2023) on scvi-tools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager, fields
from scvi.model.base import BaseModelClass

from crossomics._validation import check_counts, check_number, check_positive_int, get_matrix
from crossomics.model._artifact import ModelFileMixin, is_table, table_from_plain
from crossomics.model._minnet_checks import (
    check_labels,
    layers_per_modality,
    peak_modality,
    two_modalities,
)
from crossomics.model._minnet_inputs import ModalityInput, fit_modality_input, standardization_statistics
from crossomics.model._minnet_outputs import MINNETOutputsMixin
from crossomics.model._minnet_training import MINNETTrainingMixin
from crossomics.model._registration import (
    check_batch_column,
    check_mudata,
    check_registered,
    check_setup_kwargs,
    register_or_undo,
)
from crossomics.module._minnet import MINNETModule
from crossomics.pp._annotation_files import annotation_argument
from crossomics.pp._peaks import check_genome
from crossomics.train._minnet import MINNETTrainingPlan

_INPUT_KEYS = ("X_first", "X_second")
_MODULE_PARAMETERS = ("n_hidden", "n_latent", "margin_scale", "cell_type_margin", "contrastive_weight")


class MINNET(ModelFileMixin, MINNETTrainingMixin, MINNETOutputsMixin, BaseModelClass):
    """MinNet: supervised Siamese integration of two modalities with a graph-based flexible margin.

    Trained on paired, labelled cells, it embeds cells of either modality, paired or not, into
    one co-embedding space. Each modality's log-normalised, standardised (clipped at 10)
    features go through its own input block into a shared hidden layer, followed by a shared
    cell-type classifier and a shared linear head giving the co-embedding. The loss is the
    cross-entropy of both modalities plus ``contrastive_weight`` times a contrastive loss whose
    negative-pair margin is ``margin_scale * (d_ij + cell_type_margin * [types differ])``, with
    ``d_ij`` the shortest path between the two cells in the KNN graph of the first (reference)
    modality after ComBat and PCA (edge length ``1.01 - connectivity``).

    The shortest paths are never stored as an n x n matrix: each minibatch runs Dijkstra from
    a few of its cells only (see ``train(n_sources=...)``), so memory grows linearly with n.

    The paper gives no values for its hyper-parameters; the defaults are those of the authors'
    released training notebooks (hidden layer 256, margin 10, weight 0.5, Adam with weight decay
    1e-6), except the learning rate (see :meth:`train`).

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`.
    n_hidden
        Units of the shared hidden layer (authors: 256).
    n_latent
        Dimension of the co-embedding (paper: 32).
    margin_scale
        ``m0``, scale of the flexible margin (authors: 10).
    cell_type_margin
        ``c``, added to the graph distance of pairs of different cell types (paper: 3).
    contrastive_weight
        ``lambda``, weight of the contrastive loss against the classification loss (authors: 0.5).
    n_neighbors
        Neighbours of the reference KNN graph.
    n_pcs
        Principal components of the reference KNN graph.

    Examples
    --------
    >>> import crossomics as co
    >>> mdata = co.datasets.mouse_motor_cortex()
    >>> co.MINNET.setup_mudata(mdata, modalities=["rna", "atac"], labels_key="cell_type", gene_annotation="mm10")
    >>> model = co.MINNET(mdata)
    >>> model.train(max_epochs=30)
    >>> z_rna = model.get_latent_representation(modality="rna")
    """

    _module_cls = MINNETModule
    _training_plan_cls = MINNETTrainingPlan

    def __init__(
        self,
        mdata: MuData,
        n_hidden: int = 256,
        n_latent: int = 32,
        margin_scale: float = 10.0,
        cell_type_margin: float = 3.0,
        contrastive_weight: float = 0.5,
        n_neighbors: int = 15,
        n_pcs: int = 50,
    ):
        check_registered(type(self), mdata)
        for name, example in (("n_hidden", 256), ("n_latent", 32), ("n_neighbors", 15), ("n_pcs", 50)):
            check_positive_int(locals()[name], name, example)
        for name, example in (("margin_scale", 10.0), ("cell_type_margin", 3.0), ("contrastive_weight", 0.5)):
            check_number(locals()[name], name, example, low=0)
        super().__init__(mdata)
        self.init_params_ = self._get_init_params(locals())
        setup = self.adata_manager.registry["setup_args"]
        first, second = setup["modalities"]
        self.modalities_: list[str] = [first, second]
        self.layers_: dict[str, str | None] = dict(setup["layers"])
        self.cell_types_: list = list(
            self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY).categorical_mapping
        )
        annotation = setup["gene_annotation"]
        peaks = peak_modality(mdata, [first, second]) if annotation is not None else None
        self.input_transforms_: dict[str, ModalityInput] = {}
        for modality, other in ((first, second), (second, first)):
            self.input_transforms_[modality] = fit_modality_input(
                mdata.mod[modality],
                modality,
                layer=setup["layers"][modality],
                gene_annotation=annotation if modality == peaks else None,
                restrict_to=mdata.mod[other].var_names,
            )
        self._data: dict[str, AnnData] = {m: mdata.mod[m] for m in self.modalities_}
        self._input_cache: dict[str, sp.csr_matrix] = {}
        self._graph: sp.csr_matrix | None = None
        self._build_module()
        # the module starts from the registered cells' standardisation statistics
        for block, X in zip(self.module.input_blocks, self._registered_inputs(), strict=True):
            mean, std = standardization_statistics(X)
            block.feature_mean.copy_(torch.as_tensor(mean))
            block.feature_std.copy_(torch.as_tensor(std))

    def _build_module(self) -> None:
        """The module from the hyper-parameters and the input recipes' sizes (statistics are buffers)."""
        params = self.init_params_["non_kwargs"]
        sizes = [self.input_transforms_[m].n_features for m in self.modalities_]
        self.module = self._module_cls(
            feature_means=tuple(np.zeros(n, dtype=np.float32) for n in sizes),
            feature_stds=tuple(np.ones(n, dtype=np.float32) for n in sizes),
            n_labels=len(self.cell_types_),
            **{k: params[k] for k in _MODULE_PARAMETERS if k in params},
        )
        features = ", ".join(f"{m}: {t.n_features}" for m, t in self.input_transforms_.items())
        self._model_summary_string = (
            f"MINNET model; input features {features}; {len(self.cell_types_)} cell types; hidden "
            f"{self.module.embedding_head.in_features}; latent {self.module.embedding_head.out_features}; "
            f"margin {self.module.margin_scale} x (d + {self.module.cell_type_margin}); contrastive weight "
            f"{self.module.contrastive_weight}"
        )

    # ------------------------------------------------------------------ model file
    def _artifact_payload(self) -> dict:
        return {
            "hyperparameters": self.init_params_["non_kwargs"],
            "registry": self.registry_,
            "state": {
                "modalities": self.modalities_,
                "layers": self.layers_,
                "cell_types": self.cell_types_,
                "input_transforms": {
                    m: {
                        "modality": t.modality,
                        "feature_names": t.feature_names,
                        "gene_annotation": t.gene_annotation,
                        "upstream": t.upstream,
                    }
                    for m, t in self.input_transforms_.items()
                },
            },
        }

    def _data_summary(self) -> dict[str, str]:
        """One line per modality for the model card (:meth:`to_hub_model`)."""
        return {
            m: f"{len(self.input_transforms_[m].feature_names)} features; cell types {self.cell_types_}"
            for m in self.modalities_
        }

    def _restore_artifact(self, payload: dict) -> None:
        state = payload["state"]
        self.modalities_ = list(state["modalities"])
        self.layers_ = dict(state["layers"])
        self.cell_types_ = list(state["cell_types"])
        self.input_transforms_ = {}
        for m, recipe in state["input_transforms"].items():
            annotation = recipe["gene_annotation"]
            self.input_transforms_[m] = ModalityInput(
                recipe["modality"],
                np.asarray(recipe["feature_names"], dtype=object),
                table_from_plain(annotation) if is_table(annotation) else annotation,
                recipe["upstream"],
            )
        self._data, self._input_cache, self._graph = {}, {}, None
        self._build_module()

    def _attach_data(self, adata: MuData | AnnData | None) -> None:
        """Keep data given to :meth:`load` as the model's default data (any feature order)."""
        self._data = {}
        if adata is None:
            return
        if isinstance(adata, AnnData):
            overlap = {
                m: int(adata.var_names.isin(self.input_transforms_[m].feature_names).sum())
                for m in self.modalities_
            }
            best = max(overlap, key=overlap.get)
            # a gene-activity modality's AnnData holds peaks, not the genes the model reads
            peak_inputs = [
                m for m in self.modalities_ if self.input_transforms_[m].gene_annotation is not None
            ]
            if overlap[best] == 0 and len(peak_inputs) == 1:
                best = peak_inputs[0]
            elif overlap[best] == 0:
                raise ValueError(
                    f"cannot tell which of the modalities {self.modalities_} the AnnData holds from its features "
                    f"(e.g. {list(adata.var_names[:3])}); pass a MuData, e.g. MuData({{'atac': adata}})"
                )
            self._data = {best: adata}
        elif isinstance(adata, MuData):
            self._data = {m: adata.mod[m] for m in self.modalities_ if m in adata.mod}
            if not self._data:
                raise ValueError(
                    f"the MuData has modalities {list(adata.mod)} but the model has {self.modalities_}"
                )
        else:
            raise TypeError(f"adata must be a MuData or an AnnData, not {type(adata).__name__}")
        self._adata = adata

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        modalities: Sequence[str],
        labels_key: str | None = None,
        batch_key: str | None = None,
        layers: str | Mapping[str, str | None] | None = None,
        gene_annotation: str | pd.DataFrame | None = None,
        **kwargs,
    ):
        """Register paired, labelled multi-omics data for MINNET.

        Parameters
        ----------
        mdata
            MuData whose two modalities hold the same cells in the same order, with raw counts.
        modalities
            The two modalities, e.g. ``["rna", "atac"]``. The first is the reference whose
            batch-corrected KNN graph defines the flexible margins (paper: RNA).
        labels_key
            Cell-type column of the reference modality's ``obs`` (required; at least two types).
        batch_key
            Batch column of the reference modality's ``obs``; ComBat removes it before the KNN
            graph is built. ``None`` skips batch correction.
        layers
            Layer holding the raw counts, one name for both modalities or ``{modality: layer}``;
            ``None`` uses ``X``.
        gene_annotation
            Genome name (``"mm10"``, ``"hg38"``), a GTF/GFF3 file (see
            :func:`crossomics.pp.read_gene_annotation`) or gene-body table. When given, the
            modality with peak coordinates is fed to the network as gene activity (:func:`crossomics.pp.gene_activity`,
            gene bodies plus 2 kb upstream, as in the paper) over the genes it shares with the other
            modality. The transform is part of the model, so query ATAC data passed to
            :meth:`get_latent_representation` go through the identical computation from their own peaks.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Notes
        -----
        Like every scvi-tools model, registration adds ``_scvi_labels`` / ``_scvi_batch`` columns to
        the reference modality's ``obs`` and ``_scvi_*`` keys to ``uns``; nothing else is changed.

        Examples
        --------
        >>> import crossomics as co
        >>> mdata = co.datasets.mouse_motor_cortex()
        >>> co.MINNET.setup_mudata(
        ...     mdata, modalities=["rna", "atac"], labels_key="cell_type", batch_key="batch", gene_annotation="mm10"
        ... )
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_mudata(mdata, "MINNET")
        check_setup_kwargs(kwargs, cls.setup_mudata)
        modalities = two_modalities(mdata, modalities)
        setup_method_args["setup_args"]["modalities"] = modalities
        layers = layers_per_modality(layers, modalities)
        setup_method_args["setup_args"]["layers"] = layers
        first, second = (mdata.mod[m] for m in modalities)
        if not first.obs_names.equals(second.obs_names):
            raise ValueError(
                f"MINNET trains on paired cells: modalities {modalities} must hold the same cells in the "
                "same order (e.g. muon.pp.intersect_obs(mdata))"
            )
        check_labels(first, labels_key, modalities[0])
        check_batch_column(first, batch_key, modalities[0], "batch_key")
        for modality in modalities:
            name = f"modality {modality!r} " + (f"layer {layers[modality]!r}" if layers[modality] else "X")
            check_counts(
                get_matrix(mdata.mod[modality], layers[modality], name=name),
                name,
                hint=" (MINNET log-normalises raw counts itself)",
            )
        gene_annotation = annotation_argument(gene_annotation)
        setup_method_args["setup_args"]["gene_annotation"] = gene_annotation
        if gene_annotation is not None:
            peaks = peak_modality(mdata, modalities)
            check_genome(mdata.mod[peaks], gene_annotation, f"modality {peaks!r}")

        mudata_fields = [
            *(
                fields.MuDataLayerField(key, layers[m], mod_key=m, is_count_data=False, mod_required=True)
                for key, m in zip(_INPUT_KEYS, modalities, strict=True)
            ),
            fields.MuDataCategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key, mod_key=modalities[0]),
            fields.MuDataCategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key, mod_key=modalities[0]),
        ]
        adata_manager = AnnDataManager(fields=mudata_fields, setup_method_args=setup_method_args)
        register_or_undo(adata_manager, mdata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_anndata(cls, adata: AnnData, **kwargs):
        """Not supported: MINNET pairs two modalities; build a MuData and use :meth:`setup_mudata`."""
        raise NotImplementedError(
            "MINNET integrates two paired modalities; build a MuData and call setup_mudata"
        )

    def _modality_index(self, modality: str) -> int:
        if modality not in self.modalities_:
            raise ValueError(f"unknown modality {modality!r}; the model was trained on {self.modalities_}")
        return self.modalities_.index(modality)

    def _model_inputs(self, modality: str) -> sp.csr_matrix:
        """Model inputs of the model's own cells of ``modality`` (computed once)."""
        if modality not in self._input_cache:
            data = self._data.get(modality)
            if data is None:
                raise ValueError(
                    f"this model holds no {modality!r} data (it was loaded without it); pass adata= "
                    f"(an AnnData of {modality!r} or a MuData holding it)"
                )
            self._input_cache[modality] = self.input_transforms_[modality].transform(
                data, self.layers_[modality]
            )
        return self._input_cache[modality]

    def _registered_inputs(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Model inputs of both modalities of the model's cells."""
        return tuple(self._model_inputs(m) for m in self.modalities_)
