"""D_z and D_ge of the scCross network (paper eq. 18-20): what they judge and their losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.module.base import LossOutput

from crossomics._constants import BATCH_KEY
from crossomics.nn._layers import bfloat16_is_fast

# total count at which D_ge compares decoded profiles
_VIEW_LIBRARY = 1e4


class AdversarialTermsMixin:
    """The discriminators' inputs and cross-entropies, for :class:`SCCROSSModule`."""

    def cross_generated_views(
        self, tensors: dict, encoded: dict, generative_outputs: dict
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """What D_ge_k compares: ``x_k`` decoded from its own joint latents and from the others'.

        Returns ``{k: (reference, generated)}``, projections (the fixed input transform of
        ``k``) of the likelihood means decoded from the joint latents of ``k``'s own cells
        (the reference, a constant for the generator: the stage-2 reconstruction's
        parameters in ``generative_outputs``, from :meth:`generative`) and of the other modalities'
        cells (generated, with gradients into the generating path). Both sides are expected
        profiles at the same library size, so D_ge can only tell them apart by *what* is
        generated, never by the sampling noise that real counts carry and means do not.

        Why not real counts against generated means, as eq. 18-20 read literally: a smooth
        mean is told from a noisy count vector at a glance, and the generator then fooled D_ge
        by distorting the means: Malat1 took a much larger share of the decoded RNA than of the
        real counts. With generated *draws* passed straight through (same depth as the real
        cells) D_ge still distorted it and cross-generation got worse. With this reference,
        RNA generated from ATAC kept the cell types' markers best of the variants tried, at the
        query FOSCTTM of a model without D_ge (measured in ``docs/concepts.md``, "Where
        crossomics had to choose").

        The source latents are detached: D_ge trains the generating path (aligner decoder,
        decoder, likelihood) and leaves the joint space to the MNN prior and D_z. Letting its
        gradient reach the encoders pulled the latents away from the shared manifold and
        worsened FOSCTTM and label transfer (same section). At most ``n_generated_per_step``
        cells are compared per side, which keeps the extra decoder pass cheap on 100k-feature
        modalities; the generated cells' batch codes are drawn from the real batches of ``k``,
        and the reference keeps its cells' own batches.
        """
        present = [m for m in self.modalities if m in tensors]
        views = {}
        if len(present) < 2:
            return views
        for k in present:
            batches = tensors[k][BATCH_KEY].view(-1)
            sources = torch.cat([encoded[m]["z"].detach() for m in present if m != k])
            # bfloat16 matmuls (fp32 elsewhere) for the generated side, which only D_ge reads, where
            # the device has bfloat16 instructions: the 25,734-peak head ran 6x faster on an Intel
            # Xeon with AVX512-BF16, and 45x slower on a CPU that emulates bfloat16
            fast = self.training and bfloat16_is_fast(sources.device)
            with torch.autocast(sources.device.type, dtype=torch.bfloat16, enabled=fast):
                fake = self._decoded_view(k, sources[: self.n_generated_per_step], batches).float()
            with torch.no_grad():
                own_means = self.likelihood[k].mean(generative_outputs[k]["params"], library=_VIEW_LIBRARY)
                real = self.projection[k](own_means[: self.n_generated_per_step])
            views[k] = (real, fake)
        return views

    def _decoded_view(self, modality: str, z: torch.Tensor, batches: torch.Tensor) -> torch.Tensor:
        """Projection of the likelihood mean decoded from joint latents ``z`` (library 1e4,
        batch codes drawn from ``batches``)."""
        batch = batches[torch.randint(len(batches), (len(z),), device=z.device)]
        library = torch.full((len(z),), _VIEW_LIBRARY, device=z.device)
        params, _, _ = self.decode(modality, z, batch, library)
        return self.projection[modality](self.likelihood[modality].mean(params))

    def _latent_logits(self, encoded: dict, detach: bool) -> tuple[torch.Tensor, torch.Tensor]:
        present = [m for m in self.modalities if m in encoded]
        z = [encoded[m]["z"].detach() if detach else encoded[m]["z"] for m in present]
        labels = torch.cat(
            [
                torch.full((len(zm),), self.modalities.index(m), device=zm.device)
                for m, zm in zip(present, z, strict=True)
            ]
        )
        return self.latent_discriminator(torch.cat(z)), labels

    def discriminator_loss(self, encoded: dict, generated_views: dict) -> torch.Tensor:
        """The discriminators' loss of the D step: :meth:`adversarial_losses` at weight
        ``lambda_adversarial``."""
        return self.lambda_adversarial * self.adversarial_losses(encoded, generated_views)

    def with_adversarial_loss(
        self, loss_output: LossOutput, encoded: dict, generated_views: dict
    ) -> LossOutput:
        """``loss_output`` of :meth:`loss` with the generator's adversarial term
        (:meth:`generator_adversarial_loss`, unweighted in ``extra_metrics["adversarial"]``)
        added to the loss at weight ``lambda_adversarial``.

        It is a step of its own because it must read the discriminators *after* the D step
        that follows :meth:`loss` (the generator is updated against refreshed discriminators).
        """
        adversarial = self.generator_adversarial_loss(encoded, generated_views)
        return LossOutput(
            loss=loss_output.loss + self.lambda_adversarial * adversarial,
            reconstruction_loss=loss_output.reconstruction_loss,
            kl_local=loss_output.kl_local,
            extra_metrics={**loss_output.extra_metrics, "adversarial": adversarial},
            n_obs_minibatch=loss_output.n_obs_minibatch,
        )

    def adversarial_losses(self, encoded: dict, generated_views: dict) -> torch.Tensor:
        """Discriminator cross-entropies ``L_D = L_Dz + L_Dge`` (eq. 18-20), unweighted.

        D_z classifies the modality of joint latents. Each D_ge_k separates ``x_k`` decoded from
        ``k``'s own joint latents from ``x_k`` cross-generated from the other modalities
        (:meth:`cross_generated_views`). Generator outputs are detached, so one generator
        forward serves both optimiser steps.
        """
        logits, labels = self._latent_logits(encoded, detach=True)
        loss = F.cross_entropy(logits, labels)
        for k, (real, fake) in generated_views.items():
            scores = self.data_discriminator[k](torch.cat([real, fake.detach()])).squeeze(-1)
            targets = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))]).to(scores)
            loss = loss + F.binary_cross_entropy_with_logits(scores, targets) / len(generated_views)
        return loss

    def generator_adversarial_loss(self, encoded: dict, generated_views: dict) -> torch.Tensor:
        """The generator's side of eq. 18-20, in the non-saturating form.

        The paper's minimax form (the generator maximises the discriminators' cross-entropy)
        gives the generator almost no gradient once a discriminator is confident, and D_z
        becomes confident within an epoch on the mouse cortex data (measured in
        ``docs/concepts.md``, "Where crossomics had to choose"). As in standard GAN practice
        the generator instead minimises the cross-entropy of the *wrong* answers: D_z's
        log-probabilities of the other modalities (averaged over them) and D_ge's
        log-probability of "real" for cross-generated data. The fixed point (discriminators
        at chance) is the same.
        """
        logits, labels = self._latent_logits(encoded, detach=False)
        log_probs = F.log_softmax(logits, dim=-1)
        wrong = torch.ones_like(log_probs).scatter_(1, labels[:, None], 0.0)
        loss = -(log_probs * wrong).sum(1).div(wrong.sum(1)).mean()
        for k, (_, fake) in generated_views.items():
            scores = self.data_discriminator[k](fake).squeeze(-1)
            loss = loss + F.binary_cross_entropy_with_logits(scores, torch.ones_like(scores)) / len(
                generated_views
            )
        return loss
