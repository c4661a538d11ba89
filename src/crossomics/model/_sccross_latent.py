"""Joint latent representations of SCCROSS cells."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData

from crossomics.model._regional_alignment import apply_regional_alignment
from crossomics.model._sccross_data import SCCROSSDataMixin


class SCCROSSLatentMixin(SCCROSSDataMixin):
    """``get_latent_representation`` of :class:`crossomics.SCCROSS`."""

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

        After training, the embedding passes through the model's regional alignment (see
        ``n_alignment_regions`` of :class:`SCCROSS`); variances are scaled by its stretch.

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
        return self._latent(modality, adata, indices, give_mean, batch_size, return_dist)

    @torch.inference_mode()
    def _latent(
        self, modality, adata, indices, give_mean=True, batch_size=None, return_dist=False, aligned=True
    ):
        """One modality's joint latents; ``aligned=False`` skips the regional alignment (the space
        the module's own encodings live in, which perturbation compares them with)."""
        X, _, batches = self._modality_data(modality, adata, indices)
        self.module.eval()
        n_latent = self.module.n_latent

        def encode(x):
            encoded = self.module.encode(modality, x, sample=not give_mean)
            if return_dist:
                return torch.cat([encoded["z_mean"], encoded["z_log_var"].exp()], dim=-1).cpu().numpy()
            return encoded["z"].cpu().numpy()

        values = self._encode_measured(modality, X, encode, batch_size, n_latent * (2 if return_dist else 1))
        z, variance = values[:, :n_latent], values[:, n_latent:]
        if aligned and self.regional_alignment_ is not None:
            z, stretch = apply_regional_alignment(z, modality, self.regional_alignment_, batches)
            if return_dist:
                variance = variance * stretch**2
        return (z, variance) if return_dist else z

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
