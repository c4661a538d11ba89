"""Plots for SCCROSS generation, simulation and perturbation results."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp


def _log_normalized(adata: ad.AnnData) -> ad.AnnData:
    out = ad.AnnData(
        X=sp.csr_matrix(adata.X, dtype=np.float32)
        if sp.issparse(adata.X)
        else np.asarray(adata.X, np.float32)
    )
    out.obs_names = adata.obs_names
    out.var_names = adata.var_names
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def generated_vs_real_umap(
    real: ad.AnnData,
    generated: ad.AnnData,
    color: str | None = None,
    n_comps: int = 30,
    ax: plt.Axes | None = None,
    seed: int = 0,
) -> plt.Axes:
    """UMAP of real and generated profiles of the same features, overlaid.

    Both are log-normalised, embedded together (PCA then UMAP) and drawn with real cells in grey
    and generated cells coloured by ``color`` (an ``obs`` column of ``generated``) or in red.
    Neither input is modified.

    Examples
    --------
    >>> generated = model.cross_generate(source="atac", target="rna")
    >>> co.pl.generated_vs_real_umap(mdata.mod["rna"], generated, color="cell_type")
    """
    if list(real.var_names) != list(generated.var_names):
        raise ValueError("real and generated must have the same features (var_names) in the same order")
    combined = ad.concat(
        {"real": _log_normalized(real), "generated": _log_normalized(generated)},
        label="source",
        index_unique="-",
    )
    sc.pp.pca(combined, n_comps=min(n_comps, combined.n_vars - 1, combined.n_obs - 1), random_state=seed)
    sc.pp.neighbors(combined, random_state=seed)
    sc.tl.umap(combined, random_state=seed)
    coords = combined.obsm["X_umap"]
    is_real = (combined.obs["source"] == "real").to_numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(*coords[is_real].T, s=3, c="lightgrey", label="real", rasterized=True)
    if color is None:
        ax.scatter(*coords[~is_real].T, s=3, c="tab:red", label="generated", rasterized=True)
    else:
        labels = generated.obs[color].astype(str).to_numpy()
        for i, label in enumerate(pd.unique(labels)):
            keep = labels == label
            ax.scatter(
                *coords[~is_real][keep].T, s=3, color=plt.cm.tab20(i % 20), label=label, rasterized=True
            )
    ax.set(xticks=[], yticks=[], xlabel="UMAP1", ylabel="UMAP2", title="generated (colour) over real (grey)")
    ax.legend(markerscale=4, fontsize=6, frameon=False, loc="best")
    return ax


def perturbation_scores(scores: pd.DataFrame, n_top: int = 20, ax: plt.Axes | None = None) -> plt.Axes:
    """Bar plot of the top genes of :meth:`crossomics.SCCROSS.perturb` (paper Fig. 6b).

    Shows ``score_up`` and ``score_down`` (when present) of the ``n_top`` best-ranked genes;
    positive values move the perturbed cells toward the reference.

    Examples
    --------
    >>> scores = model.perturb("rna", groupby="cell_type", perturb_group="L6", reference_group="L4/5")
    >>> co.pl.perturbation_scores(scores, n_top=15)
    """
    columns = [c for c in ("score_up", "score_down") if c in scores]
    if not columns:
        raise ValueError(
            "scores has no score_up / score_down column; pass the DataFrame returned by perturb()"
        )
    top = scores.sort_values("rank").head(n_top) if "rank" in scores else scores.head(n_top)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.25 * len(top) + 1.5))
    positions = np.arange(len(top))
    height = 0.8 / len(columns)
    for i, column in enumerate(columns):
        ax.barh(positions + i * height, top[column], height=height, label=column.replace("score_", ""))
    ax.set_yticks(positions + height * (len(columns) - 1) / 2, top.index)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.5)
    ax.set(xlabel="decrease of mean cosine distance to reference", title="in-silico perturbation")
    ax.legend(frameon=False)
    return ax


def simulated_vs_real_markers(
    real: ad.AnnData,
    simulated: ad.AnnData,
    markers: Sequence[str],
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Mean log-normalised expression of marker genes in real vs simulated cells.

    One point per marker; the diagonal marks perfect agreement and the title gives Pearson r.

    Examples
    --------
    >>> sim = model.simulate(groupby="cell_type", group="Astro", n_cells=500)
    >>> astro = mdata.mod["rna"][mdata.mod["rna"].obs["cell_type"] == "Astro"]
    >>> co.pl.simulated_vs_real_markers(astro, sim.mod["rna"], markers=["Gfap", "Aqp4", "Slc1a3"])
    """
    missing = [g for g in markers if g not in real.var_names or g not in simulated.var_names]
    if missing:
        raise ValueError(f"markers not in both objects: {missing[:5]}")
    real_mean = np.asarray(_log_normalized(real)[:, list(markers)].X.mean(0)).ravel()
    simulated_mean = np.asarray(_log_normalized(simulated)[:, list(markers)].X.mean(0)).ravel()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(real_mean, simulated_mean, s=12)
    for gene, x, y in zip(markers, real_mean, simulated_mean, strict=True):
        ax.annotate(gene, (x, y), fontsize=6)
    limit = max(real_mean.max(), simulated_mean.max()) * 1.05
    ax.plot([0, limit], [0, limit], color="grey", lw=0.5)
    r = np.corrcoef(real_mean, simulated_mean)[0, 1] if len(markers) > 1 else np.nan
    ax.set(
        xlabel="real mean log expression",
        ylabel="simulated mean log expression",
        title=f"markers, r = {r:.2f}",
    )
    return ax
