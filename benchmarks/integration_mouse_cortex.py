"""SCCROSS vs MultiVI on the SNARE-seq mouse cortex given as *unpaired* RNA and ATAC.

The bundled 10,309 paired cells are split into an RNA table and an ATAC table whose obs_names
differ, so neither model sees the pairing. The true pairs are used only for scoring: FOSCTTM,
RNA -> ATAC label-transfer accuracy, and ARI / NMI / cell-type ASW / modality mixing of the
stacked joint latents (:func:`crossomics.metrics.integration_metrics`). Seconds per epoch and
the process's peak resident memory are recorded per model.

Run ``python benchmarks/integration_mouse_cortex.py`` (about 25 minutes on 2 CPU cores:
SCCROSS 30 epochs with 8 of pre-training, MultiVI 5) to write ``benchmarks/results/integration_mouse_cortex.{csv,md}``
and ``*_umap.png``; ``--quick`` is a small smoke run (2,000 cells, few epochs) that writes
``*_quick*`` instead. ``--no-multivi`` / ``--no-sccross`` with ``--tag`` run one model per
process, ``--merge TAG ...`` combines such runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import time
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi
import torch
from _common import EpochTimer

import crossomics as co
from crossomics.metrics import foscttm, integration_metrics, label_transfer_accuracy

RESULTS = Path(__file__).parent / "results"
LABEL = "cell_type"


def peak_memory_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def load_unpaired(n_cells: int | None = None, seed: int = 0) -> tuple[ad.AnnData, ad.AnnData]:
    """RNA and ATAC of the same cells (row ``i`` of both is one cell) with disjoint obs_names."""
    mdata = co.datasets.mouse_motor_cortex()
    rows = np.arange(mdata.n_obs)
    if n_cells is not None and n_cells < mdata.n_obs:
        rows = np.sort(np.random.default_rng(seed).choice(mdata.n_obs, n_cells, replace=False))
    rna = mdata.mod["rna"][rows].copy()
    atac = mdata.mod["atac"][rows].copy()
    atac.obs_names = [f"atac_{name}" for name in atac.obs_names]
    return rna, atac


def score(z_rna: np.ndarray, z_atac: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Alignment of row-matched latents: FOSCTTM, label transfer ATAC <- RNA, cluster metrics."""
    out = {
        "foscttm": foscttm(z_rna, z_atac),
        "label_transfer": label_transfer_accuracy(z_rna, labels, z_atac, labels),
    }
    stacked = np.vstack([z_rna, z_atac])
    modality = np.repeat(["rna", "atac"], [len(z_rna), len(z_atac)])
    metrics = integration_metrics(stacked, np.concatenate([labels, labels]), modality, seed=seed)
    out.update({k: float(v) for k, v in metrics.items()})
    return out


def timed_training(model, **train_kwargs) -> tuple[EpochTimer, float]:
    """Train ``model`` quietly, timing every epoch; returns the epoch timer and the total seconds."""
    timer = EpochTimer(verbose=True)
    start = time.perf_counter()
    model.train(callbacks=[timer], enable_progress_bar=False, enable_model_summary=False, **train_kwargs)
    return timer, time.perf_counter() - start


def run_sccross(
    rna,
    atac,
    max_epochs: int,
    pretrain_epochs: int,
    batch_size: int,
    seed: int,
    model_kwargs=None,
    train_kwargs=None,
):
    """Train SCCROSS on the unpaired tables; returns (z_rna, z_atac, timing dict)."""
    scvi.settings.seed = seed
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({"rna": rna, "atac": atac})
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
    start = time.perf_counter()
    model = co.SCCROSS(mdata, **(model_kwargs or {}))
    setup_seconds = time.perf_counter() - start
    timer, train_seconds = timed_training(
        model,
        max_epochs=max_epochs,
        pretrain_epochs=pretrain_epochs,
        batch_size=batch_size,
        **(train_kwargs or {}),
    )
    if model.n_pairs_:
        raise RuntimeError(f"the pairing must stay hidden, SCCROSS found {model.n_pairs_}")
    z_rna = model.get_latent_representation(modality="rna")
    z_atac = model.get_latent_representation(modality="atac")
    stage = np.asarray(model.history["stage"]["stage"]) if "stage" in model.history else None
    seconds = np.asarray(timer.seconds)
    last = {k: float(v.iloc[-1, 0]) for k, v in model.history.items() if k.startswith("train_")}
    print("final training losses:", last, flush=True)
    timing = {
        "setup_s": setup_seconds,
        "train_s": train_seconds,
        "epochs": len(seconds),
        "s_per_epoch": float(seconds.mean()),
        "s_per_epoch_stage1": float(seconds[stage == 1].mean())
        if stage is not None and (stage == 1).any()
        else np.nan,
        "s_per_epoch_stage2": float(seconds[stage == 2].mean())
        if stage is not None and (stage == 2).any()
        else np.nan,
    }
    return z_rna, z_atac, timing, model


