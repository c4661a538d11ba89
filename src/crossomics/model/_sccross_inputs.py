"""Fitting the fixed first layer of each SCCROSS encoder (architecture decision 3).

Projections (PCA for RNA-like counts, LSI for ATAC, standardised PCA for continuous data),
the reference graph for the graph convolution, and gene-set score features are fitted here once
from the training data and handed to the module as buffers.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi.data import AnnDataManager, fields
from scvi.data._manager import AnnDataManagerValidationCheck

from crossomics import pp
from crossomics._constants import ATAC, PROTEIN, STD_FLOOR
from crossomics._validation import check_counts, check_finite, empty_cells, get_matrix
from crossomics.model._registration import check_batch_column
from crossomics.nn._likelihoods import COUNT_LIKELIHOODS
from crossomics.nn._transforms import GeneSetScores, ReferenceGraphConvolution, to_torch_rows
from crossomics.pp._common_gene_space import CommonGeneProjection
from crossomics.pp._common_genes import has_genomic_features
from crossomics.pp._input_transforms import top_right_singular_vectors
from crossomics.pp._pca import StandardizedPCA
from crossomics.pp._peaks import parse_sites
from crossomics.train._multimodal_data import batch_key, data_key

logger = logging.getLogger(__name__)


def normalized_modalities(likelihoods: dict[str, str]) -> frozenset[str]:
    """Modalities whose data are continuous values (non-count likelihoods), used as given in
    the common-gene views, the MNN prior and the gene-set scores instead of log-normalised."""
    return frozenset(m for m, likelihood in likelihoods.items() if likelihood not in COUNT_LIKELIHOODS)


def fit_encoder_inputs(
    mdata,
    matrices: dict,
    kinds: dict[str, str],
    likelihoods: dict[str, str],
    seed: int,
    n_components: int,
    n_graph_neighbors: int,
    graph_self_weight: float,
    n_graph_reference: int,
    gene_sets,
    n_gene_set_components: int,
    common_gene_features: bool,
    gene_annotation,
    protein_to_gene,
    layers,
) -> dict[str, dict[str, torch.nn.Module]]:
    """Fit every fixed first-layer transform of the SCCROSS encoders from the training data.

    Returns ``{"projection": {m: ...}, "graph": {m: ...}, "gene_sets": {m: ...},
    "common_genes": {m: ...}}``; modalities without gene-set features are left out of
    ``"gene_sets"``, and ``"common_genes"`` is empty unless ``common_gene_features``. These
    modules hold all the fitted state of the encoder input (buffers plus plain attributes).
    """
    sets = gene_sets
    if isinstance(gene_sets, str):
        if gene_sets != "go_bp":
            raise ValueError(f"gene_sets={gene_sets!r}; pass 'go_bp', a {{name: genes}} mapping or None")
        from crossomics.datasets import go_biological_process

        sets = go_biological_process()
    transforms = {"projection": {}, "graph": {}, "gene_sets": {}, "common_genes": {}}
    normalized = normalized_modalities(likelihoods)
    for m, X in matrices.items():
        projection = transforms["projection"][m] = fit_projection(
            kinds[m], likelihoods[m], X, n_components, seed
        )
        transforms["graph"][m] = fit_reference_graph(
            projection, X, n_graph_neighbors, graph_self_weight, n_graph_reference, seed
        )
        scores = fit_gene_set_features(
            kinds[m], mdata.mod[m], X, sets, gene_annotation, n_gene_set_components, seed, m in normalized
        )
        if scores is not None:
            transforms["gene_sets"][m] = scores
    if common_gene_features:
        transforms["common_genes"] = fit_common_gene_features(
            mdata,
            list(matrices),
            matrices,
            n_components,
            seed,
            kinds=kinds,
            gene_annotation=gene_annotation,
            protein_to_gene=protein_to_gene,
            layers=layers,
            normalized=normalized,
        )
    return transforms


def fit_projection(kind: str, likelihood: str, X, n_components: int, seed: int):
    """Fit the modality's projection: LSI for ATAC counts, PCA of log-normalised counts for
    other count data, PCA of standardised values for continuous data."""
    n_components = int(min(n_components, X.shape[1] - 1, X.shape[0] - 1))
    if likelihood in COUNT_LIKELIHOODS:
        if kind == ATAC:
            return pp.fit_lsi(X, n_components=n_components, random_state=seed).module()
        return pp.fit_pca(X, n_components=n_components, random_state=seed).module()
    return StandardizedPCA.fit(X, n_components, seed)


def fit_reference_graph(projection, X, n_neighbors: int, self_weight: float, n_reference: int, seed: int):
    """Store the projections of (at most ``n_reference``) training cells as the graph reference."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(X.shape[0], size=min(n_reference, X.shape[0]), replace=False))
    reference = apply_in_chunks(projection, X[rows])
    return ReferenceGraphConvolution(
        reference, n_neighbors=min(n_neighbors, len(rows)), self_weight=self_weight
    )


