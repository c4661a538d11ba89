"""Reference mapping on the mouse cortex (issue 15): a query mapped onto a trained reference,
against a model trained from scratch on all cells.

The cortex's 12 SNARE-seq libraries (`batch`) are split: the first 8 (sorted) form the
reference, the last 4 the query. Every cell's RNA and ATAC are given as separate, unpaired
cells (names suffixed by modality), so no method sees a pair; the pairs are used for scoring.

- **Reference mapping**: SCCROSS trained on the reference libraries (default settings,
  `batch_keys="batch"`). Timed from there on: `SCCROSS.prepare_query_mudata` and
  `SCCROSS.load_query_data` with the query libraries, `train()` with its query default (20
  epochs, new decoder batches only), the query latents and `transfer_labels`.
- **From scratch**: SCCROSS trained on all 12 libraries at the same settings, timed from
  construction (the prior and transforms are fitted there) to the end of training.

Scores on the query cells: FOSCTTM of the hidden pairs, kNN label transfer (`cell_type`) from the
reference libraries' cells of both modalities to the query cells of each modality, modality
mixing (RNA against ATAC) of the query cells and of the reference cells, and the mixing of the
query cells with the reference cells. A second mapping gives the query's ATAC alone (RNA
withheld); its RNA is generated (`cross_generate`, expected counts) and scored by per-gene and
per-cell Pearson r against the withheld RNA, beside the from-scratch model (which saw the query's
RNA as unpaired cells during training) and kNN regression on the reference libraries' true pairs
(LSI of ATAC -> mean RNA of the 15 nearest reference cells; it uses pairs, SCCROSS does not).

Writes ``results/query_mapping_mouse_cortex.{csv,md}`` and ``*_umap.png``.
"""

from __future__ import annotations

import argparse
import time

import _common as cm
import mudata as md
import numpy as np
import pandas as pd
import scvi

import crossomics as co

LABEL, BATCH, MODALITIES = "cell_type", "batch", ("rna", "atac")
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def unpaired(mdata: md.MuData, libraries) -> md.MuData:
    """The cells of ``libraries``, each modality under its own cell names (no pairs)."""
    mods = {}
    for m in MODALITIES:
        adata = mdata.mod[m][mdata.mod[m].obs[BATCH].isin(libraries).to_numpy()].copy()
        adata.obs_names = [f"{name}-{m}" for name in adata.obs_names]
        mods[m] = adata
    with md.set_options(pull_on_update=False):
        return md.MuData(mods)


def train(mdata: md.MuData, epochs: int | None, seed: int):
    scvi.settings.seed = seed
    co.SCCROSS.setup_mudata(mdata, modalities=list(MODALITIES), gene_annotation="mm10", batch_keys=BATCH)
    start = time.perf_counter()
    model = co.SCCROSS(mdata)
    model.train(max_epochs=epochs, **QUIET)
    return model, time.perf_counter() - start


def latents(model, data: md.MuData) -> dict[str, np.ndarray]:
    return {m: model.get_latent_representation(m, adata=data.mod[m]) for m in MODALITIES}


