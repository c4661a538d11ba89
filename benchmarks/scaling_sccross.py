"""Scaling of SCCROSS training: time per epoch and peak memory at 10k to 300k cells.

Synthetic data sets of N cells per modality are made by resampling the SNARE-seq mouse cortex
cells: N source cells are drawn with replacement and each new cell's counts are Poisson draws
around its source cell's counts times a per-cell library factor (log-normal, sd 0.25), so the
cell-type structure stays and no two cells are identical (a cell left without counts keeps its
source's counts). RNA and ATAC are given unpaired (different obs_names), as in the integration
benchmark.

Each size is made once and written to an ``.h5mu`` file (``--data-dir``); every row then runs
in its own subprocess that reads it, in memory or backed (``mudata.read_h5mu(path,
backed=True)``: counts stay on disk and are read a minibatch or block at a time), so the peak
resident memory (``ru_maxrss``) is that row's alone. A full epoch at 1M cells takes long on 2
CPU cores, so each row trains a fixed number of steps (``--steps`` per stage:
``limit_train_batches``, one stage-1 epoch then one stage-2 epoch, 2 validation batches); the
seconds per epoch are *extrapolated* as the median step time times the steps of a full epoch
(``ceil(N / batch_size / processes)``; validation not included). ``setup_s`` is the model
construction (input projections, graphs, gene-set scores, MNN prior on at most
``n_fit_cells`` cells per modality, and the prior of the other cells). ``--ddp-size`` adds rows
at that size trained by 2 processes (Lightning ``strategy="ddp"``, 1 thread each) and by 1
process with 2 threads.

Run ``python benchmarks/scaling_sccross.py`` (10k, 100k, 300k, 1M, in memory and backed, DDP
at 100k) or ``--quick`` (10k and 30k in memory only); ``--sizes`` and ``--storage`` pick others.
Writes ``benchmarks/results/scaling_sccross[_quick].{csv,md}`` and ``*.png``.
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
    """Seconds of every training step, with the stage (1 or 2) it belonged to, and of every
    epoch's training loop (validation excluded)."""

    def __init__(self, pretrain_epochs: int):
        self.pretrain_epochs = pretrain_epochs
        self.steps: list[tuple[int, float]] = []
        self.epochs: list[float] = []
        self._start = self._epoch_start = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append(time.perf_counter() - self._epoch_start)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stage = 1 if trainer.current_epoch < self.pretrain_epochs else 2
        self.steps.append((stage, time.perf_counter() - self._start))


def data_file(data_dir: Path, n_cells: int, seed: int) -> Path:
    return data_dir / f"cortex_resampled_{n_cells}_seed{seed}.h5mu"


def prepare(n_cells: int, seed: int, data_dir: Path) -> None:
    """Write the synthetic data of ``n_cells`` cells (once: an existing file is kept)."""
    path = data_file(data_dir, n_cells, seed)
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        synthetic_unpaired(n_cells, seed).write(path.with_suffix(".partial"))
        path.with_suffix(".partial").rename(path)


