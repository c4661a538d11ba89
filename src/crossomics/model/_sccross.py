"""SCCROSS: the scCross model (Yang et al.) on scvi-tools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scvi import settings
from scvi.model.base import BaseModelClass

from crossomics import pp
from crossomics._backed import BackedRows, as_rows
from crossomics.model._artifact import ModelFileMixin, describe_transform, rebuild_transform
from crossomics.model._fit_sample import extend_prior, stratified_sample
from crossomics.model._regional_alignment import regional_alignment_from_file
from crossomics.model._registration import check_registered
from crossomics.model._sccross_checks import check_init_arguments
from crossomics.model._sccross_differential import SCCROSSDifferentialMixin
from crossomics.model._sccross_generation import SCCROSSGenerationMixin
from crossomics.model._sccross_inputs import (
    apply_in_chunks,
    fit_common_gene_features,
    fit_encoder_inputs,
    normalized_modalities,
)
from crossomics.model._sccross_latent import SCCROSSLatentMixin
from crossomics.model._sccross_perturbation import SCCROSSPerturbationMixin
from crossomics.model._sccross_query import SCCROSSQueryMixin
from crossomics.model._sccross_setup import SCCROSSSetupMixin
from crossomics.model._sccross_simulation import SCCROSSSimulationMixin
from crossomics.model._sccross_training import SCCROSSTrainingMixin
from crossomics.module._sccross import SCCROSSModule
from crossomics.train._multimodal_data import batch_key, data_key
from crossomics.train._sccross_plan import SCCROSSTrainingPlan

_MODULE_PARAMETERS = (
    "n_latent",
    "n_hidden",
    "n_layers",
    "dropout",
    "lambda_adversarial",
    "lambda_mnn",
    "lambda_pairs",
    "lambda_translation",
    "lambda_anchor",
    "mnn_similarity",
)
_TRANSFORM_GROUPS = ("projection", "graph", "gene_sets", "common_genes")


class SCCROSS(
    ModelFileMixin,
    SCCROSSSetupMixin,
    SCCROSSTrainingMixin,
    SCCROSSLatentMixin,
    SCCROSSQueryMixin,
    SCCROSSGenerationMixin,
    SCCROSSSimulationMixin,
    SCCROSSPerturbationMixin,
    SCCROSSDifferentialMixin,
    BaseModelClass,
):
    """scCross: integration, cross-modal generation, simulation and perturbation of K >= 2 modalities.

    Each modality has a VAE whose encoder input is a fixed projection of its counts (PCA for
    RNA / protein, LSI for ATAC) convolved over a KNN graph and concatenated with gene-set scores.
    Bidirectional aligners map every modality latent into one joint latent space, which the
    latent discriminator D_z, the data discriminators D_ge and the common-gene MNN prior align.
    Training has two stages (per-modality VAEs, then the joint model). See
    :doc:`/concepts` and the paper (Yang et al., Genome Biology 2024).

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`. Modalities may be paired, unpaired or
        partly paired (cells of two modalities that share an ``obs_name`` are one cell); true
        pairs add an alignment term.
    n_latent
        Size of the modality latents and of the joint latent (paper: 50).
    n_hidden, n_layers, dropout
        Encoder / decoder MLP shape.
    n_components
        Components of each modality's fixed PCA / LSI projection.
    n_graph_neighbors
        Neighbours of the encoder's graph convolution (0 turns it off).
    graph_self_weight
        Weight of a cell's own projection in the graph convolution.
    n_graph_reference
        At most this many training cells form the graph-convolution reference.
    gene_sets
        Gene sets for the gene-set score features: ``"go_bp"`` (bundled GO Biological Process,
        matched case-insensitively), a ``{name: [genes]}`` mapping, or ``None`` to turn them off.
    n_gene_set_components
        Components of the fixed PCA applied to the gene-set scores.
    common_gene_features
        Also give each encoder its cells' coordinates in one joint PCA of all modalities'
        common-gene expression (:func:`crossomics.pp.fit_common_gene_space`, ``n_components``
        components): the space the MNN prior is built in, as a fixed transform that also
        applies to query cells. An extension of the paper's encoder input: the MNN prior loss
        asks the encoder to reproduce prior coordinates computed from gene-level counts, and
        the projection and gene-set scores alone do not carry that information for ATAC
        (measured in ``docs/concepts.md``, "Where crossomics had to choose").
    lambda_adversarial
        Weight ``lambda_D`` of the discriminators (paper: 0.05).
    lambda_mnn
        Weight ``lambda_MNN`` of the MNN prior loss (paper: 0.04).
    lambda_pairs
        Weight of the alignment of truly paired cells.
    lambda_translation
        Weight of the translation loss of truly paired cells (each modality decoded from the
        other's joint latent; :meth:`crossomics.module.SCCROSSModule.paired_losses`), an
        addition to the paper that lets the decoders learn what only the other modality
        tells apart. ``0`` turns it off; it has no effect without paired cells.
    lambda_anchor
        Weight of the MNN anchor loss: cells of two modalities that are mutual nearest
        neighbours in the MNN prior (within a minibatch) are pulled together in the joint
        space (:meth:`crossomics.module.SCCROSSModule.mnn_anchor_loss`). Without it the
        modalities form separate islands in the joint space; with it FOSCTTM and label
        transfer improve as well (measured in ``docs/concepts.md``, "One joint space").
        ``0`` turns it off.
    mnn_similarity
        ``"inner_product"`` (default: Gram matrices over all modality pairs, which also fixes
        norms and within-modality distances) or ``"cosine"`` (the paper's eq. 22); see
        :meth:`crossomics.module.SCCROSSModule.mnn_loss`.
    prior_kwargs
        Extra arguments of :func:`crossomics.pp.mnn_prior` (e.g. ``n_metacells``). The prior
        has 20 components unless ``n_comps`` is given: on the mouse cortex both the prior and
        the trained model matched cells better with 20 than with 50. Meta-cells are
        ``"auto"`` unless ``n_metacells`` is given: the prior's MNN search and kernel cost
        grows with the square of the cells, so above 50,000 cells in all, one meta-cell per
        10 cells (at most 20,000 per modality) is used, as in the paper's atlas-scale runs
        (both measured in ``docs/concepts.md``, "Common-gene MNN prior").
    n_alignment_regions
        After training, the joint space is split into this many k-means regions, and within
        each, every modality's embedding is moved onto the mean and spread of all modalities'
        cells there (a smooth map fitted once and kept with the model, so queries are mapped
        the same way). With ``batch_keys``, each batch of a modality is moved by its own map,
        as Harmony moves batches; a query's new batches take their modality's. The training
        objective leaves each modality's cloud a small offset of its own within a cell type,
        enough to decide most nearest neighbours. ``None`` returns the
        aligners' embedding as it is (measured in ``docs/concepts.md``, "One joint space").

    n_fit_cells
        The fixed encoder inputs, the decoders' starting point and the MNN prior are fitted on
        at most this many cells per modality, sampled in proportion to the batches; every
        other cell takes the mean prior of its 15 nearest sampled cells in the modality's
        projection. Construction then costs and holds in memory the same at a million cells
        as at ``n_fit_cells``, also for backed data (``mudata.read_h5mu(path, backed=True)``,
        whose counts are read a minibatch at a time). ``None`` fits on every cell.

    Examples
    --------
    >>> import crossomics as co
    >>> mdata = co.datasets.mouse_motor_cortex()
    >>> co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
    >>> model = co.SCCROSS(mdata)
    >>> model.train(max_epochs=50, pretrain_epochs=20)
    >>> z_atac = model.get_latent_representation(modality="atac")
    """

    _module_cls = SCCROSSModule
    _training_plan_cls = SCCROSSTrainingPlan

    def __init__(
        self,
        mdata: MuData,
        n_latent: int = 50,
        n_hidden: int = 256,
        n_layers: int = 2,
        dropout: float = 0.2,
        n_components: int = 50,
        n_graph_neighbors: int = 15,
        graph_self_weight: float = 0.5,
        n_graph_reference: int = 20_000,
        gene_sets: str | Mapping[str, Sequence[str]] | None = "go_bp",
        n_gene_set_components: int = 20,
        common_gene_features: bool = True,
        lambda_adversarial: float = 0.05,
        lambda_mnn: float = 0.04,
        lambda_pairs: float = 1.0,
        lambda_translation: float = 1.0,
        lambda_anchor: float = 5.0,
        mnn_similarity: str = "inner_product",
        prior_kwargs: dict | None = None,
        n_alignment_regions: int | None = 30,
        n_fit_cells: int | None = 50_000,
    ):
        check_registered(type(self), mdata)
        check_init_arguments(locals())
        super().__init__(mdata)
        self.init_params_ = self._get_init_params(locals())
        setup = self.adata_manager.registry["setup_args"]
        self._set_data_description(
            setup,
            feature_names={m: mdata.mod[m].var_names for m in setup["modalities"]},
            batch_categories={
                m: list(self.adata_manager.get_state_registry(batch_key(m))["categorical_mapping"])
                for m in setup["modalities"]
            },
        )
        seed = settings.seed or 0
        data, measured, fit_rows, matrices, row_sums = {}, {}, {}, {}, {}
        for m in self.modalities_:
            data[m] = as_rows(self.adata_manager.get_from_registry(data_key(m)), f"modality {m!r}")
            row_sums[m] = np.asarray(data[m].sum(1)).ravel()
            measured[m] = self._measured_cells(m, data[m], row_sums[m])
            codes = np.asarray(self.adata_manager.get_from_registry(batch_key(m))).ravel()
            fit_rows[m] = stratified_sample(
                np.flatnonzero(measured[m]), codes[measured[m]], n_fit_cells, seed
            )
            matrices[m] = data[m] if len(fit_rows[m]) == len(measured[m]) else data[m][fit_rows[m]]
            if isinstance(matrices[m], BackedRows):
                matrices[m] = matrices[m].to_memory()
        # cells without counts in a modality take no part in fitting it (setup_mudata warned)
        fit_data = _fit_mudata(mdata, fit_rows, matrices, setup["layers"])
        transforms = fit_encoder_inputs(
            fit_data,
            matrices,
            self.kinds_,
            self.likelihoods_,
            seed=seed,
            n_components=n_components,
            n_graph_neighbors=n_graph_neighbors,
            graph_self_weight=graph_self_weight,
            n_graph_reference=n_graph_reference,
            gene_sets=gene_sets,
            n_gene_set_components=n_gene_set_components,
            common_gene_features=common_gene_features,
            gene_annotation=setup["gene_annotation"],
            protein_to_gene=setup["protein_to_gene"],
            layers=setup["layers"],
        )
        self._build_module(transforms)
        for m in self.modalities_:
            # decoders start at the data's marginal (see BatchAffineLikelihood.initialize_from_data)
            self.module.likelihood[m].initialize_from_data(matrices[m])
        self.library_sizes_ = {m: row_sums[m][measured[m]] for m in self.modalities_}
        self.mnn_prior_: dict[str, np.ndarray] | None = self._fit_prior(
            fit_data, data, matrices, measured, fit_rows, n_components, prior_kwargs, seed
        )
        self.n_pairs_: dict[str, int] | None = None
        self.regional_alignment_: list[dict] | None = None
        self._data = {m: mdata.mod[m] for m in self.modalities_}
        self._set_reference_mapping_state()

    def _fit_prior(self, fit_data, data, matrices, measured, fit_rows, n_components, prior_kwargs, seed):
        """The MNN prior of every row of every modality (NaN for cells left out, as the data
        loaders index it): fitted on the fit sample, interpolated for the other cells in the
        common-gene space (the encoders' own projection, or one fitted for this alone when
        ``common_gene_features=False``)."""
        setup = self.adata_manager.registry["setup_args"]
        views = {
            "kinds": self.kinds_,
            "gene_annotation": setup["gene_annotation"],
            "protein_to_gene": setup["protein_to_gene"],
            "layers": setup["layers"],
            "normalized": normalized_modalities(self.likelihoods_),
        }
        prior = pp.mnn_prior(
            fit_data,
            self.modalities_,
            random_state=seed,
            **views,
            **{"n_comps": 20, "n_metacells": "auto", **(prior_kwargs or {})},
        )
        spaces = dict(self.module.common_genes)
        if not spaces and any(len(fit_rows[m]) < measured[m].sum() for m in self.modalities_):
            spaces = fit_common_gene_features(
                fit_data, self.modalities_, matrices, n_components, seed, **views
            )
        rows = {}
        for m in self.modalities_:
            rows[m] = np.full((len(measured[m]), prior[m].shape[1]), np.nan, dtype=np.float32)
            rows[m][fit_rows[m]] = prior[m]
            outside = measured[m].copy()
            outside[fit_rows[m]] = False
            if outside.any():
                sampled = apply_in_chunks(spaces[m], matrices[m])
                rows[m][outside] = extend_prior(spaces[m], data[m][outside], sampled, prior[m])
        return rows

    def _set_reference_mapping_state(self, reference_batches=None, train_encoders=False, reference_data=None):
        """What :meth:`load_query_data` records: the reference's batch counts and data."""
        self.reference_batches_: dict[str, int] | None = reference_batches
        self.train_encoders_ = train_encoders
        self.reference_data_: dict[str, AnnData] = dict(reference_data or {})

    def _set_data_description(self, setup: Mapping, feature_names, batch_categories) -> None:
        """What the model knows about its data: names, kinds, layers, features and batches.

        ``setup`` holds the arguments of :meth:`setup_mudata` by name (``modalities``,
        ``likelihoods``, ``kinds``, ``layers``, ``batch_keys``): the registry's setup arguments,
        or the state of a model file, which stores them under the same names.
        """
        self.modalities_: list[str] = list(setup["modalities"])
        self.likelihoods_: dict[str, str] = dict(setup["likelihoods"])
        self.kinds_: dict[str, str] = dict(setup["kinds"])
        self.layers_: dict[str, str | None] = dict(setup["layers"])
        self.batch_keys_: dict[str, str | None] = dict(setup["batch_keys"])
        self.feature_names_: dict[str, pd.Index] = {m: pd.Index(feature_names[m]) for m in self.modalities_}
        self.batch_categories_: dict[str, list] = {m: list(batch_categories[m]) for m in self.modalities_}

    def _build_module(self, transforms: dict[str, dict[str, torch.nn.Module]]) -> None:
        """The module, from the hyper-parameters, the data description and the fixed transforms."""
        params = self.init_params_["non_kwargs"]
        self.module = self._module_cls(
            modalities=self.modalities_,
            n_features={m: len(self.feature_names_[m]) for m in self.modalities_},
            n_batches={m: len(self.batch_categories_[m]) for m in self.modalities_},
            likelihoods=self.likelihoods_,
            projections=transforms["projection"],
            graph_convolutions=transforms["graph"],
            gene_set_features={m: transforms["gene_sets"].get(m) for m in self.modalities_},
            common_gene_features=transforms["common_genes"] or None,
            **{k: params[k] for k in _MODULE_PARAMETERS if k in params},
        )
        self._model_summary_string = (
            f"SCCROSS: modalities={self.modalities_}, likelihoods={self.likelihoods_}, "
            f"n_latent={self.module.n_latent}, gene-set features={list(transforms['gene_sets'])}"
        )

    # ------------------------------------------------------------------ model file
    def _artifact_payload(self) -> dict:
        prior = None
        if self.mnn_prior_ is not None:
            prior = {m: torch.as_tensor(np.asarray(self.mnn_prior_[m])) for m in self.modalities_}
        return {
            "hyperparameters": self.init_params_["non_kwargs"],
            "registry": self.registry_,
            "state": {
                "modalities": self.modalities_,
                "likelihoods": self.likelihoods_,
                "kinds": self.kinds_,
                "layers": self.layers_,
                "batch_keys": self.batch_keys_,
                "feature_names": self.feature_names_,
                "batch_categories": self.batch_categories_,
                "library_sizes": {m: torch.as_tensor(v) for m, v in self.library_sizes_.items()},
                "mnn_prior": prior,
                "n_pairs": self.n_pairs_,
                "regional_alignment": self.regional_alignment_,
            },
            "transforms": {
                group: {m: describe_transform(t) for m, t in getattr(self.module, group).items()}
                for group in _TRANSFORM_GROUPS
            },
        }

    def _data_summary(self) -> dict[str, str]:
        """One line per modality for the model card (:meth:`to_hub_model`)."""
        return {
            m: f"{self.kinds_[m]}, {len(self.feature_names_[m])} features, {len(self.library_sizes_[m])} "
            f"training cells, {self.likelihoods_[m]} likelihood, batches {self.batch_categories_[m]}"
            for m in self.modalities_
        }

    def _restore_artifact(self, payload: dict) -> None:
        state = payload["state"]
        self._set_data_description(
            state, feature_names=state["feature_names"], batch_categories=state["batch_categories"]
        )
        transforms = {
            group: {m: rebuild_transform(d) for m, d in payload["transforms"][group].items()}
            for group in _TRANSFORM_GROUPS
        }
        self._build_module(transforms)
        self.library_sizes_ = {m: v.numpy() for m, v in state["library_sizes"].items()}
        prior = state["mnn_prior"]
        self.mnn_prior_ = None if prior is None else {m: v.numpy() for m, v in prior.items()}
        self.n_pairs_ = state["n_pairs"]
        self.regional_alignment_ = regional_alignment_from_file(state.get("regional_alignment"))
        self._set_reference_mapping_state()

    def _attach_data(self, adata: MuData | AnnData | None) -> None:
        """Keep query data given to :meth:`load` as the default data, checked against the model."""
        self._data = {}
        if adata is None:
            return
        if isinstance(adata, MuData):
            present = [m for m in self.modalities_ if m in adata.mod]
            if not present:
                raise ValueError(
                    f"the MuData has modalities {list(adata.mod)} but the model has {self.modalities_}; "
                    "pass data of at least one of the model's modalities"
                )
            data = {m: adata.mod[m] for m in present}
        elif isinstance(adata, AnnData):
            data = {self._modality_of(adata): adata}
        else:
            raise TypeError(f"adata must be a MuData or an AnnData, not {type(adata).__name__}")
        for m, modality_data in data.items():
            self._aligned_matrix(m, modality_data, f"modality {m!r} of the data passed to load")
        self._data = data
        self._adata = adata

    def _modality_of(self, adata: AnnData) -> str:
        """The model modality whose features an AnnData holds (the largest name overlap)."""
        overlap = {m: int(adata.var_names.isin(self.feature_names_[m]).sum()) for m in self.modalities_}
        best = max(overlap, key=overlap.get)
        if overlap[best] == 0:
            raise ValueError(
                f"none of the AnnData's {adata.n_vars} features (e.g. {list(adata.var_names[:3])}) is a "
                f"feature of the model's modalities {self.modalities_}; pass data of one of them, or a "
                "MuData whose .mod names the modality"
            )
        return best


def _fit_mudata(mdata: MuData, fit_rows: dict[str, np.ndarray], matrices: dict, layers: dict) -> MuData:
    """``mdata`` with each modality restricted to the cells its transforms and prior are fitted
    on, whose registered data are ``matrices`` (``mdata`` itself when that is every cell of data
    in memory). Parts of a backed modality are built from ``matrices``, not with
    ``AnnData.to_memory``, which closes the file the model goes on reading."""

    def fit_part(m: str) -> AnnData:
        adata = mdata.mod[m]
        if not adata.isbacked:
            return adata if len(fit_rows[m]) == adata.n_obs else adata[fit_rows[m]].copy()
        obs, var = adata.obs.iloc[fit_rows[m]].copy(), adata.var.copy()
        if layers[m] is None:
            return AnnData(matrices[m], obs=obs, var=var)
        return AnnData(obs=obs, var=var, layers={layers[m]: matrices[m]})

    if not mdata.isbacked and all(len(rows) == mdata.mod[m].n_obs for m, rows in fit_rows.items()):
        return mdata
    return MuData({m: fit_part(m) for m in fit_rows})
