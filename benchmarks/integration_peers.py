"""Integration study (issue 6): SCCROSS, MINNET, MultiVI / totalVI, PCA + Harmony and GLUE.

Paired data are given to the methods as unpaired: the true pairs are used only for scoring.
A stratified 20% of the cells (by cell type) is the *anchor* part; the other 80% are held out.

- SCCROSS, GLUE and PCA + Harmony need no pairs: they see all cells as two unpaired tables
  (different obs_names), without labels.
- MINNET is supervised: it trains on the anchor cells with pairs and labels and embeds the
  held-out cells one modality at a time.
- MultiVI (RNA + ATAC) trains on the paired anchor cells plus the held-out cells as RNA-only and
  ATAC-only cells (its design for mixed data). totalVI (RNA + protein) trains on the paired
  anchors plus the held-out cells as RNA-only cells; it cannot encode a cell without RNA, so
  held-out protein rows are encoded with an all-zero RNA profile.

Every method is scored on the held-out cells only (RNA rows stacked over ATAC / protein rows):
FOSCTTM (lower is better), kNN label transfer second modality <- RNA, the scib-metrics
Benchmarker row (:func:`crossomics.metrics.scib_benchmark`), seconds per epoch and the peak
resident memory of the method's own subprocess. Outputs: ``benchmarks/results/
integration_peers_<dataset>[_quick].{csv,md}`` and ``*_umap.png``; per-method parts in
``*_parts/``.

Examples (2 CPU cores; add ``nice -n 15`` on a shared machine)::

    python benchmarks/integration_peers.py --dataset bmmc_cite --quick
    python benchmarks/integration_peers.py --dataset mouse_cortex --methods MINNET MultiVI GLUE
    python benchmarks/integration_peers.py --dataset mouse_cortex --methods SCCROSS MultiVI --threads 2
    python benchmarks/integration_peers.py --dataset mouse_cortex --assemble-only

A run with ``--methods`` replaces only those methods' parts and rebuilds the combined table
from all parts present (of the same dataset and mode).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import RESULTS, set_threads
from _peers import (
    DATASETS,
    assemble,
    glue_unpaired,
    harmony_common_genes,
    load_split,
    minnet_paired_query,
    multivi_mixed,
    run_methods,
    run_worker,
    sccross_unpaired,
    totalvi_mixed,
)

FUNCTIONS = {
    "SCCROSS": sccross_unpaired,
    "MINNET": minnet_paired_query,
    "MultiVI": multivi_mixed,
    "totalVI": totalvi_mixed,
    "PCA+Harmony": harmony_common_genes,
    "GLUE": glue_unpaired,
}
# epochs: (quick, full) per dataset kind; small BMMC subsets need many more epochs for as many steps
EPOCHS = {
    "mouse_cortex": {
        # SCCROSS's default (100 epochs, 40 of them pre-training): 828 s on 2 threads
        "sccross": (4, 100),
        "minnet": (5, 30),
        # about SCCROSS's wall time: MultiVI takes 14.7 s per epoch on 2 threads
        "multivi": (2, 45),
        "totalvi": (2, 45),
        "glue": (2, 8),  # per stage; GLUE takes minutes per epoch on 2 CPU cores
    },
    "bmmc": {
        "sccross": (20, 150),
        "minnet": (10, 50),
        "multivi": (20, 200),
        "totalvi": (20, 200),
        "glue": (10, 60),  # per stage
    },
}
# SCCROSS pre-training epochs where they are not 40% of all epochs (the quick run's 2 of 4)
SCCROSS_PRETRAIN = {"mouse_cortex": (2, None)}


def default_methods(dataset: str) -> list[str]:
    peer = "totalVI" if DATASETS[dataset]["modalities"][1] == "adt" else "MultiVI"
    return ["SCCROSS", "MINNET", peer, "PCA+Harmony", "GLUE"]


def settings_for(args) -> dict:
    kind = "mouse_cortex" if args.dataset == "mouse_cortex" else "bmmc"
    pick = 0 if args.quick else 1
    epochs = {key: values[pick] for key, values in EPOCHS[kind].items()}
    for key in epochs:
        if getattr(args, f"{key}_epochs") is not None:
            epochs[key] = getattr(args, f"{key}_epochs")
    return {
        "dataset": args.dataset,
        "n_cells": args.n_cells
        if args.n_cells is not None
        else (1500 if args.quick and kind == "mouse_cortex" else None),
        "train_fraction": args.train_fraction,
        "batch_size": args.batch_size,
        **{f"{key}_epochs": value for key, value in epochs.items()},
        "sccross_pretrain_epochs": args.sccross_pretrain_epochs
        if args.sccross_pretrain_epochs is not None
        else SCCROSS_PRETRAIN.get(kind, (None, None))[pick] or int(round(0.4 * epochs["sccross"])),
        "sccross_kwargs": args.sccross_kwargs,
        "glue_max_peaks": args.glue_max_peaks,
        "threads": args.threads,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mouse_cortex")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,500 cortex cells, few epochs")
    parser.add_argument("--methods", nargs="+", choices=sorted(FUNCTIONS), default=None)
    parser.add_argument("--no-sccross", action="store_true", help="all default methods but SCCROSS")
    parser.add_argument(
        "--assemble-only", action="store_true", help="rebuild table and figure from the parts"
    )
    parser.add_argument("--n-cells", type=int, default=None, help="random subset of cells (default: all)")
    parser.add_argument("--train-fraction", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=256)
    for key in EPOCHS["bmmc"]:
        parser.add_argument(f"--{key}-epochs", type=int, default=None)
    parser.add_argument("--sccross-pretrain-epochs", type=int, default=None)
    parser.add_argument("--glue-max-peaks", type=int, default=5000, help="peaks GLUE's decoder reconstructs")
    parser.add_argument("--sccross-kwargs", type=json.loads, default={}, help="JSON of SCCROSS arguments")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each method's subprocess")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    settings = settings_for(args)
    stem = RESULTS / (f"integration_peers_{args.dataset}" + ("_quick" if args.quick else ""))
    if args.worker:
        split = load_split(args.dataset, settings["n_cells"], args.train_fraction, args.seed)
        run_worker(args.worker, FUNCTIONS[args.worker], split, settings, args.seed, stem, scib=True)
        return
    methods = args.methods or default_methods(args.dataset)
    if args.no_sccross:
        methods = [m for m in methods if m != "SCCROSS"]
    failed = []
    if not args.assemble_only:
        forwarded = list(argv if argv is not None else sys.argv[1:])
        failed = run_methods(Path(__file__).resolve(), methods, forwarded, stem)
    first, second = DATASETS[args.dataset]["modalities"]
    intro = [
        f"Data: `{args.dataset}`; {int(100 * args.train_fraction)}% stratified anchor cells, scores on the "
        "held-out rest. SCCROSS, GLUE and PCA+Harmony saw all cells unpaired and unlabelled; MINNET "
        "trained on the anchors (paired, labelled) and embedded the held-out cells per modality; "
        "MultiVI / totalVI trained on the paired anchors plus the held-out cells without their second "
        "modality (totalVI encodes held-out protein rows with an all-zero RNA profile: it has no "
        "protein-only encoder). See the docstring of `benchmarks/integration_peers.py`.",
        "",
        "Columns: `mixing` (`crossomics.metrics.modality_mixing` of the stacked held-out latents, "
        "1 = mixed as if at random, 0 = separate islands; empty for parts written before it existed), "
        "`mixing_umap` (the same score on the 2-D UMAP coordinates drawn below, for every part), "
        "`foscttm` (true pairs of the held-out cells; lower is better, 0.5 = random), "
        f"`label_transfer` (kNN k=15, {second} <- {first}), `setup_s` (model construction / inputs), "
        "`train_s`, `epochs`, `s_per_epoch` (median over epochs; GLUE: training time / epochs of both "
        "stages, balancing step included), `peak_rss_gb` (the method's own subprocess, data loading "
        "included), `wall_s` (method call to scores). Each method's torch threads are its settings' "
        "`threads` below (1 where absent).",
        "",
        "GLUE: `scglue` 0.4.1 installs from PyPI under `requirements/constraints.txt` (it only adds "
        "packages: pybedtools, pysam, pytorch-ignite, dill, tensorboardX, nvidia-ml-py, pynvml) and "
        "trains on torch 2.13 / anndata 0.12 on CPU. Its guidance graph is built with crossomics' own "
        "peak-gene windows (`crossomics.pp.peak_to_gene_matrix`, gene body + 2 kb upstream) or "
        "antibody-target genes, not with `scglue.genomics` (bedtools); encoders take PCA (RNA, "
        "protein) / LSI (ATAC) inputs, NB decoders reconstruct all genes and at most "
        "`glue_max_peaks` gene-linked peaks (most often accessible first); fixed epochs per stage "
        "without early stopping, alignment burn-in a quarter of them.",
    ]
    title = f"Integration peers: {args.dataset}" + (" (quick smoke run)" if args.quick else "")
    order = list(FUNCTIONS)
    assemble(stem, title, intro, order, (first, second), args.seed)
    if failed:
        sys.exit(f"failed: {failed} (reasons in {stem.name}.md)")


if __name__ == "__main__":
    main()
