"""SCCROSS: the scCross model (Yang et al.) on scvi-tools."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from mudata import MuData
from scvi import settings
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from crossomics import pp
from crossomics._validation import (
    check_counts,
    check_finite,
    check_indices,
    check_positive_int,
    empty_cells,
    get_matrix,
)
from crossomics.datasets._loaders import genome_from_var
from crossomics.model._artifact import ModelFileMixin, describe_transform, rebuild_transform
from crossomics.model._registration import (
    check_mudata,
    check_registered,
    check_setup_kwargs,
    register_or_undo,
)
from crossomics.model._sccross_checks import (
    check_init_arguments,
    check_train_arguments,
    checked_modalities,
)
from crossomics.model._sccross_differential import SCCROSSDifferentialMixin
from crossomics.model._sccross_generation import SCCROSSGenerationMixin
from crossomics.model._sccross_inputs import (
    check_modality_data,
    data_manager,
    feature_alignment,
    fit_encoder_inputs,
    infer_kind,
    normalized_modalities,
    pair_rows,
    pairing_table,
)
from crossomics.model._sccross_query import SCCROSSQueryMixin
from crossomics.model._train_arguments import check_split_arguments, resolve_validation_size
from crossomics.module._sccross import SCCROSSModule
from crossomics.nn._likelihoods import COUNT_LIKELIHOODS, LIKELIHOODS
from crossomics.nn._transforms import to_torch_rows
from crossomics.pp._annotation_files import annotation_argument
from crossomics.pp._common_genes import DEFAULT_LIKELIHOOD, MODALITY_KINDS, has_genomic_features
from crossomics.train._multimodal_data import MultiModalDataModule, batch_key, data_key
from crossomics.train._sccross_plan import SCCROSSQueryPlan, SCCROSSTrainingPlan

logger = logging.getLogger(__name__)

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


def _per_modality(value, modalities: Sequence[str], name: str, default=None) -> dict:
    """Expand a scalar or a mapping into ``{modality: value}``, rejecting unknown names."""
    if isinstance(value, Mapping):
        unknown = set(value) - set(modalities)
        if unknown:
            raise ValueError(
                f"{name} names modalities {sorted(unknown)} that are not in modalities={list(modalities)}"
            )
        return {m: value.get(m, default) for m in modalities}
    return dict.fromkeys(modalities, value if value is not None else default)


class SCCROSS(
    ModelFileMixin, SCCROSSQueryMixin, SCCROSSGenerationMixin, SCCROSSDifferentialMixin, BaseModelClass
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
    ):
        check_registered(type(self), mdata)
        check_init_arguments(locals())
        super().__init__(mdata)
        self.init_params_ = self._get_init_params(locals())
        setup = self.adata_manager.registry["setup_args"]
        self._set_data_description(
            modalities=setup["modalities"],
            likelihoods=setup["likelihoods"],
            kinds=setup["kinds"],
            layers=setup["layers"],
            batch_keys=setup["batch_keys"],
            feature_names={m: mdata.mod[m].var_names for m in setup["modalities"]},
            batch_categories={
                m: list(self.adata_manager.get_state_registry(batch_key(m))["categorical_mapping"])
                for m in setup["modalities"]
            },
        )
        seed = settings.seed or 0
        matrices, measured = {}, {}
        for m in self.modalities_:
            X = self.adata_manager.get_from_registry(data_key(m))
            X = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
            measured[m] = self._measured_cells(m, X)
            matrices[m] = X if measured[m].all() else X[measured[m]]
        # cells without counts in a modality take no part in fitting it (setup_mudata warned)
        fit_data = _measured_mudata(mdata, measured)
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
        self.library_sizes_ = {m: np.asarray(matrices[m].sum(1)).ravel() for m in self.modalities_}
        prior = pp.mnn_prior(
            fit_data,
            self.modalities_,
            kinds=self.kinds_,
            gene_annotation=setup["gene_annotation"],
            protein_to_gene=setup["protein_to_gene"],
            layers=setup["layers"],
            normalized=normalized_modalities(self.likelihoods_),
            random_state=seed,
            **{"n_comps": 20, "n_metacells": "auto", **(prior_kwargs or {})},
        )
        # one prior row per row of the modality (NaN for cells left out), as the data loaders index it
        self.mnn_prior_: dict[str, np.ndarray] | None = {
            m: _rows_of_all_cells(prior[m], measured[m]) for m in self.modalities_
        }
        self.n_pairs_: dict[str, int] | None = None
        self._data = {m: mdata.mod[m] for m in self.modalities_}
        self._set_reference_mapping_state()

    def _set_reference_mapping_state(self, reference_batches=None, train_encoders=False, reference_data=None):
        """What :meth:`load_query_data` records: the reference's batch counts and data."""
        self.reference_batches_: dict[str, int] | None = reference_batches
        self.train_encoders_ = train_encoders
        self.reference_data_: dict[str, AnnData] = dict(reference_data or {})

    def _set_data_description(
        self, modalities, likelihoods, kinds, layers, batch_keys, feature_names, batch_categories
    ) -> None:
        """What the model knows about its data: names, kinds, layers, features and batches."""
        self.modalities_: list[str] = list(modalities)
        self.likelihoods_: dict[str, str] = dict(likelihoods)
        self.kinds_: dict[str, str] = dict(kinds)
        self.layers_: dict[str, str | None] = dict(layers)
        self.batch_keys_: dict[str, str | None] = dict(batch_keys)
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

    # ------------------------------------------------------------------ setup
    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        modalities: Sequence[str],
        layers: str | Mapping[str, str | None] | None = None,
        likelihoods: str | Mapping[str, str] | None = None,
        batch_keys: str | Mapping[str, str | None] | None = None,
        kinds: Mapping[str, str] | None = None,
        gene_annotation: str | pd.DataFrame | None = None,
        protein_to_gene: Mapping[str, str] | None = None,
        paired: bool | pd.DataFrame | Mapping[str, Sequence[str]] = True,
        **kwargs,
    ):
        """Register a MuData for SCCROSS.

        Every field lives on its own modality (``mod_key``), so unpaired and partly paired
        MuData work. The inputs are validated before anything is registered: a failed check
        leaves ``mdata`` untouched. Registration adds scvi-tools' ``_scvi_*`` columns to each
        modality's ``.obs`` (as every scvi-tools model does).

        Parameters
        ----------
        mdata
            The MuData.
        modalities
            Names of the K >= 2 modalities to integrate (keys of ``mdata.mod``).
        layers
            Layer holding the data, for all modalities (str) or per modality (mapping);
            ``None`` uses ``.X``.
        likelihoods
            ``"nb"`` (default; paper), ``"zinb"``, ``"bernoulli"`` (binarised ATAC or binary
            methylation calls), ``"ziln"`` (default for methylation rates) or ``"normal"``
            (continuous data), for all or per modality. Count likelihoods need non-negative
            integer data. With ``"normal"`` or ``"ziln"`` the data are used as given
            (log-normalised expression, TF-IDF, z-scores, rates): the MNN prior, the
            common-gene views and the gene-set scores map them to genes without normalising
            them again, and no raw counts are needed.
        batch_keys
            ``.obs`` column of batch labels, for all or per modality. Decoders get batch-specific
            scale, bias and dispersion (paper eq. 33-35).
        kinds
            What each modality holds (``"rna"``, ``"atac"``, ``"protein"`` or
            ``"methylation"``): chooses the input projection and the common-gene view of the
            MNN prior. Inferred from the modality names (``rna``/``gex``, ``atac``/``peaks``,
            ``adt``/``protein``, ``methylation``/``snmc``) when not given. Methylation
            features are genes (gene-level fractions) or CpG sites / bins (``chr1:12345``,
            ``chr1_12345``, ``chr1:100-200``), which are mapped to genes like peaks; in the
            common-gene view methylation enters negated, as it anti-correlates with expression.
        gene_annotation
            Genome (``"mm10"``/``"hg38"``, also ``"GRCm38"``/``"GRCh38"``), a GTF/GFF3 file
            (read with :func:`crossomics.pp.read_gene_annotation`; the model keeps the genes,
            not the path) or a gene-body table, needed when a modality is ATAC or methylation
            sites (gene activity for the MNN prior and the gene-set
            features). ``None`` reads the genome from ``var["genome"]`` (as 10x writes it) when
            the modalities name one. Setup fails, naming the likely genome, when fewer than
            half of the peaks overlap a gene of the annotation; chromosome names ``1`` and
            ``chr1`` are the same.
        protein_to_gene
            Antibody -> gene symbol table for protein modalities (default: name matching).
        paired
            Cells of two modalities that share an ``obs_name`` are one cell measured twice (true
            pairs: an alignment and a translation term). Setup logs how many there are, and
            training finds them again from the names, so a filtered modality never pairs the
            wrong cells. ``False`` treats every cell as unpaired, e.g. when names repeat across
            modalities by chance. An explicit pairing for cells named differently in each
            modality: a DataFrame (or dict of equally long lists) with one column of cell names
            per modality, one row per cell, missing where a cell lacks a modality.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_mudata(mdata, "SCCROSS")
        check_setup_kwargs(kwargs, cls.setup_mudata)
        modalities = checked_modalities(mdata, modalities)
        layers = _per_modality(layers, modalities, "layers")
        likelihoods = _per_modality(likelihoods, modalities, "likelihoods")
        batch_keys = _per_modality(batch_keys, modalities, "batch_keys")
        kinds = _per_modality(kinds, modalities, "kinds")
        if gene_annotation is None:
            gene_annotation = genome_from_var([mdata.mod[m] for m in modalities])
        else:
            gene_annotation = annotation_argument(gene_annotation)
        for m in modalities:
            adata = mdata.mod[m]
            kinds[m] = kinds[m] or infer_kind(m, adata)
            if kinds[m] not in MODALITY_KINDS:
                raise ValueError(f"kinds[{m!r}]={kinds[m]!r}; choose one of {list(MODALITY_KINDS)}")
            likelihoods[m] = likelihoods[m] or DEFAULT_LIKELIHOOD[kinds[m]]
            if likelihoods[m] not in LIKELIHOODS:
                raise ValueError(f"likelihoods[{m!r}]={likelihoods[m]!r}; choose one of {list(LIKELIHOODS)}")
            positional = has_genomic_features(kinds[m], adata.var)
            if positional and gene_annotation is None:
                raise ValueError(
                    f"modality {m!r} is {kinds[m]} with genomic features: pass gene_annotation='mm10'/'hg38' "
                    "(or a gene-body table) so they can be mapped to genes for the MNN prior"
                )
            check_modality_data(m, adata, layers[m], likelihoods[m], batch_keys[m])
            if kinds[m] == "atac":
                pp.check_genome(adata, gene_annotation, f"modality {m!r}")
        setup_method_args["setup_args"]["gene_annotation"] = gene_annotation
        adatas = {m: mdata.mod[m] for m in modalities}
        paired = pairing_table(paired, adatas, modalities)
        if paired is not False:
            explicit = None if paired is True else paired
            for (h, j), (rows, _) in pair_rows(adatas, modalities, explicit).items():
                source = "shared obs_names" if explicit is None else "explicit pairing"
                logger.info("%d cells are paired between %r and %r (%s)", len(rows), h, j, source)
        setup_method_args["setup_args"].update(
            modalities=modalities,
            layers=layers,
            likelihoods=likelihoods,
            batch_keys=batch_keys,
            kinds=kinds,
            paired=paired,
        )
        adata_manager = data_manager(modalities, layers, likelihoods, batch_keys, setup_method_args)
        register_or_undo(adata_manager, mdata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_anndata(cls, adata: AnnData, **kwargs):
        """Not supported: SCCROSS needs several modalities; use :meth:`setup_mudata`."""
        raise NotImplementedError(
            "SCCROSS integrates several modalities; build a MuData and call setup_mudata"
        )

    # ------------------------------------------------------------------ training
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
        train_size, validation_size
            Fraction of each modality's cells that trains, or that is held out to compute
            ``validation_loss`` (give one; default 0.9 / 0.1). The held-out cells also leave
            the true pairs.
        shuffle_set_split
            Hold out random cells (default) or each modality's last cells.
        early_stopping
            End a stage when ``validation_loss`` stops improving for ``early_stopping_patience``
            epochs (stage 1 hands over to stage 2; stage 2 ends training). Off by default, as
            in MINNET.
        early_stopping_patience
            Epochs without improvement before a stage ends.
        early_stopping_monitor
            Only ``"validation_loss"`` (accepted for scvi-tools compatibility).
        plan_kwargs
            Extra arguments of :class:`~crossomics.train.SCCROSSTrainingPlan` (of
            ``SCCROSSQueryPlan`` for a query).
        datasplitter_kwargs
            Not supported (SCCROSS loads each modality itself); an error names the arguments
            that replace it.
        pretrain_epochs
            Epochs of stage 1 (per-modality VAEs) at the start of ``max_epochs``; default 40%.
            A query has no stage 1.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``enable_progress_bar=False``).
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
        runner = TrainRunner(
            self,
            training_plan=training_plan,
            data_splitter=data_module,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        if not is_query:
            self.n_pairs_ = {f"{h}:{j}": len(r[0]) for (h, j), r in pairs.items()}
        with warnings.catch_warnings():
            if is_query:  # a query keeps its frozen layers in evaluation mode on purpose
                warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
            return runner()

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
            modalities=state["modalities"],
            likelihoods=state["likelihoods"],
            kinds=state["kinds"],
            layers=state["layers"],
            batch_keys=state["batch_keys"],
            feature_names=state["feature_names"],
            batch_categories=state["batch_categories"],
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

    # ------------------------------------------------------------------ data access
    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities_:
            raise ValueError(f"unknown modality {modality!r}; this model has {self.modalities_}")

    def _data_of(self, modality: str, adata: AnnData | MuData | None = None) -> AnnData:
        """The AnnData of ``modality``: from ``adata`` (AnnData or MuData), else the model's data."""
        if adata is None:
            data = self._data.get(modality)
            if data is None:
                raise ValueError(
                    f"this model holds no {modality!r} data (it was loaded without it); pass adata= "
                    f"(an AnnData of {modality!r} or a MuData holding it)"
                )
            return data
        if isinstance(adata, MuData):
            if modality not in adata.mod:
                raise ValueError(f"the MuData has no modality {modality!r}; it has {list(adata.mod)}")
            return adata.mod[modality]
        if not isinstance(adata, AnnData):
            raise TypeError(
                f"adata is a {type(adata).__name__}; pass an AnnData of {modality!r} (or a MuData holding it)"
            )
        return adata

    def _aligned_matrix(self, modality: str, adata: AnnData, where: str):
        """Data of ``adata`` in the model's feature order (by name), checked, and batch codes.

        Batches unseen in training fall back to the first training batch (only decoders use
        batches).
        """
        X = get_matrix(adata, self.layers_[modality], name=where)
        order = feature_alignment(self.feature_names_[modality], adata.var_names, where, modality)
        if order is not None:
            X = X[:, order]
        check_finite(X, where)
        if self.likelihoods_[modality] in COUNT_LIKELIHOODS:
            check_counts(
                X, where, hint=f"; the model's {self.likelihoods_[modality]!r} likelihood needs raw counts"
            )
        key = self.batch_keys_[modality]
        categories = pd.Index(self.batch_categories_[modality]).astype(str)
        if key is not None and key in adata.obs:
            codes = categories.get_indexer(adata.obs[key].astype(str))
            if (codes < 0).any():
                logger.warning(
                    "query batches not seen in training are decoded as batch %r; map the query with "
                    "SCCROSS.load_query_data to give its batches their own decoder parameters",
                    categories[0],
                )
            codes = np.where(codes < 0, 0, codes)
        else:
            codes = np.zeros(adata.n_obs, dtype=np.int64)
        return X, codes

    def _modality_data(
        self, modality: str, adata: AnnData | MuData | None = None, indices: Sequence[int] | None = None
    ) -> tuple[sp.csr_matrix | np.ndarray, AnnData, np.ndarray]:
        """Data matrix (training feature order), the AnnData it came from and batch codes.

        ``adata=None`` uses the model's data (registered at construction, or given to
        :meth:`load`); a query AnnData (or MuData holding the modality) must have the training
        features, in any order, in the registered layer.
        """
        self._check_modality(modality)
        if adata is None and self.adata_manager is not None and modality in self.adata.mod:
            source = self.adata.mod[modality]
            X = self.adata_manager.get_from_registry(data_key(modality))
            codes = np.asarray(self.adata_manager.get_from_registry(batch_key(modality))).ravel()
        else:
            source = self._data_of(modality, adata)
            where = f"query {modality!r} data" if adata is not None else f"the model's {modality!r} data"
            X, codes = self._aligned_matrix(modality, source, where)
        X = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
        if indices is not None:
            indices = check_indices(indices, X.shape[0], f"indices of modality {modality!r}")
            X, codes, source = X[indices], codes[indices], source[indices]
        return X, source, codes

    @torch.inference_mode()
    def _encoder_inputs(self, modality: str, X, rows: np.ndarray) -> np.ndarray:
        """The fixed encoder input of the cells of ``X`` (zeros outside ``rows``): computed once
        per training run, since no step changes it (a third of a stage-2 step before)."""
        chunks = [self.module.encoder_input(modality, x).cpu().numpy() for x in self._batches(X[rows], None)]
        features = np.zeros((X.shape[0], chunks[0].shape[1]), dtype=np.float32)
        features[rows] = np.concatenate(chunks)
        return features

    def _measured_cells(self, modality: str, X) -> np.ndarray:
        """Boolean mask of the rows of ``X`` measured in ``modality``: all of them, except cells
        with zero counts under a count likelihood, which SCCROSS leaves out of that modality."""
        if self.likelihoods_[modality] in COUNT_LIKELIHOODS:
            return ~empty_cells(X)
        return np.ones(X.shape[0], dtype=bool)

    def _encode_measured(
        self, modality: str, X, encode, batch_size: int | None, n_columns: int
    ) -> np.ndarray:
        """``encode`` (a tensor chunk -> array) applied to the measured rows of ``X``; NaN rows
        for cells with zero counts in ``modality``, with a warning."""
        measured = self._measured_cells(modality, X)
        if not measured.all():
            warnings.warn(
                f"{int((~measured).sum())} of {X.shape[0]} cells have zero counts in modality {modality!r}; "
                "their rows are NaN (the cells were not measured in it)",
                UserWarning,
                stacklevel=3,
            )
            X = X[measured]
        chunks = [encode(x) for x in self._batches(X, batch_size)]
        values = np.concatenate(chunks) if chunks else np.zeros((0, n_columns), dtype=np.float32)
        return _rows_of_all_cells(values, measured)

    def _batches(self, X, batch_size: int | None):
        """Row chunks of ``X`` as tensors for the encoders: CSR tensors when ``X`` is sparse.

        The fixed input transforms work on the stored entries of a CSR tensor, so a chunk of a
        wide sparse modality (ATAC peaks) is never densified.
        """
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size", settings.batch_size)
        step = batch_size or settings.batch_size
        return (to_torch_rows(X[start : start + step], self.device) for start in range(0, X.shape[0], step))

    @torch.inference_mode()
    def get_latent_representation(
        self,
        modality: str | None = None,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        give_mean: bool = True,
        batch_size: int | None = None,
        return_dist: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray] | AnnData:
        """Joint latent ``z`` of the cells of one modality, or of every modality stacked.

        Parameters
        ----------
        modality
            Which modality's encoder to use. ``None``: every modality of the data, stacked in
            one AnnData (see Returns).
        adata
            ``None`` for the model's cells (rows of ``mdata.mod[modality]``, or of the data
            given to :meth:`load`), or query data of that modality: an AnnData, or a MuData
            holding it, with the training features in any order (matched by name, through the
            stored transform).
        indices
            Subset of rows (one modality only).
        give_mean
            Posterior means (deterministic); ``False`` draws one sample.
        batch_size
            Cells per forward pass.
        return_dist
            Also return the variances: ``(mean, variance)`` of the aligner's Gaussian
            ``q(z | z_k)`` at the posterior mean of ``z_k``.

        Returns
        -------
        With a modality: an array of shape ``(n_cells, n_latent)`` aligned to the modality's
        ``obs_names`` (a tuple of two with ``return_dist``). Without: an AnnData with one row
        per cell and modality (index ``"<modality>:<obs_name>"``), the latents in ``X`` and
        ``obsm["X_sccross"]`` (variances in ``obsm["X_sccross_var"]`` with ``return_dist``),
        and ``obs`` holding each modality's cell annotations plus ``modality`` and ``cell``.

        Examples
        --------
        >>> z = model.get_latent_representation(modality="atac")
        >>> mdata.mod["atac"].obsm["X_sccross"] = z
        >>> joint = model.get_latent_representation()
        >>> sc.pp.neighbors(joint, use_rep="X_sccross")
        """
        self._check_if_trained(warn=True)
        if modality is None:
            return self._stacked_latents(adata, indices, give_mean, batch_size, return_dist)
        X, _, _ = self._modality_data(modality, adata, indices)
        self.module.eval()
        n_latent = self.module.n_latent

        def encode(x):
            encoded = self.module.encode(modality, x, sample=not give_mean)
            if return_dist:
                return torch.cat([encoded["z_mean"], encoded["z_log_var"].exp()], dim=-1).cpu().numpy()
            return encoded["z"].cpu().numpy()

        values = self._encode_measured(modality, X, encode, batch_size, n_latent * (2 if return_dist else 1))
        return (values[:, :n_latent], values[:, n_latent:]) if return_dist else values

    def _stacked_latents(self, adata, indices, give_mean, batch_size, return_dist) -> AnnData:
        """Every modality's latents in one long AnnData (``get_latent_representation()``)."""
        if indices is not None:
            raise ValueError("indices= selects rows of one modality; pass modality= with it")
        if isinstance(adata, AnnData):
            raise ValueError("adata is one modality's AnnData; pass modality= for it, or a MuData of several")
        available = list(adata.mod) if adata is not None else list(self._data)
        modalities = [m for m in self.modalities_ if m in available]
        if not modalities:
            raise ValueError(
                f"no modality of the model ({self.modalities_}) in the data; pass a MuData holding them"
            )
        means, variances, tables = [], [], []
        for m in modalities:
            result = self.get_latent_representation(m, adata, None, give_mean, batch_size, return_dist)
            mean, variance = result if return_dist else (result, None)
            means.append(mean)
            variances.append(variance)
            obs = self._data_of(m, adata).obs
            obs = obs[[c for c in obs.columns if not str(c).startswith("_scvi")]].copy()
            obs["cell"] = obs.index.astype(str)
            obs["modality"] = m
            obs.index = m + ":" + obs["cell"]
            tables.append(obs)
        obs = pd.concat(tables)
        obs["modality"] = pd.Categorical(obs["modality"], categories=modalities)
        stacked = AnnData(X=np.concatenate(means), obs=obs)
        stacked.obsm["X_sccross"] = stacked.X.copy()
        if return_dist:
            stacked.obsm["X_sccross_var"] = np.concatenate(variances)
        return stacked


def _rows_of_all_cells(values: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """``values`` of the measured rows placed at their rows among all cells, NaN elsewhere."""
    if measured.all():
        return values
    out = np.full((len(measured), *values.shape[1:]), np.nan, dtype=np.result_type(values.dtype, np.float32))
    out[measured] = values
    return out


def _measured_mudata(mdata: MuData, measured: dict[str, np.ndarray]) -> MuData:
    """``mdata`` with each modality restricted to its measured cells (``mdata`` itself when all are)."""
    if all(mask.all() for mask in measured.values()):
        return mdata
    return MuData(
        {m: mdata.mod[m] if mask.all() else mdata.mod[m][mask].copy() for m, mask in measured.items()}
    )
