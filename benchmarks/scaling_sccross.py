"""Scaling of SCCROSS training: time per epoch and peak memory at 10k to 300k cells.

Synthetic data sets of N cells per modality are made by resampling the SNARE-seq mouse cortex
cells: N source cells are drawn with replacement and each new cell's counts are Poisson draws
around its source cell's counts times a per-cell library factor (log-normal, sd 0.25), so the
cell-type structure stays and no two cells are identical (a cell left without counts keeps its
source's counts). RNA and ATAC are given unpaired (different obs_names), as in the integration
benchmark.

Each size runs in its own subprocess, so the peak resident memory (``ru_maxrss``) is that size's
alone. A full epoch at 300k cells takes long on 2 CPU cores, so each size trains a fixed number
of steps (``--steps`` per stage: ``limit_train_batches``, one stage-1 epoch then one stage-2
epoch, 2 validation batches); the seconds per epoch are *extrapolated* as the median step time
times the steps of a full epoch (``ceil(N / batch_size)``; validation not included).
``setup_s`` is the model construction (input projections, graphs, gene-set scores, MNN prior),
which runs once per model and grows with N.

Run ``python benchmarks/scaling_sccross.py`` (10k, 30k, 100k, 300k) or ``--quick`` (10k and 30k
only); ``--sizes`` picks others. Writes ``benchmarks/results/scaling_sccross[_quick].{csv,md}``
and ``*.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi
from _common import RESULTS, peak_rss_gb, results_header, save_figure, set_threads

import crossomics as co


def resample_counts(
    X, sources: np.ndarray, rng: np.random.Generator, library_sd: float = 0.25
) -> sp.csr_matrix:
    """Rows ``sources`` of count matrix ``X`` with Poisson noise around the source counts.

    Only the source's non-zero entries are redrawn (Poisson with mean count x library factor),
    so the result stays as sparse as the source; rows that end up empty keep the source counts.
    """
    rows = sp.csr_matrix(X)[sources]
    factors = np.exp(rng.normal(-0.5 * library_sd**2, library_sd, size=len(sources)))
    row_of_entry = np.repeat(np.arange(len(sources)), np.diff(rows.indptr))
    data = rng.poisson(rows.data.astype(np.float64) * factors[row_of_entry]).astype(np.float32)
    totals = np.bincount(row_of_entry, weights=data, minlength=len(sources))
    keep_source = totals[row_of_entry] == 0
    data[keep_source] = rows.data[keep_source]
    out = sp.csr_matrix((data, rows.indices.copy(), rows.indptr.copy()), shape=rows.shape)
    out.eliminate_zeros()
    return out


def synthetic_unpaired(n_cells: int, seed: int) -> md.MuData:
    """Unpaired RNA and ATAC tables of ``n_cells`` resampled cortex cells each."""
    source = co.datasets.mouse_motor_cortex()
    rng = np.random.default_rng(seed)
    mods = {}
    for modality in ("rna", "atac"):
        adata = source.mod[modality]
        picks = rng.choice(adata.n_obs, n_cells, replace=True)
        new = adata[picks].copy()
        new.X = resample_counts(adata.X, picks, rng)
        new.obs_names = [f"{modality}_{i}" for i in range(n_cells)]
        mods[modality] = new
    with md.set_options(pull_on_update=False):
        return md.MuData(mods)


class StepTimer(pl.Callback):
    """Seconds of every training step, with the stage (1 or 2) it belonged to."""

    def __init__(self, pretrain_epochs: int):
        self.pretrain_epochs = pretrain_epochs
        self.steps: list[tuple[int, float]] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stage = 1 if trainer.current_epoch < self.pretrain_epochs else 2
        self.steps.append((stage, time.perf_counter() - self._start))


def run_size(n_cells: int, steps: int, batch_size: int, seed: int, model_kwargs: dict) -> dict:
    """Build the synthetic data, construct SCCROSS and time ``steps`` steps of each stage."""
    start = time.perf_counter()
    mdata = synthetic_unpaired(n_cells, seed)
    data_seconds = time.perf_counter() - start
    data_gb = (
        sum(m.X.data.nbytes + m.X.indices.nbytes + m.X.indptr.nbytes for m in mdata.mod.values()) / 1024**3
    )
    scvi.settings.seed = seed
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
    start = time.perf_counter()
    model = co.SCCROSS(mdata, **model_kwargs)
    setup_seconds = time.perf_counter() - start
    rss_after_setup = peak_rss_gb()
    timer = StepTimer(pretrain_epochs=1)
    start = time.perf_counter()
    model.train(
        max_epochs=2,
        pretrain_epochs=1,
        batch_size=batch_size,
        callbacks=[timer],
        limit_train_batches=steps,
        limit_val_batches=2,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    train_seconds = time.perf_counter() - start
    times = np.asarray([t for _, t in timer.steps])
    stages = np.asarray([s for s, _ in timer.steps])
    steps_per_epoch = math.ceil(n_cells / batch_size)
    row = {"n_cells": n_cells, "data_s": data_seconds, "data_gb": data_gb, "setup_s": setup_seconds}
    for stage in (1, 2):
        # the first step of a stage includes warm-up; the median ignores it
        median = float(np.median(times[stages == stage])) if (stages == stage).any() else np.nan
        row[f"s_per_step_stage{stage}"] = median
        row[f"est_s_per_epoch_stage{stage}"] = median * steps_per_epoch
    row.update(
        {
            "steps_timed": len(times),
            "steps_per_epoch": steps_per_epoch,
            "train_s_timed": train_seconds,
            "peak_rss_after_setup_gb": rss_after_setup,
            "peak_rss_gb": peak_rss_gb(),
        }
    )
    return row


def plot(table: pd.DataFrame, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (columns, ylabel) in zip(
        axes,
        [
            (["est_s_per_epoch_stage1", "est_s_per_epoch_stage2"], "seconds / epoch (extrapolated)"),
            (["setup_s"], "model construction (s)"),
            (["peak_rss_after_setup_gb", "peak_rss_gb"], "peak RSS (GB)"),
        ],
        strict=True,
    ):
        for column in columns:
            ax.plot(table["n_cells"], table[column], marker="o", label=column)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cells per modality")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 30k cells only")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=30, help="training steps timed per stage")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--model-kwargs", type=json.loads, default={}, help="JSON of SCCROSS arguments")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--assemble-only", action="store_true", help="rewrite the report from the CSV")
    parser.add_argument("--worker-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    set_threads(1)
    stem = RESULTS / ("scaling_sccross" + ("_quick" if args.quick else ""))
    if args.worker_size:
        row = run_size(args.worker_size, args.steps, args.batch_size, args.seed, args.model_kwargs)
        print("RESULT " + json.dumps(row), flush=True)
        return
    sizes = args.sizes or ([10_000, 30_000] if args.quick else [10_000, 30_000, 100_000, 300_000])
    rows, failures = [], []
    if args.assemble_only:
        sizes, rows = [], pd.read_csv(stem.with_suffix(".csv")).to_dict("records")
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--quick"]
    for n_cells in sizes:
        command = [sys.executable, str(Path(__file__).resolve()), *forwarded, "--worker-size", str(n_cells)]
        print(f"[scaling] {n_cells:,} cells", flush=True)
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not results:
            failures.append(
                f"{n_cells:,} cells: exit {done.returncode} (137/-9: killed, usually out of memory)"
            )
            print(f"[scaling] {failures[-1]}", flush=True)
            continue
        rows.append(json.loads(results[-1].removeprefix("RESULT ")))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    settings = {"steps": args.steps, "batch_size": args.batch_size, "model_kwargs": args.model_kwargs}
    title = "SCCROSS scaling on resampled mouse cortex cells" + (" (quick)" if args.quick else "")
    lines = [
        f"# {title}",
        "",
        *results_header(args.seed, settings),
        "",
        f"Each size is a separate subprocess; {args.steps} training steps of each stage were timed and "
        "`est_s_per_epoch_stage*` = median step time x `steps_per_epoch` (extrapolated, validation "
        "excluded). `setup_s`: model construction (projections, graphs, gene-set scores, MNN prior); "
        "`data_s` / `data_gb`: making and holding the synthetic counts; `peak_rss_*`: the subprocess's "
        "peak resident memory after construction and at the end.",
        "",
    ]
    if len(table):
        table.to_csv(stem.with_suffix(".csv"), index=False)
        lines += [table.astype(object).to_markdown(index=False, floatfmt=".3f"), ""]
        save_figure(plot(table, title), stem.with_suffix(".png"))
        lines += [f"Figure: `{stem.name}.png`.", ""]
    if failures:
        lines += ["Sizes that did not finish:", "", *[f"- {f}" for f in failures], ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines), flush=True)
    if failures:
        sys.exit(f"failed: {failures}")


if __name__ == "__main__":
    main()
