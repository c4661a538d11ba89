"""Shared helpers of the generation / simulation / perturbation benchmarks (kept small)."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch as pl
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

RESULTS = Path(__file__).parent / "results"
DEFAULT_TRIANA = Path(__file__).resolve().parents[2] / "shared" / "data" / "triana_bm.h5mu"


def set_threads(n: int = 1) -> None:
    torch.set_num_threads(n)


def stratified_split(labels, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, rest): ``fraction`` of every label group (at least one cell) in train."""
    labels = np.asarray(labels).astype(str)
    rng = np.random.default_rng(seed)
    train = []
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        n = max(1, int(round(fraction * len(rows))))
        train.append(rng.choice(rows, n, replace=False))
    train = np.sort(np.concatenate(train))
    rest = np.setdiff1d(np.arange(len(labels)), train)
    return train, rest


def paired_mudata(mods: dict) -> md.MuData:
    """A MuData of row-matched AnnDatas (same obs_names), without pulling obs."""
    with md.set_options(pull_on_update=False):
        return md.MuData({k: v.copy() for k, v in mods.items()})


def train_sccross(mdata, modalities, annotation, max_epochs, pretrain_epochs, batch_size=128, seed=0):
    """Set up and train SCCROSS; returns (model, seconds)."""
    import scvi

    import crossomics as co

    scvi.settings.seed = seed
    co.SCCROSS.setup_mudata(mdata, modalities=list(modalities), gene_annotation=annotation)
    model = co.SCCROSS(mdata)
    start = time.perf_counter()
    model.train(
        max_epochs=max_epochs,
        pretrain_epochs=pretrain_epochs,
        batch_size=batch_size,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return model, time.perf_counter() - start


def train_paired_sccross(mods: dict, annotation, max_epochs, pretrain_epochs, seed=0):
    """:func:`train_sccross` on row-matched AnnDatas ``{modality: AnnData}``; returns (model, seconds)."""
    return train_sccross(paired_mudata(mods), list(mods), annotation, max_epochs, pretrain_epochs, seed=seed)


def sccross_epochs(args, full_epochs: int) -> tuple[int, int]:
    """``max_epochs`` and ``pretrain_epochs`` of a study's SCCROSS from its ``--epochs``, ``--quick``
    and ``--pretrain-epochs`` arguments: 4 epochs for a quick run, else ``full_epochs``; the first
    stage takes 40% of them unless given, as in SCCROSS's own default split."""
    epochs = args.epochs or (4 if args.quick else full_epochs)
    pretrain = args.pretrain_epochs if args.pretrain_epochs is not None else int(round(0.4 * epochs))
    return epochs, pretrain


def log_normalize(X, target_sum: float = 1e4) -> np.ndarray:
    """Dense ``log1p`` of rows scaled to ``target_sum``."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    totals = X.sum(1, keepdims=True)
    return np.log1p(
        np.divide(X * target_sum, totals, out=np.zeros_like(X, dtype=np.float64), where=totals > 0)
    )


def tfidf_lsi(X_train, X_query, n_components: int = 50, seed: int = 0):
    """LSI (TF-IDF + truncated SVD) fitted on ``X_train``; returns (train, query) projections."""
    from sklearn.decomposition import TruncatedSVD

    def tfidf(X, idf):
        X = sp.csr_matrix(X, dtype=np.float64)
        X.data = np.ones_like(X.data)
        tf = sp.diags(1.0 / np.maximum(np.asarray(X.sum(1)).ravel(), 1)) @ X
        out = tf @ sp.diags(idf)
        out.data = np.log1p(out.data * 1e4)
        return out

    B = sp.csr_matrix(X_train) > 0
    idf = B.shape[0] / np.maximum(np.asarray(B.sum(0)).ravel(), 1)
    svd = TruncatedSVD(n_components, random_state=seed)
    train = svd.fit_transform(tfidf(X_train, idf))
    query = svd.transform(tfidf(X_query, idf))
    return _standardize(train[:, 1:], query[:, 1:])


def pca_project(X_train, X_query, n_components: int = 50, seed: int = 0):
    """PCA of log-normalised counts fitted on ``X_train``; returns (train, query) projections."""
    from sklearn.decomposition import PCA

    a, b = log_normalize(X_train), log_normalize(X_query)
    pca = PCA(min(n_components, a.shape[1] - 1, a.shape[0] - 1), random_state=seed).fit(a)
    return _standardize(pca.transform(a), pca.transform(b))


def _standardize(a, b):
    mu, sd = a.mean(0), a.std(0) + 1e-8
    return (a - mu) / sd, (b - mu) / sd


def knn_regression(source_train, target_train, source_query, k: int = 15) -> np.ndarray:
    """Mean target profile (per-cell normalised) of the k nearest training cells in source space."""
    from sklearn.neighbors import NearestNeighbors

    target = target_train.toarray() if sp.issparse(target_train) else np.asarray(target_train)
    target = target / np.maximum(target.sum(1, keepdims=True), 1) * 1e4
    idx = NearestNeighbors(n_neighbors=k).fit(source_train).kneighbors(source_query, return_distance=False)
    out = np.zeros((len(source_query), target.shape[1]), dtype=np.float32)
    for j in range(k):
        out += target[idx[:, j]]
    return out / k


def cell_type_logistic_regression(seed: int = 0):
    """The (unfitted) classifier behind :func:`cell_type_classifier`."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=300, C=0.1, random_state=seed)


def cell_type_classifier(X_counts, labels, seed: int = 0):
    """Logistic regression on log-normalised counts; returns ``predict(counts_or_means)``."""
    clf = cell_type_logistic_regression(seed)
    clf.fit(log_normalize(X_counts), np.asarray(labels).astype(str))
    return lambda X: clf.predict(log_normalize(X))


def machine_line() -> str:
    import scanpy
    import scvi

    import crossomics as co

    return (
        f"Machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs visible, "
        f"{torch.get_num_threads()} torch threads, no GPU; python {platform.python_version()}, "
        f"torch {torch.__version__}, scvi-tools {scvi.__version__}, scanpy {scanpy.__version__}, "
        f"crossomics {co.__version__}; load average at write time {os.getloadavg()[0]:.1f} "
        "(timings on a shared machine are inflated when it exceeds the core count)."
    )


def write_report(stem: Path, title: str, settings: dict, sections: list[tuple[str, pd.DataFrame | str]]):
    """Markdown report with machine/versions/settings and tables (first table also as CSV)."""
    RESULTS.mkdir(exist_ok=True)
    lines = [
        f"# {title}",
        "",
        machine_line(),
        "",
        "Settings: `" + json.dumps(settings, default=str) + "`",
        "",
    ]
    first = True
    for heading, body in sections:
        lines += [f"## {heading}", ""]
        if isinstance(body, pd.DataFrame):
            if first:
                body.to_csv(stem.with_suffix(".csv"), index=False)
                first = False
            lines += [body.to_markdown(index=False, floatfmt=".3f"), ""]
        else:
            lines += [str(body), ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines), flush=True)