def run_multivi(rna, atac, max_epochs: int, batch_size: int, seed: int):
    """MultiVI on RNA-only plus ATAC-only cells.

    Both modalities of the MuData list all ``n_rna + n_atac`` cells; a cell's counts are zero
    in the modality it was not measured in, which is how MultiVI recognises a missing modality.
    """
    scvi.settings.seed = seed
    names = list(rna.obs_names) + list(atac.obs_names)
    obs = pd.DataFrame({"modality": pd.Categorical(["rna"] * rna.n_obs + ["atac"] * atac.n_obs)}, index=names)
    rna_block = sp.vstack([sp.csr_matrix(rna.X), sp.csr_matrix((atac.n_obs, rna.n_vars))]).tocsr()
    atac_block = sp.vstack([sp.csr_matrix((rna.n_obs, atac.n_vars)), sp.csr_matrix(atac.X)]).tocsr()
    with md.set_options(pull_on_update=False):
        mdata = md.MuData(
            {
                "rna": ad.AnnData(
                    rna_block.astype(np.float32), obs=obs.copy(), var=pd.DataFrame(index=rna.var_names)
                ),
                "atac": ad.AnnData(
                    atac_block.astype(np.float32), obs=obs.copy(), var=pd.DataFrame(index=atac.var_names)
                ),
            }
        )
    scvi.model.MULTIVI.setup_mudata(
        mdata, batch_key="modality", modalities={"rna_layer": "rna", "atac_layer": "atac", "batch_key": "rna"}
    )
    model = scvi.model.MULTIVI(mdata)
    timer, train_seconds = timed_training(
        model, max_epochs=max_epochs, batch_size=batch_size, early_stopping=False
    )
    z = model.get_latent_representation()
    timing = {
        "setup_s": 0.0,
        "train_s": train_seconds,
        "epochs": len(timer.seconds),
        "s_per_epoch": float(np.mean(timer.seconds)),
        "s_per_epoch_stage1": np.nan,
        "s_per_epoch_stage2": np.nan,
    }
    return z[: rna.n_obs], z[rna.n_obs :], timing


