"""MINNET memory and time as the number of training cells grows (10k real cells up to 100k).

Sizes above the real 10,309 mouse cortex cells are synthetic: real cells resampled with
replacement, every non-zero count redrawn from a Poisson with that mean (so no two copies are
identical), labels and batches kept. Each size trains in a fresh process, so the reported peak
resident memory (``ru_maxrss``) belongs to that size alone; it includes Python, torch and the
data. The shortest paths are computed per minibatch (never an n x n matrix), so memory should
grow linearly with n.

Run ``python benchmarks/minnet_scaling.py`` (about an hour on 2 CPU cores); it writes
``benchmarks/results/minnet_scaling.{md,csv}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi

import crossomics as co
from crossomics.model import MINNET

sys.path.insert(0, str(Path(__file__).parent))
from minnet_mouse_cortex import RESULTS, EpochTimer, peak_memory_gb

SIZES = (10_309, 25_000, 50_000, 100_000)


def resampled_cortex(n_cells: int, seed: int = 0) -> md.MuData:
    """The mouse cortex data at ``n_cells`` cells: the real cells, or real cells resampled with Poisson noise."""
    cortex = co.datasets.mouse_motor_cortex()
    if n_cells == cortex.n_obs:
        return cortex
    rng = np.random.default_rng(seed)
    rows = rng.integers(cortex.n_obs, size=n_cells)
    modalities = {}
    for name in ("rna", "atac"):
        source = cortex[name]
        counts = sp.csr_matrix(source.X[rows], dtype=np.float32)
        counts.data = rng.poisson(counts.data).astype(np.float32)
        counts.eliminate_zeros()
        obs = source.obs.iloc[rows].reset_index(drop=True)
        obs.index = [f"cell{i}" for i in range(n_cells)]
        modalities[name] = md.AnnData(X=counts, obs=obs, var=source.var.copy())
    with md.set_options(pull_on_update=False):
        return md.MuData(modalities)


def measure(n_cells: int, max_epochs: int, seed: int = 0) -> dict:
    """Train on ``n_cells`` cells in this process and return time and memory figures."""
    mdata = resampled_cortex(n_cells, seed)
    baseline = peak_memory_gb()
    scvi.settings.seed = seed
    MINNET.setup_mudata(
        mdata, modalities=["rna", "atac"], labels_key="cell_type", batch_key="batch", gene_annotation="mm10"
    )
    model = MINNET(mdata)
    timer = EpochTimer()
    start = time.perf_counter()
    model.train(max_epochs=max_epochs, early_stopping=False, callbacks=[timer], enable_progress_bar=False)
    total = time.perf_counter() - start
    return {
        "n_cells": n_cells,
        "epochs": max_epochs,
        "graph_and_setup_seconds": total - float(np.sum(timer.seconds)),
        "seconds_per_epoch": float(np.median(timer.seconds)),
        "peak_memory_gb": peak_memory_gb(),
        "memory_after_loading_data_gb": baseline,
    }


def run(sizes=SIZES, max_epochs: int = 1) -> pd.DataFrame:
    """One fresh process per size, so each peak memory is that size's own."""
    rows = []
    for n_cells in sizes:
        command = [sys.executable, __file__, "--single", str(n_cells), "--epochs", str(max_epochs)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def write_report(table: pd.DataFrame) -> None:
    """Write ``results/minnet_scaling.csv`` and a Markdown table with a linear fit of memory."""
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "minnet_scaling.csv", index=False)
    slope, intercept = np.polyfit(table["n_cells"], table["peak_memory_gb"], 1)
    fitted = intercept + slope * table["n_cells"]
    lines = [
        "# MINNET training memory and time vs number of cells",
        "",
        "Sizes above 10,309 are real mouse cortex cells resampled with Poisson noise. One fresh process",
        "per size; peak memory is the process's peak resident set (Python, torch, data, graph, training).",
        "",
        "| cells | peak memory (GB) | linear fit (GB) | graph + setup (s) | seconds / epoch |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {r.n_cells:,} | {r.peak_memory_gb:.2f} | {f:.2f} | {r.graph_and_setup_seconds:.0f} | {r.seconds_per_epoch:.0f} |"
            for r, f in zip(table.itertuples(), fitted, strict=True)
        ),
        "",
        f"Linear fit: {intercept:.2f} GB + {slope * 1e5:.2f} GB per 100,000 cells. A dense float64 n x n",
        f"shortest-path matrix, as in the original code, would need {8 * table['n_cells'].max() ** 2 / 1e9:.0f} GB",
        f"at {table['n_cells'].max():,} cells.",
        "",
        "Where the memory goes: the peak is reached while building the margin graph, in scanpy's ComBat,",
        "which holds several dense float64 copies of the cells x genes reference matrix (at 25,000 cells",
        "the process peak is 0.80 GB before the graph and 2.6 GB after it). Minibatch shortest paths need",
        "only `n_sources x n_cells` floats per batch. Time per epoch grows quadratically with exact",
        "distances (each of the `n_cells / batch_size * n_sources` Dijkstra searches visits the whole",
        "graph); `train(max_graph_distance=..., num_workers=...)` bound or parallelise the searches.",
        "",
        "Machine: 2 shared CPU cores, no GPU; times are indicative. Regenerate with",
        "`python benchmarks/minnet_scaling.py`.",
    ]
    (RESULTS / "minnet_scaling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, help="measure one size in this process and print JSON")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(measure(args.single, args.epochs)))
    else:
        write_report(run(max_epochs=args.epochs))
