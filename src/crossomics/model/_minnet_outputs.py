"""Outputs of a trained MINNET: co-embeddings and cell-type predictions for registered or new data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from mudata import MuData
from scvi import settings

from crossomics._validation import check_indices, check_positive_int


class MINNETOutputsMixin:
    """:meth:`get_latent_representation` and :meth:`predict` of :class:`~crossomics.model.MINNET`."""

    def _inputs(
        self, modality: str, adata: AnnData | MuData | None, layer: str | None
    ) -> tuple[sp.csr_matrix, pd.Index]:
        """Model inputs of ``modality`` for the registered data or for new data."""
        self._modality_index(modality)
        if adata is None:
            return self._model_inputs(modality), self._data[modality].obs_names
        if isinstance(adata, MuData):
            if modality not in adata.mod:
                raise ValueError(f"the MuData has no modality {modality!r}; it has {list(adata.mod)}")
            adata = adata.mod[modality]
        if not isinstance(adata, AnnData):
            raise TypeError(
                f"adata is a {type(adata).__name__}; pass an AnnData of {modality!r} (or a MuData holding it)"
            )
        return self.input_transforms_[modality].transform(adata, layer), adata.obs_names

    @torch.inference_mode()
    def _embed(
        self,
        modality: str,
        adata: AnnData | MuData | None,
        indices: Sequence[int] | None,
        batch_size: int | None,
        layer: str | None,
    ) -> tuple[np.ndarray, np.ndarray, pd.Index]:
        self._check_if_trained(warn=False)
        index = self._modality_index(modality)
        inputs, obs_names = self._inputs(modality, adata, layer)
        if indices is not None:
            rows = check_indices(indices, inputs.shape[0], f"indices of modality {modality!r}")
            inputs, obs_names = inputs[rows], obs_names[rows]
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size", settings.batch_size)
        batch_size = batch_size or settings.batch_size
        self.module.eval()
        latents = [np.zeros((0, self.module.embedding_head.out_features), dtype=np.float32)]
        logits = [np.zeros((0, len(self.cell_types_)), dtype=np.float32)]
        for start in range(0, inputs.shape[0], batch_size):
            x = torch.from_numpy(inputs[start : start + batch_size].toarray())
            z, cell_type_logits = self.module.embed(x, index)
            latents.append(z.cpu().numpy())
            logits.append(cell_type_logits.cpu().numpy())
        return np.concatenate(latents), np.concatenate(logits), obs_names

    def get_latent_representation(
        self,
        modality: str,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        layer: str | None = None,
    ) -> np.ndarray:
        """Co-embedding of the cells of one modality, registered or new, paired or not.

        New data go through the stored input recipe: features are matched by name to the
        training features (missing ones are set to 0, with a warning), ATAC peaks are turned
        into gene activity when the model was set up with ``gene_annotation``, and the
        training means and standard deviations scale the result.

        Parameters
        ----------
        modality
            One of :attr:`modalities`.
        adata
            ``None`` for the registered data, or new data of that modality: an AnnData with raw
            counts, or a MuData holding the modality.
        indices
            Rows of the data to embed; all by default.
        batch_size
            Cells per forward pass (default ``scvi.settings.batch_size``).
        layer
            Layer of ``adata`` holding raw counts (new data only); ``None`` uses ``X``.

        Returns
        -------
        numpy.ndarray
            ``(n_cells, n_latent)`` float32 co-embedding. Nothing is written to ``adata``; store
            it yourself, e.g. ``adata.obsm["X_minnet"] = ...``.

        Examples
        --------
        >>> z_rna = model.get_latent_representation(modality="rna")
        >>> z_query = model.get_latent_representation(modality="atac", adata=query_atac)
        """
        return self._embed(modality, adata, indices, batch_size, layer)[0]

    def predict(
        self,
        modality: str,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        soft: bool = False,
        batch_size: int | None = None,
        layer: str | None = None,
    ) -> np.ndarray | pd.DataFrame:
        """Cell types predicted by the classifier from one modality.

        Parameters
        ----------
        modality, adata, indices, batch_size, layer
            As in :meth:`get_latent_representation`.
        soft
            Return class probabilities instead of labels.

        Returns
        -------
        numpy.ndarray or pandas.DataFrame
            Predicted cell-type names, or with ``soft=True`` a cells x cell types DataFrame of
            probabilities indexed by ``obs_names``.

        Examples
        --------
        >>> labels = model.predict("atac", adata=query_atac)
        >>> probabilities = model.predict("atac", adata=query_atac, soft=True)
        """
        _, logits, obs_names = self._embed(modality, adata, indices, batch_size, layer)
        if soft:
            probabilities = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
            return pd.DataFrame(probabilities, index=obs_names, columns=self.cell_types_)
        return np.asarray(self.cell_types_)[logits.argmax(axis=1)]
