"""two_sample_realism: a classifier and kNN mixing that tell generated from real cells."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from crossomics.metrics import two_sample_realism


def _counts(rates, n, rng):
    return rng.poisson(rates, size=(n, len(rates)))


@pytest.fixture
def sets():
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 1.0, size=50)
    return rates, _counts(rates, 400, rng), _counts(rates, 300, rng), rng


def test_same_distribution_passes_a_shifted_one_does_not(sets):
    rates, real, same, rng = sets
    scaled = rates.copy()
    scaled[:10] *= 3  # ten genes three times as high
    different = _counts(scaled, 300, rng)
    good = two_sample_realism(real, same).loc["all"]
    bad = two_sample_realism(real, different).loc["all"]
    assert 0.4 < good["auc"] < 0.6 and good["mixing"] > 0.9
    assert bad["auc"] > 0.95 and bad["mixing"] < 0.75
    assert (good["n_real"], good["n_generated"]) == (400, 300)


def test_per_cell_type_rows_find_the_one_bad_type(sets):
    rates, real, _, rng = sets
    other = rates[::-1].copy()
    real = np.vstack([real, _counts(other, 200, rng)])
    labels_real = ["a"] * 400 + ["b"] * 200
    generated = np.vstack([_counts(rates, 300, rng), _counts(other * 1.0 + 3 * (rates > 2), 150, rng)])
    labels_generated = ["a"] * 300 + ["b"] * 150
    table = two_sample_realism(real, generated, labels_real, labels_generated)
    assert list(table.index) == ["all", "a", "b"]
    assert table.loc["a", "auc"] < 0.62 and table.loc["b", "auc"] > 0.9
    assert table.loc[["a", "b"], "n_generated"].tolist() == [300, 150]
    # a type with too few generated cells gets no row
    few = two_sample_realism(real, generated[:310], labels_real, labels_generated[:310])
    assert list(few.index) == ["all", "a"]


def test_sparse_equals_dense_same_seed_same_result_inputs_kept(sets):
    _, real, same, _ = sets
    kept = real.copy()
    dense = two_sample_realism(real, same, mmd_permutations=50, seed=3)
    sparse = two_sample_realism(sp.csr_matrix(real), sp.csr_matrix(same), mmd_permutations=50, seed=3)
    np.testing.assert_allclose(dense.to_numpy(float), sparse.to_numpy(float), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(real, kept)
    assert dense.loc["all", "mmd_pvalue"] > 0.05


def test_mmd_rejects_a_shift(sets):
    rates, real, _, rng = sets
    table = two_sample_realism(real, _counts(rates * 1.5, 300, rng), mmd_permutations=50)
    assert table.loc["all", "mmd"] > 0 and table.loc["all", "mmd_pvalue"] <= 1 / 51 + 1e-12


def test_binary_compares_detection(sets):
    rates, real, same, rng = sets
    assert two_sample_realism(real, same, binary=True).loc["all", "auc"] < 0.6
    assert two_sample_realism(real, _counts(rates * 4, 300, rng), binary=True).loc["all", "auc"] > 0.9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"generated": np.ones((50, 7))}, "same features"),
        ({"labels_real": ["a"] * 400}, "labels_generated"),
        ({"n_folds": 1}, "n_folds=1"),
        ({"min_cells": 5}, "min_cells=5"),
        ({"mmd_permutations": -1}, "mmd_permutations=-1"),
        ({"generated": np.ones((10, 50))}, "at least min_cells=20"),
        ({"generated": -np.ones((300, 50))}, "negative values"),
    ],
)
def test_bad_inputs_name_the_value(sets, kwargs, match):
    _, real, same, _ = sets
    arguments = {"real": real, "generated": same, **kwargs}
    with pytest.raises(ValueError, match=match):
        two_sample_realism(**arguments)
