"""Differential expression and accessibility on the mouse cortex against scanpy's Wilcoxon test.

SCCROSS is trained on all 10,309 cortex cells given as unpaired RNA and ATAC (pairing hidden, as
in the peer study). For every cell type, one against the rest:

- ``model.differential_expression(modality="rna", groupby="cell_type", group1=type)``: overlap of
  its top 50 genes (the table's own order, and its top 50 with ``lfc_mean > 0``) with the top 50
  of ``sc.tl.rank_genes_groups(method="wilcoxon")`` on log-normalised counts;
- the same with RNA *generated from the ATAC cells* (``source="atac"``): marker genes of cell
  types seen only through chromatin, scored against the Wilcoxon markers of the real RNA;
- peer: scVI (scvi-tools, RNA only, its default epochs with early stopping) and its
  ``differential_expression``; baseline: scanpy's t-test on the same log-normalised counts.

A diagnostic ceiling of what the SCCROSS RNA latent space holds, before any decoder: the
Wilcoxon test on each cell's log-normalised counts averaged over its 15 nearest neighbours in
that space.

For accessibility, ``model.differential_accessibility`` (top 500 peaks opening in the group)
against the Wilcoxon test on binarised peaks, with a random ranking as the chance level.

``python benchmarks/differential_mouse_cortex.py [--epochs N] [--threads T] [--model-dir D]`` writes
``results/differential_mouse_cortex.{csv,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _common as cm
import anndata as ad
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import scanpy as sc
import scvi

import crossomics as co

LABEL, N_TOP, N_TOP_PEAKS = "cell_type", 50, 500


def wilcoxon_top(
    adata: ad.AnnData, groups: list[str], n: int, method: str = "wilcoxon"
) -> dict[str, list[str]]:
    """Top-``n`` features of each group against the rest (scanpy, up-regulated first)."""
    work = adata.copy()
    sc.tl.rank_genes_groups(work, LABEL, groups=groups, reference="rest", method=method, n_genes=n)
    names = work.uns["rank_genes_groups"]["names"]
    return {g: list(names[g][:n]) for g in groups}


def smoothed(logn: ad.AnnData, latent: np.ndarray, k: int = 15) -> ad.AnnData:
    """Each cell's log-normalised values summed with those of its ``k - 1`` nearest neighbours in
    ``latent`` (co.tl.knn_smooth, no distance cut-off): what the latent space alone tells about
    the markers, before any decoder. The Wilcoxon test ranks, so sums rank as means would."""
    work = ad.AnnData(logn.X, obs=logn.obs.copy(), var=logn.var.copy(), obsm={"latent": latent})
    co.tl.knn_smooth(work, use_rep="latent", n_neighbors=k - 1, percentile=100)
    return ad.AnnData(work.layers["smoothed"], obs=work.obs, var=work.var)


def top_up(table: pd.DataFrame, n: int, effect: str) -> list[str]:
    """The table's top ``n`` features among those higher in group 1 (its own order)."""
    return list(table[table[effect] > 0].index[:n])


