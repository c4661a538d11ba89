"""Metrics for multi-omics integration and cross-modal generation.

Small functions on arrays. Each documents its range and whether higher or lower is better.
"""

from ._auroc import auroc_binary
from ._cell_type_agreement import cell_type_proportion_correlation, marker_correlation
from ._foscttm import foscttm, foscttm_per_cell
from ._generation_fidelity import generation_fidelity
from ._integration import integration_metrics
from ._label_transfer import label_transfer_accuracy, transfer_labels
from ._modality_mixing import modality_mixing
from ._profile_similarity import pearson_per_cell, pearson_per_feature, rmse
from ._realism import two_sample_realism
from ._scib_benchmark import scib_benchmark

__all__ = [
    "auroc_binary",
    "cell_type_proportion_correlation",
    "foscttm",
    "foscttm_per_cell",
    "generation_fidelity",
    "integration_metrics",
    "label_transfer_accuracy",
    "marker_correlation",
    "modality_mixing",
    "pearson_per_cell",
    "pearson_per_feature",
    "rmse",
    "scib_benchmark",
    "transfer_labels",
    "two_sample_realism",
]
