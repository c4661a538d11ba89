"""Mosaic integration (issue 14): the PBMC CITE-seq mosaic as it is, SCCROSS beside its peers.

`co.datasets.pbmc_mosaic()` holds 4 batches of 400 cells: RNA only (`p1_0`), protein only
(`p2_0`) and two paired batches (`p3_0`, `p4_0`; 800 pairs). Every method sees the batches as
they are; the cell types are used for scoring only, except by MINNET, which is supervised.

- SCCROSS: the mosaic MuData with `batch_keys="batch"`; true pairs through shared obs_names.
- MINNET: trained on the paired batches with their labels; RNA-only and protein-only cells are
  embedded as queries, one modality at a time.
- totalVI: RNA-only plus paired cells (the RNA-only batch has no proteins, which totalVI
  handles); it cannot encode a cell without RNA, so the protein-only cells are encoded with an
  all-zero RNA profile under the batch code of `p3_0`. scvi's early stopping, at most 400 epochs.
- PCA + Harmony: PCA of the standardised log-normalised common-gene views (antibodies mapped to
  their genes), Harmony over the 4 batches.

Scores: `mixing` (`crossomics.metrics.modality_mixing` within cell types) of the RNA-only against
the protein-only cells, `label_transfer` (kNN, protein-only <- RNA-only), `foscttm` of the 800
pairs embedded per modality, training seconds and the process's peak memory so far. Every
method runs with seeds 0, 1 and 2 (``--seeds``): on 400 cells per batch, single runs differ by
more than the methods do. Writes ``results/integration_mosaic_pbmc.{csv,md}`` (means and standard
deviations over the seeds, then every run) and ``*_umap.png`` (RNA-only and protein-only cells,
first seed).
"""

from __future__ import annotations

import argparse
import time

import _common as cm
import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi
from _peers import harmony_of_common_genes

import crossomics as co

LABEL, RNA_ONLY, PROTEIN_ONLY = "cell_type", "p1_0", "p2_0"


def _rows(mdata, modality: str, batches) -> np.ndarray:
    return np.flatnonzero(mdata.mod[modality].obs["batch"].isin(batches).to_numpy())


def _pairs(mdata) -> tuple[np.ndarray, np.ndarray]:
    rna, adt = mdata.mod["rna"].obs_names, mdata.mod["adt"].obs_names
    shared = rna.intersection(adt)
    return rna.get_indexer(shared), adt.get_indexer(shared)


def run_sccross(mdata, epochs: int, seed: int) -> tuple[dict, float]:
    scvi.settings.seed = seed
    mdata = mdata.copy()
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "adt"], batch_keys="batch")
    start = time.perf_counter()
    model = co.SCCROSS(mdata)
    model.train(max_epochs=epochs, enable_progress_bar=False, enable_model_summary=False)
    z = {m: model.get_latent_representation(modality=m) for m in ("rna", "adt")}
    return z, time.perf_counter() - start


def run_minnet(mdata, epochs: int, seed: int) -> tuple[dict, float]:
    scvi.settings.seed = seed
    paired = {m: _rows(mdata, m, ["p3_0", "p4_0"]) for m in ("rna", "adt")}
    with md.set_options(pull_on_update=False):
        train = md.MuData({m: mdata.mod[m][paired[m]].copy() for m in ("rna", "adt")})
    start = time.perf_counter()
    co.MINNET.setup_mudata(train, modalities=["rna", "adt"], labels_key=LABEL, batch_key="batch")
    model = co.MINNET(train)
    model.train(max_epochs=epochs, early_stopping=True, early_stopping_patience=5, enable_progress_bar=False)
    z = {m: model.get_latent_representation(modality=m, adata=mdata.mod[m].copy()) for m in ("rna", "adt")}
    return z, time.perf_counter() - start