def fit_gene_set_features(
    kind: str,
    adata: AnnData,
    X,
    gene_sets: dict[str, list[str]] | None,
    annotation,
    n_components: int,
    seed: int,
    normalized: bool = False,
) -> GeneSetScores | None:
    """Gene-set score features for RNA (expression), ATAC (gene activity) and methylation
    (gene-level or summed over each gene's sites); ``None`` otherwise.

    Proteins have no gene-level view with enough genes for gene sets, and a modality with no
    set reaching the minimum size gets no gene-set features (logged). ``normalized`` data are
    scored as given instead of log-normalised.
    """
    if gene_sets is None or kind == PROTEIN:
        return None
    feature_to_gene = None
    gene_names = adata.var_names
    if has_genomic_features(kind, adata.var):
        if annotation is None:
            return None
        features = adata if kind == ATAC else parse_sites(adata.var)
        feature_to_gene, gene_names = pp.peak_to_gene_matrix(features, annotation)
    membership, set_names = pp.gene_set_membership(gene_names, gene_sets)
    if len(set_names) < 2:
        logger.info("no gene set has enough genes of this modality; gene-set features are skipped")
        return None
    scorer = GeneSetScores(
        membership,
        np.zeros((0, len(set_names))),
        np.zeros(len(set_names)),
        np.ones(len(set_names)),
        feature_to_gene,
        log_normalize=not normalized,
    )
    scores = apply_in_chunks(scorer.scores, X)
    mean = scores.mean(0)
    std = scores.std(0)
    std[std < STD_FLOOR] = 1.0
    standardized = (scores - mean) / std
    n_components = int(min(n_components, standardized.shape[1] - 1, standardized.shape[0] - 1))
    components = top_right_singular_vectors(standardized - standardized.mean(0), n_components, seed)
    return GeneSetScores(membership, components, mean, std, feature_to_gene, log_normalize=not normalized)


def fit_common_gene_features(
    mdata, modalities, matrices: dict, n_components: int, seed: int, **view_kwargs
) -> dict[str, CommonGeneProjection]:
    """Per-modality :class:`~crossomics.pp._common_gene_space.CommonGeneProjection` onto one fitted joint PCA.

    ``matrices`` holds each modality's registered data; ``view_kwargs`` are the arguments of
    :func:`crossomics.pp.fit_common_gene_space` (kinds, annotation, protein mapping, layers).
    """
    space = pp.fit_common_gene_space(
        mdata, modalities, n_comps=n_components, random_state=seed, **view_kwargs
    )
    features = {}
    for m in modalities:
        unscaled = space.module(m)
        std = apply_in_chunks(unscaled, matrices[m]).std(0)
        features[m] = space.module(m, output_std=np.maximum(std, STD_FLOOR))
    return features


@torch.no_grad()
def apply_in_chunks(transform, X, size: int = 2048) -> np.ndarray:
    """``transform`` of the rows of ``X``, 2,048 rows at a time (CSR tensors when ``X`` is sparse)."""
    return np.concatenate(
        [transform(to_torch_rows(X[start : start + size])).numpy() for start in range(0, X.shape[0], size)]
    )


