"""Time and memory of the preprocessing steps on the full mouse cortex data (10,309 cells).

Writes ``benchmarks/results/pp_timing.md``. Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pp_timing.py

Each step reports wall time (best of ``--repeats`` runs), the tracemalloc peak of memory
allocated during the call (Python and numpy buffers; scipy's compiled code is included only
where it allocates through numpy) and the process peak RSS (psutil/getrusage) after it.
The MNN prior is compared with the same pipeline without MNN correction, the baseline.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import tracemalloc
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from unittest import mock

import psutil

import crossomics as co
from crossomics.metrics import foscttm
from crossomics.pp._mnn import cosine_normalize

RESULTS = Path(__file__).parent / "results" / "pp_timing.md"


def measure(step: Callable[[], object], repeats: int) -> tuple[object, float, float]:
    """Run ``step``; return its result, the best wall time (s) and the tracemalloc peak (MiB)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = step()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, min(times), peak / 2**20


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def without_mnn(matrices, k, sigma):
    """Stand-in for mnn_correct that only cosine-normalises: the no-correction baseline."""
    return [cosine_normalize(m) for m in matrices]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    mdata = co.datasets.mouse_motor_cortex()
    rna, atac = mdata["rna"], mdata["atac"]
    rows = []

    def record(name: str, step: Callable[[], object], repeats: int = args.repeats):
        result, seconds, traced = measure(step, repeats)
        rows.append((name, seconds, traced, peak_rss_mib()))
        print(f"{name}: {seconds:.2f} s, traced peak {traced:.0f} MiB", flush=True)
        return result

    record("peak_to_gene_matrix (25,734 peaks, mm10)", lambda: co.pp.peak_to_gene_matrix(atac, "mm10"))
    activity = record("gene_activity (10,309 x 25,734 -> genes)", lambda: co.pp.gene_activity(atac, "mm10"))
    record("fit_lsi (50 components)", lambda: co.pp.fit_lsi(atac.X, n_components=50))
    record("fit_pca (50 components)", lambda: co.pp.fit_pca(rna.X, n_components=50))
    prior = record(
        "mnn_prior rna+atac (per cell)",
        lambda: co.pp.mnn_prior(mdata, ["rna", "atac"], gene_annotation="mm10"),
        repeats=1,
    )
    metacell_prior = record(
        "mnn_prior rna+atac (1,000 meta-cells per modality)",
        lambda: co.pp.mnn_prior(mdata, ["rna", "atac"], gene_annotation="mm10", n_metacells=1000),
        repeats=1,
    )
    scores = {
        "MNN prior, per cell (defaults k=20, sigma=1)": foscttm(prior["rna"], prior["atac"]),
        "MNN prior, 1,000 meta-cells per modality": foscttm(metacell_prior["rna"], metacell_prior["atac"]),
    }
    for name, value in scores.items():
        print(f"FOSCTTM {name}: {value:.4f}")

    # the kernel bandwidth trades off differently on different data: compare with the CITE data
    cite = co.datasets.bmmc_cite()
    cases = {
        "mouse cortex rna+atac (10,309 cells)": (mdata, ["rna", "atac"], "mm10"),
        "BMMC CITE rna+adt (600 cells, 10 shared genes)": (cite, ["rna", "adt"], None),
    }
    settings = {
        "k=20, sigma=1 (default)": (20, 1.0),
        "k=20, sigma=0.3": (20, 0.3),
        "k=50, sigma=0.3": (50, 0.3),
    }
    sensitivity = {}
    for case, (data, modalities, genome) in cases.items():
        with mock.patch("crossomics.pp._mnn_prior.mnn_correct", without_mnn):
            baseline = co.pp.mnn_prior(data, modalities, gene_annotation=genome)
        row = [foscttm(*baseline.values())]
        for k, sigma in settings.values():
            result = co.pp.mnn_prior(data, modalities, gene_annotation=genome, k=k, sigma=sigma)
            row.append(foscttm(*result.values()))
        sensitivity[case] = row
        print(case, " ".join(f"{value:.4f}" for value in row), flush=True)

    packages = ["crossomics", "numpy", "scipy", "scikit-learn", "pandas", "anndata", "mudata"]
    lines = [
        "# Preprocessing timing: mouse cortex SNARE-seq, all 10,309 cells",
        "",
        "Written by `benchmarks/pp_timing.py`. Wall time is the best of "
        f"{args.repeats} runs (1 run for `mnn_prior`); *traced peak* is the tracemalloc peak of "
        "memory allocated during one call; *process peak RSS* is the largest resident set of the "
        "whole benchmark process so far (it includes the loaded data, ~"
        f"{(rna.X.data.nbytes + atac.X.data.nbytes) / 2**20:.0f} MiB of count values).",
        "",
        f"Gene activity: {activity.n_vars:,} genes with at least one peak; "
        f"{activity.X.nnz:,} non-zero entries.",
        "",
        "| step | wall time (s) | traced peak (MiB) | process peak RSS (MiB) |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {seconds:.2f} | {traced:.0f} | {rss:.0f} |" for name, seconds, traced, rss in rows),
        "",
        "## FOSCTTM of the prior (RNA rows vs ATAC rows of the same cells; lower is better, random = 0.5)",
        "",
        "| prior | FOSCTTM |",
        "|---|---:|",
        *(f"| {name} | {value:.4f} |" for name, value in scores.items()),
        "",
        "## Sensitivity to the MNN settings (FOSCTTM, per-cell prior)",
        "",
        "The baseline is the same pipeline with the MNN correction replaced by cosine normalisation.",
        "",
        "| data | no MNN (baseline) | " + " | ".join(settings) + " |",
        "|---|" + "---:|" * (len(settings) + 1),
        *(f"| {case} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for case, row in sensitivity.items()),
        "",
        "## Machine",
        "",
        f"- {platform.platform()}, Python {platform.python_version()}",
        f"- {psutil.cpu_count(logical=True)} logical CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; the cores were shared with "
        "other jobs during the run, so expect some noise in the wall times",
        "- " + ", ".join(f"{name} {version(name)}" for name in packages),
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