def run_totalvi(mdata, max_epochs: int, seed: int) -> tuple[dict, float]:
    scvi.settings.seed = seed
    rna, adt = mdata.mod["rna"], mdata.mod["adt"]
    rna_rows = _rows(mdata, "rna", [RNA_ONLY, "p3_0", "p4_0"])
    protein = np.zeros((len(rna_rows), adt.n_vars), dtype=np.float32)
    index = adt.obs_names.get_indexer(rna.obs_names[rna_rows])
    protein[index >= 0] = np.asarray(
        adt.X[index[index >= 0]].todense() if sp.issparse(adt.X) else adt.X[index[index >= 0]]
    )

    def table(rna_x, protein_x, obs):
        with md.set_options(pull_on_update=False):
            return md.MuData(
                {
                    "rna": ad.AnnData(
                        sp.csr_matrix(rna_x, dtype=np.float32), obs=obs.copy(), var=rna.var[[]].copy()
                    ),
                    "adt": ad.AnnData(
                        np.asarray(protein_x, dtype=np.float32), obs=obs.copy(), var=adt.var[[]].copy()
                    ),
                }
            )

    train = table(rna.X[rna_rows], protein, rna.obs.iloc[rna_rows][["batch"]])
    modalities = {"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
    scvi.model.TOTALVI.setup_mudata(train, batch_key="batch", modalities=modalities)
    start = time.perf_counter()
    model = scvi.model.TOTALVI(train)
    model.train(
        max_epochs=max_epochs, early_stopping=True, enable_progress_bar=False, enable_model_summary=False
    )
    seconds = time.perf_counter() - start
    z_rna = np.full((rna.n_obs, model.module.n_latent), np.nan, dtype=np.float32)
    z_rna[rna_rows] = model.get_latent_representation()
    obs = adt.obs[["batch"]].copy()
    obs["batch"] = "p3_0"  # an unseen batch code cannot be encoded; protein-only cells borrow a paired one
    adt_x = adt.X.toarray() if sp.issparse(adt.X) else adt.X
    query = table(np.zeros((adt.n_obs, rna.n_vars), dtype=np.float32), adt_x, obs)
    scvi.model.TOTALVI.setup_mudata(query, batch_key="batch", modalities=modalities)
    z_adt = model.get_latent_representation(adata=query)
    return {"rna": z_rna, "adt": z_adt}, seconds


def run_harmony(mdata, seed: int) -> tuple[dict, float]:
    start = time.perf_counter()
    views = co.pp.common_gene_views(mdata, ["rna", "adt"])
    batches = np.concatenate([mdata.mod[m].obs["batch"].astype(str).to_numpy() for m in ("rna", "adt")])
    corrected = harmony_of_common_genes([views["rna"], views["adt"]], batches, seed)
    n = mdata.mod["rna"].n_obs
    return {"rna": corrected[:n], "adt": corrected[n:]}, time.perf_counter() - start


def score(mdata, z: dict) -> dict:
    rna_only, adt_only = _rows(mdata, "rna", [RNA_ONLY]), _rows(mdata, "adt", [PROTEIN_ONLY])
    labels = {m: mdata.mod[m].obs[LABEL].astype(str).to_numpy() for m in ("rna", "adt")}
    pair_rna, pair_adt = _pairs(mdata)
    return {
        "mixing": co.metrics.modality_mixing(
            [z["rna"][rna_only], z["adt"][adt_only]], [labels["rna"][rna_only], labels["adt"][adt_only]]
        ),
        "label_transfer": co.metrics.label_transfer_accuracy(
            z["rna"][rna_only], labels["rna"][rna_only], z["adt"][adt_only], labels["adt"][adt_only], k=15
        ),
        "foscttm": co.metrics.foscttm(z["rna"][pair_rna], z["adt"][pair_adt]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few epochs, one seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    cm.set_threads(2)
    mdata = co.datasets.pbmc_mosaic()
    seeds = args.seeds[:1] if args.quick else args.seeds
    epochs = (
        {"sccross": 10, "minnet": 5, "totalvi": 10}
        if args.quick
        else {"sccross": 100, "minnet": 50, "totalvi": 400}
    )
    methods = {
        "SCCROSS": lambda seed: run_sccross(mdata, epochs["sccross"], seed),
        "MINNET": lambda seed: run_minnet(mdata, epochs["minnet"], seed),
        "totalVI": lambda seed: run_totalvi(mdata, epochs["totalvi"], seed),
        "PCA+Harmony": lambda seed: run_harmony(mdata, seed),
    }
    runs, coordinates = [], {}
    rna_only, adt_only = _rows(mdata, "rna", [RNA_ONLY]), _rows(mdata, "adt", [PROTEIN_ONLY])
    for name, run in methods.items():
        for seed in seeds:
            z, seconds = run(seed)
            runs.append(
                {
                    "method": name,
                    "seed": seed,
                    **score(mdata, z),
                    "train_s": seconds,
                    "peak_rss_gb": cm.peak_rss_gb(),
                }
            )
            print(runs[-1], flush=True)
            if seed == seeds[0]:
                coordinates[name] = cm.umap_coordinates(
                    np.vstack([z["rna"][rna_only], z["adt"][adt_only]]), seed=seed
                )
    per_seed = pd.DataFrame(runs)
    scores = ["mixing", "label_transfer", "foscttm"]
    grouped = per_seed.groupby("method", sort=False)
    table = grouped[[*scores, "train_s"]].mean()
    for column in scores:
        table[f"{column}_sd"] = grouped[column].std(ddof=1) if len(seeds) > 1 else np.nan
    table["peak_rss_gb"] = grouped["peak_rss_gb"].max()
    table = table.reset_index()
    stem = cm.RESULTS / ("integration_mosaic_pbmc" + ("_quick" if args.quick else ""))
    labels = np.concatenate(
        [mdata.mod[m].obs[LABEL].astype(str).to_numpy()[r] for m, r in (("rna", rna_only), ("adt", adt_only))]
    )
    modality = np.repeat(["rna only", "protein only"], [len(rna_only), len(adt_only)])
    cm.save_figure(
        cm.umap_grid(
            coordinates, labels, modality, f"PBMC mosaic: RNA-only and protein-only batches (seed {seeds[0]})"
        ),
        stem.with_name(stem.name + "_umap.png"),
    )
    settings = {"seeds": seeds, "epochs": epochs}
    cm.write_report(
        stem,
        "Mosaic integration: PBMC CITE-seq (RNA only, protein only, paired)",
        settings,
        [
            (f"Results (mean over seeds {seeds}; _sd: standard deviation over them)", table),
            ("Each seed", per_seed),
            (
                "Notes",
                "mixing: RNA-only vs protein-only cells within cell types (1 = as if at random); "
                "label_transfer: protein-only <- RNA-only (kNN, k=15; 400 cells, so one cell is 0.0025); "
                "foscttm: the 800 paired cells embedded per modality (lower is better); train_s: mean "
                "over seeds; peak_rss_gb: the process so far. SCCROSS "
                f"{epochs['sccross']} epochs, MINNET {epochs['minnet']}, totalVI scvi early stopping "
                f"(at most {epochs['totalvi']}). See the module docstring for each method's input. "
                f"UMAPs of the first seed: `{stem.name}_umap.png`.",
            ),
        ],
    )


if __name__ == "__main__":
    main()
