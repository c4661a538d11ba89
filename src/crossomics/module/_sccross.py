"""The scCross network: per-modality VAEs, bidirectional aligners, D_z and D_ge."""

from __future__ import annotations

import itertools

import torch
from scvi.module.base import BaseModuleClass, LossOutput
from torch import nn

from crossomics._constants import BATCH_KEY, FEATURES_KEY, X_KEY
from crossomics.module._sccross_adversarial import AdversarialTermsMixin
from crossomics.module._sccross_alignment import AlignmentTermsMixin
from crossomics.nn._batch_affine import BatchAffineLikelihood
from crossomics.nn._layers import (
    Discriminator,
    GaussianEncoder,
    kl_standard_normal,
    mlp,
    reparameterize,
)


class SCCROSSModule(AlignmentTermsMixin, AdversarialTermsMixin, BaseModuleClass):
    """Torch module of :class:`crossomics.SCCROSS`.

    A batch is a dict ``{modality: {"x": counts, "batch": codes, "prior": mnn_prior_rows}}``
    plus, when cells are truly paired, ``{"pairs": {(h, j): {h: {...}, j: {...}}}}`` with row
    ``i`` of ``h`` and ``j`` the same cell.

    Losses follow the paper with GLUE's normalisation (scCross builds on GLUE, and its loss
    weights assume it): the reconstruction term is the negative log-likelihood averaged over
    cells *and* features, and each KL term is divided by the modality's number of features.

    Parameters
    ----------
    modalities
        Modality names, in the order of the D_z classes.
    n_features, n_batches, likelihoods
        Per-modality feature counts, batch counts and likelihood names.
    projections
        Per-modality fixed input projections (PCA / LSI modules with ``n_output``).
    graph_convolutions
        Per-modality :class:`~crossomics.nn.ReferenceGraphConvolution` applied to the projection.
    gene_set_features
        Per-modality :class:`~crossomics.nn.GeneSetScores` or ``None``.
    common_gene_features
        Per-modality :class:`~crossomics.nn.CommonGeneProjection` (one joint PCA of the
        modalities' common-gene expression, the space the MNN prior is computed in), or
        ``None`` to leave it out of the encoder input.
    n_latent
        Size of the modality latents ``z_k`` and of the joint latent ``z`` (paper: 50).
    n_hidden, n_layers, dropout
        Encoder / decoder MLP shape.
    lambda_adversarial
        Weight ``lambda_D`` of the discriminator terms (paper: 0.05).
    lambda_mnn
        Weight of the common-gene MNN prior loss (paper: 0.04).
    lambda_pairs
        Weight of the distance between joint latents of truly paired cells.
    lambda_translation
        Weight of the translation loss of truly paired cells: each modality decoded from the
        other modality's joint latent (see :meth:`paired_losses`). ``0`` leaves it out.
    lambda_anchor
        Weight of the MNN anchor loss (:meth:`mnn_anchor_loss`); ``0`` leaves it out.
    n_anchor_neighbours
        ``k`` of the minibatch's cross-modal mutual nearest neighbours in the prior.
    n_generated_per_step
        Cross-generated cells per modality and step that D_ge judges.
    mnn_similarity
        ``"inner_product"`` (default) or ``"cosine"`` (the paper's form); see :meth:`mnn_loss`.
    """

    def __init__(
        self,
        modalities: list[str],
        n_features: dict[str, int],
        n_batches: dict[str, int],
        likelihoods: dict[str, str],
        projections: dict[str, nn.Module],
        graph_convolutions: dict[str, nn.Module],
        gene_set_features: dict[str, nn.Module | None],
        common_gene_features: dict[str, nn.Module] | None = None,
        n_latent: int = 50,
        n_hidden: int = 256,
        n_layers: int = 2,
        dropout: float = 0.2,
        lambda_adversarial: float = 0.05,
        lambda_mnn: float = 0.04,
        lambda_pairs: float = 1.0,
        lambda_translation: float = 1.0,
        lambda_anchor: float = 5.0,
        n_anchor_neighbours: int = 5,
        n_generated_per_step: int = 128,
        mnn_similarity: str = "inner_product",
    ):
        super().__init__()
        self.modalities = list(modalities)
        self.n_features = dict(n_features)
        self.n_latent = n_latent
        self.lambda_adversarial = lambda_adversarial
        self.lambda_mnn = lambda_mnn
        self.lambda_pairs = lambda_pairs
        self.lambda_translation = lambda_translation
        self.lambda_anchor = lambda_anchor
        self.n_anchor_neighbours = n_anchor_neighbours
        if mnn_similarity not in ("inner_product", "cosine"):
            raise ValueError(f"mnn_similarity={mnn_similarity!r}; use 'inner_product' or 'cosine'")
        self.mnn_similarity = mnn_similarity
        self.n_generated_per_step = n_generated_per_step
        self.projection = nn.ModuleDict(projections)
        self.graph = nn.ModuleDict(graph_convolutions)
        self.gene_sets = nn.ModuleDict({m: g for m, g in gene_set_features.items() if g is not None})
        self.common_genes = nn.ModuleDict(common_gene_features or {})
        self.encoder = nn.ModuleDict()
        self.decoder = nn.ModuleDict()
        self.likelihood = nn.ModuleDict()
        self.aligner_encoder = nn.ModuleDict()
        self.aligner_decoder = nn.ModuleDict()
        self.data_discriminator = nn.ModuleDict()
        for m in self.modalities:
            n_projection = projections[m].n_output
            n_input = n_projection + sum(
                side[m].n_output for side in (self.gene_sets, self.common_genes) if m in side
            )
            self.encoder[m] = GaussianEncoder(n_input, n_latent, n_hidden, n_layers, dropout)
            self.decoder[m] = mlp(n_latent, n_hidden, n_layers, dropout=0.0)
            self.likelihood[m] = BatchAffineLikelihood(n_hidden, n_features[m], n_batches[m], likelihoods[m])
            self.aligner_encoder[m] = GaussianEncoder(n_latent, n_latent, n_hidden, 1, dropout=0.0)
            self.aligner_decoder[m] = GaussianEncoder(n_latent, n_latent, n_hidden, 1, dropout=0.0)
            # D_ge judges a reduced view (the fixed projection), never the raw 100k-peak space
            self.data_discriminator[m] = Discriminator(n_projection, 1)
        self.latent_discriminator = Discriminator(n_latent, len(self.modalities))

    def add_batches(self, n_new: dict[str, int]) -> None:
        """Append ``n_new[m]`` batches to modality ``m``'s decoder (reference mapping)."""
        for m, n in n_new.items():
            if n:
                self.likelihood[m].add_batches(n)

    # ------------------------------------------------------------------ parameter groups
    def generator_parameters(self):
        """Parameters of encoders, decoders and aligners (optimised by the VAE optimiser)."""
        groups = [self.encoder, self.decoder, self.likelihood, self.aligner_encoder, self.aligner_decoder]
        return itertools.chain.from_iterable(g.parameters() for g in groups)

    def discriminator_parameters(self):
        """Parameters of D_z and every D_ge."""
        return itertools.chain(self.latent_discriminator.parameters(), self.data_discriminator.parameters())

    # ------------------------------------------------------------------ building blocks
    def encoder_input(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Fixed first layer: projection, graph convolution, gene-set scores (eq. 2) and the
        common-gene projection. It has no trainable parameter, so training computes it once
        per cell (``tensors[m]["features"]``) instead of at every step."""
        return self._with_side_features(modality, x, self.graph[modality](self.projection[modality](x)))

    def _with_side_features(self, modality: str, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        side = [s[modality](x) for s in (self.gene_sets, self.common_genes) if modality in s]
        return torch.cat([features, *side], dim=-1) if side else features

    def graph_neighbour_mean(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Mean projection of each cell's reference-graph neighbours."""
        return self.graph[modality].neighbour_mean(self.projection[modality](x))

    def encode_with_neighbours(
        self, modality: str, x: torch.Tensor, neighbour_mean: torch.Tensor
    ) -> torch.Tensor:
        """Joint latent means with the graph neighbours held fixed (used by perturbation)."""
        projected = self.projection[modality](x)
        features = self._with_side_features(modality, x, self.graph[modality].mix(projected, neighbour_mean))
        return self._encode_features(modality, features, sample=False)["z"]

    def encode(
        self, modality: str, x: torch.Tensor, sample: bool = True, features: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``x -> z_k -> z`` (eq. 2-3 and 10-11). ``sample=False`` uses posterior means.

        ``features`` is :meth:`encoder_input` of ``x`` when already computed. Besides the
        samples and posterior parameters, the result holds ``z_embedding``: the aligner's mean
        at the posterior mean of ``z_k`` (the embedding of ``sample=False``), which the
        alignment losses use.
        """
        if features is None:
            features = self.encoder_input(modality, x)
        return self._encode_features(modality, features, sample)

    def _encode_features(self, modality: str, features, sample: bool) -> dict[str, torch.Tensor]:
        zk_mean, zk_log_var = self.encoder[modality](features)
        zk = reparameterize(zk_mean, zk_log_var) if sample else zk_mean
        z_mean, z_log_var = self.aligner_encoder[modality](zk)
        z = reparameterize(z_mean, z_log_var) if sample else z_mean
        # The embedding a user gets (get_latent_representation) is aligner(zk_mean), not the
        # mean of z given a noisy zk sample; the alignment losses act on that embedding so
        # they shape what is returned (paired BMMC test: FOSCTTM 0.32 instead of 0.35;
        # unpaired cortex subset: unchanged, 0.416 vs 0.419).
        z_embedding = self.aligner_encoder[modality](zk_mean)[0] if sample else z_mean
        return {
            "zk": zk,
            "zk_mean": zk_mean,
            "zk_log_var": zk_log_var,
            "z": z,
            "z_mean": z_mean,
            "z_log_var": z_log_var,
            "z_embedding": z_embedding,
        }

    def decode_modality_latent(
        self, modality: str, zk: torch.Tensor, batch: torch.Tensor, library: torch.Tensor
    ):
        """Likelihood parameters of ``x_k`` given ``z_k`` (eq. 5-7, 33-35)."""
        return self.likelihood[modality].params(self.decoder[modality](zk), batch, library)

    def decode(
        self, modality: str, z: torch.Tensor, batch: torch.Tensor, library: torch.Tensor, sample: bool = True
    ):
        """``z -> z_k -> x_k`` (eq. 12-14): likelihood parameters plus the aligner outputs."""
        zk_mean, zk_log_var = self.aligner_decoder[modality](z)
        zk = reparameterize(zk_mean, zk_log_var) if sample else zk_mean
        return self.decode_modality_latent(modality, zk, batch, library), zk_mean, zk_log_var

    # ------------------------------------------------------------------ scvi-tools interface
    def _get_inference_input(self, tensors):
        return {"tensors": tensors}

    def _get_generative_input(self, tensors, inference_outputs):
        return {"tensors": tensors, "inference_outputs": inference_outputs}

    def inference(self, tensors, sample: bool = True):
        """Each present modality's :meth:`encode` of its cells."""
        return {
            m: self.encode(m, tensors[m][X_KEY], sample, tensors[m].get(FEATURES_KEY))
            for m in self.modalities
            if m in tensors
        }

    def generative(self, tensors, inference_outputs, stage: int = 2):
        """Each modality's reconstruction: ``z_k -> x`` in stage 1 (eq. 5-7), ``z -> z_k -> x``
        in stage 2 (eq. 12-14), where the aligner's ``zk_mean`` / ``zk_log_var`` are kept too."""
        out = {}
        for m, enc in inference_outputs.items():
            x, batch = tensors[m][X_KEY], tensors[m][BATCH_KEY]
            library = x.sum(-1)
            if stage == 1:
                out[m] = {"params": self.decode_modality_latent(m, enc["zk"], batch, library)}
            else:
                params, zk_mean, zk_log_var = self.decode(m, enc["z"], batch, library)
                out[m] = {"params": params, "zk_mean": zk_mean, "zk_log_var": zk_log_var}
        return out

    def loss(
        self,
        tensors,
        inference_outputs,
        generative_outputs,
        stage: int = 2,
        paired_modalities: set | None = None,
        align: bool = True,
    ) -> LossOutput:
        """The generator's loss for one step, without the adversarial term.

        Stage 1 (eq. 23) is the per-modality ELBO with ``x -> z_k -> x``. Stage 2 (eq. 17, 22,
        25) reconstructs through the joint space ``x -> z_k -> z -> z_k -> x``, adds the
        aligner ELBO on ``z_k``, the MNN prior loss over every modality pair and, for truly
        paired cells, the distance of their joint latents (``stage`` as in :meth:`generative`);
        :meth:`with_adversarial_loss` adds the adversarial term. ``paired_modalities`` names
        modality pairs ``(h, j)`` with true pairs in the data when the batch itself carries none
        (validation), so they take no prior anchors there either. ``align=False`` leaves out
        every alignment term: the stage-2 ELBO alone, which reference mapping fine-tunes
        against the frozen joint space. ``reconstruction_loss`` and ``kl_local`` are minibatch
        means (keys ``"reconstruction"``, ``"kl"``), ``extra_metrics`` the unweighted alignment
        terms, ``n_obs_minibatch`` the cells of all modalities.
        """
        present = [m for m in self.modalities if m in tensors]
        reconstruction = torch.zeros((), device=self.device)
        kl = torch.zeros((), device=self.device)
        for m in present:
            x, enc, dec = tensors[m][X_KEY], inference_outputs[m], generative_outputs[m]
            kl = kl + self._kl(m, enc["zk_mean"], enc["zk_log_var"])
            if stage == 2:
                kl = kl + self._kl(m, enc["z_mean"], enc["z_log_var"])
                latent_nll = 0.5 * (
                    ((enc["zk"] - dec["zk_mean"]) ** 2) / torch.exp(dec["zk_log_var"]) + dec["zk_log_var"]
                ).sum(-1)
                reconstruction = reconstruction + latent_nll.mean() / self.n_features[m]
            reconstruction = reconstruction + self._reconstruction(m, x, dec["params"])
        alignment, loss = {}, reconstruction + kl
        if stage == 2 and align:
            alignment, loss = self._alignment_losses(tensors, inference_outputs, paired_modalities, loss)
        return LossOutput(
            loss=loss,
            reconstruction_loss={"reconstruction": reconstruction},
            kl_local={"kl": kl},
            extra_metrics=alignment,
            n_obs_minibatch=sum(tensors[m][X_KEY].shape[0] for m in present),
        )

    @torch.inference_mode()
    def sample(self, tensors):
        """Counts drawn from each modality's likelihood at the cells' joint latents
        (``x -> z -> z_k -> x``), one draw per cell."""
        inference_outputs = self.inference(tensors)
        generative_outputs = self.generative(tensors, inference_outputs)
        return {m: self.likelihood[m].sample(out["params"]) for m, out in generative_outputs.items()}

    # ------------------------------------------------------------------ losses
    def _reconstruction(self, modality: str, x: torch.Tensor, params: dict) -> torch.Tensor:
        return -self.likelihood[modality].log_prob(x, params).mean() / self.n_features[modality]

    def _kl(self, modality: str, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        return kl_standard_normal(mean, log_var).mean() / self.n_features[modality]
