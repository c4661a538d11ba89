"""A fixed joint projection of several modalities' common-gene expression.

One home for the fitted transform: the numpy fit (:func:`fit_common_gene_space`), its numpy
``transform`` and its torch form (:class:`CommonGeneProjection`, the SCCROSS encoder input),
which tests/pp/test_common_gene_space.py checks against each other.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from mudata import MuData
from sklearn.decomposition import PCA

from crossomics._constants import CLIP_VALUE, TARGET_SUM
from crossomics.nn._transforms import _TOTAL_FLOOR, ComponentProjection, SparseLinearMap, _buffer, _is_csr

from ._common_genes import check_modalities, checked_values, common_gene_maps
from ._mnn import cosine_normalize
from ._mnn_prior import _highly_variable_columns
from ._normalize import as_float32_csr, column_mean_std, gene_level_expression, standardize_columns


@dataclass(frozen=True)
class CommonGeneSpace:
    """Joint PCA of the modalities' common-gene views, as fitted by :func:`fit_common_gene_space`.

    A cell of modality ``m`` (its own features, raw counts) is placed by: ``counts @
    feature_maps[m]`` (gene-level counts over all common genes), ``log1p`` of counts
    scaled to 1e4 (skipped for the modalities in ``normalized``, whose values are used as
    given), the ``kept`` (most variable) genes, per-gene standardisation with ``m``'s stored ``gene_mean`` / ``gene_std``
    (clipped at ``clip``), unit L2 norm per cell, then ``(row - pca_mean) @ components.T``.
    These are steps 1-3 of :func:`mnn_prior` before the MNN correction, as a fixed transform
    that applies to query cells too.
    """

    gene_names: pd.Index
    kept: np.ndarray
    feature_maps: dict[str, sp.csr_matrix]
    gene_mean: dict[str, np.ndarray]
    gene_std: dict[str, np.ndarray]
    pca_mean: np.ndarray
    components: np.ndarray
    clip: float = CLIP_VALUE
    normalized: frozenset[str] = frozenset()

    @property
    def n_components(self) -> int:
        return self.components.shape[0]

    def transform(self, modality: str, counts) -> np.ndarray:
        """Coordinates ``(n_cells, n_components)`` of cells of ``modality`` (raw counts, or values
        for a ``normalized`` modality)."""
        view = as_float32_csr(counts) @ self.feature_maps[modality]
        expression = gene_level_expression(view, modality in self.normalized)[:, self.kept]
        scaled = standardize_columns(
            expression, self.clip, mean=self.gene_mean[modality], std=self.gene_std[modality]
        )
        return ((cosine_normalize(scaled) - self.pca_mean) @ self.components.T).astype(np.float32)

    def module(self, modality: str, output_std=None) -> CommonGeneProjection:
        """The torch form of :meth:`transform` for ``modality``, divided by ``output_std``."""
        return CommonGeneProjection.from_space(self, modality, output_std)


def fit_common_gene_space(
    mdata: MuData,
    modalities: Sequence[str],
    kinds: Mapping[str, str] | None = None,
    gene_annotation: pd.DataFrame | str | None = None,
    protein_to_gene: Mapping[str, str] | pd.Series | None = None,
    layers: Mapping[str, str | None] | None = None,
    normalized: Collection[str] = (),
    n_comps: int = 50,
    n_hvg: int | None = 2000,
    max_cells: int = 20_000,
    random_state: int = 0,
) -> CommonGeneSpace:
    """Fit a :class:`CommonGeneSpace` on (at most ``max_cells`` random cells of) each modality.

    Genes are those of :func:`common_gene_views`, reduced to the ``n_hvg`` most variable as in
    :func:`mnn_prior`. Subsampling bounds the dense cells x genes matrices that standardisation
    and PCA need at atlas scale; the fitted transform then applies to every cell.

    Parameters
    ----------
    mdata, modalities, kinds, gene_annotation, protein_to_gene, layers, normalized
        As :func:`common_gene_views`.
    n_comps
        Components of the joint PCA; reduced when fewer genes or cells are available.
    n_hvg
        Maximum number of common genes kept; ``None`` keeps all.
    max_cells
        Cells per modality used for fitting.
    random_state
        Seed of the subsample and the PCA.

    Raises
    ------
    ValueError
        As :func:`common_gene_views`.
    """
    modalities = check_modalities(mdata, modalities)
    counts = checked_values(mdata, modalities, layers, normalized)
    gene_names, maps = common_gene_maps(mdata, modalities, kinds, gene_annotation, protein_to_gene)
    rng = np.random.default_rng(random_state)
    expressions = {}
    for modality in modalities:
        n_cells = counts[modality].shape[0]
        rows = np.arange(n_cells)
        if n_cells > max_cells:
            rows = np.sort(rng.choice(n_cells, max_cells, replace=False))
        view = as_float32_csr(counts[modality][rows]) @ maps[modality]
        expressions[modality] = gene_level_expression(view, modality in normalized)
    columns = np.arange(len(gene_names))
    if n_hvg is not None and len(gene_names) > n_hvg:
        columns = _highly_variable_columns(list(expressions.values()), n_hvg)
    gene_mean, gene_std, scaled = {}, {}, []
    for modality, expression in expressions.items():
        kept = expression[:, columns]
        gene_mean[modality], gene_std[modality] = column_mean_std(kept)
        scaled.append(
            cosine_normalize(standardize_columns(kept, mean=gene_mean[modality], std=gene_std[modality]))
        )
    stacked = np.vstack(scaled)
    pca = PCA(n_components=int(min(n_comps, min(stacked.shape) - 1)), random_state=random_state).fit(stacked)
    return CommonGeneSpace(
        gene_names=gene_names,
        kept=columns,
        feature_maps=maps,
        gene_mean=gene_mean,
        gene_std=gene_std,
        pca_mean=pca.mean_.astype(np.float32),
        components=pca.components_.astype(np.float32),
        normalized=frozenset(normalized),
    )


class CommonGeneProjection(ComponentProjection):
    """Torch form of :meth:`CommonGeneSpace.transform`, divided by ``output_std``.

    Counts -> common-gene counts (fixed 0/1 map) -> ``log1p`` per 1e4 (unless
    ``log_normalize`` is false: normalised values are used as given) -> kept genes -> per-gene
    standardisation (clipped) -> unit L2 norm per cell -> joint PCA coordinates, each
    divided by its standard deviation over the training cells so that the encoder sees it at
    the scale of its other standardised inputs.
    """

    log_normalize = True
    """Class default, so that model files written before normalised inputs load unchanged."""

    def __init__(
        self,
        feature_map,
        kept,
        gene_mean,
        gene_std,
        pca_mean,
        components,
        output_std,
        clip: float = CLIP_VALUE,
        log_normalize: bool = True,
    ):
        super().__init__()
        self.feature_map = SparseLinearMap(feature_map)
        self.register_buffer("kept", torch.as_tensor(kept, dtype=torch.int64))
        self.register_buffer("gene_mean", _buffer(gene_mean))
        self.register_buffer("gene_std", _buffer(gene_std))
        self.register_buffer("pca_mean", _buffer(pca_mean))
        self.register_buffer("components", _buffer(components))
        self.register_buffer("output_std", _buffer(output_std))
        self.clip = float(clip)
        self.log_normalize = bool(log_normalize)

    @classmethod
    def from_space(cls, space, modality: str, output_std=None) -> CommonGeneProjection:
        """Module for ``modality`` of a fitted :class:`CommonGeneSpace` (see :meth:`CommonGeneSpace.module`)."""
        if output_std is None:
            output_std = torch.ones(space.n_components)
        return cls(
            space.feature_maps[modality],
            space.kept,
            space.gene_mean[modality],
            space.gene_std[modality],
            space.pca_mean,
            space.components,
            output_std,
            space.clip,
            log_normalize=modality not in space.normalized,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        genes = self.feature_map(x)
        if _is_csr(genes):
            genes = genes.to_dense()  # cells x (at most a few thousand) genes is small
        # every step below works on tensors made here (nothing the caller holds, nothing that
        # needs a gradient), so the elementwise steps run in place, in the order (and so with
        # the rounding) of the out-of-place form
        if self.log_normalize:
            total = genes.sum(-1, keepdim=True).clamp_min(_TOTAL_FLOOR)
            genes = genes.div_(total).mul_(TARGET_SUM).log1p_()
        scaled = genes[:, self.kept].sub_(self.gene_mean).div_(self.gene_std).clamp_(-self.clip, self.clip)
        coordinates = (F.normalize(scaled, dim=-1, eps=1e-12) - self.pca_mean) @ self.components.T
        return coordinates.div_(self.output_std)
