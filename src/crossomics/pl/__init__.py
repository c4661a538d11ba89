"""Plots for generation, simulation and perturbation results (matplotlib; scanpy for embeddings)."""

from ._generation import generated_vs_real_umap, perturbation_scores, simulated_vs_real_markers

__all__ = ["generated_vs_real_umap", "perturbation_scores", "simulated_vs_real_markers"]
