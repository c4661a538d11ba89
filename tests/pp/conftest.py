"""Real-data fixtures for the preprocessing tests (small subsets keep the suite fast)."""

from __future__ import annotations

from contextlib import contextmanager

import mudata as md
import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData

import crossomics as co

SUBSET_SIZE = 2000


@pytest.fixture(scope="session")
def cortex() -> md.MuData:
    """The full mouse cortex SNARE-seq data (10,309 paired cells); tests must not modify it."""
    return co.datasets.mouse_motor_cortex()


@pytest.fixture(scope="session")
def cortex_subset(cortex) -> md.MuData:
    """2,000 random paired mouse cortex cells, as a new MuData."""
    cells = np.sort(np.random.default_rng(0).choice(cortex.n_obs, SUBSET_SIZE, replace=False))
    with md.set_options(pull_on_update=False):
        return md.MuData({"rna": cortex["rna"][cells].copy(), "atac": cortex["atac"][cells].copy()})


@pytest.fixture(scope="session")
def cite() -> md.MuData:
    """Human BMMC CITE-seq, 600 cells, modalities ``rna`` and ``adt``."""
    return co.datasets.bmmc_cite()


@pytest.fixture(scope="session")
def multiome() -> md.MuData:
    """Human BMMC 10x Multiome, 500 cells, modalities ``rna`` and ``atac``."""
    return co.datasets.bmmc_multiome()


def _snapshot(adata: AnnData) -> dict:
    X = adata.X
    return {
        "X": X.copy() if X is not None else None,
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "obsm": sorted(adata.obsm),
        "layers": sorted(adata.layers),
        "uns": sorted(adata.uns),
    }


def _assert_same(before: dict, adata: AnnData) -> None:
    after = _snapshot(adata)
    if before["X"] is None:
        assert after["X"] is None
    else:
        assert type(after["X"]) is type(before["X"])
        assert after["X"].dtype == before["X"].dtype
        difference = after["X"] - before["X"]
        assert (abs(difference).max() if sp.issparse(difference) else np.abs(difference).max()) == 0
    for key in ("obs", "var"):
        assert after[key].equals(before[key]), f"{key} changed"
    for key in ("obsm", "layers", "uns"):
        assert after[key] == before[key], f"{key} keys changed"


@contextmanager
def unchanged(*objects: AnnData | md.MuData):
    """Assert that the AnnData/MuData objects look the same after the block as before it."""
    adatas = []
    for obj in objects:
        adatas.extend(obj.mod.values() if isinstance(obj, md.MuData) else [obj])
    snapshots = [_snapshot(adata) for adata in adatas]
    mudata_obsm = [sorted(obj.obsm) for obj in objects if isinstance(obj, md.MuData)]
    yield
    for before, adata in zip(snapshots, adatas, strict=True):
        _assert_same(before, adata)
    assert mudata_obsm == [sorted(obj.obsm) for obj in objects if isinstance(obj, md.MuData)]


@pytest.fixture
def assert_unchanged():
    """Context manager: ``with assert_unchanged(adata, mdata): ...`` checks nothing was modified."""
    return unchanged
