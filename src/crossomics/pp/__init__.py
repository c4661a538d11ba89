"""Preprocessing: fixed PCA/LSI input transforms, gene activity, gene sets and the MNN prior.

Every function leaves its inputs unchanged unless its docstring names the slot it writes
(``obsm[key_added]`` and the like).
"""

from crossomics.datasets._gmt import read_gmt

from ._annotation_files import read_gene_annotation
from ._common_gene_space import CommonGeneSpace, fit_common_gene_space
from ._common_genes import common_gene_maps, common_gene_views
from ._gene_activity import gene_activity
from ._gene_sets import gene_set_membership, gene_set_scores
from ._lsi import LSITransform, fit_lsi, lsi
from ._mnn import mnn_correct
from ._mnn_prior import metacell_labels, mnn_prior
from ._pca import PCATransform, fit_pca
from ._peaks import check_genome, parse_peaks, peak_overlap_map, peak_to_gene_matrix

__all__ = [
    "CommonGeneSpace",
    "check_genome",
    "LSITransform",
    "PCATransform",
    "common_gene_maps",
    "common_gene_views",
    "fit_common_gene_space",
    "fit_lsi",
    "fit_pca",
    "gene_activity",
    "gene_set_membership",
    "gene_set_scores",
    "lsi",
    "metacell_labels",
    "mnn_correct",
    "mnn_prior",
    "parse_peaks",
    "peak_overlap_map",
    "peak_to_gene_matrix",
    "read_gene_annotation",
    "read_gmt",
]