def plot_umap(z_rna, z_atac, labels, path: Path, seed: int = 0) -> None:
    """UMAP of the stacked joint latent coloured by cell type and by modality."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    stacked = ad.AnnData(np.vstack([z_rna, z_atac]).astype(np.float32))
    stacked.obs["cell type"] = pd.Categorical(np.concatenate([labels, labels]))
    stacked.obs["modality"] = pd.Categorical(np.repeat(["RNA", "ATAC"], [len(z_rna), len(z_atac)]))
    sc.pp.neighbors(stacked, use_rep="X", random_state=seed)
    sc.tl.umap(stacked, random_state=seed)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, key in zip(axes, ("cell type", "modality"), strict=True):
        sc.pl.umap(stacked, color=key, ax=ax, show=False, frameon=False, size=4)
    fig.suptitle("SCCROSS joint latent, mouse cortex (unpaired)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(table: pd.DataFrame, settings: dict, stem: Path) -> None:
    """CSV of the table plus a Markdown report with machine, versions and settings."""
    table.to_csv(stem.with_suffix(".csv"), index=False)
    lines = [
        "# Integration benchmark: mouse cortex (SNARE-seq) given as unpaired RNA / ATAC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}; python {platform.python_version()}, torch {torch.__version__}, "
        f"scvi-tools {scvi.__version__}, crossomics {co.__version__}.",
        "",
        "Settings: " + json.dumps(settings),
        "",
        "FOSCTTM uses the hidden true pairs (lower is better, random 0.5); label transfer is kNN "
        "(k=15) RNA -> ATAC accuracy; ARI / NMI (Leiden vs cell type), ASW (cell type) and "
        "modality mixing come from `crossomics.metrics.integration_metrics` on the stacked latents.",
        "",
        table.to_markdown(index=False, floatfmt=".3f"),
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 cells, few epochs (smoke run)")
    parser.add_argument("--n-cells", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="SCCROSS epochs (both stages)")
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--multivi-epochs", type=int, default=None)
    parser.add_argument("--no-multivi", action="store_true")
    parser.add_argument("--no-sccross", action="store_true")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        help="tags of earlier runs (e.g. one per model, run side by side) to merge into the untagged results",
    )
    parser.add_argument("--model-kwargs", type=json.loads, default={}, help="JSON of SCCROSS arguments")
    parser.add_argument("--plan-kwargs", type=json.loads, default={}, help="JSON of training-plan arguments")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default=None, help="suffix of the output files")
    args = parser.parse_args(argv)
    if args.merge:
        return merge_runs(args.merge)
    n_cells = args.n_cells if args.n_cells is not None else (2000 if args.quick else None)
    epochs = args.epochs or (6 if args.quick else 30)
    pretrain = args.pretrain_epochs if args.pretrain_epochs is not None else (2 if args.quick else 8)
    batch_size = args.batch_size or 256
    multivi_epochs = args.multivi_epochs or (4 if args.quick else 5)
    tag = args.tag or ("quick" if args.quick else None)
    stem = RESULTS / ("integration_mouse_cortex" + (f"_{tag}" if tag else ""))
    RESULTS.mkdir(exist_ok=True)

    rna, atac = load_unpaired(n_cells, args.seed)
    labels = rna.obs[LABEL].astype(str).to_numpy()
    rows = []
    if not args.no_sccross:
        z_rna, z_atac, timing, _ = run_sccross(
            rna,
            atac,
            epochs,
            pretrain,
            batch_size,
            args.seed,
            args.model_kwargs,
            {"plan_kwargs": args.plan_kwargs} if args.plan_kwargs else None,
        )
        rows.append(
            {
                "model": "SCCROSS",
                **score(z_rna, z_atac, labels, args.seed),
                **timing,
                "peak_rss_gb": peak_memory_gb(),
            }
        )
        print(rows[-1], flush=True)
        plot_umap(z_rna, z_atac, labels, stem.with_name(stem.name + "_umap.png"), args.seed)
    if not args.no_multivi:
        z_rna, z_atac, timing = run_multivi(rna, atac, multivi_epochs, batch_size, args.seed)
        rows.append(
            {
                "model": "MultiVI",
                **score(z_rna, z_atac, labels, args.seed),
                **timing,
                "peak_rss_gb": peak_memory_gb(),
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    settings = {
        "n_cells": len(labels),
        "torch_threads": torch.get_num_threads(),
        "seed": args.seed,
        "sccross_epochs": epochs,
        "sccross_pretrain_epochs": pretrain,
        "batch_size": batch_size,
        "multivi_epochs": None if args.no_multivi else multivi_epochs,
        "model_kwargs": args.model_kwargs,
        "plan_kwargs": args.plan_kwargs,
    }
    stem.with_suffix(".json").write_text(json.dumps(settings))
    write_results(table, settings, stem)
    return table


def merge_runs(tags: list[str]) -> pd.DataFrame:
    """Concatenate the tables of tagged runs into the untagged results (settings per run).

    The UMAP of the first tagged run that has one becomes ``integration_mouse_cortex_umap.png``.
    """
    stems = [RESULTS / f"integration_mouse_cortex_{tag}" for tag in tags]
    table = pd.concat([pd.read_csv(stem.with_suffix(".csv")) for stem in stems], ignore_index=True)
    settings = {
        tag: json.loads(stem.with_suffix(".json").read_text()) for tag, stem in zip(tags, stems, strict=True)
    }
    stem = RESULTS / "integration_mouse_cortex"
    write_results(table, settings, stem)
    umaps = [s.with_name(s.name + "_umap.png") for s in stems if s.with_name(s.name + "_umap.png").exists()]
    if umaps:
        shutil.copyfile(umaps[0], stem.with_name(stem.name + "_umap.png"))
    return table


if __name__ == "__main__":
    main()