def run_row(n_cells: int, storage: str, processes: int, threads: int, full: bool, args) -> dict | None:
    """Read the data, construct SCCROSS and time ``args.steps`` steps of each stage (a whole
    epoch of each when ``full``); ``None`` on ranks other than 0 of a multi-process run."""
    set_threads(threads)
    path = data_file(args.data_dir, n_cells, args.seed)
    start = time.perf_counter()
    mdata = md.read_h5mu(path, backed=storage == "backed")
    data_seconds = time.perf_counter() - start
    scvi.settings.seed = args.seed
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
    start = time.perf_counter()
    model = co.SCCROSS(mdata, **args.model_kwargs)
    setup_seconds = time.perf_counter() - start
    rss_after_setup = peak_rss_gb()
    timer = StepTimer(pretrain_epochs=1)
    start = time.perf_counter()
    model.train(
        max_epochs=2,
        pretrain_epochs=1,
        batch_size=args.batch_size,
        callbacks=[timer],
        limit_train_batches=None if full else args.steps,
        limit_val_batches=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=processes,
        **({"strategy": "ddp"} if processes > 1 else {}),
    )
    train_seconds = time.perf_counter() - start
    if not model.trainer.is_global_zero:
        return None
    times = np.asarray([t for _, t in timer.steps])
    stages = np.asarray([s for s, _ in timer.steps])
    steps_per_epoch = math.ceil(n_cells / args.batch_size / processes)
    row = {
        "n_cells": n_cells,
        "storage": storage,
        "processes": processes,
        "threads": threads,
        "full_epochs": full,
        "read_s": data_seconds,
        "file_gb": path.stat().st_size / 1024**3,
        "setup_s": setup_seconds,
    }
    for stage in (1, 2):
        # the first step of a stage includes warm-up; the median ignores it
        median = float(np.median(times[stages == stage])) if (stages == stage).any() else np.nan
        row[f"s_per_step_stage{stage}"] = median
        row[f"est_s_per_epoch_stage{stage}"] = median * steps_per_epoch
        row[f"measured_s_epoch_stage{stage}"] = timer.epochs[stage - 1] if full else np.nan
    row.update(
        {
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

    single = table[(table["processes"] == 1) & (table["threads"] == 1)]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = [
        (["est_s_per_epoch_stage1", "est_s_per_epoch_stage2"], "seconds / epoch (extrapolated)"),
        (["setup_s"], "model construction (s)"),
        (["peak_rss_gb"], "peak RSS (GB)"),
    ]
    for ax, (columns, ylabel) in zip(axes, panels, strict=True):
        for storage, rows in single.groupby("storage"):
            for column in columns:
                style = "-" if storage == "memory" else "--"
                ax.plot(rows["n_cells"], rows[column], style, marker="o", label=f"{column} ({storage})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cells per modality")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def planned_rows(args) -> list[tuple[int, str, int, int, bool]]:
    """``(cells, storage, processes, threads, whole epochs)`` of every row of the study."""
    if args.quick:
        return [(n, "memory", 1, 1, False) for n in (10_000, 30_000)]
    rows = [(args.epoch_size, "backed", 1, 2, True)] if args.epoch_size else []
    if args.ddp_size:
        rows += [(args.ddp_size, "memory", 2, 1, False), (args.ddp_size, "memory", 1, 2, False)]
    sizes = args.sizes or [10_000, 100_000, 300_000, 1_000_000]
    return rows + [(n, storage, 1, 1, False) for n in sizes for storage in args.storage]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 30k cells in memory only")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--storage", nargs="+", choices=["memory", "backed"], default=["memory", "backed"])
    parser.add_argument("--ddp-size", type=int, default=100_000, help="cells of the 2-process rows; 0: none")
    parser.add_argument(
        "--epoch-size",
        type=int,
        default=1_000_000,
        help="cells of the backed row timed over whole epochs; 0: none",
    )
    parser.add_argument("--steps", type=int, default=30, help="training steps timed per stage")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--model-kwargs", type=json.loads, default={}, help="JSON of SCCROSS arguments")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/crossomics_scaling"))
    parser.add_argument("--assemble-only", action="store_true", help="rewrite the report from the CSV")
    parser.add_argument(
        "--append", action="store_true", help="keep the CSV's rows and run only the missing ones"
    )
    parser.add_argument("--prepare", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stem = RESULTS / ("scaling_sccross" + ("_quick" if args.quick else ""))
    if args.prepare:
        prepare(args.prepare, args.seed, args.data_dir)
        return
    if args.worker:
        n_cells, storage, processes, threads, full = args.worker.split(",")
        row = run_row(int(n_cells), storage, int(processes), int(threads), full == "True", args)
        if row is not None:
            print("RESULT " + json.dumps(row), flush=True)
        return
    planned = [] if args.assemble_only else planned_rows(args)
    keep = args.assemble_only or args.append
    rows = pd.read_csv(stem.with_suffix(".csv")).to_dict("records") if keep else []
    done_keys = {
        (r["n_cells"], r["storage"], r["processes"], r["threads"], bool(r.get("full_epochs"))) for r in rows
    }
    planned = [row for row in planned if row not in done_keys]
    failures = []
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--quick", "--append")]
    script = [sys.executable, str(Path(__file__).resolve()), *forwarded]
    for n_cells in sorted({n for n, *_ in planned}):
        subprocess.run([*script, "--prepare", str(n_cells)], check=True)
    for n_cells, storage, processes, threads, full in planned:
        label = f"{n_cells:,} cells, {storage}, {processes} process(es) x {threads} thread(s)"
        label += ", whole epochs" if full else ""
        print(f"[scaling] {label}", flush=True)
        command = [*script, "--worker", f"{n_cells},{storage},{processes},{threads},{full}"]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not results:
            failures.append(f"{label}: exit {done.returncode} (137/-9: killed, usually out of memory)")
            print(f"[scaling] {failures[-1]}", flush=True)
            continue
        rows.append(json.loads(results[-1].removeprefix("RESULT ")))
        print(rows[-1], flush=True)
        # saved after every row, so a run cut short keeps what it measured (--append goes on)
        pd.DataFrame(rows).to_csv(stem.with_suffix(".csv"), index=False)
    table = pd.DataFrame(rows)
    settings = {"steps": args.steps, "batch_size": args.batch_size, "model_kwargs": args.model_kwargs}
    title = "SCCROSS scaling on resampled mouse cortex cells" + (" (quick)" if args.quick else "")
    lines = [
        f"# {title}",
        "",
        *results_header(args.seed, settings),
        "",
        f"Each row is a separate subprocess reading the size's `.h5mu` file in memory or backed; "
        f"{args.steps} training steps of each stage were timed and `est_s_per_epoch_stage*` = median "
        "step time x `steps_per_epoch` (extrapolated, validation excluded; with 2 processes each "
        "takes half the steps of an epoch). `setup_s`: model construction (projections, graphs, "
        "gene-set scores and MNN prior on at most `n_fit_cells` = 50,000 cells per modality, then "
        "the prior of the other cells); `read_s`: reading the file; `file_gb`: its size; "
        "`peak_rss_*`: the subprocess's peak resident memory after construction and at the end "
        "(rank 0's with 2 processes). The row with `full_epochs` trains one whole epoch of each "
        "stage, and `measured_s_epoch_stage*` is the measured training-loop time of that epoch.",
        "",
    ]
    if len(table):
        table.to_csv(stem.with_suffix(".csv"), index=False)
        lines += [table.astype(object).to_markdown(index=False, floatfmt=".3f"), ""]
        save_figure(plot(table, title), stem.with_suffix(".png"))
        lines += [f"Figure: `{stem.name}.png`.", ""]
    if failures:
        lines += ["Rows that did not finish:", "", *[f"- {f}" for f in failures], ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines), flush=True)
    if failures:
        sys.exit(f"failed: {failures}")


if __name__ == "__main__":
    main()
