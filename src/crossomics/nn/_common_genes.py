"""The common-gene projection as a fixed encoder input (buffers only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crossomics.nn._transforms import _TOTAL_FLOOR, SparseLinearMap, _buffer, _is_csr


class CommonGeneProjection(nn.Module):
    """Torch form of :meth:`crossomics.pp.CommonGeneSpace.transform`, divided by ``output_std``.

    Counts -> common-gene counts (fixed 0/1 map) -> ``log1p`` per 1e4 -> kept genes -> per-gene
    standardisation (clipped) -> unit L2 norm per cell -> joint PCA coordinates, each
    divided by its standard deviation over the training cells so that the encoder sees it at
    the scale of its other standardised inputs.
    """

    def __init__(
        self, feature_map, kept, gene_mean, gene_std, pca_mean, components, output_std, clip: float = 10.0
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

    @classmethod
    def from_space(cls, space, modality: str, output_std=None) -> CommonGeneProjection:
        """Module for ``modality`` of a fitted :class:`crossomics.pp.CommonGeneSpace`."""
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
        )

    @property
    def n_output(self) -> int:
        return self.components.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        genes = self.feature_map(x)
        if _is_csr(genes):
            genes = genes.to_dense()  # cells x (at most a few thousand) genes is small
        # every step below works on tensors made here (nothing the caller holds, nothing that
        # needs a gradient), so the elementwise steps run in place, in the order (and so with
        # the rounding) of the out-of-place form
        total = genes.sum(-1, keepdim=True).clamp_min(_TOTAL_FLOOR)
        logged = genes.div_(total).mul_(1e4).log1p_()[:, self.kept]
        scaled = logged.sub_(self.gene_mean).div_(self.gene_std).clamp_(-self.clip, self.clip)
        coordinates = (F.normalize(scaled, dim=-1, eps=1e-12) - self.pca_mean) @ self.components.T
        return coordinates.div_(self.output_std)