def scores(z_query: dict, z_reference: dict, query: md.MuData, reference: md.MuData) -> dict:
    labels_q = {m: query.mod[m].obs[LABEL].astype(str).to_numpy() for m in MODALITIES}
    labels_r = np.concatenate([reference.mod[m].obs[LABEL].astype(str).to_numpy() for m in MODALITIES])
    z_r = np.vstack([z_reference[m] for m in MODALITIES])
    out = {"query FOSCTTM": co.metrics.foscttm(z_query["rna"], z_query["atac"])}
    for m in MODALITIES:
        out[f"query {m} label transfer"] = co.metrics.label_transfer_accuracy(
            z_r, labels_r, z_query[m], labels_q[m], k=15
        )
    out["query modality mixing"] = co.metrics.modality_mixing([z_query["rna"], z_query["atac"]])
    out["reference modality mixing"] = co.metrics.modality_mixing([z_reference["rna"], z_reference["atac"]])
    out["query/reference mixing"] = co.metrics.modality_mixing(
        [z_r, np.vstack([z_query[m] for m in MODALITIES])],
        labels=[labels_r, np.concatenate([labels_q[m] for m in MODALITIES])],
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: SCCROSS's)")
    parser.add_argument("--query-epochs", type=int, default=None, help="query fine-tuning epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 1 query epoch")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.query_epochs = 2, 1
    cm.set_threads(args.threads)
    stem = cm.RESULTS / ("query_mapping_mouse_cortex" + ("_quick" if args.quick else ""))

    cortex = co.datasets.mouse_motor_cortex()
    libraries = sorted(cortex.mod["rna"].obs[BATCH].unique())
    reference_libraries, query_libraries = libraries[:8], libraries[8:]
    reference, query, everything = (
        unpaired(cortex, reference_libraries),
        unpaired(cortex, query_libraries),
        unpaired(cortex, libraries),
    )
    print(f"reference {reference.n_obs} cells, query {query.n_obs} cells", flush=True)

    scratch, scratch_s = train(everything, args.epochs, args.seed)
    print(f"from scratch: {scratch_s:.0f} s", flush=True)
    reference_model, reference_s = train(reference, args.epochs, args.seed)
    print(f"reference: {reference_s:.0f} s", flush=True)

    start = time.perf_counter()
    prepared = co.SCCROSS.prepare_query_mudata(query, reference_model)
    mapped = co.SCCROSS.load_query_data(prepared, reference_model)
    mapped.train(max_epochs=args.query_epochs, **QUIET)
    z_mapped = latents(mapped, prepared)
    transferred = {m: mapped.transfer_labels(m, LABEL, reference=reference) for m in MODALITIES}
    mapping_s = time.perf_counter() - start
    print(f"mapping: {mapping_s:.0f} s", flush=True)

    embedded = {  # method: (query latents, reference latents, seconds)
        "reference mapping": (z_mapped, latents(mapped, reference), mapping_s),
        "from scratch": (latents(scratch, query), latents(scratch, reference), scratch_s),
    }
    table = pd.DataFrame(
        [
            {"method": method, **scores(z_q, z_r, query, reference), "seconds": seconds}
            for method, (z_q, z_r, seconds) in embedded.items()
        ]
    )
    for m in MODALITIES:
        truth = query.mod[m].obs[LABEL].astype(str).to_numpy()
        confidence = transferred[m]["confidence"].to_numpy()
        correct = transferred[m][LABEL].astype(str).to_numpy() == truth
        print(
            f"transfer_labels {m}: accuracy {correct.mean():.3f}, mean confidence {confidence.mean():.3f} "
            f"(correct {confidence[correct].mean():.3f}, wrong {confidence[~correct].mean():.3f})",
            flush=True,
        )

    # the query's ATAC alone, RNA withheld: generate the RNA
    atac_only = co.SCCROSS.prepare_query_mudata(query.mod["atac"], reference_model, modality="atac")
    start = time.perf_counter()
    atac_mapped = co.SCCROSS.load_query_data(atac_only, reference_model)
    atac_mapped.train(max_epochs=args.query_epochs, **QUIET)
    generated = {"reference mapping (ATAC only)": atac_mapped.cross_generate("atac", "rna", output="mean").X}
    atac_only_s = time.perf_counter() - start
    generated["from scratch"] = scratch.cross_generate(
        "atac", "rna", adata=query.mod["atac"], output="mean"
    ).X
    paired_reference = cortex[cortex.obs[BATCH].isin(reference_libraries).to_numpy()]
    lsi_reference, lsi_query = cm.tfidf_lsi(
        paired_reference.mod["atac"].X, query.mod["atac"].X, 50, args.seed
    )
    generated["kNN regression on reference pairs (k=15)"] = cm.knn_regression(
        lsi_reference, paired_reference.mod["rna"].X, lsi_query, k=15
    )
    withheld = query.mod["rna"].X
    generation = pd.DataFrame(
        [
            {"method": method, **co.metrics.generation_fidelity(withheld, values)}
            for method, values in generated.items()
        ]
    )

    # UMAP rows: reference RNA, reference ATAC, query RNA, query ATAC
    parts = [(reference, "reference", 1), (query, "query", 0)]
    coordinates = {
        method: cm.umap_coordinates(
            np.vstack([z[index][m] for _, _, index in parts for m in MODALITIES]), seed=args.seed
        )
        for method, z in embedded.items()
    }
    cell_types = np.concatenate(
        [d.mod[m].obs[LABEL].astype(str).to_numpy() for d, _, _ in parts for m in MODALITIES]
    )
    groups = np.concatenate(
        [np.repeat(f"{name} {m}", d.mod[m].n_obs) for d, name, _ in parts for m in MODALITIES]
    )
    cm.save_figure(
        cm.umap_grid(
            coordinates, cell_types, groups, "Mouse cortex: query libraries mapped onto the reference"
        ),
        stem.with_name(stem.name + "_umap.png"),
    )

    settings = {
        "reference_libraries": reference_libraries,
        "query_libraries": query_libraries,
        "epochs": args.epochs or "default (100)",
        "query_epochs": args.query_epochs or "default (20)",
        "seed": args.seed,
        "threads": args.threads,
        "reference_training_seconds": round(reference_s, 1),
        "atac_only_mapping_seconds": round(atac_only_s, 1),
        "peak_rss_gb": round(cm.peak_rss_gb(), 2),
    }
    cm.write_report(
        stem,
        "Reference mapping: mouse cortex query libraries onto a reference",
        settings,
        [
            ("Query cells: mapping against training from scratch", table),
            ("The query's RNA generated from its ATAC alone (RNA withheld)", generation),
        ],
    )


if __name__ == "__main__":
    main()