class EpochTimer(pl.Callback):
    """Wall-clock seconds of every training epoch (printed as they come with ``verbose=True``)."""

    def __init__(self, verbose: bool = False):
        self.seconds: list[float] = []
        self.verbose = verbose
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(time.perf_counter() - self._start)
        if self.verbose:
            print(f"epoch {trainer.current_epoch}: {self.seconds[-1]:.1f} s", flush=True)


# ---------------------------------------------------------------- run header, memory, figures
HEADER_PACKAGES = (
    "crossomics",
    "torch",
    "scvi-tools",
    "lightning",
    "anndata",
    "mudata",
    "scanpy",
    "numpy",
    "scikit-learn",
    "scib-metrics",
    "jax",
    "harmonypy",
    "scglue",
)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def package_versions(names=HEADER_PACKAGES) -> dict[str, str]:
    """Installed version of each distribution (``"not installed"`` when missing)."""
    versions = {}
    for name in names:
        try:
            versions[name] = package_version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_description() -> str:
    """CPU model, visible cores, memory and accelerator of this machine, in one line."""
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    memory = ""
    if Path("/proc/meminfo").exists():
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kb / 1024**2:.0f} GB RAM"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} CPUs visible{memory}, {gpu}; {platform.system()} {platform.release()}; "
        f"{torch.get_num_threads()} torch threads; load average {os.getloadavg()[0]:.1f} when written"
    )


def results_header(seed: int, settings: dict | None = None) -> list[str]:
    """Markdown lines every results file starts with: machine, package versions, seed, command."""
    versions = ", ".join(f"{name} {v}" for name, v in package_versions().items())
    lines = [
        f"- Machine: {machine_description()} (timings on a shared machine are inflated when the "
        "load average exceeds the core count).",
        f"- Python {platform.python_version()}; {versions}.",
        f"- Seed: {seed}.",
        "- Command: `python " + " ".join(["benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]]) + "`.",
    ]
    if settings:
        lines.append("- Settings: `" + json.dumps(settings, default=str) + "`.")
    return lines


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure (parent folders created) and close it; errors propagate."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def umap_coordinates(embedding: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """2-D UMAP of an embedding (scanpy neighbours + UMAP), float32 of shape ``(n_rows, 2)``."""
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(np.asarray(embedding, dtype=np.float32))
    sc.pp.neighbors(adata, use_rep="X", n_neighbors=n_neighbors, random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    return adata.obsm["X_umap"].astype(np.float32)


def umap_grid(coordinates: dict[str, np.ndarray], labels, modality, title: str):
    """Figure with one row per method: its UMAP coloured by cell type and by modality."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = np.asarray(labels).astype(str)
    modality = np.asarray(modality).astype(str)
    # tab10 for up to 10 categories, else up to 60 colours (tab20, tab20b, tab20c), repeating beyond
    many = np.vstack([plt.get_cmap(name).colors for name in ("tab20", "tab20b", "tab20c")])
    fig, axes = plt.subplots(len(coordinates), 2, figsize=(13, 4.6 * len(coordinates)), squeeze=False)
    order = np.random.default_rng(0).permutation(len(labels))
    for row, (method, xy) in enumerate(coordinates.items()):
        for ax, values, what in zip(axes[row], (labels, modality), ("cell type", "modality"), strict=True):
            categories = np.unique(values)
            palette = np.asarray(plt.get_cmap("tab10").colors) if len(categories) <= 10 else many
            codes = np.searchsorted(categories, values[order]) % len(palette)
            ax.scatter(xy[order, 0], xy[order, 1], c=palette[codes], s=2, linewidths=0, rasterized=True)
            ax.set_title(f"{method}: {what}")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0 or what == "modality":
                handles = [
                    plt.Line2D([], [], marker="o", ls="", color=palette[i % len(palette)], label=c)
                    for i, c in enumerate(categories)
                ]
                ax.legend(
                    handles=handles,
                    fontsize=6,
                    ncol=int(np.ceil(len(categories) / 16)),
                    loc="center left",
                    bbox_to_anchor=(1, 0.5),
                    frameon=False,
                )
    fig.suptitle(title)
    # tight_layout ignores the suptitle: keep about 0.4 inch above the top row for it
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    return fig
