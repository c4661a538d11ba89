"""End-to-end demo on the bundled mouse cortex SNARE-seq data (``make demo``).

Hides the RNA/ATAC pairing, integrates the two modalities with SCCROSS and writes to ``--out``:
``metrics.json`` / ``metrics.csv`` (integration and generation numbers beside baselines),
``umap_joint.png``, ``cross_generation.png``, ``simulation_umap.png``,
``perturbation_top.csv`` and ``perturbation_top.png``. Runs in under 10 minutes on 2 CPU cores
with the default stratified subset of cells.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import scanpy as sc
import scvi
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsRegressor

import crossomics as co


def stratified_subset(labels: pd.Series, n_cells: int, seed: int) -> np.ndarray:
    if n_cells >= len(labels):
        return np.arange(len(labels))
    rows, _ = train_test_split(np.arange(len(labels)), train_size=n_cells, stratify=labels, random_state=seed)
    return np.sort(rows)


def unpaired(mdata: md.MuData, rows: np.ndarray) -> md.MuData:
    """The same cells with the pairing hidden: ATAC cells get their own obs_names."""
    rna = mdata.mod["rna"][rows].copy()
    atac = mdata.mod["atac"][rows].copy()
    atac.obs_names = [f"atac_{name}" for name in atac.obs_names]
    with md.set_options(pull_on_update=False):
        return md.MuData({"rna": rna, "atac": atac})


def log_normalized(X) -> np.ndarray:
    dense = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    return np.log1p(dense / np.maximum(dense.sum(1, keepdims=True), 1) * 1e4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_output")
    parser.add_argument("--n-cells", type=int, default=3000, help="stratified subset (10309 = all cells)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = args.seed
    started = time.time()

    full = co.datasets.mouse_motor_cortex()
    rows = stratified_subset(full.mod["rna"].obs["cell_type"], args.n_cells, args.seed)
    mdata = unpaired(full, rows)
    labels_rna = mdata.mod["rna"].obs["cell_type"].astype(str).to_numpy()
    labels_atac = mdata.mod["atac"].obs["cell_type"].astype(str).to_numpy()
    print(f"[demo] {len(rows)} cells per modality, pairing hidden from the model")

    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
    model = co.SCCROSS(mdata)
    prior_foscttm = co.metrics.foscttm(model.mnn_prior_["rna"], model.mnn_prior_["atac"])
    train_start = time.time()
    model.train(max_epochs=args.epochs, batch_size=128)
    train_seconds = time.time() - train_start

    z = {m: model.get_latent_representation(modality=m) for m in ("rna", "atac")}
    for m in z:
        mdata.mod[m].obsm["X_sccross"] = z[m]
    metrics = {
        "n_cells_per_modality": len(rows),
        "epochs": args.epochs,
        "train_seconds": round(train_seconds, 1),
        "seconds_per_epoch": round(train_seconds / args.epochs, 2),
        "foscttm_mnn_prior": prior_foscttm,
        "foscttm_sccross": co.metrics.foscttm(z["rna"], z["atac"]),
        "label_transfer_atac_from_rna": co.metrics.label_transfer_accuracy(
            z["rna"], labels_rna, z["atac"], labels_atac
        ),
    }
    metrics.update(
        co.metrics.integration_metrics(
            np.concatenate([z["rna"], z["atac"]]),
            np.concatenate([labels_rna, labels_atac]),
            np.repeat(["rna", "atac"], len(rows)),
        )
    )

    joint = sc.AnnData(np.concatenate([z["rna"], z["atac"]]))
    joint.obs["cell_type"] = np.concatenate([labels_rna, labels_atac])
    joint.obs["modality"] = np.repeat(["rna", "atac"], len(rows))
    sc.pp.neighbors(joint, use_rep="X", random_state=args.seed)
    sc.tl.umap(joint, random_state=args.seed)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    sc.pl.umap(joint, color="cell_type", ax=axes[0], show=False, title="SCCROSS joint latent: cell type")
    sc.pl.umap(joint, color="modality", ax=axes[1], show=False, title="modality")
    fig.tight_layout()
    fig.savefig(out / "umap_joint.png", dpi=120)
    plt.close(fig)

    # cross generation RNA <- ATAC on the same cells, beside kNN-regression and mean baselines
    generated = model.cross_generate(source="atac", target="rna", output="normalized")
    real = log_normalized(mdata.mod["rna"].X)
    half = len(rows) // 2
    knn = KNeighborsRegressor(15).fit(model.mnn_prior_["atac"][:half], real[:half])
    baseline_knn = knn.predict(model.mnn_prior_["atac"][half:])
    baseline_mean = np.broadcast_to(real[:half].mean(0), real[half:].shape)
    for name, values in (("sccross", generated.X[half:]), ("knn", baseline_knn), ("mean", baseline_mean)):
        metrics[f"generation_rna_per_cell_pearson_{name}"] = float(
            np.nanmean(co.metrics.pearson_per_cell(real[half:], values))
        )
        metrics[f"generation_rna_rmse_{name}"] = co.metrics.rmse(real[half:], values)
        if name != "mean":  # a constant prediction has no per-gene correlation
            per_gene = co.metrics.pearson_per_feature(real[half:], values)
            metrics[f"generation_rna_per_gene_pearson_{name}"] = float(np.nanmean(per_gene))
    # like with like: sampled counts against the measured counts, in a figure and in numbers
    sampled = model.cross_generate("atac", "rna", output="counts")
    realism = co.metrics.two_sample_realism(mdata.mod["rna"].X, sampled.X, seed=args.seed).loc["all"]
    metrics["generation_rna_counts_realism_auc"] = float(realism["auc"])
    metrics["generation_rna_counts_realism_mixing"] = float(realism["mixing"])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    co.pl.generated_vs_real_umap(mdata.mod["rna"], sampled, color="cell_type", ax=ax)
    fig.tight_layout()
    fig.savefig(out / "cross_generation.png", dpi=120)
    plt.close(fig)

    simulated = model.simulate(groupby="cell_type", group="Astro", n_cells=200, seed=args.seed)
    astro = mdata.mod["rna"][labels_rna == "Astro"]
    sim_rna = simulated.mod["rna"].copy()
    sim_rna.obs["cell_type"] = "Astro (simulated)"
    fig, ax = plt.subplots(figsize=(5.5, 5))
    co.pl.generated_vs_real_umap(astro, sim_rna, color="cell_type", ax=ax)
    ax.set_title("simulated astrocyte counts (colour)\namong the real astrocytes (grey)")
    fig.tight_layout()
    fig.savefig(out / "simulation_umap.png", dpi=120)
    plt.close(fig)
    metrics["simulated_astro_cells"] = sim_rna.n_obs
    metrics["real_astro_cells"] = astro.n_obs
    realism = co.metrics.two_sample_realism(astro.X, sim_rna.X, seed=args.seed).loc["all"]
    metrics["simulated_astro_realism_auc"] = float(realism["auc"])
    metrics["simulated_astro_realism_mixing"] = float(realism["mixing"])

    perturb_start = time.time()
    scores = model.perturb("rna", groupby="cell_type", perturb_group="L6", reference_group="L4/5")
    metrics["perturbation_seconds"] = round(time.time() - perturb_start, 1)
    metrics["perturbed_genes"] = len(scores)
    scores.head(50).to_csv(out / "perturbation_top.csv")
    ax = co.pl.perturbation_scores(scores, n_top=20)
    ax.figure.tight_layout()
    ax.figure.savefig(out / "perturbation_top.png", dpi=120)
    plt.close(ax.figure)

    metrics["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    metrics["total_seconds"] = round(time.time() - started, 1)
    metrics = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    pd.Series(metrics).to_csv(out / "metrics.csv", header=["value"])
    print(json.dumps(metrics, indent=2))
    print(f"[demo] outputs written to {out.resolve()}")


if __name__ == "__main__":
    main()
