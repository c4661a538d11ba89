"""Issue 5 side by side: train on 20% paired labelled cortex cells, embed the other 80% unpaired.

A stratified 20% (by cell type) of the SNARE-seq mouse cortex cells, with their pairing (and,
for MINNET, their labels), trains each model. The other 80% are embedded as two separate sets,
RNA alone and ATAC alone, and scored with FOSCTTM (true pairs; lower is better) and kNN label
transfer ATAC <- RNA (k = 15). Seconds per epoch and the peak resident memory of each method's
own subprocess are recorded.

- MINNET: ``setup_mudata(labels_key="cell_type", batch_key="batch")`` on the 20%, then
  ``get_latent_representation(modality=..., adata=<held-out AnnData>)``.
- SCCROSS: ``setup_mudata`` on the paired 20% (same obs_names, so the pairs are used), then
  ``get_latent_representation(modality=..., adata=<held-out AnnData>)``.
- MultiVI (scvi-tools ``MULTIVI.setup_mudata``): trained on the paired 20%; the held-out cells
  go through its own query path, ``get_latent_representation(adata=<query MuData>)`` on a MuData
  that holds each held-out cell twice, once with only its RNA and once with only its ATAC
  counts (the other modality all zero: how MultiVI marks a missing modality). No retraining.

Run ``python benchmarks/split_embedding_mouse_cortex.py`` (all three methods) or with
``--methods`` for some of them; the table ``benchmarks/results/split_embedding_mouse_cortex.
{csv,md}`` (and ``*_umap.png``) is rebuilt from all per-method parts present. ``--quick`` uses
1,500 cells and few epochs and writes ``*_quick*``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import RESULTS, set_threads
from _peers import (
    assemble,
    load_split,
    minnet_paired_query,
    multivi_paired_query,
    run_methods,
    run_worker,
    sccross_paired_query,
)

FUNCTIONS = {"MINNET": minnet_paired_query, "SCCROSS": sccross_paired_query, "MultiVI": multivi_paired_query}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,500 cells, few epochs")
    parser.add_argument("--methods", nargs="+", choices=sorted(FUNCTIONS), default=None)
    parser.add_argument("--no-sccross", action="store_true", help="MINNET and MultiVI only")
    parser.add_argument(
        "--assemble-only", action="store_true", help="rebuild table and figure from the parts"
    )
    parser.add_argument("--n-cells", type=int, default=None)
    parser.add_argument("--train-fraction", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--minnet-epochs", type=int, default=None, help="maximum (early stopping on)")
    parser.add_argument("--sccross-epochs", type=int, default=None)
    parser.add_argument("--sccross-pretrain-epochs", type=int, default=None)
    parser.add_argument("--sccross-kwargs", type=json.loads, default={}, help="JSON of SCCROSS arguments")
    parser.add_argument("--multivi-epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    set_threads(1)
    sccross_epochs = args.sccross_epochs or (4 if args.quick else 60)
    settings = {
        "n_cells": args.n_cells if args.n_cells is not None else (1500 if args.quick else None),
        "train_fraction": args.train_fraction,
        "batch_size": args.batch_size,
        "minnet_epochs": args.minnet_epochs or (5 if args.quick else 30),
        "sccross_epochs": sccross_epochs,
        "sccross_pretrain_epochs": args.sccross_pretrain_epochs
        if args.sccross_pretrain_epochs is not None
        else int(round(0.4 * sccross_epochs)),
        "sccross_kwargs": args.sccross_kwargs,
        "multivi_epochs": args.multivi_epochs or (3 if args.quick else 50),
    }
    stem = RESULTS / ("split_embedding_mouse_cortex" + ("_quick" if args.quick else ""))
    if args.worker:
        split = load_split("mouse_cortex", settings["n_cells"], args.train_fraction, args.seed)
        run_worker(args.worker, FUNCTIONS[args.worker], split, settings, args.seed, stem, scib=False)
        return
    methods = args.methods or list(FUNCTIONS)
    if args.no_sccross:
        methods = [m for m in methods if m != "SCCROSS"]
    failed = []
    if not args.assemble_only:
        failed = run_methods(
            Path(__file__).resolve(), methods, list(argv if argv is not None else sys.argv[1:]), stem
        )
    intro = [
        f"Each model trained on a stratified {int(100 * args.train_fraction)}% of the paired, labelled "
        "cells; the other cells were embedded as separate RNA and ATAC sets (see the docstring of "
        "`benchmarks/split_embedding_mouse_cortex.py` for each model's query path). MINNET also used "
        "the labels; SCCROSS and MultiVI used the pairs only.",
        "",
        "Columns: `foscttm` (lower is better, 0.5 = random), `label_transfer` (kNN k=15 ATAC <- RNA), "
        "`setup_s` (model construction), `train_s`, `epochs` (MINNET: early stopping), `s_per_epoch` "
        "(median), `peak_rss_gb` (the method's own subprocess), `wall_s` (method call to scores).",
    ]
    title = "Split embedding: mouse cortex, 20% paired training, 80% unpaired" + (
        " (quick smoke run)" if args.quick else ""
    )
    assemble(stem, title, intro, list(FUNCTIONS), ("rna", "atac"), args.seed)
    if failed:
        sys.exit(f"failed: {failed} (reasons in {stem.name}.md)")


if __name__ == "__main__":
    main()
