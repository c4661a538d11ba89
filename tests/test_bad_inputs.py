"""A catalogue of bad and unusual inputs to every public entry point, as a user brings them.

Each case is one call with one expectation, written in its ``why``:

- ``raises``: an error of the given type whose message names the bad value or argument
  (``value``, a regular expression) **and** says how to fix it (``fix``, another one); or
- ``ok``: a correct result, checked by the case's ``ok`` function (shapes, finite values,
  agreement with the registered data...).

Whatever happens, the user's objects (the case's inputs and the data the shared models were
trained on) must come out unchanged, byte for byte: X, layers, obs, var, obsm, varm, obsp
and the uns keys. No ``_scvi_*`` column may appear on an object that had none before, so a
failed setup leaves nothing behind. The one documented exception is a successful ``setup_mudata``, which
adds scvi-tools' ``_scvi_*`` registration columns and ``uns`` keys (and nothing else).

One small SCCROSS and one small MINNET are trained once per module on the BMMC multiome
starter data (500 cells) and shared by the method cases; cases that set data up get fresh
copies.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch
from anndata import AnnData

import crossomics as co

FAST = {"enable_progress_bar": False, "enable_model_summary": False}
SMALL = {"n_hidden": 16, "n_latent": 4, "n_components": 8, "n_graph_reference": 200, "gene_sets": None}
N_CELLS = 500  # cells of co.datasets.bmmc_multiome()


# ---------------------------------------------------------------------------- the case type
@dataclass(frozen=True)
class Case:
    """One bad or unusual input and what must happen."""

    id: str
    why: str
    call: Callable[[Any, dict], Any]
    inputs: Callable[[Any], dict] | None = None
    raises: type[BaseException] | None = None
    value: str = ""  # regex: the message names the bad value or argument
    fix: str = ""  # regex: the message says how to fix it
    ok: Callable[[Any, Any, dict], None] | None = None
    registers: bool = False  # a successful setup_mudata adds scvi's _scvi_* fields


def bad(id, why, call, raises, value, fix, inputs=None) -> Case:
    return Case(id=id, why=why, call=call, inputs=inputs, raises=raises, value=value, fix=fix)


def good(id, why, call, ok, inputs=None, registers=False) -> Case:
    return Case(id=id, why=why, call=call, inputs=inputs, ok=ok, registers=registers)


# ---------------------------------------------------------------------------- snapshots
def _matrix_state(X):
    """The exact bytes of a matrix (dense or sparse) with its type, shape and dtype."""
    if X is None:
        return None
    if isinstance(X, pd.DataFrame):
        return X.copy(deep=True)
    if sp.issparse(X):
        X = X.tocsr() if X.format not in ("csr", "csc") else X
        return (
            "sparse",
            X.format,
            X.shape,
            X.dtype.str,
            X.data.tobytes(),
            X.indices.tobytes(),
            X.indptr.tobytes(),
        )
    X = np.asarray(X)
    if X.dtype == object:
        return ("object", X.shape, X.tolist())
    return ("dense", X.shape, X.dtype.str, X.tobytes())


def _strip(frame: pd.DataFrame, ignore_scvi: bool) -> pd.DataFrame:
    if ignore_scvi:
        frame = frame[[c for c in frame.columns if not str(c).startswith("_scvi")]]
    return frame.copy(deep=True)


def _keys(mapping, ignore_scvi: bool) -> list:
    return sorted(str(k) for k in mapping if not (ignore_scvi and str(k).startswith("_scvi")))


def _adata_state(a: AnnData, ignore_scvi: bool) -> dict:
    return {
        "X": _matrix_state(a.X),
        "layers": {k: _matrix_state(v) for k, v in a.layers.items()},
        "obs": _strip(a.obs, ignore_scvi),
        "var": _strip(a.var, ignore_scvi),
        "obsm": {k: _matrix_state(v) for k, v in a.obsm.items()},
        "varm": {k: _matrix_state(v) for k, v in a.varm.items()},
        "obsp": {k: _matrix_state(v) for k, v in a.obsp.items()},
        "uns": _keys(a.uns, ignore_scvi),
    }


def _state(obj, ignore_scvi: bool = False):
    """A deep, comparable snapshot of the user objects among ``obj`` (None for anything else)."""
    if isinstance(obj, md.MuData):
        return {
            "mod": {m: _adata_state(a, ignore_scvi) for m, a in obj.mod.items()},
            "obs": _strip(obj.obs, ignore_scvi),
            "var": _strip(obj.var, ignore_scvi),
            "obsm": _keys(obj.obsm, False),
            "uns": _keys(obj.uns, ignore_scvi),
        }
    if isinstance(obj, AnnData):
        return _adata_state(obj, ignore_scvi)
    if isinstance(obj, pd.DataFrame | pd.Series):
        return obj.copy(deep=True)
    if isinstance(obj, np.ndarray) or sp.issparse(obj):
        return _matrix_state(obj)
    if isinstance(obj, dict):
        return {k: _state(v, ignore_scvi) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_state(v, ignore_scvi) for v in obj]
    return None


def _assert_same(before, after, where: str) -> None:
    if isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(after, before, check_exact=True, obj=where)
    elif isinstance(before, pd.Series):
        pd.testing.assert_series_equal(after, before, check_exact=True, obj=where)
    elif isinstance(before, dict):
        assert list(after) == list(before), f"{where}: keys changed from {list(before)} to {list(after)}"
        for key in before:
            _assert_same(before[key], after[key], f"{where}[{key!r}]")
    elif isinstance(before, list) and before and isinstance(before[0], dict | pd.DataFrame | tuple | list):
        assert len(after) == len(before), f"{where}: length changed"
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            _assert_same(b, a, f"{where}[{i}]")
    else:
        assert after == before, f"{where} changed"


def _scvi_fields(obj) -> list[str]:
    """Every ``_scvi*`` obs column and uns key of the AnnData / MuData among ``obj``."""
    found = []
    if isinstance(obj, md.MuData):
        found += [f"mdata.obs[{c!r}]" for c in obj.obs.columns if str(c).startswith("_scvi")]
        found += [f"mdata.uns[{k!r}]" for k in obj.uns if str(k).startswith("_scvi")]
        for m, a in obj.mod.items():
            found += [f"mod[{m!r}].{f}" for f in _scvi_fields(a)]
    elif isinstance(obj, AnnData):
        found += [f"obs[{c!r}]" for c in obj.obs.columns if str(c).startswith("_scvi")]
        found += [f"uns[{k!r}]" for k in obj.uns if str(k).startswith("_scvi")]
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found += [f"{k}: {f}" for f in _scvi_fields(v)]
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            found += [f"[{i}]: {f}" for f in _scvi_fields(v)]
    return found


# ---------------------------------------------------------------------------- data
def multiome() -> md.MuData:
    """A fresh BMMC multiome MuData (500 paired cells, RNA + ATAC, raw counts)."""
    return co.datasets.bmmc_multiome()


def _mudata(mods: dict) -> md.MuData:
    with md.set_options(pull_on_update=False):
        return md.MuData(mods)


def with_rna(change: Callable[[np.ndarray], np.ndarray], sparse: bool = True) -> md.MuData:
    """Fresh multiome data whose RNA matrix is replaced by ``change(dense float32 counts)``."""
    mdata = multiome()
    X = change(mdata.mod["rna"].X.toarray().astype(np.float32))
    mdata.mod["rna"].X = sp.csr_matrix(X) if sparse else X
    return mdata


def blank_obs(obs: pd.DataFrame, column: str, rows) -> None:
    """Set ``obs[column]`` to NaN at ``rows`` (cells without a label)."""
    obs[column] = obs[column].astype(object).where(~np.isin(np.arange(len(obs)), rows))


def blank(column: str, rows, modality: str = "rna") -> Callable[[md.MuData], None]:
    return lambda m: blank_obs(m.mod[modality].obs, column, rows)


def registered(**setup) -> md.MuData:
    mdata = multiome()
    co.SCCROSS.setup_mudata(mdata, **{"modalities": ["rna", "atac"], "gene_annotation": "hg38", **setup})
    return mdata


def setup(d: dict, **kwargs):
    arguments = {"modalities": ["rna", "atac"], "gene_annotation": "hg38", **kwargs}
    return co.SCCROSS.setup_mudata(d["mdata"], **arguments)


def fresh(**setup_kwargs) -> Callable[[Any], dict]:
    """Inputs: a fresh MuData registered for SCCROSS."""
    return lambda e: {"mdata": registered(**setup_kwargs)}


def raw(change: Callable[[md.MuData], Any] | None = None) -> Callable[[Any], dict]:
    """Inputs: fresh, unregistered multiome data, optionally changed by ``change``."""

    def make(e) -> dict:
        mdata = multiome()
        if change is not None:
            change(mdata)
        return {"mdata": mdata}

    return make


def small_model(d: dict, **kwargs) -> co.SCCROSS:
    return co.SCCROSS(d["mdata"], **{**SMALL, **kwargs})


def query_rna(e, change: Callable[[AnnData], AnnData] | None = None) -> dict:
    rna = multiome().mod["rna"]
    return {"rna": change(rna) if change is not None else rna}


def _rna(e) -> dict:
    """Inputs: the RNA count matrix (CSR)."""
    return {"X": multiome().mod["rna"].X}


def _atac(e) -> dict:
    """Inputs: the ATAC AnnData."""
    return {"atac": multiome().mod["atac"]}


@dataclass
class Env:
    sccross: co.SCCROSS
    sccross_mdata: md.MuData
    minnet: co.MINNET
    minnet_mdata: md.MuData
    saved: Path
    tmp: Path
    latent_rna: np.ndarray


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    torch.set_num_threads(1)
    scvi.settings.seed = 0
    mdata = multiome()
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38", batch_keys="batch")
    model = co.SCCROSS(mdata, **{**SMALL, "n_hidden": 32, "n_latent": 8})
    model.train(max_epochs=3, pretrain_epochs=1, batch_size=128, **FAST)
    saved = tmp_path_factory.mktemp("models") / "sccross"
    model.save(saved)
    minnet_mdata = multiome()
    co.MINNET.setup_mudata(
        minnet_mdata,
        modalities=["rna", "atac"],
        labels_key="cell_type",
        batch_key="batch",
        gene_annotation="hg38",
    )
    minnet = co.MINNET(minnet_mdata, n_hidden=32, n_latent=8, n_pcs=10)
    minnet.train(max_epochs=2, batch_size=128, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        latent_rna = model.get_latent_representation("rna")
    return Env(model, mdata, minnet, minnet_mdata, saved, tmp_path_factory.mktemp("cases"), latent_rna)


# ---------------------------------------------------------------------------- checks of results
def shape(expected):
    def check(result, e, d):
        assert result.shape == expected, f"shape {result.shape}, expected {expected}"
        values = result.X if isinstance(result, AnnData) else result
        values = values.toarray() if sp.issparse(values) else np.asarray(values)
        assert np.isfinite(values).all()

    return check


def is_model(result, e, d):
    assert isinstance(result, co.SCCROSS) and result.module is not None


def trained(result, e, d):
    assert d["model"].is_trained_
    assert np.isfinite(d["model"].history["train_loss"].to_numpy(dtype=float)).all()


def warns_and_sets_up(d: dict, message: str):
    with pytest.warns(UserWarning, match=message):
        return setup(d)


def registered_for_sccross(result, e, d):
    manager = co.SCCROSS._get_most_recent_anndata_manager(d["mdata"])
    assert manager is not None and manager.registry["setup_args"]["modalities"] == ["rna", "atac"]


def same_latents_as_registered(result, e, d):
    np.testing.assert_allclose(result, e.latent_rna, rtol=1e-4, atol=1e-5)


CELL_TYPE, OTHER_TYPE = "CD8+ T", "CD14+ Mono"
GENES = ["RPL22", "KDM1A", "PTP4A2"]


# ---------------------------------------------------------------------------- the catalogue
SETUP = [
    bad(
        "setup-modalities-a-string",
        "modalities='rna' would be read letter by letter; the error asks for a list of names",
        lambda e, d: setup(d, modalities="rna"),
        ValueError,
        r"modalities='rna'",
        r"list of.*e\.g\. \['rna', 'atac'\]",
        raw(),
    ),
    bad(
        "setup-one-modality",
        "SCCROSS integrates at least two modalities",
        lambda e, d: setup(d, modalities=["rna"]),
        ValueError,
        r"modalities=\['rna'\]",
        r"at least 2 modalities",
        raw(),
    ),
    bad(
        "setup-modality-twice",
        "a modality listed twice would be integrated with itself",
        lambda e, d: setup(d, modalities=["rna", "rna"]),
        ValueError,
        r"'rna'.*twice",
        r"list each modality once",
        raw(),
    ),
    bad(
        "setup-unknown-modality",
        "a modality name missing from mdata.mod is named with the available ones",
        lambda e, d: setup(d, modalities=["rna", "protein"]),
        ValueError,
        r"\['protein'\] are not in the MuData",
        r"it has \['rna', 'atac'\]",
        raw(),
    ),
    bad(
        "setup-anndata-instead-of-mudata",
        "one AnnData is not a MuData; the error says how to build one",
        lambda e, d: co.SCCROSS.setup_mudata(d["rna"], modalities=["rna", "atac"], gene_annotation="hg38"),
        TypeError,
        r"mdata is an AnnData",
        r"MuData\(\{'rna': rna, 'atac': atac\}\)",
        lambda e: {"rna": multiome().mod["rna"]},
    ),
    bad(
        "setup-unknown-batch-key",
        "a batch column that does not exist is named with the available columns",
        lambda e, d: setup(d, batch_keys="donor"),
        ValueError,
        r"'donor' is not a column of mdata.mod\['rna'\].obs",
        r"available: \['cell_type', 'batch'\]",
        raw(),
    ),
    bad(
        "setup-mixed-type-batch",
        "batch labels mixing numbers and text cannot be sorted into categories",
        lambda e, d: setup(d, batch_keys="batch"),
        ValueError,
        r".obs\['batch'\] of mdata.mod\['rna'\] mixes value types \(number, text\)",
        r"\.astype\(str\)",
        raw(
            lambda m: [
                a.obs.__setitem__("batch", [1 if i % 2 else "a" for i in range(N_CELLS)])
                for a in m.mod.values()
            ]
        ),
    ),
    bad(
        "setup-nan-batch",
        "a cell without a batch label would get its own batch; the error asks to fill or drop it",
        lambda e, d: setup(d, batch_keys="batch"),
        ValueError,
        r"1 cells of mdata.mod\['rna'\] have no batch in .obs\['batch'\]",
        r"fill them with a batch name",
        raw(blank("batch", [3])),
    ),
    bad(
        "setup-missing-layer",
        "a layer that does not exist is named with the available layers",
        lambda e, d: setup(d, layers="counts"),
        ValueError,
        r"no layer 'counts'",
        r"available layers",
        raw(),
    ),
    bad(
        "setup-unknown-likelihood",
        "an unknown likelihood is named with the choices",
        lambda e, d: setup(d, likelihoods="poisson"),
        ValueError,
        r"likelihoods\['rna'\]='poisson'",
        r"choose one of",
        raw(),
    ),
    bad(
        "setup-likelihood-for-unknown-modality",
        "a per-modality mapping with a key that is not a modality",
        lambda e, d: setup(d, likelihoods={"adt": "nb"}),
        ValueError,
        r"likelihoods names modalities \['adt'\]",
        r"not in modalities=\['rna', 'atac'\]",
        raw(),
    ),
    bad(
        "setup-unknown-kind",
        "an unknown modality kind is named with the choices",
        lambda e, d: setup(d, kinds={"rna": "dna"}),
        ValueError,
        r"kinds\['rna'\]='dna'",
        r"choose one of",
        raw(),
    ),
    bad(
        "setup-unknown-genome",
        "hg19 is not bundled; the error names the bundled genomes and the table alternative",
        lambda e, d: setup(d, gene_annotation="hg19"),
        ValueError,
        r"unknown genome 'hg19'",
        r"gene-body table",
        raw(),
    ),
    bad(
        "setup-wrong-genome",
        "human peaks with the mouse annotation: the error names the genome that fits",
        lambda e, d: setup(d, gene_annotation="mm10"),
        ValueError,
        r"of mm10",
        r"pass gene_annotation='hg38'",
        raw(),
    ),
    bad(
        "setup-atac-without-genome",
        "ATAC needs an annotation when var does not name the genome",
        lambda e, d: setup(d, gene_annotation=None),
        ValueError,
        r"modality 'atac' is",
        r"pass gene_annotation='mm10'/'hg38'",
        raw(lambda m: m.mod["rna"].var.drop(columns="genome", inplace=True)),
    ),
    bad(
        "setup-normalised-data",
        "log-normalised RNA under a count likelihood: the error offers the normal likelihood",
        lambda e, d: setup(d),
        ValueError,
        r"modality 'rna' .X has non-integer values",
        r"likelihoods=\{'rna': 'normal'\}",
        lambda e: {"mdata": with_rna(lambda X: np.log1p(X))},
    ),
    bad(
        "setup-scaled-data",
        "scaled (negative) RNA under a count likelihood",
        lambda e, d: setup(d),
        ValueError,
        r"modality 'rna' .X has negative values",
        r"raw counts are required",
        lambda e: {"mdata": with_rna(lambda X: X - X.mean(0), sparse=False)},
    ),
    bad(
        "setup-nan",
        "a NaN count",
        lambda e, d: setup(d),
        ValueError,
        r"modality 'rna' .X has 1 NaN/inf",
        r"remove or impute",
        lambda e: {"mdata": with_rna(lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X))},
    ),
    bad(
        "setup-inf",
        "an infinite count",
        lambda e, d: setup(d),
        ValueError,
        r"modality 'rna' .X has 1 NaN/inf",
        r"remove or impute",
        lambda e: {"mdata": with_rna(lambda X: np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X))},
    ),
    good(
        "setup-empty-cell",
        "a cell with no RNA counts was not measured in RNA: it is left out of RNA, with a warning",
        lambda e, d: warns_and_sets_up(
            d, r"1 of 500 cells have zero counts \(e.g. \['.+'\]\).*sc.pp.filter_cells"
        ),
        registered_for_sccross,
        lambda e: {"mdata": with_rna(lambda X: np.where(np.arange(X.shape[0])[:, None] == 2, 0, X))},
        registers=True,
    ),
    bad(
        "setup-all-cells-empty",
        "a modality without a single count",
        lambda e, d: setup(d),
        ValueError,
        r"modality 'rna' .X has zero counts in all 500 cells",
        r"leave modality 'rna' out of modalities=",
        lambda e: {"mdata": with_rna(np.zeros_like)},
    ),
    bad(
        "setup-duplicated-cell-names",
        "cells are paired by name, so names must be unique",
        lambda e, d: setup(d),
        ValueError,
        r"modality 'rna' has duplicated cell names",
        r"obs_names_make_unique",
        raw(
            lambda m: setattr(
                m.mod["rna"], "obs_names", list(m.mod["rna"].obs_names[:-1]) + [m.mod["rna"].obs_names[0]]
            )
        ),
    ),
    bad(
        "setup-duplicated-feature-names",
        "duplicated gene names cannot be matched by name later (query data, generated var)",
        lambda e, d: setup(d),
        ValueError,
        r"modality 'rna' has duplicated feature names \(e\.g\. \['MORN1'\]\)",
        r"var_names_make_unique",
        raw(
            lambda m: setattr(
                m.mod["rna"], "var_names", ["MORN1"] + list(m.mod["rna"].var_names[1:-1]) + ["MORN1"]
            )
        ),
    ),
    bad(
        "setup-paired-not-bool",
        "paired takes True, False or an explicit pairing table",
        lambda e, d: setup(d, paired="yes"),
        ValueError,
        r"paired='yes'",
        r"pass True.*explicit pairing",
        raw(),
    ),
    bad(
        "setup-pairing-unknown-cells",
        "an explicit pairing that names cells the modality does not have",
        lambda e, d: setup(d, paired=pd.DataFrame({"rna": ["nobody"], "atac": ["nobody"]})),
        ValueError,
        r"names 1 cells that are not in mdata.mod\['rna'\] \(e.g. \['nobody'\]\)",
        r"use that modality's obs_names",
        raw(),
    ),
    bad(
        "setup-reserved-modality-name",
        "a ':' in a modality name clashes with the pair names",
        lambda e, d: co.SCCROSS.setup_mudata(
            d["mdata"], modalities=["rna:1", "atac"], gene_annotation="hg38"
        ),
        ValueError,
        r"'rna:1' is reserved or contains ':'",
        r"rename it",
        lambda e: {"mdata": _mudata({"rna:1": multiome().mod["rna"], "atac": multiome().mod["atac"]})},
    ),
    bad(
        "setup-empty-modality",
        "a modality with no cells",
        lambda e, d: setup(d),
        ValueError,
        r"modality 'rna' has 0 cells",
        r"leave an unmeasured modality out",
        lambda e: {
            "mdata": _mudata({"rna": multiome().mod["rna"][:0].copy(), "atac": multiome().mod["atac"]})
        },
    ),
    bad(
        "setup-unknown-keyword",
        "a misspelt keyword (batch_key for batch_keys) is named with the right spelling",
        lambda e, d: setup(d, batch_key="batch"),
        TypeError,
        r"batch_key",
        r"batch_keys",
        raw(),
    ),
    bad(
        "setup-mudata-view",
        "a subset view cannot be registered (scvi writes to it); the error says to copy it",
        lambda e, d: setup(d),
        ValueError,
        r"mdata is a view of another MuData",
        r"mdata = mdata\[cells\].copy\(\)",
        lambda e: {"mdata": multiome()[:200]},
    ),
    bad(
        "setup-anndata-method",
        "SCCROSS has no single-AnnData setup",
        lambda e, d: co.SCCROSS.setup_anndata(d["rna"]),
        NotImplementedError,
        r"several modalities",
        r"build a MuData and call setup_mudata",
        lambda e: {"rna": multiome().mod["rna"]},
    ),
    good(
        "setup-twice",
        "setting the same data up again with other arguments replaces the registration",
        lambda e, d: setup(d, batch_keys="batch") or small_model(d),
        lambda r, e, d: (
            r.batch_categories_["rna"] == ["s1d1", "s1d2"] or pytest.fail(str(r.batch_categories_))
        ),
        fresh(),
        registers=True,
    ),
    good(
        "setup-bernoulli-boolean-atac",
        "binarised ATAC stored as booleans works with the Bernoulli likelihood",
        lambda e, d: setup(d, likelihoods={"atac": "bernoulli"}),
        registered_for_sccross,
        raw(lambda m: setattr(m.mod["atac"], "X", m.mod["atac"].X > 0)),
        registers=True,
    ),
    good(
        "setup-dense-float-counts",
        "dense float32 counts are counts: setup succeeds",
        lambda e, d: setup(d),
        registered_for_sccross,
        lambda e: {"mdata": with_rna(lambda X: X, sparse=False)},
        registers=True,
    ),
    good(
        "setup-normal-likelihood-scaled",
        "scaled data with likelihoods={'rna': 'normal'} are accepted",
        lambda e, d: setup(d, likelihoods={"rna": "normal"}),
        registered_for_sccross,
        lambda e: {"mdata": with_rna(lambda X: X - X.mean(0), sparse=False)},
        registers=True,
    ),
    good(
        "setup-integer-batch-labels",
        "a batch column of integers works like one of strings",
        lambda e, d: setup(d, batch_keys="batch"),
        registered_for_sccross,
        raw(lambda m: [a.obs.__setitem__("batch", np.arange(N_CELLS) % 2) for a in m.mod.values()]),
        registers=True,
    ),
    good(
        "setup-genome-from-var",
        "gene_annotation=None reads GRCh38 from var['genome']",
        lambda e, d: setup(d, gene_annotation=None),
        registered_for_sccross,
        raw(),
        registers=True,
    ),
]

INIT = [
    bad(
        "init-not-set-up",
        "a MuData that was never registered: the error says to call setup_mudata",
        lambda e, d: co.SCCROSS(d["mdata"]),
        ValueError,
        r"not registered for SCCROSS",
        r"co.SCCROSS.setup_mudata\(mdata",
        raw(),
    ),
    bad(
        "init-n-latent-zero",
        "a zero-dimensional latent space",
        lambda e, d: small_model(d, n_latent=0),
        ValueError,
        r"n_latent=0",
        r"positive integer \(e\.g\. n_latent=50\)",
        fresh(),
    ),
    bad(
        "init-n-latent-float",
        "a fractional latent size",
        lambda e, d: small_model(d, n_latent=2.5),
        ValueError,
        r"n_latent=2\.5",
        r"positive integer",
        fresh(),
    ),
    bad(
        "init-n-hidden-negative",
        "a negative layer width",
        lambda e, d: small_model(d, n_hidden=-8),
        ValueError,
        r"n_hidden=-8",
        r"positive integer",
        fresh(),
    ),
    bad(
        "init-n-layers-zero",
        "encoders and decoders need at least one hidden layer",
        lambda e, d: small_model(d, n_layers=0),
        ValueError,
        r"n_layers=0",
        r"positive integer",
        fresh(),
    ),
    bad(
        "init-dropout-above-one",
        "a dropout probability above 1",
        lambda e, d: small_model(d, dropout=1.5),
        ValueError,
        r"dropout=1\.5",
        r"in \[0, 1\)",
        fresh(),
    ),
    bad(
        "init-n-components-zero",
        "a zero-component input projection",
        lambda e, d: small_model(d, n_components=0),
        ValueError,
        r"n_components=0",
        r"positive integer",
        fresh(),
    ),
    bad(
        "init-n-graph-neighbors-negative",
        "negative graph neighbours (0 turns the graph off)",
        lambda e, d: small_model(d, n_graph_neighbors=-1),
        ValueError,
        r"n_graph_neighbors=-1",
        r"integer >= 0",
        fresh(),
    ),
    bad(
        "init-n-alignment-regions-zero",
        "zero regions for the embedding's regional alignment (None turns it off)",
        lambda e, d: small_model(d, n_alignment_regions=0),
        ValueError,
        r"n_alignment_regions=0",
        r"or None to turn it off",
        fresh(),
    ),
    bad(
        "init-n-fit-cells-too-few",
        "a fit sample too small for the fixed projections",
        lambda e, d: small_model(d, n_fit_cells=10),
        ValueError,
        r"n_fit_cells=10",
        r"integer >= 100.*or None to fit on every cell",
        fresh(),
    ),
    bad(
        "init-graph-self-weight-above-one",
        "the self weight of the graph convolution is a fraction",
        lambda e, d: small_model(d, graph_self_weight=1.5),
        ValueError,
        r"graph_self_weight=1\.5",
        r"in \[0, 1\]",
        fresh(),
    ),
    bad(
        "init-unknown-gene-sets",
        "only the bundled GO sets have a name",
        lambda e, d: small_model(d, gene_sets="kegg"),
        ValueError,
        r"gene_sets='kegg'",
        r"pass 'go_bp'",
        fresh(),
    ),
    bad(
        "init-negative-loss-weight",
        "a negative loss weight would reward misalignment",
        lambda e, d: small_model(d, lambda_mnn=-1.0),
        ValueError,
        r"lambda_mnn=-1\.0",
        r"non-negative",
        fresh(),
    ),
    bad(
        "init-nan-loss-weight",
        "a NaN loss weight would make every loss NaN",
        lambda e, d: small_model(d, lambda_adversarial=float("nan")),
        ValueError,
        r"lambda_adversarial=nan",
        r"non-negative",
        fresh(),
    ),
    bad(
        "init-unknown-similarity",
        "an unknown MNN similarity is named with the choices",
        lambda e, d: small_model(d, mnn_similarity="euclidean"),
        ValueError,
        r"'euclidean'",
        r"inner_product",
        fresh(),
    ),
    bad(
        "init-unknown-prior-kwarg",
        "a misspelt prior argument is named with the valid ones",
        lambda e, d: small_model(d, prior_kwargs={"n_neighbors": 5}),
        ValueError,
        r"prior_kwargs.*'n_neighbors'",
        r"valid: .*'k'",
        fresh(),
    ),
    good(
        "init-small-model",
        "a small model builds on the registered data without changing it",
        lambda e, d: small_model(d),
        is_model,
        fresh(),
    ),
]


def _train_inputs(**setup_kwargs):
    def make(e) -> dict:
        mdata = registered(**setup_kwargs)
        return {"mdata": mdata, "model": co.SCCROSS(mdata, **SMALL)}

    return make


def train(d, **kwargs):
    return d["model"].train(**{"max_epochs": 1, "pretrain_epochs": 0, "batch_size": 128, **FAST, **kwargs})


TRAIN = [
    bad(
        "train-max-epochs-zero",
        "zero epochs would mark an untrained model trained",
        lambda e, d: train(d, max_epochs=0),
        ValueError,
        r"max_epochs=0",
        r"positive integer",
        _train_inputs(),
    ),
    bad(
        "train-max-epochs-float",
        "a fractional number of epochs",
        lambda e, d: train(d, max_epochs=2.5),
        ValueError,
        r"max_epochs=2\.5",
        r"positive integer",
        _train_inputs(),
    ),
    bad(
        "train-pretrain-more-than-max",
        "stage 1 cannot be longer than all of training",
        lambda e, d: train(d, max_epochs=2, pretrain_epochs=5),
        ValueError,
        r"pretrain_epochs=5",
        r"\[0, max_epochs=2\]",
        _train_inputs(),
    ),
    bad(
        "train-pretrain-float",
        "a fractional number of stage-1 epochs",
        lambda e, d: train(d, max_epochs=2, pretrain_epochs=0.5),
        ValueError,
        r"pretrain_epochs=0\.5",
        r"integer",
        _train_inputs(),
    ),
    bad(
        "train-batch-size-zero",
        "a minibatch needs cells",
        lambda e, d: train(d, batch_size=0),
        ValueError,
        r"batch_size=0",
        r"integer >= 2",
        _train_inputs(),
    ),
    bad(
        "train-batch-size-one",
        "batch normalisation needs two cells per minibatch",
        lambda e, d: train(d, batch_size=1),
        ValueError,
        r"batch_size=1",
        r"integer >= 2",
        _train_inputs(),
    ),
    bad(
        "train-negative-lr",
        "a negative learning rate",
        lambda e, d: train(d, lr=-1e-3),
        ValueError,
        r"lr=-0\.001",
        r"positive number",
        _train_inputs(),
    ),
    bad(
        "train-validation-size-above-one",
        "the validation fraction is a fraction",
        lambda e, d: train(d, validation_size=1.5),
        ValueError,
        r"validation_size=1\.5",
        r"in \[0, 1\)",
        _train_inputs(),
    ),
    bad(
        "train-validation-size-negative",
        "a negative validation fraction",
        lambda e, d: train(d, validation_size=-0.1),
        ValueError,
        r"validation_size=-0\.1",
        r"in \[0, 1\)",
        _train_inputs(),
    ),
    bad(
        "train-size-and-validation-size-disagree",
        "train_size and validation_size that leave cells in neither set",
        lambda e, d: train(d, train_size=0.8, validation_size=0.1),
        ValueError,
        r"train_size=0\.8 and validation_size=0\.1 do not add up to 1",
        r"pass only one of them",
        _train_inputs(),
    ),
    bad(
        "train-unknown-early-stopping-monitor",
        "scvi-tools' monitor name, which SCCROSS does not log",
        lambda e, d: train(d, early_stopping=True, early_stopping_monitor="elbo_validation"),
        ValueError,
        r"early_stopping_monitor='elbo_validation'",
        r"monitors 'validation_loss'",
        _train_inputs(),
    ),
    bad(
        "train-datasplitter-kwargs",
        "scvi-tools' data splitter arguments",
        lambda e, d: train(d, datasplitter_kwargs={"drop_last": True}),
        ValueError,
        r"datasplitter_kwargs=\{'drop_last': True\}",
        r"use train_size= or validation_size=, shuffle_set_split= and batch_size=",
        _train_inputs(),
    ),
    good(
        "train-train-size",
        "scvi-tools' train_size",
        lambda e, d: train(d, train_size=0.9),
        trained,
        _train_inputs(),
    ),
    bad(
        "train-loaded-without-data",
        "a model loaded from a file holds no training data",
        lambda e, d: co.SCCROSS.load(e.saved).train(max_epochs=1),
        RuntimeError,
        r"loaded from a file and holds no registered training data",
        r"SCCROSS.setup_mudata\(mdata",
        None,
    ),
    good(
        "train-early-stopping-without-validation",
        "early stopping with no validation cells still trains",
        lambda e, d: train(d, max_epochs=2, validation_size=0.0, early_stopping=True),
        trained,
        _train_inputs(),
    ),
    good(
        "train-without-validation",
        "validation_size=0 trains on every cell",
        lambda e, d: train(d, validation_size=0.0),
        trained,
        _train_inputs(),
    ),
    good(
        "train-with-batches",
        "a batch-aware model trains with batch_size not dividing the cells",
        lambda e, d: train(d, batch_size=97),
        trained,
        _train_inputs(batch_keys="batch"),
    ),
]

LATENT = [
    bad(
        "latent-unknown-modality",
        "a modality the model does not have",
        lambda e, d: e.sccross.get_latent_representation("protein"),
        ValueError,
        r"unknown modality 'protein'",
        r"this model has \['rna', 'atac'\]",
    ),
    bad(
        "latent-indices-out-of-range",
        "a row position past the last cell",
        lambda e, d: e.sccross.get_latent_representation("rna", indices=[0, 10_000]),
        ValueError,
        r"indices \[10000\]",
        r"outside the 500 cells",
    ),
    bad(
        "latent-indices-float",
        "row positions must be integers",
        lambda e, d: e.sccross.get_latent_representation("rna", indices=[0.5, 1.5]),
        ValueError,
        r"dtype float64",
        r"integer row positions or a boolean mask",
    ),
    bad(
        "latent-mask-wrong-length",
        "a boolean mask of the wrong length",
        lambda e, d: e.sccross.get_latent_representation("rna", indices=np.ones(10, dtype=bool)),
        ValueError,
        r"not \(10,\)",
        r"one entry per cell \(500\)",
    ),
    bad(
        "latent-batch-size-zero",
        "zero cells per forward pass",
        lambda e, d: e.sccross.get_latent_representation("rna", batch_size=0),
        ValueError,
        r"batch_size=0",
        r"positive integer",
    ),
    bad(
        "latent-adata-wrong-type",
        "a numpy matrix instead of an AnnData",
        lambda e, d: e.sccross.get_latent_representation("rna", adata=d["X"]),
        TypeError,
        r"adata is a ndarray",
        r"AnnData",
        lambda e: {"X": multiome().mod["rna"].X.toarray()},
    ),
    bad(
        "latent-query-missing-genes",
        "query cells measured on fewer genes than the model",
        lambda e, d: e.sccross.get_latent_representation("rna", adata=d["rna"][:, :500]),
        ValueError,
        r"100 of the model's 600 'rna' features are missing",
        r"pass exactly the model's features",
        query_rna,
    ),
    bad(
        "latent-query-normalised",
        "log-normalised query data under a count likelihood",
        lambda e, d: e.sccross.get_latent_representation("rna", adata=d["rna"]),
        ValueError,
        r"non-integer values",
        r"needs raw counts",
        lambda e: query_rna(e, lambda a: AnnData(np.log1p(a.X.toarray()), obs=a.obs, var=a.var)),
    ),
    good(
        "latent-query-empty-cell",
        "a query cell without counts gets a NaN row, the others their embedding",
        lambda e, d: e.sccross.get_latent_representation("rna", adata=d["rna"]),
        lambda r, e, d: (
            np.isnan(r[2]).all() or pytest.fail("row 2 not NaN"),
            np.testing.assert_allclose(
                np.delete(r, 2, 0), np.delete(e.latent_rna, 2, 0), rtol=1e-4, atol=1e-5
            ),
        ),
        lambda e: query_rna(
            e,
            lambda a: AnnData(
                sp.csr_matrix(np.where(np.arange(a.n_obs)[:, None] == 2, 0, a.X.toarray())),
                obs=a.obs,
                var=a.var,
            ),
        ),
    ),
    bad(
        "latent-query-nan",
        "a NaN in query data",
        lambda e, d: e.sccross.get_latent_representation("rna", adata=d["rna"]),
        ValueError,
        r"NaN/inf",
        r"remove or impute",
        lambda e: query_rna(
            e, lambda a: AnnData(np.where(np.eye(*a.shape) > 0, np.nan, a.X.toarray()), obs=a.obs, var=a.var)
        ),
    ),
    bad(
        "latent-query-duplicated-genes",
        "duplicated gene names cannot be matched",
        lambda e, d: e.sccross.get_latent_representation("rna", adata=d["rna"]),
        ValueError,
        r"duplicated feature names",
        r"var_names_make_unique",
        lambda e: query_rna(
            e, lambda a: AnnData(a.X, obs=a.obs, var=pd.DataFrame(index=["MORN1"] + list(a.var_names[:-1])))
        ),
    ),
    bad(
        "latent-mudata-without-modality",
        "a MuData that lacks the requested modality",
        lambda e, d: e.sccross.get_latent_representation("atac", adata=d["mdata"]),
        ValueError,
        r"no modality 'atac'",
        r"it has \['rna'\]",
        lambda e: {"mdata": _mudata({"rna": multiome().mod["rna"]})},
    ),
    bad(
        "latent-indices-cell-names",
        "cell names are not row positions",
        lambda e, d: e.sccross.get_latent_representation(
            "rna", indices=e.sccross_mdata.mod["rna"].obs_names[:3]
        ),
        ValueError,
        r"got dtype object",
        r"integer row positions or a boolean mask",
    ),
    good(
        "latent-numpy-int32-indices",
        "numpy int32 positions work like python ints",
        lambda e, d: e.sccross.get_latent_representation("rna", indices=np.arange(3, dtype=np.int32)),
        lambda r, e, d: np.testing.assert_allclose(r, e.latent_rna[:3], rtol=1e-5, atol=1e-6),
    ),
    good(
        "latent-empty-indices",
        "indices=[] gives zero cells, not an error",
        lambda e, d: e.sccross.get_latent_representation("rna", indices=[]),
        shape((0, 8)),
    ),
    good(
        "latent-negative-index",
        "a negative position counts from the end, as in numpy",
        lambda e, d: e.sccross.get_latent_representation("rna", indices=[-1]),
        lambda r, e, d: np.testing.assert_allclose(r, e.latent_rna[[-1]], rtol=1e-5, atol=1e-6),
    ),
    good(
        "latent-boolean-mask",
        "a boolean mask selects its cells",
        lambda e, d: e.sccross.get_latent_representation("rna", indices=np.arange(N_CELLS) < 10),
        lambda r, e, d: np.testing.assert_allclose(r, e.latent_rna[:10], rtol=1e-5, atol=1e-6),
    ),
    good(
        "latent-query-dense",
        "a dense query of the training cells gives the registered latents",
        lambda e, d: e.sccross.get_latent_representation("rna", adata=d["rna"]),
        same_latents_as_registered,
        lambda e: query_rna(e, lambda a: AnnData(a.X.toarray().astype(np.float32), obs=a.obs, var=a.var)),
    ),
    good(
        "latent-query-permuted-genes",
        "genes in another order are matched by name",
        lambda e, d: e.sccross.get_latent_representation("rna", adata=d["rna"]),
        same_latents_as_registered,
        lambda e: query_rna(e, lambda a: a[:, np.random.default_rng(0).permutation(a.n_vars)].copy()),
    ),
    good(
        "latent-untrained-warns",
        "an untrained model still encodes, with a warning",
        lambda e, d: _warns(lambda: small_model(d).get_latent_representation("rna"), "trained"),
        shape((N_CELLS, 4)),
        fresh(),
    ),
]


def _warns(call, pattern):
    with pytest.warns(UserWarning, match=pattern):
        return call()


def generate(e, **kwargs):
    return e.sccross.cross_generate(**{"source": "rna", "target": "atac", "indices": np.arange(5), **kwargs})


GENERATE = [
    bad(
        "generate-unknown-target",
        "a target modality the model does not have",
        lambda e, d: generate(e, target="protein"),
        ValueError,
        r"unknown modality 'protein'",
        r"this model has",
    ),
    bad(
        "generate-unknown-source",
        "a source modality the model does not have",
        lambda e, d: generate(e, source="adt"),
        ValueError,
        r"unknown modality 'adt'",
        r"this model has",
    ),
    bad(
        "generate-unknown-output",
        "an output that does not exist",
        lambda e, d: generate(e, output="logcounts"),
        ValueError,
        r"output='logcounts'",
        r"choose one of",
    ),
    bad(
        "generate-n-samples-zero",
        "zero samples per cell",
        lambda e, d: generate(e, n_samples=0),
        ValueError,
        r"n_samples=0",
        r"positive integer",
    ),
    bad(
        "generate-negative-library",
        "a negative library size would give negative expected counts",
        lambda e, d: generate(e, library_size=-100),
        ValueError,
        r"library_size=-100",
        r"positive number",
    ),
    bad(
        "normalized-negative-library",
        "normalised values at a negative total count",
        lambda e, d: e.sccross.get_normalized_expression(library_size=-1),
        ValueError,
        r"library_size=-1",
        r"positive total count",
    ),
    bad(
        "normalized-unknown-gene",
        "a gene the model does not have",
        lambda e, d: e.sccross.get_normalized_expression(gene_list=["NOT_A_GENE"]),
        ValueError,
        r"1 genes are not features of 'rna': \['NOT_A_GENE'\]",
        r"model.feature_names_\['rna'\]",
    ),
    bad(
        "normalized-unknown-batch",
        "a transform_batch the modality does not have",
        lambda e, d: e.sccross.get_normalized_expression(transform_batch="nowhere"),
        ValueError,
        r"batch 'nowhere' is not a batch of modality 'rna'",
        r"batches: \[",
    ),
    good(
        "normalized-subset",
        "normalised values of three cells and two genes",
        lambda e, d: e.sccross.get_normalized_expression(indices=[0, 1, 2], gene_list=GENES[:2]),
        lambda r, e, d: (r.shape == (3, 2) and np.isfinite(r.to_numpy()).all()) or pytest.fail(str(r)),
    ),
    bad(
        "de-unknown-groupby",
        "a groupby column the cells do not have",
        lambda e, d: e.sccross.differential_expression(groupby="nope"),
        ValueError,
        r"groupby='nope' is not an \.obs column of the 'rna' cells",
        r"columns: \[",
    ),
    bad(
        "de-unknown-group",
        "a group that is not in the column",
        lambda e, d: e.sccross.differential_expression(groupby="cell_type", group1="Nowhere"),
        ValueError,
        r"group 'Nowhere' is not in column 'cell_type'",
        r"groups: \[",
    ),
    bad(
        "de-no-groups",
        "a test without groups",
        lambda e, d: e.sccross.differential_expression(),
        ValueError,
        r"groupby",
        r"pass groupby= \(an \.obs column of the cells\) or idx1=",
    ),
    bad(
        "de-groups-twice",
        "groups given both as a column and as indices",
        lambda e, d: e.sccross.differential_expression(groupby="cell_type", idx1=[0, 1]),
        ValueError,
        r"idx1/idx2",
        r"not both",
    ),
    bad(
        "de-overlapping-groups",
        "two groups sharing cells",
        lambda e, d: e.sccross.differential_expression(idx1=[0, 1, 2], idx2=[2, 3, 4]),
        ValueError,
        r"groups 'idx1' and 'idx2' share cells",
        r"pass disjoint groups",
    ),
    bad(
        "de-unknown-mode",
        "a test mode scvi-tools does not have",
        lambda e, d: e.sccross.differential_expression(groupby="cell_type", mode="fast"),
        ValueError,
        r"mode='fast'",
        r"choose 'change' or 'vanilla'",
    ),
    bad(
        "de-unknown-option",
        "an option get_bayes_factors does not take",
        lambda e, d: e.sccross.differential_expression(groupby="cell_type", n_permutations=10),
        TypeError,
        r"\['n_permutations'\]",
        r"options of DifferentialComputation\.get_bayes_factors",
    ),
    bad(
        "da-fdr-out-of-range",
        "a false discovery rate above 1",
        lambda e, d: e.sccross.differential_accessibility(groupby="cell_type", fdr_target=5),
        ValueError,
        r"fdr_target=5",
        r"between 0 and 1",
    ),
    good(
        "de-indices",
        "a test between two groups of cells given as positions",
        lambda e, d: e.sccross.differential_expression(
            idx1=np.arange(10), idx2=np.arange(10, 30), silent=True
        ),
        lambda r, e, d: (
            (r["proba_de"].between(0, 1).all() and set(r["comparison"]) == {"idx1 vs idx2"})
            or pytest.fail(str(r))
        ),
    ),
    bad(
        "generate-nan-library",
        "a NaN library size would give NaN profiles",
        lambda e, d: generate(e, library_size=float("nan")),
        ValueError,
        r"library_size=nan",
        r"positive number",
    ),
    bad(
        "generate-library-string",
        "a library size given as text",
        lambda e, d: generate(e, library_size="1e4"),
        ValueError,
        r"library_size='1e4'",
        r"pass a number or None",
    ),
    bad(
        "generate-unknown-batch",
        "a target batch that the target modality does not have",
        lambda e, d: generate(e, target_batch="s9d9"),
        ValueError,
        r"batch 's9d9'",
        r"batches: \['s1d1', 's1d2'\]",
    ),
    bad(
        "generate-unknown-precision",
        "float16 is not offered",
        lambda e, d: generate(e, precision="float16"),
        ValueError,
        r"precision='float16'",
        r"choose 'float32' or 'bfloat16'",
    ),
    bad(
        "generate-indices-out-of-range",
        "a row position past the last cell",
        lambda e, d: generate(e, indices=[N_CELLS]),
        ValueError,
        r"indices \[500\]",
        r"outside the 500 cells",
    ),
    bad(
        "generate-batch-size-zero",
        "zero cells per forward pass",
        lambda e, d: generate(e, batch_size=0),
        ValueError,
        r"batch_size=0",
        r"positive integer",
    ),
    bad(
        "generate-source-data-of-other-modality",
        "ATAC cells passed as the RNA source",
        lambda e, d: generate(e, adata=d["atac"]),
        ValueError,
        r"600 of the model's 600 'rna' features are missing",
        r"pass exactly the model's features",
        _atac,
    ),
    good(
        "generate-rna-to-atac",
        "five cells' ATAC from their RNA: non-negative expected counts",
        lambda e, d: generate(e),
        lambda r, e, d: (shape((5, 600))(r, e, d), np.testing.assert_array_less(-1e-9, r.X)),
    ),
    good(
        "generate-counts-samples",
        "three sampled count profiles per cell: integers, one row per sample",
        lambda e, d: generate(e, output="counts", n_samples=3),
        lambda r, e, d: (
            shape((15, 600))(r, e, d),
            np.testing.assert_array_equal(r.X.data, np.round(r.X.data)),
        ),
    ),
    good(
        "generate-detection",
        "detection probabilities lie in [0, 1]",
        lambda e, d: generate(e, output="detection", target_batch="s1d2"),
        lambda r, e, d: (shape((5, 600))(r, e, d), np.testing.assert_array_less(r.X, 1 + 1e-6)),
    ),
    good(
        "generate-empty-indices",
        "indices=[] gives an empty AnnData with the target's features",
        lambda e, d: generate(e, indices=[]),
        shape((0, 600)),
    ),
]


def simulate(e, **kwargs):
    return e.sccross.simulate(**{"groupby": "cell_type", "group": CELL_TYPE, "n_cells": 5, **kwargs})


SIMULATE = [
    bad(
        "simulate-unknown-column",
        "a group column that no modality has",
        lambda e, d: simulate(e, groupby="celltype"),
        ValueError,
        r"'celltype' is not an .obs column",
        r"any modality \['rna', 'atac'\]",
    ),
    bad(
        "simulate-unknown-group",
        "a population that is not in the column",
        lambda e, d: simulate(e, group="Neuron"),
        ValueError,
        r"group 'Neuron' has no cells",
        r"in column 'cell_type'",
    ),
    bad(
        "simulate-zero-cells",
        "zero simulated cells",
        lambda e, d: simulate(e, n_cells=0),
        ValueError,
        r"n_cells=0",
        r"positive integer",
    ),
    bad(
        "simulate-fractional-cells",
        "a fractional number of cells",
        lambda e, d: simulate(e, n_cells=2.5),
        ValueError,
        r"n_cells=2\.5",
        r"positive integer",
    ),
    bad(
        "simulate-unknown-modality",
        "a modality the model does not have",
        lambda e, d: simulate(e, modalities=["protein"]),
        ValueError,
        r"unknown modality 'protein'",
        r"this model has",
    ),
    bad(
        "simulate-unknown-posterior",
        "posterior_from names an unknown modality",
        lambda e, d: simulate(e, posterior_from=["adt"]),
        ValueError,
        r"unknown modality 'adt'",
        r"this model has",
    ),
    bad(
        "simulate-unknown-output",
        "an output that does not exist",
        lambda e, d: simulate(e, output="probabilities"),
        ValueError,
        r"output='probabilities'",
        r"choose one of",
    ),
    good(
        "simulate-one-modality-as-string",
        "modalities='rna' simulates the RNA modality, as posterior_from='rna' reads one modality",
        lambda e, d: simulate(e, modalities="rna"),
        lambda r, e, d: (list(r.mod) == ["rna"]) or pytest.fail(f"modalities {list(r.mod)}"),
    ),
    good(
        "simulate-numpy-int-cells",
        "a numpy integer (e.g. from a cell count) is a valid number of cells",
        lambda e, d: simulate(e, n_cells=np.int64(4), output="mean"),
        lambda r, e, d: shape((4, 600))(r.mod["atac"], e, d),
    ),
    good(
        "simulate-paired-cells",
        "every modality gets the same simulated cells",
        lambda e, d: simulate(e, n_cells=7, output="mean"),
        lambda r, e, d: (
            shape((7, 600))(r.mod["rna"], e, d),
            shape((7, 600))(r.mod["atac"], e, d),
            np.testing.assert_array_equal(r.mod["rna"].obs_names, r.mod["atac"].obs_names),
        ),
    ),
]


def perturb(e, **kwargs):
    arguments = {
        "modality": "rna",
        "genes": GENES,
        "groupby": "cell_type",
        "perturb_group": CELL_TYPE,
        "reference_group": OTHER_TYPE,
        "max_cells": 20,
    }
    return e.sccross.perturb(**{**arguments, **kwargs})


PERTURB = [
    bad(
        "perturb-unknown-genes",
        "genes the modality does not measure",
        lambda e, d: perturb(e, genes=["CD3E", "NOTAGENE"]),
        ValueError,
        r"'NOTAGENE'",
        r"model.feature_names_\['rna'\]",
    ),
    bad(
        "perturb-no-genes",
        "an empty gene list would rank nothing",
        lambda e, d: perturb(e, genes=[]),
        ValueError,
        r"genes=\[\]",
        r"at least one gene",
    ),
    bad(
        "perturb-duplicated-genes",
        "a gene listed twice would be ranked twice",
        lambda e, d: perturb(e, genes=["RPL22", "RPL22"]),
        ValueError,
        r"'RPL22'.*twice",
        r"list each gene once",
    ),
    bad(
        "perturb-unknown-direction",
        "a direction that does not exist",
        lambda e, d: perturb(e, direction="sideways"),
        ValueError,
        r"direction='sideways'",
        r"choose 'up', 'down' or 'both'",
    ),
    bad(
        "perturb-fold-above-one-down",
        "down-scaling by more than 100% would give negative counts",
        lambda e, d: perturb(e, fold=1.5),
        ValueError,
        r"fold=1\.5",
        r"\(0, 1\)",
    ),
    bad(
        "perturb-fold-zero-up",
        "fold=0 changes nothing; every score would be 0",
        lambda e, d: perturb(e, fold=0.0, direction="up"),
        ValueError,
        r"fold=0\.0",
        r"positive number",
    ),
    bad(
        "perturb-fold-negative-up",
        "a negative up-fold is a down-perturbation in disguise",
        lambda e, d: perturb(e, fold=-0.5, direction="up"),
        ValueError,
        r"fold=-0\.5",
        r"positive number",
    ),
    bad(
        "perturb-no-groupby",
        "the groups are required",
        lambda e, d: perturb(e, groupby=None),
        ValueError,
        r"groupby",
        r"pass groupby=, perturb_group= and reference_group=",
    ),
    bad(
        "perturb-unknown-column",
        "a group column the modality does not have",
        lambda e, d: perturb(e, groupby="celltype"),
        ValueError,
        r"'celltype' is not a column",
        r"available: \[",
    ),
    bad(
        "perturb-unknown-group",
        "a group that is not in the column",
        lambda e, d: perturb(e, perturb_group="Neuron"),
        ValueError,
        r"group 'Neuron' is not in 'cell_type'",
        r"groups: \[",
    ),
    bad(
        "perturb-same-groups",
        "a group cannot be moved towards itself",
        lambda e, d: perturb(e, reference_group=CELL_TYPE),
        ValueError,
        r"both 'CD8\+ T'",
        r"name two different groups",
    ),
    bad(
        "perturb-max-cells-zero",
        "zero perturbed cells",
        lambda e, d: perturb(e, max_cells=0),
        ValueError,
        r"max_cells=0",
        r"positive integer",
    ),
    bad(
        "perturb-unknown-target",
        "a target modality the model does not have",
        lambda e, d: perturb(e, target="protein"),
        ValueError,
        r"unknown modality 'protein'",
        r"this model has",
    ),
    bad(
        "perturb-n-target-genes-zero",
        "zero genes to perturb jointly for the target",
        lambda e, d: perturb(e, genes=None, target="atac", n_target_genes=0),
        ValueError,
        r"n_target_genes=0",
        r"positive integer",
    ),
    good(
        "perturb-one-gene-as-string",
        "genes='RPL22' perturbs that one gene, not its letters",
        lambda e, d: perturb(e, genes="RPL22"),
        lambda r, e, d: (list(r.index) == ["RPL22"]) or pytest.fail(f"index {list(r.index)}"),
    ),
    good(
        "perturb-ranking",
        "three genes get ranks 1-3 and finite scores",
        lambda e, d: perturb(e),
        lambda r, e, d: (
            sorted(r["rank"]) == [1, 2, 3] or pytest.fail(str(r)),
            np.isfinite(r["best_score"]).all() or pytest.fail(str(r)),
        ),
    ),
]


def _garbage_model_dir(e) -> dict:
    path = e.tmp / "garbage"
    path.mkdir(exist_ok=True)
    (path / "model.pt").write_bytes(b"not a model")
    return {}


FILES = [
    bad(
        "load-missing-directory",
        "a directory with no model",
        lambda e, d: co.SCCROSS.load(e.tmp / "nowhere"),
        ValueError,
        r"no model file at .*nowhere",
        r"model.save\(",
    ),
    bad(
        "load-wrong-model-class",
        "an SCCROSS file loaded as MINNET names the right class",
        lambda e, d: co.MINNET.load(e.saved),
        ValueError,
        r"holds a SCCROSS model",
        r"co.SCCROSS.load",
    ),
    bad(
        "load-not-a-model-file",
        "a file that is not a crossomics model is refused without running it",
        lambda e, d: co.SCCROSS.load(e.tmp / "garbage"),
        ValueError,
        r"garbage",
        r"not a crossomics model file|refusing to load",
        _garbage_model_dir,
    ),
    bad(
        "load-wrong-prefix",
        "a prefix that no file has",
        lambda e, d: co.SCCROSS.load(e.saved, prefix="old_"),
        ValueError,
        r"old_model.pt",
        r"model.save\(",
    ),
    bad(
        "save-existing-directory",
        "saving over a model needs overwrite=True",
        lambda e, d: e.sccross.save(e.saved),
        ValueError,
        r"already exists",
        r"overwrite=True",
    ),
    bad(
        "load-data-with-missing-genes",
        "data given to load must have the model's features",
        lambda e, d: co.SCCROSS.load(e.saved, adata=d["rna"][:, 10:]),
        ValueError,
        r"10 of the model's 600 'rna' features are missing",
        r"pass exactly the model's features",
        query_rna,
    ),
    bad(
        "load-data-wrong-type",
        "a path instead of data",
        lambda e, d: co.SCCROSS.load(e.saved, adata="mdata.h5mu"),
        TypeError,
        r"not str",
        r"MuData or an AnnData",
    ),
    bad(
        "loaded-latent-without-data",
        "a model loaded without data needs adata=",
        lambda e, d: co.SCCROSS.load(e.saved).get_latent_representation("rna"),
        ValueError,
        r"holds no 'rna' data",
        r"pass adata=",
    ),
    good(
        "load-round-trip",
        "a loaded model gives the saved model's latents",
        lambda e, d: co.SCCROSS.load(e.saved).get_latent_representation("rna", adata=d["rna"]),
        same_latents_as_registered,
        query_rna,
    ),
    good(
        "load-one-modality-permuted",
        "load accepts one modality's AnnData with its genes in another order",
        lambda e, d: co.SCCROSS.load(e.saved, adata=d["rna"]).get_latent_representation("rna"),
        same_latents_as_registered,
        lambda e: query_rna(e, lambda a: a[:, ::-1].copy()),
    ),
]


QUERY = [
    bad(
        "query-prepare-unknown-modality",
        "query modalities named differently from the reference's",
        lambda e, d: co.SCCROSS.prepare_query_mudata(d["mdata"], e.sccross),
        ValueError,
        r"the query has modalities \['gex'\]",
        r"name the query's modalities as the reference's",
        lambda e: {"mdata": _mudata({"gex": multiome().mod["rna"]})},
    ),
    good(
        "query-prepare-missing-genes",
        "a query lacking genes is put on the reference's genes (zero-filled, with a warning)",
        lambda e, d: co.SCCROSS.prepare_query_mudata(d["rna"][:, 50:], e.sccross, modality="rna"),
        lambda r, e, d: (
            list(r.mod["rna"].var_names) == list(e.sccross.feature_names_["rna"]) or pytest.fail("genes"),
            r.mod["rna"].X[:, :50].nnz == 0 or pytest.fail("not zero-filled"),
        ),
        query_rna,
    ),
    bad(
        "query-load-anndata",
        "load_query_data takes the MuData that prepare_query_mudata makes",
        lambda e, d: co.SCCROSS.load_query_data(d["rna"], e.sccross),
        TypeError,
        r"query must be a MuData, not AnnData",
        r"SCCROSS.prepare_query_mudata\(query, reference\)",
        query_rna,
    ),
    bad(
        "query-transfer-unknown-labels",
        "a label column no reference cell has",
        lambda e, d: e.sccross.transfer_labels("atac", "celltype"),
        ValueError,
        r"no reference cells carry .obs\['celltype'\]",
        r"pass reference= with labelled cells",
    ),
    good(
        "query-transfer-labels",
        "ATAC cells labelled from the RNA cells: a known label and a confidence in (0, 1] each",
        lambda e, d: e.sccross.transfer_labels("atac", "cell_type", reference=d["rna"]),
        lambda r, e, d: (
            r["cell_type"].isin(d["rna"].obs["cell_type"]).all() or pytest.fail(str(r)),
            ((r["confidence"] > 0) & (r["confidence"] <= 1)).all() or pytest.fail(str(r)),
        ),
        query_rna,
    ),
]


def minnet_setup(d, **kwargs):
    arguments = {
        "modalities": ["rna", "atac"],
        "labels_key": "cell_type",
        "gene_annotation": "hg38",
        **kwargs,
    }
    return co.MINNET.setup_mudata(d["mdata"], **arguments)


MINNET = [
    bad(
        "minnet-setup-no-labels",
        "MINNET is supervised",
        lambda e, d: minnet_setup(d, labels_key=None),
        ValueError,
        r"labels_key",
        r"cell-type column",
        raw(),
    ),
    bad(
        "minnet-setup-unknown-labels",
        "a label column that does not exist",
        lambda e, d: minnet_setup(d, labels_key="celltype"),
        ValueError,
        r"labels_key 'celltype' is not a column",
        r"available: \['cell_type', 'batch'\]",
        raw(),
    ),
    bad(
        "minnet-setup-nan-labels",
        "unlabelled cells cannot train a classifier",
        lambda e, d: minnet_setup(d),
        ValueError,
        r"2 cells have no 'cell_type' label",
        r"subset mdata to labelled cells",
        raw(blank("cell_type", [0, 1])),
    ),
    bad(
        "minnet-setup-mixed-type-labels",
        "cell types mixing numbers and text cannot be sorted into classes",
        lambda e, d: minnet_setup(d),
        ValueError,
        r".obs\['cell_type'\] of mdata.mod\['rna'\] mixes value types",
        r"\.astype\(str\)",
        raw(
            lambda m: m.mod["rna"].obs.__setitem__("cell_type", [0 if i % 3 else "T" for i in range(N_CELLS)])
        ),
    ),
    bad(
        "minnet-setup-one-cell-type",
        "a classifier needs two classes",
        lambda e, d: minnet_setup(d),
        ValueError,
        r"single cell type \('T'\)",
        r"at least two cell types",
        raw(lambda m: m.mod["rna"].obs.__setitem__("cell_type", "T")),
    ),
    bad(
        "minnet-setup-one-modality-string",
        "a string instead of two modality names",
        lambda e, d: minnet_setup(d, modalities="rna"),
        ValueError,
        r"got 'rna'",
        r"e\.g\. \['rna', 'atac'\]",
        raw(),
    ),
    bad(
        "minnet-setup-same-modality-twice",
        "two different modalities are needed",
        lambda e, d: minnet_setup(d, modalities=["rna", "rna"]),
        ValueError,
        r"\['rna', 'rna'\]",
        r"two different modalities",
        raw(),
    ),
    bad(
        "minnet-setup-unpaired-order",
        "cells in another order in one modality",
        lambda e, d: minnet_setup(d),
        ValueError,
        r"modalities \['rna', 'atac'\] must hold the same cells",
        r"muon.pp.intersect_obs",
        lambda e: {
            "mdata": _mudata({"rna": multiome().mod["rna"], "atac": multiome().mod["atac"][::-1].copy()})
        },
    ),
    bad(
        "minnet-setup-unknown-batch",
        "a batch column that does not exist",
        lambda e, d: minnet_setup(d, batch_key="donor"),
        ValueError,
        r"batch_key 'donor' is not a column",
        r"available: \['cell_type', 'batch'\]",
        raw(),
    ),
    bad(
        "minnet-setup-nan-batch",
        "a cell without a batch label cannot be batch corrected",
        lambda e, d: minnet_setup(d, batch_key="batch"),
        ValueError,
        r"1 cells of mdata.mod\['rna'\] have no batch in .obs\['batch'\]",
        r"fill them with a batch name",
        raw(blank("batch", [3])),
    ),
    bad(
        "minnet-setup-normalised",
        "MINNET normalises raw counts itself",
        lambda e, d: minnet_setup(d),
        ValueError,
        r"modality 'rna' X has non-integer values",
        r"raw counts are required",
        lambda e: {"mdata": with_rna(lambda X: np.log1p(X))},
    ),
    bad(
        "minnet-setup-wrong-genome",
        "human peaks with the mouse annotation",
        lambda e, d: minnet_setup(d, gene_annotation="mm10"),
        ValueError,
        r"of mm10",
        r"pass gene_annotation='hg38'",
        raw(),
    ),
    bad(
        "minnet-init-n-latent-zero",
        "a zero-dimensional co-embedding",
        lambda e, d: co.MINNET(d["mdata"], n_latent=0),
        ValueError,
        r"n_latent=0",
        r"positive integer",
        lambda e: {"mdata": _minnet_registered()},
    ),
    bad(
        "minnet-train-max-epochs-zero",
        "zero epochs",
        lambda e, d: e.minnet.train(max_epochs=0),
        ValueError,
        r"max_epochs=0",
        r"positive integer",
    ),
    bad(
        "minnet-train-batch-size-two",
        "negative pairs need three cells per minibatch",
        lambda e, d: e.minnet.train(max_epochs=1, batch_size=2),
        ValueError,
        r"batch_size=2",
        r"integer >= 3",
    ),
    bad(
        "minnet-train-size-zero",
        "nothing to train on",
        lambda e, d: e.minnet.train(max_epochs=1, train_size=0.0),
        ValueError,
        r"train_size.*0\.0",
        r"\(0, 1\]",
    ),
    bad(
        "minnet-train-datasplitter-kwargs",
        "scvi-tools' data splitter arguments",
        lambda e, d: e.minnet.train(max_epochs=1, datasplitter_kwargs={"drop_last": True}),
        ValueError,
        r"datasplitter_kwargs=\{'drop_last': True\}.*MINNET",
        r"use train_size= or validation_size=, shuffle_set_split= and batch_size=",
    ),
    bad(
        "minnet-train-unknown-monitor",
        "scvi-tools' monitor name, which MINNET does not log",
        lambda e, d: e.minnet.train(max_epochs=1, early_stopping_monitor="elbo_validation"),
        ValueError,
        r"early_stopping_monitor='elbo_validation'",
        r"monitors 'validation_loss'",
    ),
    bad(
        "minnet-train-unknown-strategy",
        "a negative-pair strategy that does not exist",
        lambda e, d: e.minnet.train(max_epochs=1, negative_strategy="random"),
        ValueError,
        r"'random'",
        r"one of \('between', 'within'\)",
    ),
    bad(
        "minnet-train-negative-ratio-zero",
        "zero negative pairs per positive pair",
        lambda e, d: e.minnet.train(max_epochs=1, negative_ratio=0),
        ValueError,
        r"negative_ratio.*got 0",
        r">= 1",
    ),
    bad(
        "minnet-latent-unknown-modality",
        "a modality the model does not have",
        lambda e, d: e.minnet.get_latent_representation("adt"),
        ValueError,
        r"unknown modality 'adt'",
        r"trained on \['rna', 'atac'\]",
    ),
    bad(
        "minnet-latent-indices-out-of-range",
        "a row position past the last cell",
        lambda e, d: e.minnet.get_latent_representation("rna", indices=[0, 10_000]),
        ValueError,
        r"indices \[10000\]",
        r"outside the 500 cells",
    ),
    bad(
        "minnet-latent-batch-size-zero",
        "zero cells per forward pass",
        lambda e, d: e.minnet.get_latent_representation("rna", batch_size=0),
        ValueError,
        r"batch_size=0",
        r"positive integer",
    ),
    bad(
        "minnet-load-sccross-file",
        "an SCCROSS file loaded as MINNET",
        lambda e, d: co.MINNET.load(e.saved),
        ValueError,
        r"holds a SCCROSS model",
        r"co.SCCROSS.load",
    ),
    bad(
        "minnet-setup-anndata-instead-of-mudata",
        "one AnnData is not a MuData",
        lambda e, d: co.MINNET.setup_mudata(d["rna"], modalities=["rna", "atac"], labels_key="cell_type"),
        TypeError,
        r"mdata is an AnnData",
        r"MuData\(\{'rna': rna, 'atac': atac\}\)",
        lambda e: {"rna": multiome().mod["rna"]},
    ),
    bad(
        "minnet-init-on-sccross-data",
        "data registered for SCCROSS are not registered for MINNET",
        lambda e, d: co.MINNET(d["mdata"]),
        ValueError,
        r"not registered for MINNET",
        r"co.MINNET.setup_mudata\(mdata",
        fresh(),
    ),
    bad(
        "minnet-setup-misspelt-keyword",
        "labels_keys for labels_key is named with the right spelling",
        lambda e, d: minnet_setup(d, labels_keys="cell_type"),
        TypeError,
        r"'labels_keys'",
        r"did you mean 'labels_key'",
        raw(),
    ),
    good(
        "minnet-predict-empty-indices",
        "predicting zero cells gives zero labels",
        lambda e, d: e.minnet.predict("rna", indices=[]),
        lambda r, e, d: r.shape == (0,) or pytest.fail(str(r.shape)),
    ),
    good(
        "minnet-query-fewer-genes",
        "query RNA with genes missing is zero-filled (documented), giving finite co-embeddings",
        lambda e, d: e.minnet.get_latent_representation("rna", adata=d["rna"][:, 50:]),
        shape((N_CELLS, 8)),
        query_rna,
    ),
    good(
        "minnet-latent-empty-indices",
        "indices=[] gives zero cells, not an error",
        lambda e, d: e.minnet.get_latent_representation("rna", indices=[]),
        shape((0, 8)),
    ),
    good(
        "minnet-predict-soft",
        "class probabilities of every cell sum to one",
        lambda e, d: e.minnet.predict("atac", adata=d["atac"], soft=True),
        lambda r, e, d: np.testing.assert_allclose(r.to_numpy().sum(1), 1.0, rtol=1e-5),
        lambda e: {"atac": multiome().mod["atac"]},
    ),
    good(
        "minnet-query-atac-dense",
        "dense query ATAC counts embed like the registered ones",
        lambda e, d: e.minnet.get_latent_representation("atac", adata=d["atac"]),
        lambda r, e, d: np.testing.assert_allclose(
            r, e.minnet.get_latent_representation("atac"), rtol=1e-4, atol=1e-5
        ),
        lambda e: {"atac": _dense(multiome().mod["atac"])},
    ),
]


def _dense(a: AnnData) -> AnnData:
    return AnnData(a.X.toarray().astype(np.float32), obs=a.obs.copy(), var=a.var.copy())


def _minnet_registered() -> md.MuData:
    mdata = multiome()
    co.MINNET.setup_mudata(mdata, modalities=["rna", "atac"], labels_key="cell_type", gene_annotation="hg38")
    return mdata


PP = [
    good(
        "pp-fit-pca-sparse-or-dense",
        "a PCA fitted on sparse counts projects dense counts identically",
        lambda e, d: co.pp.fit_pca(d["X"], n_components=5).transform(d["X"].toarray()),
        lambda r, e, d: np.testing.assert_allclose(
            r, co.pp.fit_pca(d["X"], n_components=5).transform(d["X"]), rtol=1e-4, atol=1e-4
        ),
        _rna,
    ),
    bad(
        "pp-fit-pca-zero-components",
        "zero principal components",
        lambda e, d: co.pp.fit_pca(d["X"], n_components=0),
        ValueError,
        r"n_components=0",
        r"choose 1 <= n_components <= 500",
        _rna,
    ),
    bad(
        "pp-fit-pca-fractional-components",
        "a fractional number of components",
        lambda e, d: co.pp.fit_pca(d["X"], n_components=2.5),
        ValueError,
        r"n_components=2\.5",
        r"choose 1 <= n_components <= 500, an integer",
        _rna,
    ),
    bad(
        "pp-fit-pca-negative",
        "scaled data are not counts",
        lambda e, d: co.pp.fit_pca(d["X"]),
        ValueError,
        r"X has negative values",
        r"raw or normalised counts",
        lambda e: {"X": multiome().mod["rna"].X.toarray() - 1.0},
    ),
    bad(
        "pp-fit-pca-nan",
        "a NaN value",
        lambda e, d: co.pp.fit_pca(d["X"]),
        ValueError,
        r"X has 1 NaN/inf",
        r"remove or impute",
        lambda e: {
            "X": np.where(
                np.eye(N_CELLS, 600) * np.arange(600) == 5, np.nan, multiome().mod["rna"].X.toarray()
            )
        },
    ),
    bad(
        "pp-pca-transform-wrong-features",
        "a fitted PCA applied to fewer features",
        lambda e, d: co.pp.fit_pca(d["X"], n_components=5).transform(d["X"][:, :100]),
        ValueError,
        r"X has 100 features but the transform was fitted on 600",
        r"subset the data to the fitted features",
        _rna,
    ),
    bad(
        "pp-fit-lsi-too-many-components",
        "more components than cells or features",
        lambda e, d: co.pp.fit_lsi(d["atac"].X[:20], n_components=50),
        ValueError,
        r"n_components=50",
        r"choose 1 <= n_components <= 20",
        _atac,
    ),
    bad(
        "pp-gene-activity-of-rna",
        "gene names are not peak coordinates",
        lambda e, d: co.pp.gene_activity(d["rna"], "hg38"),
        ValueError,
        r"cannot parse 600 of 600 peak names, e\.g\. \['MORN1'",
        r"accepted formats are",
        query_rna,
    ),
    bad(
        "pp-gene-activity-unknown-genome",
        "hg19 is not bundled",
        lambda e, d: co.pp.gene_activity(d["atac"], "hg19"),
        ValueError,
        r"unknown genome 'hg19'",
        r"gene-body table",
        _atac,
    ),
    bad(
        "pp-gene-activity-binarised-float",
        "TF-IDF values are not counts",
        lambda e, d: co.pp.gene_activity(d["atac"], "hg38"),
        ValueError,
        r"atac.X has non-integer values",
        r"pass layer= naming the raw peak counts",
        lambda e: {"atac": AnnData(multiome().mod["atac"].X * 0.5, var=multiome().mod["atac"].var)},
    ),
    bad(
        "pp-gene-activity-negative-window",
        "a negative upstream window",
        lambda e, d: co.pp.gene_activity(d["atac"], "hg38", upstream=-5),
        ValueError,
        r"got -5",
        r"must be >= 0",
        _atac,
    ),
    good(
        "pp-gene-activity",
        "ATAC counts summed over genes: one row per cell, non-negative",
        lambda e, d: co.pp.gene_activity(d["atac"], "hg38"),
        lambda r, e, d: (
            r.n_obs == N_CELLS or pytest.fail(str(r)),
            np.testing.assert_array_less(-1e-9, r.X.data),
        ),
        _atac,
    ),
    bad(
        "pp-fit-pca-zero-target-sum",
        "normalising every cell to a total of 0",
        lambda e, d: co.pp.fit_pca(d["X"], n_components=5, target_sum=0),
        ValueError,
        r"target_sum=0",
        r"positive number",
        _rna,
    ),
    bad(
        "pp-mnn-prior-zero-genes",
        "a prior on zero variable genes",
        lambda e, d: co.pp.mnn_prior(d["mdata"], ["rna", "atac"], gene_annotation="hg38", n_hvg=0),
        ValueError,
        r"n_hvg=0",
        r"positive integer, or None",
        raw(),
    ),
    bad(
        "pp-parse-peaks-no-end",
        "a peak name without an end coordinate",
        lambda e, d: co.pp.parse_peaks(["chr1:100-200", "chr1:300"]),
        ValueError,
        r"\['chr1:300'\]",
        r"accepted formats are chr1:100-200",
    ),
    bad(
        "pp-parse-peaks-inverted",
        "a peak whose end lies before its start",
        lambda e, d: co.pp.parse_peaks(["chr1:200-100"]),
        ValueError,
        r"\['chr1:200-100'\]",
        r"swap",
    ),
    bad(
        "pp-mnn-prior-one-modality",
        "a prior aligns at least two modalities",
        lambda e, d: co.pp.mnn_prior(d["mdata"], ["rna"]),
        ValueError,
        r"got \['rna'\]",
        r"at least two modalities",
        raw(),
    ),
    bad(
        "pp-mnn-prior-unknown-modality",
        "a modality missing from mdata.mod",
        lambda e, d: co.pp.mnn_prior(d["mdata"], ["rna", "adt"]),
        ValueError,
        r"\['adt'\] are not in mdata.mod",
        r"available: \['rna', 'atac'\]",
        raw(),
    ),
    bad(
        "pp-mnn-prior-atac-without-genome",
        "ATAC gene activity needs an annotation",
        lambda e, d: co.pp.mnn_prior(d["mdata"], ["rna", "atac"]),
        ValueError,
        r"\['atac'\]",
        r"pass gene_annotation=",
        raw(),
    ),
    bad(
        "pp-mnn-prior-zero-components",
        "a zero-dimensional prior",
        lambda e, d: co.pp.mnn_prior(d["mdata"], ["rna", "atac"], gene_annotation="hg38", n_comps=0),
        ValueError,
        r"n_comps=0",
        r"positive integer",
        raw(),
    ),
    bad(
        "pp-mnn-prior-duplicate-modality",
        "a modality listed twice",
        lambda e, d: co.pp.common_gene_views(d["mdata"], ["rna", "rna"]),
        ValueError,
        r"\['rna', 'rna'\] list a modality twice",
        r"list each modality once",
        raw(),
    ),
    bad(
        "pp-mnn-correct-different-features",
        "data sets on different features cannot be corrected onto each other",
        lambda e, d: co.pp.mnn_correct([np.ones((10, 5)), np.ones((10, 6))]),
        ValueError,
        r"feature counts \[5, 6\]",
        r"must have the same features",
    ),
    bad(
        "pp-mnn-correct-k-zero",
        "zero neighbours",
        lambda e, d: co.pp.mnn_correct([np.eye(10), np.eye(10)], k=0),
        ValueError,
        r"k=0",
        r"k must be >= 1",
    ),
    bad(
        "pp-metacells-zero",
        "zero meta-cells",
        lambda e, d: co.pp.metacell_labels(d["X"], n_metacells=0),
        ValueError,
        r"n_metacells=0",
        r"positive integer",
        _rna,
    ),
    bad(
        "pp-gene-set-scores-no-sets",
        "peak names match no gene set",
        lambda e, d: co.pp.gene_set_scores(d["atac"], {"a": ["CD3E", "CD4"]}),
        ValueError,
        r"no gene set has between 10 and 500 genes",
        r"lower min_size",
        _atac,
    ),
    bad(
        "pp-gene-set-scores-normalised",
        "scores need counts",
        lambda e, d: co.pp.gene_set_scores(d["rna"], {"a": GENES}, min_size=1),
        ValueError,
        r"non-integer values",
        r"raw counts are required",
        lambda e: query_rna(e, lambda a: AnnData(np.log1p(a.X.toarray()), obs=a.obs, var=a.var)),
    ),
]


def _embedded(e, n=None) -> AnnData:
    rna = multiome().mod["rna"]
    rna.obsm["X_sccross"] = e.latent_rna.copy()
    return rna


def _embedded_input(change=None):
    def make(e) -> dict:
        rna = _embedded(e)
        if change is not None:
            change(rna)
        return {"rna": rna}

    return make


TL = [
    bad(
        "tl-knn-smooth-missing-embedding",
        "an embedding that was never stored",
        lambda e, d: co.tl.knn_smooth(d["rna"], use_rep="X_minnet", copy=True),
        ValueError,
        r"no 'X_minnet'",
        r"store a joint embedding there first",
        _embedded_input(),
    ),
    bad(
        "tl-knn-smooth-zero-neighbours",
        "zero neighbours smooth nothing",
        lambda e, d: co.tl.knn_smooth(d["rna"], use_rep="X_sccross", n_neighbors=0, copy=True),
        ValueError,
        r"got 0",
        r"between 1 and n_cells - 1 \(499\)",
        _embedded_input(),
    ),
    bad(
        "tl-knn-smooth-fractional-neighbours",
        "a fractional number of neighbours",
        lambda e, d: co.tl.knn_smooth(d["rna"], use_rep="X_sccross", n_neighbors=2.5, copy=True),
        ValueError,
        r"got 2\.5",
        r"pass an integer",
        _embedded_input(),
    ),
    bad(
        "tl-knn-smooth-percentile-zero",
        "a zero percentile drops every neighbour",
        lambda e, d: co.tl.knn_smooth(d["rna"], use_rep="X_sccross", percentile=0, copy=True),
        ValueError,
        r"got 0",
        r"percentile must be in \(0, 100\]",
        _embedded_input(),
    ),
    bad(
        "tl-knn-smooth-percentile-text",
        "a percentile given as text",
        lambda e, d: co.tl.knn_smooth(d["rna"], use_rep="X_sccross", percentile="95", copy=True),
        ValueError,
        r"got '95'",
        r"e\.g\. percentile=95",
        _embedded_input(),
    ),
    bad(
        "tl-knn-smooth-nan-embedding",
        "a NaN in the embedding",
        lambda e, d: co.tl.knn_smooth(d["rna"], use_rep="X_sccross", copy=True),
        ValueError,
        r"obsm\['X_sccross'\] has 1 NaN/inf",
        r"remove or impute",
        _embedded_input(lambda a: a.obsm["X_sccross"].__setitem__((0, 3), np.nan)),
    ),
    bad(
        "tl-knn-smooth-missing-layer",
        "a count layer that does not exist",
        lambda e, d: co.tl.knn_smooth(d["rna"], use_rep="X_sccross", layer="counts", copy=True),
        ValueError,
        r"no layer 'counts'",
        r"available layers",
        _embedded_input(),
    ),
    good(
        "tl-knn-smooth-copy",
        "copy=True smooths into a new object: every cell keeps at least its own counts",
        lambda e, d: co.tl.knn_smooth(d["rna"], use_rep="X_sccross", copy=True),
        lambda r, e, d: np.testing.assert_array_less(
            d["rna"].X.toarray() - 1e-6, r.layers["smoothed"].toarray()
        ),
        _embedded_input(),
    ),
    bad(
        "tl-minibulk-missing-column",
        "a cell-type column that does not exist",
        lambda e, d: co.tl.minibulk(d["rna"], groupby="celltype", use_rep="X_sccross"),
        ValueError,
        r"no obs column 'celltype'",
        r"available: \[",
        _embedded_input(),
    ),
    bad(
        "tl-minibulk-zero-groups",
        "zero mini-bulks",
        lambda e, d: co.tl.minibulk(d["rna"], groupby="cell_type", use_rep="X_sccross", n_groups=0),
        ValueError,
        r"n_groups=0",
        r"positive integer",
        _embedded_input(),
    ),
    bad(
        "tl-minibulk-nan-labels",
        "unlabelled cells would form a cell type called 'nan'",
        lambda e, d: co.tl.minibulk(d["rna"], groupby="cell_type", use_rep="X_sccross", n_groups=10),
        ValueError,
        r"2 cells have no label in obs\['cell_type'\]",
        r"drop those cells or label them",
        _embedded_input(lambda a: blank_obs(a.obs, "cell_type", [0, 1])),
    ),
    bad(
        "tl-minibulk-unknown-aggregate",
        "an aggregate that does not exist",
        lambda e, d: co.tl.minibulk(d["rna"], groupby="cell_type", use_rep="X_sccross", aggregate="median"),
        ValueError,
        r"got 'median'",
        r"'sum' or 'mean'",
        _embedded_input(),
    ),
    bad(
        "tl-minibulk-paired-mismatch",
        "paired=True with different cells",
        lambda e, d: co.tl.minibulk(
            [d["rna"], d["rna"][::-1].copy()], groupby="cell_type", use_rep="X_sccross", paired=True
        ),
        ValueError,
        r"paired=True",
        r"identical obs_names in the same order",
        _embedded_input(),
    ),
    good(
        "tl-minibulk",
        "ten mini-bulks of summed counts that keep every grouped cell's counts",
        lambda e, d: co.tl.minibulk(d["rna"], groupby="cell_type", use_rep="X_sccross", n_groups=10),
        lambda r, e, d: (
            r.n_obs >= 10 or pytest.fail(str(r)),
            np.testing.assert_allclose(r.X.sum(), d["rna"].X.sum(), rtol=1e-6),
        ),
        _embedded_input(),
    ),
    bad(
        "tl-peak-gene-unknown-method",
        "a correlation that does not exist",
        lambda e, d: co.tl.peak_gene_correlation(d["rna"], d["atac"], "hg38", method="kendall"),
        ValueError,
        r"got 'kendall'",
        r"'spearman' or 'pearson'",
        lambda e: dict(multiome().mod),
    ),
    bad(
        "tl-peak-gene-unmatched",
        "rows of the two modalities must match",
        lambda e, d: co.tl.peak_gene_correlation(d["rna"], d["atac"][::-1], "hg38"),
        ValueError,
        r"same obs_names",
        r"co.tl.minibulk\(\[rna, atac\]",
        lambda e: dict(multiome().mod),
    ),
    bad(
        "tl-peak-gene-negative-distance",
        "a negative window",
        lambda e, d: co.tl.peak_gene_correlation(d["rna"], d["atac"], "hg38", distance=-1000),
        ValueError,
        r"distance=-1000",
        r"non-negative",
        lambda e: dict(multiome().mod),
    ),
    bad(
        "tl-peak-gene-links-missing-columns",
        "links need gene and peak columns",
        lambda e, d: co.tl.peak_gene_correlation(
            d["rna"], d["atac"], None, links=pd.DataFrame({"gene": GENES})
        ),
        ValueError,
        r"links lacks columns \['peak'\]",
        r"'gene' and 'peak' columns",
        lambda e: dict(multiome().mod),
    ),
    bad(
        "tl-peak-gene-two-observations",
        "a correlation needs three observations",
        lambda e, d: co.tl.peak_gene_correlation(d["rna"][:2], d["atac"][:2], "hg38"),
        ValueError,
        r"got 2",
        r"at least 3 matched observations",
        lambda e: dict(multiome().mod),
    ),
]

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(50, 4))
LABELS = np.repeat(["B", "T"], 25)

METRICS = [
    bad(
        "metrics-foscttm-shapes",
        "two embeddings of different cells",
        lambda e, d: co.metrics.foscttm(Z, Z[:40]),
        ValueError,
        r"x has shape \(50, 4\) but y has shape \(40, 4\)",
        r"same cells in the same order",
    ),
    bad(
        "metrics-foscttm-nan",
        "a NaN coordinate",
        lambda e, d: co.metrics.foscttm(np.where(Z > 2, np.nan, Z), Z),
        ValueError,
        r"x has NaN",
        r"remove those cells",
    ),
    bad(
        "metrics-foscttm-one-d",
        "a vector instead of an embedding",
        lambda e, d: co.metrics.foscttm(Z[:, 0], Z[:, 0]),
        ValueError,
        r"got shape \(50,\)",
        r"must be 2-D",
    ),
    bad(
        "metrics-foscttm-sparse",
        "a sparse embedding",
        lambda e, d: co.metrics.foscttm(sp.csr_matrix(Z), Z),
        ValueError,
        r"x is sparse",
        r"must be dense arrays",
    ),
    bad(
        "metrics-foscttm-fractional-chunk",
        "a fractional chunk size",
        lambda e, d: co.metrics.foscttm(Z, Z, chunk_size=2.5),
        ValueError,
        r"chunk_size=2\.5",
        r"positive integer",
    ),
    good(
        "metrics-foscttm-perfect",
        "identical embeddings score 0",
        lambda e, d: co.metrics.foscttm(Z, Z),
        lambda r, e, d: r == 0.0 or pytest.fail(str(r)),
    ),
    bad(
        "metrics-label-transfer-k-zero",
        "zero voting neighbours",
        lambda e, d: co.metrics.label_transfer_accuracy(Z, LABELS, Z, LABELS, k=0),
        ValueError,
        r"got 0",
        r"between 1 and the number of reference cells \(50\)",
    ),
    bad(
        "metrics-label-transfer-label-count",
        "labels for fewer cells than embedded",
        lambda e, d: co.metrics.label_transfer_accuracy(Z, LABELS[:40], Z, LABELS),
        ValueError,
        r"reference_labels has 40 entries",
        r"50 cells",
    ),
    bad(
        "metrics-label-transfer-nan-label",
        "a missing label",
        lambda e, d: co.metrics.label_transfer_accuracy(
            Z, np.where(np.arange(50) == 0, None, LABELS), Z, LABELS
        ),
        ValueError,
        r"reference_labels has missing values",
        r"drop or label those cells",
    ),
    bad(
        "metrics-label-transfer-dimensions",
        "embeddings of different spaces",
        lambda e, d: co.metrics.label_transfer_accuracy(Z, LABELS, Z[:, :3], LABELS),
        ValueError,
        r"query has 3",
        r"same joint space",
    ),
    bad(
        "metrics-mixing-one-modality",
        "mixing needs two modalities",
        lambda e, d: co.metrics.modality_mixing({"rna": Z}),
        ValueError,
        r"1 modality",
        r"pass at least two",
    ),
    bad(
        "metrics-auroc-one-class",
        "an all-zero target has no positives",
        lambda e, d: co.metrics.auroc_binary(np.zeros((5, 5)), np.ones((5, 5))),
        ValueError,
        r"only one class",
        r"needs both positive and negative entries",
    ),
    bad(
        "metrics-auroc-shapes",
        "scores for other features",
        lambda e, d: co.metrics.auroc_binary(np.eye(5), np.ones((5, 4))),
        ValueError,
        r"scores has shape \(5, 4\)",
        r"same cells \(rows\) and features",
    ),
    bad(
        "metrics-marker-correlation-zero-markers",
        "zero markers per type",
        lambda e, d: co.metrics.marker_correlation(np.abs(Z), np.abs(Z), LABELS, n_markers=0),
        ValueError,
        r"got 0",
        r"between 1 and the number of features \(4\)",
    ),
    bad(
        "metrics-proportions-one-type",
        "one cell type has no proportions to correlate",
        lambda e, d: co.metrics.cell_type_proportion_correlation(["B"] * 5, ["B"] * 3),
        ValueError,
        r"only one cell type \('B'\)",
        r"at least two",
    ),
    bad(
        "metrics-rmse-empty",
        "no entries to compare",
        lambda e, d: co.metrics.rmse(np.zeros((0, 3)), np.zeros((0, 3))),
        ValueError,
        r"empty",
        r"at least one entry",
    ),
    bad(
        "metrics-fidelity-negative-counts",
        "normalising scaled data as counts",
        lambda e, d: co.metrics.generation_fidelity(Z, Z),
        ValueError,
        r"real has negative values",
        r"log_normalize=False",
    ),
    bad(
        "metrics-integration-one-modality",
        "integration metrics need two modalities",
        lambda e, d: co.metrics.integration_metrics(Z, LABELS, ["rna"] * 50),
        ValueError,
        r"single value \('rna'\)",
        r"at least two",
    ),
    bad(
        "metrics-label-transfer-fractional-k",
        "a fractional number of voting neighbours",
        lambda e, d: co.metrics.label_transfer_accuracy(Z, LABELS, Z, LABELS, k=2.5),
        ValueError,
        r"got 2\.5",
        r"pass an integer, e\.g\. k=15",
    ),
    bad(
        "metrics-marker-correlation-fractional-markers",
        "a fractional number of markers",
        lambda e, d: co.metrics.marker_correlation(np.abs(Z), np.abs(Z), LABELS, n_markers=1.5),
        ValueError,
        r"got 1\.5",
        r"pass an integer",
    ),
    bad(
        "metrics-auroc-max-entries-zero",
        "scoring zero sampled entries",
        lambda e, d: co.metrics.auroc_binary(np.eye(5), np.eye(5), max_entries=0),
        ValueError,
        r"max_entries=0",
        r"positive integer, or None",
    ),
    bad(
        "metrics-integration-fractional-neighbours",
        "a fractional neighbourhood size",
        lambda e, d: co.metrics.integration_metrics(
            Z, LABELS, np.repeat(["rna", "atac"], 25), n_neighbors=2.5
        ),
        ValueError,
        r"got 2\.5",
        r"at least 2 and below the number of cells \(50\)",
    ),
    good(
        "metrics-foscttm-python-lists",
        "nested python lists are embeddings too",
        lambda e, d: co.metrics.foscttm(Z.tolist(), Z.tolist()),
        lambda r, e, d: r == 0.0 or pytest.fail(str(r)),
    ),
    good(
        "metrics-pearson-per-cell-sparse",
        "sparse and dense inputs give one correlation per cell",
        lambda e, d: co.metrics.pearson_per_cell(sp.csr_matrix(np.abs(Z)), np.abs(Z)),
        lambda r, e, d: np.testing.assert_allclose(r, 1.0),
    ),
]

CASES = (
    SETUP + INIT + TRAIN + LATENT + GENERATE + SIMULATE + PERTURB + FILES + QUERY + MINNET + PP + TL + METRICS
)


# ---------------------------------------------------------------------------- the tests
def test_catalogue_is_documented():
    """Every case has a unique id, a reason, and exactly one expectation with both regexes."""
    ids = [c.id for c in CASES]
    assert len(CASES) >= 80
    assert len(set(ids)) == len(ids), [i for i in ids if ids.count(i) > 1]
    for case in CASES:
        assert case.why, case.id
        assert (case.raises is None) != (case.ok is None), case.id
        if case.raises is not None:
            assert case.value and case.fix, case.id


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, env: Env):
    inputs = case.inputs(env) if case.inputs is not None else {}
    tracked = {"inputs": inputs, "SCCROSS data": env.sccross_mdata, "MINNET data": env.minnet_mdata}
    before = _state(tracked)
    before_without_scvi = _state(tracked, ignore_scvi=True)
    scvi_before = _scvi_fields(tracked)
    if case.raises is not None:
        with pytest.raises(case.raises) as error:
            case.call(env, inputs)
        message = str(error.value)
        assert re.search(case.value, message), f"{case.why}: {message!r} does not name {case.value!r}"
        assert re.search(case.fix, message), f"{case.why}: {message!r} gives no fix like {case.fix!r}"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. scvi's categorical casting; not what is tested
            result = case.call(env, inputs)
        case.ok(result, env, inputs)
    if case.registers and case.raises is None:
        # the documented change of a successful setup: scvi's _scvi_* fields, nothing else
        assert set(_scvi_fields(tracked)) >= set(scvi_before) and _scvi_fields(inputs), "nothing registered"
        _assert_same(before_without_scvi, _state(tracked, ignore_scvi=True), "user objects")
    else:
        added = sorted(set(_scvi_fields(tracked)) - set(scvi_before))
        assert not added, f"{case.id} left scvi fields behind: {added}"
        _assert_same(before, _state(tracked), "user objects")


def test_failed_registration_leaves_no_scvi_fields(monkeypatch):
    """A registration that fails half-way (after scvi wrote some _scvi_* columns) is undone."""
    from scvi.data.fields import MuDataCategoricalObsField

    register = MuDataCategoricalObsField.register_field

    def fail_on_atac(self, mdata):
        if self.mod_key == "atac":
            raise RuntimeError("registration failed")
        return register(self, mdata)

    monkeypatch.setattr(MuDataCategoricalObsField, "register_field", fail_on_atac)
    for setup_call in (
        lambda m: co.SCCROSS.setup_mudata(
            m, modalities=["rna", "atac"], gene_annotation="hg38", batch_keys="batch"
        ),
        lambda m: co.MINNET.setup_mudata(m, modalities=["atac", "rna"], labels_key="cell_type"),
    ):
        mdata = multiome()
        before = _state(mdata)
        with pytest.raises(RuntimeError, match="registration failed"):
            setup_call(mdata)
        assert not _scvi_fields(mdata), _scvi_fields(mdata)
        _assert_same(before, _state(mdata), "mdata")


def test_snapshots_see_every_change():
    """The unchanged-input check notices a changed count, an added column, obsm entry or uns key."""
    changes = [
        lambda m: m.mod["rna"].X.data.__setitem__(0, m.mod["rna"].X.data[0] + 1),
        lambda m: m.mod["atac"].obs.__setitem__("_scvi_batch_atac", 0),
        lambda m: m.mod["rna"].var.__setitem__("highly_variable", True),
        lambda m: m.mod["rna"].obsm.__setitem__("X_pca", np.zeros((N_CELLS, 2))),
        lambda m: m.mod["rna"].layers.__setitem__("counts", m.mod["rna"].X),
        lambda m: m.uns.__setitem__("neighbors", {}),
    ]
    for change in changes:
        mdata = multiome()
        before = _state(mdata)
        change(mdata)
        with pytest.raises(AssertionError):
            _assert_same(before, _state(mdata), "mdata")