def overlap(a: list[str], b: list[str]) -> int:
    return len(set(a) & set(b))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=100, help="SCCROSS max_epochs (its default: 100)")
    p.add_argument("--pretrain-epochs", type=int, default=None, help="default: SCCROSS's (40%%)")
    p.add_argument("--batch-size", type=int, default=256, help="SCCROSS batch_size (its default: 256)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-dir", default=None, help="save the trained SCCROSS here, or load it if present")
    args = p.parse_args(argv)
    cm.set_threads(args.threads)
    scvi.settings.seed = args.seed

    full = co.datasets.mouse_motor_cortex()
    rna, atac = full.mod["rna"].copy(), full.mod["atac"].copy()
    atac.obs_names = [f"atac_{name}" for name in atac.obs_names]
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({"rna": rna, "atac": atac})
    # a cached model keeps the seconds its training took beside it
    seconds_file = Path(args.model_dir) / "training_seconds.json" if args.model_dir else None
    if args.model_dir and Path(args.model_dir).exists():
        co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
        model = co.SCCROSS.load(args.model_dir, adata=mdata)
        train_s = (
            json.loads(seconds_file.read_text()).get("SCCROSS", np.nan) if seconds_file.exists() else np.nan
        )
    else:
        model, train_s = cm.train_sccross(
            mdata, ["rna", "atac"], "mm10", args.epochs, args.pretrain_epochs, args.batch_size, args.seed
        )
        if args.model_dir:
            model.save(args.model_dir)
            seconds_file.write_text(json.dumps({"SCCROSS": train_s}))
    print(f"SCCROSS trained in {train_s:.0f} s", flush=True)

    counts = rna.X.copy()
    logn = ad.AnnData(
        cm.log_normalize(counts).astype(np.float32), obs=rna.obs[[LABEL]].copy(), var=rna.var[[]]
    )
    types = list(logn.obs[LABEL].astype("category").cat.categories)
    wilcoxon = wilcoxon_top(logn, types, N_TOP)
    ttest = wilcoxon_top(logn, types, N_TOP, method="t-test")
    latent = np.asarray(model.get_latent_representation(modality="rna"))
    ceiling = wilcoxon_top(smoothed(logn, latent), types, N_TOP)

    start = time.perf_counter()
    sccross = model.differential_expression(modality="rna", groupby=LABEL, silent=True)
    sccross_s = time.perf_counter() - start
    start = time.perf_counter()
    generated = model.differential_expression(modality="rna", source="atac", groupby=LABEL, silent=True)
    generated_s = time.perf_counter() - start

    scvi_data = ad.AnnData(counts, obs=rna.obs[[LABEL]].copy(), var=rna.var[[]])
    scvi.model.SCVI.setup_anndata(scvi_data)
    peer_dir = Path(args.model_dir) / "scvi" if args.model_dir else None
    if peer_dir is not None and peer_dir.exists():
        peer = scvi.model.SCVI.load(str(peer_dir), adata=scvi_data)
        peer_train_s = (
            json.loads(seconds_file.read_text()).get("scVI", np.nan) if seconds_file.exists() else np.nan
        )
    else:
        peer = scvi.model.SCVI(scvi_data)
        start = time.perf_counter()
        peer.train(early_stopping=True, enable_progress_bar=False, enable_model_summary=False)
        peer_train_s = time.perf_counter() - start
        if peer_dir is not None:
            peer.save(str(peer_dir))
            known = json.loads(seconds_file.read_text()) if seconds_file.exists() else {}
            seconds_file.write_text(json.dumps({**known, "scVI": peer_train_s}))
    peer_epochs = len(peer.history["elbo_train"])
    start = time.perf_counter()
    peer_de = peer.differential_expression(groupby=LABEL, mode="change", silent=True)
    peer_s = time.perf_counter() - start

    rows = []
    for cell_type in types:
        own = sccross[sccross["group1"] == cell_type]
        from_atac = generated[generated["group1"] == cell_type]
        scvi_table = peer_de[peer_de["group1"] == cell_type]
        rows.append(
            {
                "cell type": cell_type,
                "cells": int((logn.obs[LABEL] == cell_type).sum()),
                "SCCROSS (table top 50)": overlap(list(own.index[:N_TOP]), wilcoxon[cell_type]),
                "SCCROSS (top 50 up)": overlap(top_up(own, N_TOP, "lfc_mean"), wilcoxon[cell_type]),
                "SCCROSS from ATAC (top 50 up)": overlap(
                    top_up(from_atac, N_TOP, "lfc_mean"), wilcoxon[cell_type]
                ),
                "scVI (table top 50)": overlap(list(scvi_table.index[:N_TOP]), wilcoxon[cell_type]),
                "scVI (top 50 up)": overlap(top_up(scvi_table, N_TOP, "lfc_mean"), wilcoxon[cell_type]),
                "t-test (top 50)": overlap(ttest[cell_type], wilcoxon[cell_type]),
                "Wilcoxon, kNN-smoothed in SCCROSS latent": overlap(ceiling[cell_type], wilcoxon[cell_type]),
            }
        )
    table = pd.DataFrame(rows)

    binary = ad.AnnData((atac.X > 0).astype(np.float32), obs=atac.obs[[LABEL]].copy(), var=atac.var[[]])
    peaks_wilcoxon = wilcoxon_top(binary, ["Astro"], N_TOP_PEAKS)["Astro"]
    start = time.perf_counter()
    da = model.differential_accessibility(groupby=LABEL, group1="Astro", silent=True)
    da_s = time.perf_counter() - start
    rng = np.random.default_rng(args.seed)
    chance = [
        overlap(list(rng.choice(binary.var_names, N_TOP_PEAKS, replace=False)), peaks_wilcoxon)
        for _ in range(20)
    ]
    opening = da[da["effect_size"] > 0]
    by_effect = list(opening.sort_values("effect_size", ascending=False).index[:N_TOP_PEAKS])
    accessibility = pd.DataFrame(
        [
            {"ranking": "differential_accessibility (prob_da, then table order)", "overlap": overlap(list(opening.index[:N_TOP_PEAKS]), peaks_wilcoxon)},
            {"ranking": "differential_accessibility (effect_size)", "overlap": overlap(by_effect, peaks_wilcoxon)},
            {"ranking": "random peaks (mean of 20)", "overlap": float(np.mean(chance))},
        ]
    )  # fmt: skip
    n_da = int(da[f"is_da_fdr_{0.05}"].sum())

    timings = pd.DataFrame(
        [
            {"step": "SCCROSS training", "seconds": train_s},
            {"step": f"SCCROSS differential_expression ({len(types)} groups)", "seconds": sccross_s},
            {
                "step": f"SCCROSS differential_expression from ATAC ({len(types)} groups)",
                "seconds": generated_s,
            },
            {"step": "SCCROSS differential_accessibility (Astro)", "seconds": da_s},
            {"step": f"scVI training ({peer_epochs} epochs, early stopping)", "seconds": peer_train_s},
            {"step": f"scVI differential_expression ({len(types)} groups)", "seconds": peer_s},
        ]
    )
    fig, ax = plt.subplots(figsize=(9, 4))
    columns = [
        "SCCROSS (top 50 up)",
        "SCCROSS from ATAC (top 50 up)",
        "scVI (top 50 up)",
        "Wilcoxon, kNN-smoothed in SCCROSS latent",
        "t-test (top 50)",
    ]
    table.set_index("cell type")[columns].plot.bar(ax=ax, width=0.8)
    ax.axhline(25, color="grey", lw=0.8, ls="--")
    ax.set_ylabel(f"overlap with Wilcoxon top {N_TOP}")
    ax.set_title("Marker genes per cell type (one vs rest), mouse cortex RNA")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    stem = cm.RESULTS / "differential_mouse_cortex"
    cm.save_figure(fig, stem.with_suffix(".png"))
    settings = {
        "cells": int(rna.n_obs),
        "pairing": "hidden (unpaired)",
        "epochs": args.epochs,
        "pretrain_epochs": args.pretrain_epochs,
        "threads": args.threads,
        "seed": args.seed,
        "peak_rss_gb": round(cm.peak_rss_gb(), 2),
    }
    cm.write_report(
        stem,
        "Differential expression / accessibility, mouse cortex",
        settings,
        [
            (f"Overlap of the top {N_TOP} genes with scanpy's Wilcoxon top {N_TOP} (one vs rest)", table),
            (
                f"Accessibility, Astro vs rest: overlap with the Wilcoxon top {N_TOP_PEAKS} binarised peaks "
                f"({n_da} peaks called at expected FDR 0.05)",
                accessibility,
            ),
            ("Seconds", timings),
        ],
    )


if __name__ == "__main__":
    main()
