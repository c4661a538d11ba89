"""The alignment terms of the scCross network: MNN prior (eq. 22), MNN anchors and true pairs."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from crossomics._constants import BATCH_KEY, FEATURES_KEY, PAIRS_KEY, PRIOR_KEY, X_KEY


def _mean_squared_norm(*embeddings: torch.Tensor) -> torch.Tensor:
    """Mean squared norm of the rows of all ``embeddings``: the scale that makes a loss scale-free."""
    return torch.cat(embeddings).pow(2).sum(-1).mean().clamp_min(1e-8)


class AlignmentTermsMixin:
    """What pulls the modalities into one joint space, for :class:`SCCROSSModule`."""

    def _alignment_losses(
        self, tensors, inference_outputs, paired_modalities, loss: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The stage-2 alignment terms (MNN prior, anchors, true pairs) and ``loss`` with each
        added at its weight."""
        present = [m for m in self.modalities if m in tensors]
        joint = {m: inference_outputs[m]["z_embedding"] for m in present}
        prior = {m: tensors[m][PRIOR_KEY] for m in present}
        out = {"mnn": self.mnn_loss(joint, prior)}
        loss = loss + self.lambda_mnn * out["mnn"]
        if self.lambda_anchor > 0 and len(present) > 1:
            skip = set(tensors.get(PAIRS_KEY) or ()) | set(paired_modalities or ())
            out["anchor"] = self.mnn_anchor_loss(joint, prior, skip=skip)
            loss = loss + self.lambda_anchor * out["anchor"]
        if tensors.get(PAIRS_KEY):
            out.update(self.paired_losses(tensors[PAIRS_KEY]))
            loss = loss + self.lambda_pairs * out["pairs"]
            if "translation" in out:
                loss = loss + self.lambda_translation * out["translation"]
        return out, loss

    def mnn_loss(self, joint: dict[str, torch.Tensor], prior: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 22: squared difference between latent and prior similarities of cells.

        ``joint`` holds each modality's ``z_embedding`` (the aligner applied to the posterior
        mean of ``z_k``, i.e. what :meth:`encode` returns with ``sample=False``), so the prior
        shapes the embedding that is returned to the user. Each block's squared Frobenius
        norm is divided by its number of rows (a sum over partner cells, a mean over cells),
        which keeps ``lambda_MNN`` meaningful next to the per-feature reconstruction term.

        With ``mnn_similarity="cosine"`` this is the paper's loss: cosine similarities over
        every ordered pair of different modalities. Matching cross-modal cosines alone fixes
        neither each cell's norm nor the metric within a modality (any invertible map ``A``
        on one modality with ``A^-T`` on the other keeps cross inner products), so Euclidean
        distances in the joint space stay distorted: an MLP fitted to this loss alone matched
        cells better by cosine than by Euclidean distance. ``"inner_product"`` (the default)
        matches inner products instead, each space scaled by its root-mean-square norm over
        the minibatch, over all ordered modality pairs *including* each modality with itself.
        Matching the whole Gram matrix determines the embedding up to a rotation and one
        global scale, so Euclidean distances follow the prior (both measured in
        ``docs/concepts.md``, "Where crossomics had to choose").
        """
        total = torch.zeros((), device=next(iter(joint.values())).device)
        if self.mnn_similarity == "cosine":
            for h, j in itertools.permutations(joint, 2):
                latent_similarity = F.normalize(joint[h], dim=-1) @ F.normalize(joint[j], dim=-1).T
                prior_similarity = F.normalize(prior[h], dim=-1) @ F.normalize(prior[j], dim=-1).T
                total = total + ((latent_similarity - prior_similarity) ** 2).sum(1).mean()
            return total
        joint_scale = _mean_squared_norm(*joint.values()).sqrt()
        prior_scale = _mean_squared_norm(*prior.values()).sqrt()
        for h, j in itertools.product(joint, repeat=2):
            latent_similarity = (joint[h] @ joint[j].T) / joint_scale**2
            prior_similarity = (prior[h] @ prior[j].T) / prior_scale**2
            total = total + ((latent_similarity - prior_similarity) ** 2).sum(1).mean()
        return total

    def mnn_anchor_loss(
        self,
        joint: dict[str, torch.Tensor],
        prior: dict[str, torch.Tensor],
        skip: set[tuple[str, str]] = frozenset(),
    ) -> torch.Tensor:
        """Squared joint-space distance of cells that are cross-modal MNN anchors in the prior.

        Within the minibatch, a cell of modality ``h`` and a cell of ``j`` are anchors when each
        is among the other's ``n_anchor_neighbours`` nearest neighbours in the MNN prior. The
        loss is their mean squared distance in ``joint`` (``z_embedding``), divided by the mean
        squared norm of the embeddings so that shrinking the space earns nothing, summed over
        modality pairs. It reads the paper's "MNN cell pairs as alignment anchors" literally:
        the Gram loss of eq. 22 (:meth:`mnn_loss`) is dominated by the large directions of the
        prior and leaves each modality free to keep private low-variance directions, in which
        the two modalities formed separate islands (``docs/concepts.md``, "One joint space").

        Modality pairs in ``skip`` (those with truly paired cells) take no prior anchors: the
        true pairs anchor them exactly, and prior anchors beside them pulled wrong cells
        together, which worsened both the matching of paired cells and label transfer between
        unpaired batches (measured in ``docs/concepts.md``, "Common-gene MNN prior").
        """
        total = torch.zeros((), device=next(iter(joint.values())).device)
        for h, j in itertools.combinations(joint, 2):
            if (h, j) in skip or (j, h) in skip:
                continue
            prior_distance = torch.cdist(prior[h], prior[j])
            k = min(self.n_anchor_neighbours, *prior_distance.shape)
            forward = torch.zeros_like(prior_distance, dtype=torch.bool)
            forward.scatter_(1, prior_distance.topk(k, dim=1, largest=False).indices, True)
            backward = torch.zeros_like(prior_distance, dtype=torch.bool)
            backward.scatter_(0, prior_distance.topk(k, dim=0, largest=False).indices, True)
            mutual = (forward & backward).float()
            scale = _mean_squared_norm(joint[h], joint[j])
            distance = torch.cdist(joint[h], joint[j]).pow(2)
            total = total + (distance * mutual).sum() / mutual.sum().clamp_min(1.0) / scale
        return total

    def paired_losses(self, pairs: dict) -> dict[str, torch.Tensor]:
        """Losses of truly paired cells: ``"pairs"`` (alignment) and ``"translation"``.

        ``"pairs"`` is the squared distance between the joint embeddings (``z_embedding``) of
        the two modalities of a cell, divided by the mean squared norm of the embeddings in
        the minibatch, so shrinking the joint space earns nothing. It is Euclidean, like every
        distance read off the embedding: a cosine distance leaves the paired cells' norms free,
        and the embedding then matches cells worse by Euclidean distance (measured in
        ``docs/concepts.md``, "Where crossomics had to choose").

        ``"translation"`` (only when ``lambda_translation > 0``) is the reconstruction loss of
        each modality decoded from the *other* modality's joint latent sample, ``x_j`` from
        ``z_h -> z_k(j) -> x_j`` and back, normalised like the reconstruction term. The paper
        trains each decoder on its own modality's latents only; then what a decoder produces
        for a cross-generated cell is bounded by what its own modality's encoder can tell
        apart. On the paired mouse cortex, microglia are mixed with other types in the RNA
        latent, so RNA generated from ATAC lost their markers although ATAC separates them.
        With this term the marker and per-gene correlations of RNA generated from ATAC rose,
        while per-cell r and RMSE stayed the same (measured in ``docs/concepts.md``, "Where
        crossomics had to choose").
        """
        out = {"pairs": torch.zeros((), device=self.device)}
        if self.lambda_translation > 0:
            out["translation"] = torch.zeros((), device=self.device)
        for (h, j), tensors in pairs.items():
            encoded = {
                m: self.encode(m, tensors[m][X_KEY], features=tensors[m].get(FEATURES_KEY)) for m in (h, j)
            }
            z_h, z_j = encoded[h]["z_embedding"], encoded[j]["z_embedding"]
            scale = _mean_squared_norm(z_h, z_j)
            out["pairs"] = out["pairs"] + (z_h - z_j).pow(2).sum(-1).mean() / scale
            if self.lambda_translation > 0:
                for source, target in ((h, j), (j, h)):
                    x, batch = tensors[target][X_KEY], tensors[target][BATCH_KEY]
                    params = self.decode(target, encoded[source]["z"], batch, x.sum(-1))[0]
                    out["translation"] = out["translation"] + self._reconstruction(target, x, params)
        return out
