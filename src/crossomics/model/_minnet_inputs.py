"""MINNET input features: the fixed recipe that turns one modality's raw counts into model inputs.

The recipe is fitted once on the training data and stored in the model, so training cells,
the registered data after reloading, and new query data all go through identical steps:

1. counts: the modality's counts, or for ATAC with a gene annotation, gene activity
   (:func:`crossomics.pp.gene_activity`: peak counts summed over each gene body plus
   ``upstream`` bp before the TSS, recomputed from the query's own peak coordinates);
2. per-cell log-normalisation, ``log1p(counts / cell_total * 1e4)``, with the cell total taken
   over the features of the data passed in (as the paper normalises before selecting features);
3. alignment by name to the training features; missing features are filled with 0 and reported
   in a warning.

Per-feature standardisation and clipping follow inside the module, from stored statistics.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from crossomics._constants import STD_FLOOR, TARGET_SUM
from crossomics._validation import check_counts, get_matrix
from crossomics.pp import gene_activity
from crossomics.pp._normalize import log_normalize

"""Counts per cell after library-size normalisation, before ``log1p``."""


@dataclass(eq=False)
class ModalityInput:
    """How one modality's raw counts become MINNET input features.

    Parameters
    ----------
    modality
        Modality name, used in messages.
    feature_names
        The input features of the network, in order.
    gene_annotation
        ``None`` for feature-level input, or a genome name (``"mm10"``, ``"hg38"``) or gene-body
        table: the data are ATAC peaks summarised to gene activity over these genes.
    upstream
        Bases before the TSS added to each gene body for gene activity (paper: 2 kb).
    """

    modality: str
    feature_names: np.ndarray
    gene_annotation: pd.DataFrame | str | None = None
    upstream: int = 2000

    @property
    def n_features(self) -> int:
        """Number of input features."""
        return len(self.feature_names)

    def feature_counts(self, adata: AnnData, layer: str | None = None) -> tuple[sp.csr_matrix, pd.Index]:
        """Raw counts of ``adata`` at the level the recipe works on (features or gene activity)."""
        where = f"modality {self.modality!r} " + (f"layer {layer!r}" if layer else "X")
        counts = get_matrix(adata, layer, name=f"modality {self.modality!r}")
        check_counts(counts, where, hint=" (MINNET log-normalises raw counts itself)")
        if self.gene_annotation is None:
            return sp.csr_matrix(counts, dtype=np.float32), adata.var_names
        activity = gene_activity(adata, self.gene_annotation, upstream=self.upstream, layer=layer)
        return sp.csr_matrix(activity.X, dtype=np.float32), activity.var_names

    def transform(self, adata: AnnData, layer: str | None = None) -> sp.csr_matrix:
        """Log-normalised counts aligned to :attr:`feature_names` (float32 CSR, cells x features).

        Raises a ``ValueError`` when no feature is shared and warns when some are missing.
        """
        counts, names = self.feature_counts(adata, layer)
        if not names.is_unique:
            duplicated = list(names[names.duplicated()][:3])
            raise ValueError(
                f"modality {self.modality!r} has duplicated feature names, e.g. {duplicated}; "
                "call adata.var_names_make_unique() first"
            )
        position = names.get_indexer(pd.Index(self.feature_names))
        present = position >= 0
        level = "genes with gene activity" if self.gene_annotation is not None else "features"
        if not present.any():
            raise ValueError(
                f"modality {self.modality!r} shares no {level} with the model's {self.n_features} "
                f"training features (model: {list(self.feature_names[:3])}, data: {list(names[:3])}); "
                "pass data of the same modality with matching feature names"
            )
        if not present.all():
            missing = self.feature_names[~present]
            warnings.warn(
                f"modality {self.modality!r}: {missing.size} of {self.n_features} model {level} are "
                f"missing from the data (e.g. {list(missing[:3])}); they are filled with 0",
                UserWarning,
                stacklevel=3,
            )
        normalised = log_normalize(counts, target_sum=TARGET_SUM)
        # a selection matrix aligns columns by name and leaves missing features as zero columns
        selection = sp.csr_matrix(
            (np.ones(int(present.sum()), dtype=np.float32), (position[present], np.flatnonzero(present))),
            shape=(counts.shape[1], self.n_features),
        )
        return sp.csr_matrix(normalised @ selection, dtype=np.float32)


def fit_modality_input(
    adata: AnnData,
    modality: str,
    layer: str | None = None,
    gene_annotation: pd.DataFrame | str | None = None,
    restrict_to: pd.Index | None = None,
    upstream: int = 2000,
) -> ModalityInput:
    """Fix the input features of one training modality.

    Feature-level modalities keep all their features. With ``gene_annotation``, the features are
    the genes with at least one peak in their window, restricted to ``restrict_to`` (the other
    modality's genes, as the paper uses the same genes for expression and gene activity) when the
    two overlap.
    """
    recipe = ModalityInput(modality, np.asarray(adata.var_names, dtype=object), gene_annotation, upstream)
    if gene_annotation is None:
        return recipe
    _, genes = recipe.feature_counts(adata, layer)
    if restrict_to is not None and genes.isin(restrict_to).any():
        genes = genes[genes.isin(restrict_to)]
    recipe.feature_names = np.asarray(genes, dtype=object)
    return recipe


def standardization_statistics(X: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (ddof=1, as ``scanpy.pp.scale``) of a sparse matrix.

    Computed from sums of values and squares, so the matrix is never densified.
    """
    n_cells = X.shape[0]
    mean = np.asarray(X.mean(axis=0), dtype=np.float64).ravel()
    mean_of_squares = np.asarray(X.multiply(X).mean(axis=0), dtype=np.float64).ravel()
    variance = np.maximum(mean_of_squares - mean**2, 0.0) * n_cells / max(n_cells - 1, 1)
    std = np.sqrt(variance)
    std[std < STD_FLOOR] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)
