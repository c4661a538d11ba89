"""Downstream tools for any joint embedding: KNN smoothing, mini-bulks and peak-gene correlation."""

from ._minibulk import minibulk
from ._peak_gene import peak_gene_correlation
from ._smoothing import knn_smooth

__all__ = ["knn_smooth", "minibulk", "peak_gene_correlation"]
