"""Peer methods and the per-method worker machinery of the split / integration / peer studies.

Every method returns the joint embedding of the *held-out* cells twice, once per modality, as if
the two measurements came from different cells: ``z_first`` (row ``i`` = RNA of test cell ``i``)
and ``z_second`` (row ``i`` = ATAC or protein of the same cell), plus timing figures. The true
pairing of the held-out cells is used only for scoring.

A study runs each method in its own subprocess (``--worker METHOD``): the child's peak resident
memory is that method's alone, a failure (e.g. a peer that does not run on this stack) is recorded
instead of ending the study, and methods can be run at different times (``--methods``) and combined
later: every child writes ``<stem>_parts/<method>.json`` (scores, timings, settings) and
``<method>_umap.npz`` (2-D UMAP of its stacked embedding), and the parent rebuilds the combined
table and figure from all parts present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi
from _common import (
    EpochTimer,
    peak_rss_gb,
    results_header,
    save_figure,
    stratified_split,
    tfidf_lsi,
    umap_coordinates,
    umap_grid,
)

import crossomics as co

LABEL = "cell_type"
DATASETS = {
    "mouse_cortex": {"loader": "mouse_motor_cortex", "modalities": ("rna", "atac"), "genome": "mm10"},
    "bmmc_multiome": {"loader": "bmmc_multiome", "modalities": ("rna", "atac"), "genome": "hg38"},
    "bmmc_cite": {"loader": "bmmc_cite", "modalities": ("rna", "adt"), "genome": None},
}


@dataclass
class Split:
    """Paired data with a stratified training part (pairs and labels usable) and a held-out part."""

    mdata: md.MuData
    first: str
    second: str
    genome: str | None
    train: np.ndarray
    test: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.mdata.mod[self.first].obs[LABEL].astype(str).to_numpy()

    def part(self, modality: str, rows: np.ndarray, prefix: str = "") -> ad.AnnData:
        """Rows of one modality (raw counts in X); obs_names get ``prefix`` to hide the pairing."""
        adata = self.mdata.mod[modality][rows].copy()
        if prefix:
            adata.obs_names = [f"{prefix}{name}" for name in adata.obs_names]
        return adata

    def paired(self, rows: np.ndarray) -> md.MuData:
        with md.set_options(pull_on_update=False):
            return md.MuData({m: self.part(m, rows) for m in (self.first, self.second)})

    def unpaired(self, rows: np.ndarray) -> md.MuData:
        """Both modalities of ``rows`` with disjoint obs_names, so no model can see the pairing."""
        with md.set_options(pull_on_update=False):
            return md.MuData(
                {self.first: self.part(self.first, rows), self.second: self.part(self.second, rows, "other_")}
            )


def load_split(dataset: str, n_cells: int | None, train_fraction: float, seed: int) -> Split:
    """The dataset (optionally a random subset of cells) split stratified by cell type."""
    spec = DATASETS[dataset]
    mdata = getattr(co.datasets, spec["loader"])()
    first, second = spec["modalities"]
    if n_cells is not None and n_cells < mdata.n_obs:
        rows = np.sort(np.random.default_rng(seed).choice(mdata.n_obs, n_cells, replace=False))
        with md.set_options(pull_on_update=False):
            mdata = md.MuData({m: mdata.mod[m][rows].copy() for m in (first, second)})
    labels = mdata.mod[first].obs[LABEL].astype(str).to_numpy()
    train, test = stratified_split(labels, train_fraction, seed)
    return Split(mdata, first, second, spec["genome"], train, test)


def _timing(timer: EpochTimer | None, train_seconds: float, setup_seconds: float = 0.0, epochs=None) -> dict:
    seconds = np.asarray(timer.seconds) if timer is not None else np.array([])
    n_epochs = len(seconds) if timer is not None else epochs
    return {
        "setup_s": setup_seconds,
        "train_s": train_seconds,
        "epochs": n_epochs,
        "s_per_epoch": float(np.median(seconds))
        if seconds.size
        else (train_seconds / n_epochs if n_epochs else np.nan),
    }


# ------------------------------------------------------------------------------ SCCROSS
def _train_sccross(mdata, split: Split, settings: dict, seed: int):
    scvi.settings.seed = seed
    co.SCCROSS.setup_mudata(mdata, modalities=[split.first, split.second], gene_annotation=split.genome)
    start = time.perf_counter()
    model = co.SCCROSS(mdata, **settings.get("sccross_kwargs", {}))
    setup_seconds = time.perf_counter() - start
    timer = EpochTimer(verbose=True)
    start = time.perf_counter()
    model.train(
        max_epochs=settings["sccross_epochs"],
        pretrain_epochs=settings["sccross_pretrain_epochs"],
        batch_size=settings["batch_size"],
        callbacks=[timer],
        enable_progress_bar=False,
        enable_model_summary=False,
        **settings.get("sccross_train_kwargs", {}),
    )
    return model, _timing(timer, time.perf_counter() - start, setup_seconds)


def sccross_unpaired(split: Split, settings: dict, seed: int):
    """SCCROSS on all cells given as two unpaired tables (no pairs, no labels)."""
    rows = np.arange(split.mdata.n_obs)
    model, timing = _train_sccross(split.unpaired(rows), split, settings, seed)
    if model.n_pairs_ and any(model.n_pairs_.values()):
        raise RuntimeError(f"the pairing must stay hidden, SCCROSS found {model.n_pairs_}")
    z_first = model.get_latent_representation(modality=split.first)[split.test]
    z_second = model.get_latent_representation(modality=split.second)[split.test]
    return z_first, z_second, timing


def sccross_paired_query(split: Split, settings: dict, seed: int):
    """SCCROSS trained on the paired training cells; held-out cells embedded per modality as queries."""
    model, timing = _train_sccross(split.paired(split.train), split, settings, seed)
    z_first = model.get_latent_representation(modality=split.first, adata=split.part(split.first, split.test))
    z_second = model.get_latent_representation(
        modality=split.second, adata=split.part(split.second, split.test, "other_")
    )
    return z_first, z_second, timing


# ------------------------------------------------------------------------------ MINNET
def minnet_paired_query(split: Split, settings: dict, seed: int):
    """MINNET trained on the paired, labelled training cells; held-out cells embedded per modality."""
    scvi.settings.seed = seed
    mdata = split.paired(split.train)
    start = time.perf_counter()
    co.MINNET.setup_mudata(
        mdata,
        modalities=[split.first, split.second],
        labels_key=LABEL,
        batch_key="batch",
        gene_annotation=split.genome,
    )
    model = co.MINNET(mdata)
    setup_seconds = time.perf_counter() - start
    timer = EpochTimer()
    start = time.perf_counter()
    model.train(
        max_epochs=settings["minnet_epochs"],
        early_stopping=True,
        early_stopping_patience=5,
        callbacks=[timer],
        enable_progress_bar=False,
    )
    train_seconds = time.perf_counter() - start
    z_first = model.get_latent_representation(modality=split.first, adata=split.part(split.first, split.test))
    z_second = model.get_latent_representation(
        modality=split.second, adata=split.part(split.second, split.test, "other_")
    )
    return z_first, z_second, _timing(timer, train_seconds, setup_seconds)


# ------------------------------------------------------------------------------ MultiVI / totalVI
def _block_mudata(
    split: Split, blocks: list[tuple[str, np.ndarray, tuple[str, ...]]], dense: tuple[str, ...] = ()
) -> md.MuData:
    """MuData stacking row blocks; a block lists the modalities it measures, the others are zeros.

    ``obs['source']`` names the block (MultiVI / totalVI use it as the batch); obs_names are
    made unique per block so the blocks look like different cells. Modalities in ``dense`` are
    stored as dense arrays (totalVI's protein prior fails on sparse proteins with a missing batch).
    """
    names, sources, matrices = [], [], {split.first: [], split.second: []}
    for source, rows, measured in blocks:
        names += [f"{source}_{name}" for name in split.mdata.mod[split.first].obs_names[rows]]
        sources += [source] * len(rows)
        for m in matrices:
            n_vars = split.mdata.mod[m].n_vars
            block = split.mdata.mod[m].X[rows] if m in measured else sp.csr_matrix((len(rows), n_vars))
            matrices[m].append(sp.csr_matrix(block, dtype=np.float32))
    obs = pd.DataFrame({"source": pd.Categorical(sources)}, index=names)
    with md.set_options(pull_on_update=False):
        return md.MuData(
            {
                m: ad.AnnData(
                    sp.vstack(blocks_).toarray() if m in dense else sp.vstack(blocks_).tocsr(),
                    obs=obs.copy(),
                    var=pd.DataFrame(index=split.mdata.mod[m].var_names),
                )
                for m, blocks_ in matrices.items()
            }
        )


def _train_scvi_model(model, settings: dict, epochs: int):
    timer = EpochTimer(verbose=True)
    start = time.perf_counter()
    model.train(
        max_epochs=epochs,
        batch_size=settings["batch_size"],
        early_stopping=False,
        callbacks=[timer],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return _timing(timer, time.perf_counter() - start)


def multivi_mixed(split: Split, settings: dict, seed: int):
    """MultiVI on the paired training cells plus the held-out cells as RNA-only and ATAC-only cells.

    This is MultiVI's own design for mixed paired / single-modality data: every cell is in
    both modalities of the MuData, with zeros for the modality it lacks, and the block
    (paired / expression / accessibility) is the batch.
    """
    scvi.settings.seed = seed
    n_test = len(split.test)
    mdata = _block_mudata(
        split,
        [
            ("paired", split.train, (split.first, split.second)),
            ("expression", split.test, (split.first,)),
            ("accessibility", split.test, (split.second,)),
        ],
    )
    scvi.model.MULTIVI.setup_mudata(
        mdata,
        batch_key="source",
        modalities={"rna_layer": split.first, "atac_layer": split.second, "batch_key": split.first},
    )
    model = scvi.model.MULTIVI(mdata)
    timing = _train_scvi_model(model, settings, settings["multivi_epochs"])
    z = model.get_latent_representation()
    n_train = len(split.train)
    return z[n_train : n_train + n_test], z[n_train + n_test :], timing


def multivi_paired_query(split: Split, settings: dict, seed: int):
    """MultiVI trained on the paired training cells only; held-out cells embedded as single-modality queries.

    The query MuData holds the held-out cells twice, once with only RNA and once with only ATAC
    counts (the other modality zero), which is how MultiVI's encoder marks a missing modality.
    """
    scvi.settings.seed = seed
    train = _block_mudata(split, [("paired", split.train, (split.first, split.second))])
    scvi.model.MULTIVI.setup_mudata(train, modalities={"rna_layer": split.first, "atac_layer": split.second})
    model = scvi.model.MULTIVI(train)
    timing = _train_scvi_model(model, settings, settings["multivi_epochs"])
    query = _block_mudata(
        split, [("expression", split.test, (split.first,)), ("accessibility", split.test, (split.second,))]
    )
    # scvi-tools 1.4.2 transfers MultiVI's setup to a new MuData only if its obs has the row-index
    # column that setup_mudata added to the training MuData
    query.obs["_indices"] = np.arange(query.n_obs)
    z = model.get_latent_representation(adata=query)
    return z[: len(split.test)], z[len(split.test) :], timing


def totalvi_mixed(split: Split, settings: dict, seed: int):
    """totalVI on the paired training cells plus the held-out cells as RNA-only cells.

    totalVI handles cells without proteins (a batch whose protein counts are all zero) but
    has no way to encode a cell without RNA: the held-out protein rows are encoded from their
    protein counts with an all-zero RNA profile (outside what it was trained on).
    """
    scvi.settings.seed = seed
    mdata = _block_mudata(
        split,
        [("paired", split.train, (split.first, split.second)), ("expression", split.test, (split.first,))],
        dense=(split.second,),
    )
    modalities = {"rna_layer": split.first, "protein_layer": split.second, "batch_key": split.first}
    scvi.model.TOTALVI.setup_mudata(mdata, batch_key="source", modalities=modalities)
    model = scvi.model.TOTALVI(mdata)
    timing = _train_scvi_model(model, settings, settings["totalvi_epochs"])
    z_first = model.get_latent_representation()[len(split.train) :]
    query = _block_mudata(split, [("paired", split.test, (split.second,))], dense=(split.second,))
    z_second = model.get_latent_representation(adata=query)
    return z_first, z_second, timing


# ------------------------------------------------------------------------------ PCA + Harmony
def harmony_of_common_genes(views: list, covariate: np.ndarray, seed: int) -> np.ndarray:
    """Harmony-corrected PCA (at most 30 components) of stacked common-gene views.

    The views' counts are log-normalised and each gene standardised before the PCA; Harmony
    corrects over ``covariate`` (one value per stacked row).
    """
    import harmonypy
    from sklearn.decomposition import PCA

    from crossomics.pp._normalize import log_normalize

    normalised = log_normalize(sp.vstack([sp.csr_matrix(view.X) for view in views]).tocsr())
    normalised = normalised.toarray() if sp.issparse(normalised) else np.asarray(normalised)
    normalised = (normalised - normalised.mean(0)) / (normalised.std(0) + 1e-6)
    pcs = PCA(min(30, normalised.shape[1] - 1), random_state=seed).fit_transform(normalised)
    meta = pd.DataFrame({"covariate": np.asarray(covariate)})
    return np.asarray(harmonypy.run_harmony(pcs, meta, "covariate", random_state=seed, verbose=False).Z_corr)


def harmony_common_genes(split: Split, settings: dict, seed: int):
    """PCA of the log-normalised common-gene views of both modalities, Harmony over modality.

    ATAC enters as gene activity (:func:`crossomics.pp.common_gene_views`), protein as the
    genes encoding the antibody targets.
    """
    mdata = split.unpaired(np.arange(split.mdata.n_obs))
    start = time.perf_counter()
    views = co.pp.common_gene_views(mdata, [split.first, split.second], gene_annotation=split.genome)
    n = mdata.mod[split.first].n_obs
    corrected = harmony_of_common_genes(
        [views[split.first], views[split.second]], np.repeat(["first", "second"], [n, n]), seed
    )
    seconds = time.perf_counter() - start
    timing = {"setup_s": 0.0, "train_s": seconds, "epochs": np.nan, "s_per_epoch": np.nan}
    timing["n_common_genes"] = int(views[split.first].n_vars)
    return corrected[:n][split.test], corrected[n:][split.test], timing


# ------------------------------------------------------------------------------ GLUE
def _glue_graph(split: Split, first: ad.AnnData, second: ad.AnnData):
    """Guidance graph: gene <-> peak (peak in gene body + 2 kb upstream) or gene <-> antibody target.

    Built with crossomics' own peak/antibody mapping; edges in both directions plus a self-loop
    on every feature, weight 1 and sign +1 (GLUE's convention for a positive regulatory link).
    """
    import networkx as nx

    if split.genome is not None:
        matrix, genes = co.pp.peak_to_gene_matrix(split.mdata.mod[split.second], split.genome)
        peaks, columns = matrix.nonzero()
        features = np.asarray(second.var_names)
        edges = [(str(genes[c]), str(features[p])) for p, c in zip(peaks, columns, strict=True)]
    else:
        from crossomics.pp._protein_genes import antibody_genes

        targets = antibody_genes(split.mdata.mod[split.second].var_names, first.var_names)
        edges = [(str(g), str(a)) for g, a in zip(targets, second.var_names, strict=True) if g is not None]
    genes_measured = set(first.var_names)
    edges = [(g, f) for g, f in edges if g in genes_measured]
    graph = nx.MultiDiGraph()
    for g, f in edges:
        graph.add_edge(g, f, weight=1.0, sign=1)
        graph.add_edge(f, g, weight=1.0, sign=1)
    for name in list(first.var_names) + list(second.var_names):
        graph.add_edge(name, name, weight=1.0, sign=1)
    return graph, len(edges)


def glue_unpaired(split: Split, settings: dict, seed: int):
    """GLUE (scglue) on all cells given as unpaired tables; PCA / LSI encoder inputs, NB decoders."""
    import scglue

    scglue.config.GRAPH_SHUFFLE_NUM_WORKERS = 0
    scglue.config.DATALOADER_NUM_WORKERS = 0
    mdata = split.unpaired(np.arange(split.mdata.n_obs))
    first, second = mdata.mod[split.first].copy(), mdata.mod[split.second].copy()
    if split.genome is None:  # feature names must be unique across modalities
        second.var_names = [f"adt:{name}" for name in second.var_names]
    for adata in (first, second):
        adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
        adata.layers["counts"] = adata.X.copy()
    start = time.perf_counter()
    from _common import pca_project

    first.obsm["X_pca"] = pca_project(first.X, first.X[:1], n_components=50, seed=seed)[0]
    if split.genome is not None:
        second.obsm["X_lsi"] = tfidf_lsi(second.X, second.X[:1], n_components=51, seed=seed)[0]
        second_rep = "X_lsi"
    else:
        second.obsm["X_pca"] = pca_project(second.X, second.X[:1], n_components=30, seed=seed)[0]
        second_rep = "X_pca"
    graph, n_links = _glue_graph(split, first, second)
    # decoders reconstruct the RNA genes and the most often accessible gene-linked peaks (at most
    # settings["glue_max_peaks"]); the encoders see all features through the PCA / LSI inputs
    first.var["highly_variable"] = True
    second.var["highly_variable"] = True
    max_peaks = settings.get("glue_max_peaks")
    if split.genome is not None and max_peaks and second.n_vars > max_peaks:
        linked = np.asarray([graph.degree(name) > 2 for name in second.var_names])
        detection = np.asarray((second.X > 0).sum(0)).ravel() * linked
        second.var["highly_variable"] = np.isin(np.arange(second.n_vars), np.argsort(-detection)[:max_peaks])
        graph = graph.subgraph(
            list(first.var_names) + list(second.var_names[second.var["highly_variable"]])
        ).copy()
    for adata, rep in ((first, "X_pca"), (second, second_rep)):
        scglue.models.configure_dataset(
            adata, "NB", use_highly_variable=True, use_layer="counts", use_rep=rep
        )
    setup_seconds = time.perf_counter() - start
    epochs = settings["glue_epochs"]
    start = time.perf_counter()
    model = scglue.models.fit_SCGLUE(
        {split.first: first, split.second: second},
        graph,
        init_kws={"random_seed": seed},
        fit_kws={
            "max_epochs": epochs,
            "align_burnin": max(1, epochs // 4),
            "patience": None,
            "reduce_lr_patience": None,
        },
    )
    train_seconds = time.perf_counter() - start
    z_first = model.encode_data(split.first, first)[split.test]
    z_second = model.encode_data(split.second, second)[split.test]
    # pre-training and fine-tuning run max_epochs each; the balancing step between them is included
    timing = _timing(None, train_seconds, setup_seconds, epochs=2 * epochs)
    timing["graph_links"] = n_links
    timing["glue_decoded_features"] = int(
        first.var["highly_variable"].sum() + second.var["highly_variable"].sum()
    )
    return z_first, z_second, timing


# ------------------------------------------------------------------------------ scoring and parts
def score(z_first: np.ndarray, z_second: np.ndarray, labels: np.ndarray, method: str, scib: bool) -> dict:
    """Modality mixing, FOSCTTM, label transfer (second <- first) and, with ``scib``, the
    scib-metrics Benchmarker row."""
    out = {
        "mixing": co.metrics.modality_mixing([z_first, z_second]),
        "foscttm": co.metrics.foscttm(z_first, z_second),
        "label_transfer": co.metrics.label_transfer_accuracy(z_first, labels, z_second, labels, k=15),
    }
    if scib:
        table = co.metrics.scib_benchmark(
            {method: np.vstack([z_first, z_second])},
            labels=np.concatenate([labels, labels]),
            modality=np.repeat(["first", "second"], [len(labels), len(labels)]),
            progress_bar=False,
        )
        out.update({f"scib: {k}": float(v) for k, v in table.loc[method].items()})
    return out


def parts_dir(stem: Path) -> Path:
    return stem.with_name(stem.name + "_parts")


def run_worker(
    method: str, function, split: Split, settings: dict, seed: int, stem: Path, scib: bool
) -> dict:
    """Run ``function`` (one of this module's methods), score it and write its part files."""
    wall = time.perf_counter()
    z_first, z_second, timing = function(split, settings, seed)
    peak = peak_rss_gb()
    labels = split.labels[split.test]
    row = {
        "method": method,
        **score(np.asarray(z_first), np.asarray(z_second), labels, method, scib),
        **timing,
        "peak_rss_gb": peak,
        "wall_s": time.perf_counter() - wall,
    }
    xy = umap_coordinates(np.vstack([z_first, z_second]), seed=seed)
    folder = parts_dir(stem)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / f"{method}_umap.npz", xy=xy, labels=np.concatenate([labels, labels]).astype(str)
    )
    part = {
        "row": row,
        "settings": settings,
        "seed": seed,
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "load_average": os.getloadavg()[0],
        "n_held_out_cells": len(labels),
    }
    (folder / f"{method}.json").write_text(json.dumps(part, default=float, indent=1))
    print(json.dumps(row, default=float), flush=True)
    return row


def run_methods(script: Path, methods: list[str], argv: list[str], stem: Path) -> list[str]:
    """Run each method in its own subprocess (``script ... --worker METHOD``); returns the failed ones.

    A failure is recorded in the method's part (its last error line), so the assembled report
    lists it; the caller exits non-zero after assembling.
    """
    failed = []
    folder = parts_dir(stem)
    folder.mkdir(parents=True, exist_ok=True)
    for method in methods:
        log = folder / f"{method}.log"
        command = [sys.executable, str(script), *argv, "--worker", method]
        print(f"[{stem.name}] {method}: {' '.join(command[1:])} (stderr -> {log.name})", flush=True)
        with log.open("w") as handle:
            code = subprocess.run(command, stderr=handle, check=False).returncode
        if code != 0:
            lines = [line for line in log.read_text().splitlines() if line.strip()]
            reason = next((line for line in reversed(lines) if not line.startswith(" ")), "no output")
            print(f"[{stem.name}] {method} failed (exit {code}): {reason}", flush=True)
            failed.append(method)
            (folder / f"{method}.json").write_text(
                json.dumps({"row": {"method": method}, "error": f"exit {code}: {reason}"}, indent=1)
            )
    return failed


def assemble(
    stem: Path, title: str, intro: list[str], order: list[str], modality_names: tuple[str, str], seed: int
) -> pd.DataFrame:
    """Combine all parts into ``stem.csv``, ``stem.md`` and ``stem_umap.png``; returns the table."""
    folder = parts_dir(stem)
    parts = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    names = [m for m in order if m in parts] + sorted(set(parts) - set(order))
    ok = [m for m in names if "error" not in parts[m]]
    failed = [m for m in names if "error" in parts[m]]
    table = pd.DataFrame([parts[m]["row"] for m in ok])
    lines = [f"# {title}", "", *results_header(seed), "", *intro, ""]
    if ok:
        coordinates, labels = {}, None
        for m in ok:
            with np.load(folder / f"{m}_umap.npz", allow_pickle=False) as data:
                coordinates[m] = data["xy"]
                if labels is not None and not np.array_equal(labels, data["labels"]):
                    raise ValueError(f"part {m} was computed on other cells than {ok[0]}; rerun it")
                labels = data["labels"]
        n = len(labels) // 2
        # the same score in each part's 2-D UMAP, so parts written before the latent-space
        # column existed are still compared
        table.insert(
            2, "mixing_umap", [co.metrics.modality_mixing([xy[:n], xy[n:]]) for xy in coordinates.values()]
        )
        table.to_csv(stem.with_suffix(".csv"), index=False)
        main_cols = [c for c in table.columns if not c.startswith("scib: ")]
        lines += [table[main_cols].astype(object).to_markdown(index=False, floatfmt=".3f"), ""]
        scib_cols = [c for c in table.columns if c.startswith("scib: ")]
        if scib_cols:
            scib = table[["method", *scib_cols]].rename(columns=lambda c: c.removeprefix("scib: "))
            lines += [
                "scib-metrics Benchmarker (`crossomics.metrics.scib_benchmark`, fast mode, raw values, "
                "higher is better; the modalities play the role of batches):",
                "",
                scib.astype(object).to_markdown(index=False, floatfmt=".3f"),
                "",
            ]
        lines += ["Runs (one subprocess per method; load average when it finished):", ""]
        lines += [
            f"- {m}: `{parts[m]['command']}`, seed {parts[m]['seed']}, load {parts[m]['load_average']:.1f}; "
            f"settings `{json.dumps(parts[m]['settings'], default=str)}`"
            for m in ok
        ]
        lines.append("")
        fig = umap_grid(coordinates, labels, np.repeat(list(modality_names), [n, n]), title)
        save_figure(fig, stem.with_name(stem.name + "_umap.png"))
        lines += [f"UMAPs of the stacked held-out embeddings: `{stem.name}_umap.png`.", ""]
    if failed:
        lines += ["Methods that did not run:", ""]
        lines += [f"- {m}: {parts[m]['error']}" for m in failed]
        lines.append("")
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines), flush=True)
    return table