def pairing_table(paired, adatas: dict[str, AnnData], modalities: list[str]) -> bool | dict[str, list]:
    """``paired`` of ``setup_mudata`` checked: ``True``/``False``, or an explicit pairing as
    ``{modality: [cell name or None, ...]}`` (one entry per cell measured in several modalities).

    An explicit pairing is a DataFrame with one column per modality or a mapping of equally long
    name lists; each row is one cell, and a missing value means the cell lacks that modality.
    """
    if isinstance(paired, bool):
        return paired
    if isinstance(paired, pd.DataFrame):
        paired = {column: paired[column] for column in paired.columns}
    if not isinstance(paired, Mapping):
        raise ValueError(
            f"paired={paired!r}; pass True (pair cells by shared obs_names), False, or an explicit "
            "pairing: a DataFrame (or dict of lists) with one column of cell names per modality"
        )
    unknown = [m for m in paired if m not in modalities]
    if unknown or len(paired) < 2:
        raise ValueError(
            f"the explicit pairing has columns {list(paired)}; it needs at least two of the modalities "
            f"{modalities}, and no other column (unknown: {unknown})"
        )
    table = {}
    for m, names in paired.items():
        names = pd.Series(list(names), dtype=object)
        table[m] = [None if pd.isna(name) else str(name) for name in names]
    lengths = {m: len(names) for m, names in table.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the explicit pairing's columns differ in length: {lengths}; give one row per cell")
    for m, names in table.items():
        given = pd.Index([name for name in names if name is not None])
        if not given.is_unique:
            repeated = list(given[given.duplicated()].unique()[:3])
            raise ValueError(
                f"the explicit pairing names cells of modality {m!r} twice (e.g. {repeated}); each cell "
                "pairs with at most one cell of every other modality"
            )
        missing = given[~given.isin(adatas[m].obs_names)]
        if len(missing):
            raise ValueError(
                f"the explicit pairing names {len(missing)} cells that are not in mdata.mod[{m!r}] "
                f"(e.g. {list(missing[:3])}); use that modality's obs_names"
            )
    return table


def pair_rows(
    adatas: dict[str, AnnData], modalities: list[str], pairing: dict[str, list] | None = None
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Rows of truly paired cells for every modality pair: cells that share an ``obs_name``, or
    the rows of an explicit ``pairing`` (see :func:`pairing_table`).

    Read from the modalities' own ``obs_names`` every time, never from ``mdata.obsmap``, which
    goes stale when a modality is filtered without ``mdata.update()`` and then pairs different
    cells. Cell names must be unique within each modality. Names of an explicit pairing that a
    modality no longer holds (it was filtered after setup) pair nothing.
    """
    for m in modalities:
        names = adatas[m].obs_names
        if not names.is_unique:
            duplicated = list(names[names.duplicated()].unique()[:3])
            raise ValueError(
                f"modality {m!r} has duplicated cell names (e.g. {duplicated}); cells are paired across "
                f"modalities by name, so call mdata.mod[{m!r}].obs_names_make_unique() first"
            )
    if pairing is not None:
        pairs = {}
        for i, h in enumerate(modalities):
            for j in modalities[i + 1 :]:
                if h not in pairing or j not in pairing:
                    continue
                # a missing name (None) is found in no modality
                rows = {
                    m: adatas[m].obs_names.get_indexer(pd.Index(pairing[m], dtype=object)) for m in (h, j)
                }
                both = (rows[h] >= 0) & (rows[j] >= 0)
                if both.any():
                    pairs[(h, j)] = (rows[h][both], rows[j][both])
        return pairs
    pairs = {}
    for i, h in enumerate(modalities):
        for j in modalities[i + 1 :]:
            rows_j = adatas[j].obs_names.get_indexer(adatas[h].obs_names)
            both = rows_j >= 0
            if both.any():
                pairs[(h, j)] = (np.flatnonzero(both), rows_j[both])
    return pairs


def feature_alignment(reference: pd.Index, query: pd.Index, name: str, modality: str) -> np.ndarray | None:
    """Column order that maps ``query`` features onto the training features by name.

    ``None`` when they are identical in order. Features may come in any order; missing,
    extra or duplicated features are an error that names their counts and examples.
    """
    if reference.equals(query):
        return None
    if not query.is_unique:
        duplicated = list(query[query.duplicated()].unique()[:3])
        raise ValueError(
            f"{name} has duplicated feature names (e.g. {duplicated}); call adata.var_names_make_unique() "
            f"or drop the duplicates, then pass the model's {len(reference)} {modality!r} features"
        )
    missing = reference.difference(query, sort=False)
    extra = query.difference(reference, sort=False)
    if len(missing) or len(extra):

        def examples(names: pd.Index) -> str:
            return f" (e.g. {list(names[:3])})" if len(names) else ""

        raise ValueError(
            f"{name} has different features from the model: {len(missing)} of the model's "
            f"{len(reference)} {modality!r} features are missing{examples(missing)} and "
            f"{len(extra)} of its {len(query)} features are not the model's{examples(extra)}. "
            "Features are matched by name in any order; pass exactly the model's features, e.g. "
            f"adata[:, model.feature_names_[{modality!r}]] after adding any missing ones"
        )
    return query.get_indexer(reference)


def check_modality_data(
    modality: str, adata: AnnData, layer: str | None, likelihood: str, batch_key_name: str | None
) -> None:
    """The checks every modality's data passes before it is registered (training or query)."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"modality {modality!r} has {adata.n_obs} cells and {adata.n_vars} features; every modality "
            "needs cells and features (leave an unmeasured modality out of modalities=)"
        )
    if not adata.var_names.is_unique:
        duplicated = list(adata.var_names[adata.var_names.duplicated()].unique()[:3])
        raise ValueError(
            f"modality {modality!r} has duplicated feature names (e.g. {duplicated}); features are matched "
            f"by name, so call mdata.mod[{modality!r}].var_names_make_unique() or drop the duplicates first"
        )
    X = get_matrix(adata, layer, name=f"modality {modality!r}")
    where = f"modality {modality!r} " + (f"layer {layer!r}" if layer else ".X")
    check_finite(X, where)
    if likelihood in COUNT_LIKELIHOODS:
        check_counts(
            X,
            where,
            hint=f"; the {likelihood!r} likelihood needs raw counts (pass likelihoods={{{modality!r}: 'normal'}} "
            "for normalised data)",
        )
        warn_empty_cells(modality, adata, empty_cells(X), where)
    check_batch_column(adata, batch_key_name, modality, "batch key")


def warn_empty_cells(modality: str, adata: AnnData, empty: np.ndarray, where: str) -> None:
    """Say which cells have no counts in ``modality``: SCCROSS leaves them out of it.

    A cell with zero counts was not measured in that modality; a partly paired model uses
    what it has of the cell elsewhere. Raise when no cell is left.
    """
    if not empty.any():
        return
    if empty.all():
        raise ValueError(
            f"{where} has zero counts in all {adata.n_obs} cells; leave modality {modality!r} out of "
            "modalities= or pass the layer that holds its counts"
        )
    names = list(adata.obs_names[empty][:5])
    warnings.warn(
        f"{where}: {int(empty.sum())} of {adata.n_obs} cells have zero counts (e.g. {names}); SCCROSS leaves "
        f"them out of modality {modality!r} (training, prior and pairs) and returns NaN for their "
        f"{modality!r} embeddings and generations. To silence this, drop them first: "
        f"sc.pp.filter_cells(mdata.mod[{modality!r}], min_counts=1); mdata.update()",
        UserWarning,
        stacklevel=5,
    )


def data_manager(modalities, layers, likelihoods, batch_keys, setup_method_args: dict) -> AnnDataManager:
    """The scvi-tools manager of the data matrix and batch codes of each of ``modalities``."""
    anndata_fields = []
    for m in modalities:
        anndata_fields.append(
            fields.MuDataLayerField(
                data_key(m),
                layers[m],
                mod_key=m,
                is_count_data=likelihoods[m] in COUNT_LIKELIHOODS,
                mod_required=True,
            )
        )
        anndata_fields.append(fields.MuDataCategoricalObsField(batch_key(m), batch_keys[m], mod_key=m))
    return AnnDataManager(
        fields=anndata_fields,
        setup_method_args=setup_method_args,
        validation_checks=AnnDataManagerValidationCheck(check_fully_paired_mudata=False),
    )
