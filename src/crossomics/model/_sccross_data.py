"""Data access of SCCROSS: a modality's cells in the model's feature order, batches and encoder chunks."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from mudata import MuData
from scvi import settings

from crossomics._backed import BackedRows, as_rows, read_rows
from crossomics._validation import (
    check_counts,
    check_finite,
    check_indices,
    check_positive_int,
    empty_cells,
    get_matrix,
)
from crossomics.model._sccross_inputs import feature_alignment
from crossomics.nn._likelihoods import COUNT_LIKELIHOODS
from crossomics.nn._transforms import to_torch_rows
from crossomics.train._multimodal_data import batch_key, data_key

logger = logging.getLogger(__name__)


class SCCROSSDataMixin:
    """Data access of :class:`crossomics.SCCROSS`, the basis of every method that reads cells."""

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
    ) -> tuple[sp.csr_matrix | np.ndarray | BackedRows, AnnData, np.ndarray]:
        """Data matrix (training feature order; left on disk for backed data), the AnnData it
        came from and batch codes.

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
        X = as_rows(X, f"modality {modality!r}")
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

    def _measured_cells(self, modality: str, X, row_sums: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of the rows of ``X`` measured in ``modality``: all of them, except cells
        with zero counts under a count likelihood, which SCCROSS leaves out of that modality
        (``row_sums``, when known, saves a pass over ``X``)."""
        if self.likelihoods_[modality] in COUNT_LIKELIHOODS:
            return ~empty_cells(X) if row_sums is None else row_sums != 0
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
        return rows_of_all_cells(values, measured)

    def _batches(self, X, batch_size: int | None):
        """Row chunks of ``X`` as tensors for the encoders: CSR tensors when ``X`` is sparse.

        The fixed input transforms work on the stored entries of a CSR tensor, so a chunk of a
        wide sparse modality (ATAC peaks) is never densified.
        """
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size", settings.batch_size)
        step = batch_size or settings.batch_size
        return (
            to_torch_rows(read_rows(X, start, start + step), self.device)
            for start in range(0, X.shape[0], step)
        )


def rows_of_all_cells(values: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """``values`` of the measured rows placed at their rows among all cells, NaN elsewhere."""
    if measured.all():
        return values
    out = np.full((len(measured), *values.shape[1:]), np.nan, dtype=np.result_type(values.dtype, np.float32))
    out[measured] = values
    return out
