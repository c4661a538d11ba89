"""MINNET Siamese network: per-modality input blocks, a shared classifier and a co-embedding head."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from crossomics._constants import CLIP_VALUE

DISTANCE_EPS = 1e-3
"""Added under the square root of embedding distances, whose gradient is infinite at 0."""


class _InputBlock(nn.Module):
    """Standardise with stored statistics, clip, then Linear -> Tanh -> BatchNorm (authors' order)."""

    def __init__(self, feature_mean: np.ndarray, feature_std: np.ndarray, n_hidden: int):
        super().__init__()
        self.register_buffer("feature_mean", torch.as_tensor(feature_mean, dtype=torch.float32))
        self.register_buffer("feature_std", torch.as_tensor(feature_std, dtype=torch.float32))
        self.layers = nn.Sequential(
            nn.Linear(len(feature_mean), n_hidden), nn.Tanh(), nn.BatchNorm1d(n_hidden)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # standardised inputs are clipped at 10 (paper: scaled, then clipped at 10)
        scaled = ((x - self.feature_mean) / self.feature_std).clamp(-CLIP_VALUE, CLIP_VALUE)
        return self.layers(scaled)


class MINNETModule(BaseModuleClass):
    """Siamese network of MinNet (Liu, Wang & Liu, BMC Bioinformatics 2023).

    Each modality has its own input block (standardisation with stored training statistics,
    clipping at 10, ``Linear -> Tanh -> BatchNorm1d``) into a hidden space of size
    ``n_hidden``. A classifier and a linear co-embedding head are shared by both modalities.

    The loss is ``CE(first) + CE(second) + contrastive_weight * L_c`` with the contrastive term
    averaged over positive pairs (``D^2``, D the embedding distance) and negative pairs
    (``max(0, m - D)^2``), halved. The flexible margin of a negative pair is
    ``m = margin_scale * (d + cell_type_margin * [types differ])``, ``d`` its graph distance.
    The hinge acts on the distance, as in the authors' code and the standard contrastive loss
    (the paper's typeset formula writes ``m - D^2``).

    Parameters
    ----------
    feature_means, feature_stds
        Per-modality standardisation statistics (stored as buffers).
    n_labels
        Number of cell types.
    n_hidden
        Units of the shared hidden layer.
    n_latent
        Dimension of the co-embedding.
    margin_scale
        ``m0`` of the flexible margin.
    cell_type_margin
        ``c`` added to the graph distance of pairs from different cell types.
    contrastive_weight
        ``lambda``, the weight of the contrastive loss.
    """

    def __init__(
        self,
        feature_means: tuple[np.ndarray, np.ndarray],
        feature_stds: tuple[np.ndarray, np.ndarray],
        n_labels: int,
        n_hidden: int = 256,
        n_latent: int = 32,
        margin_scale: float = 10.0,
        cell_type_margin: float = 3.0,
        contrastive_weight: float = 0.5,
    ):
        super().__init__()
        self.input_blocks = nn.ModuleList(
            [_InputBlock(mean, std, n_hidden) for mean, std in zip(feature_means, feature_stds, strict=True)]
        )
        self.classifier = nn.Linear(n_hidden, n_labels)
        self.embedding_head = nn.Linear(n_hidden, n_latent)
        self.margin_scale = margin_scale
        self.cell_type_margin = cell_type_margin
        self.contrastive_weight = contrastive_weight

    @auto_move_data
    def embed(self, x: torch.Tensor, modality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Co-embedding and cell-type logits of log-normalised inputs of one modality (0 or 1)."""
        hidden = self.input_blocks[modality](x)
        return self.embedding_head(hidden), self.classifier(hidden)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x_first": tensors["x_first"], "x_second": tensors["x_second"]}

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {}

    @auto_move_data
    def inference(self, x_first: torch.Tensor, x_second: torch.Tensor) -> dict[str, torch.Tensor]:
        """Embed both modalities of a batch of paired cells."""
        z_first, logits_first = self.embed(x_first, 0)
        z_second, logits_second = self.embed(x_second, 1)
        return {
            "z": torch.stack([z_first, z_second]),
            "logits": torch.stack([logits_first, logits_second]),
        }

    def generative(self) -> dict:
        """MINNET is discriminative: there is no generative step."""
        return {}

    def loss(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict, generative_outputs: dict
    ) -> LossOutput:
        """Classification loss on both modalities plus the weighted flexible-margin contrastive loss."""
        z, logits, labels = inference_outputs["z"], inference_outputs["logits"], tensors["labels"].long()
        classification = F.cross_entropy(logits[0], labels) + F.cross_entropy(logits[1], labels)

        positive = (z[0] - z[1]).pow(2).sum(dim=1)
        anchor, partner = tensors["negative_anchor"].long(), tensors["negative_partner"].long()
        z_anchor = z[tensors["negative_anchor_modality"].long(), anchor]
        z_partner = z[tensors["negative_partner_modality"].long(), partner]
        distance = ((z_anchor - z_partner).pow(2).sum(dim=1) + DISTANCE_EPS).sqrt()
        different_type = (labels[anchor] != labels[partner]).float()
        margin = self.margin_scale * (tensors["negative_distance"] + self.cell_type_margin * different_type)
        negative = F.relu(margin - distance).pow(2)
        contrastive = 0.5 * torch.cat([positive, negative]).mean()

        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        return LossOutput(
            loss=classification + self.contrastive_weight * contrastive,
            n_obs_minibatch=labels.shape[0],
            extra_metrics={
                "classification_loss": classification.detach(),
                "contrastive_loss": contrastive.detach(),
                "accuracy": accuracy.detach(),
            },
        )

    def sample(self, *args, **kwargs):
        """Not available: MINNET has no generative model to sample from."""
        raise NotImplementedError("MINNET is a discriminative model and cannot generate samples")
