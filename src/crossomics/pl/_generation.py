"""Plots for SCCROSS generation, simulation and perturbation results."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from crossomics._constants import TARGET_SUM


def _log_normalized(adata: ad.AnnData) -> ad.AnnData:
    out = ad.AnnData(
        X=sp.csr_matrix(adata.X, dtype=np.float32)
        if sp.issparse(adata.X)
        else np.asarray(adata.X, np.float32)
    )
    out.obs_names = adata.obs_names
    out.var_names = adata.var_names
    sc.pp.normalize_total(out, target_sum=TARGET_SUM)
    sc.pp.log1p(out)
    return out


def _category_colors(values: pd.Series, *sources: ad.AnnData, key: str) -> dict[str, str]:
    """One colour per category, as scanpy would draw it: the palette stored in
    ``uns[f"{key}_colors"]`` of the first object holding one for that column (matched to its
    categories), else scanpy's default palette for that many categories."""
    categories = list(values.astype("category").cat.categories.astype(str))
    colors: dict[str, str] = {}
    for adata in sources:
        stored = adata.uns.get(f"{key}_colors")
        if stored is None or key not in adata.obs:
            continue
        own = list(adata.obs[key].astype("category").cat.categories.astype(str))
        if len(stored) >= len(own):
            colors.update({c: stored[i] for i, c in enumerate(own) if c not in colors})
    missing = [c for c in categories if c not in colors]
    if missing:
        n = len(categories)
        palette = (
            sc.pl.palettes.default_20
            if n <= 20
            else sc.pl.palettes.default_28
            if n <= 28
            else sc.pl.palettes.default_102
        )
        colors.update({c: palette[categories.index(c) % len(palette)] for c in missing})
    return {c: colors[c] for c in categories}


def _finish(ax: plt.Axes, show: bool | None, save: str | Path | None) -> plt.Axes | None:
    """scanpy's convention: write the figure to ``save`` if given; with ``show=True`` display it
    and return ``None``, else return the axes for further drawing."""
    if save is not None:
        ax.figure.savefig(save, dpi=150, bbox_inches="tight")
    if show:
        plt.show()
        return None
    return ax


def _legend(ax: plt.Axes, title: str | None = None) -> None:
    """A legend outside the data, right of the axes, in a readable size."""
    ax.legend(
        title=title, markerscale=3, fontsize=9, title_fontsize=9, frameon=False, loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )  # fmt: skip


def generated_vs_real_umap(
    real: ad.AnnData,
    generated: ad.AnnData,
    color: str | None = None,
    n_comps: int = 30,
    ax: plt.Axes | None = None,
    seed: int = 0,
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Axes | None:
    """UMAP of real and generated profiles of the same features, overlaid.

    Both are log-normalised, embedded together (PCA then UMAP) and drawn with real cells in grey
    and generated cells coloured by ``color`` (an ``obs`` column of ``generated``, with the
    palette scanpy stores in ``uns[f"{color}_colors"]`` of ``real`` or ``generated``) or in red.
    The title states what is compared. Compare like with like: sampled counts
    (``cross_generate(..., output="counts")``, the default of ``simulate``) with measured counts;
    expected values (``output="mean"``) are smoother than any measured cell and form a cloud of
    their own among counts. Neither input is modified.

    Parameters
    ----------
    real
        Measured cells (counts).
    generated
        Generated or simulated cells with the same features in the same order.
    color
        ``obs`` column of ``generated`` to colour by.
    n_comps
        Principal components before the neighbour graph.
    ax
        Axes to draw on (default: a new figure).
    seed
        Seed of PCA, neighbours and UMAP.
    show
        Show the figure and return ``None`` (as scanpy's ``show=True``).
    save
        File to write the figure to.

    Examples
    --------
    >>> generated = model.cross_generate(source="atac", target="rna", output="counts")
    >>> co.pl.generated_vs_real_umap(mdata.mod["rna"], generated, color="cell_type")
    """
    if list(real.var_names) != list(generated.var_names):
        raise ValueError("real and generated must have the same features (var_names) in the same order")
    if color is not None and color not in generated.obs:
        raise ValueError(
            f"color={color!r} is not an .obs column of generated; columns: {list(generated.obs.columns)}"
        )
    output = generated.uns.get("sccross_generation", {}).get("output", "counts")
    if output not in ("counts", "normalized"):
        warnings.warn(
            f"generated holds {output!r} values, real holds counts: expected values are smoother than any "
            "measured cell and sit apart from them; generate with output='counts' to compare like with like",
            UserWarning,
            stacklevel=2,
        )
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
        _, ax = plt.subplots(figsize=(6.5, 5))
    ax.scatter(*coords[is_real].T, s=3, c="lightgrey", label="real", rasterized=True)
    if color is None:
        ax.scatter(*coords[~is_real].T, s=3, c="tab:red", label="generated", rasterized=True)
    else:
        labels = generated.obs[color]
        for label, value in _category_colors(labels, real, generated, key=color).items():
            keep = (labels.astype(str) == label).to_numpy()
            if keep.any():
                ax.scatter(*coords[~is_real][keep].T, s=3, color=value, label=label, rasterized=True)
    kind = "generated counts" if output == "counts" else f"generated {output} values"
    ax.set(
        xticks=[], yticks=[], xlabel="UMAP1", ylabel="UMAP2", title=f"{kind} (colour) among real cells (grey)"
    )
    _legend(ax, color)
    return _finish(ax, show, save)


def perturbation_scores(
    scores: pd.DataFrame,
    n_top: int = 20,
    ax: plt.Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Axes | None:
    """Bar plot of the top genes of :meth:`crossomics.SCCROSS.perturb` (paper Fig. 6b).

    Shows ``score_up`` and ``score_down`` (when present) of the ``n_top`` best-ranked genes;
    positive values move the perturbed cells toward the reference. ``show`` and ``save`` as in
    :func:`generated_vs_real_umap`.

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
        _, ax = plt.subplots(figsize=(6, 0.3 * len(top) * len(columns) + 1.5))
    positions = np.arange(len(top))
    height = 0.8 / len(columns)
    for i, column in enumerate(columns):
        ax.barh(positions + i * height, top[column], height=height, label=column.replace("score_", ""))
    ax.set_yticks(positions + height * (len(columns) - 1) / 2, top.index, fontsize=9)
    ax.set_ylim(len(top) - 0.2, -0.6)
    ax.axvline(0, color="black", lw=0.5)
    ax.set(xlabel="decrease of mean cosine distance to reference", title="in-silico perturbation")
    _legend(ax, "perturbation")
    return _finish(ax, show, save)


def simulated_vs_real_markers(
    real: ad.AnnData,
    simulated: ad.AnnData,
    markers: Sequence[str],
    ax: plt.Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Axes | None:
    """Mean log-normalised expression of marker genes in real vs simulated cells.

    One point per marker; the diagonal marks perfect agreement and the title gives Pearson r.
    ``show`` and ``save`` as in :func:`generated_vs_real_umap`.

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
        ax.annotate(gene, (x, y), fontsize=8, xytext=(2, 2), textcoords="offset points")
    limit = max(real_mean.max(), simulated_mean.max()) * 1.05
    ax.plot([0, limit], [0, limit], color="grey", lw=0.5)
    r = np.corrcoef(real_mean, simulated_mean)[0, 1] if len(markers) > 1 else np.nan
    ax.set(
        xlabel="real mean log expression",
        ylabel="simulated mean log expression",
        title=f"markers, r = {r:.2f}",
    )
    return _finish(ax, show, save)
