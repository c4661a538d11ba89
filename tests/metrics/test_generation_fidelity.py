import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from crossomics.metrics import (
    _inputs,
    auroc_binary,
    cell_type_proportion_correlation,
    generation_fidelity,
    marker_correlation,
    pearson_per_cell,
    pearson_per_feature,
    rmse,
)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    real = rng.poisson(1.5, size=(60, 25)).astype(float)
    generated = real + rng.normal(scale=1.0, size=real.shape)
    return real, generated


def _corrcoef_rows(a, b):
    return np.array([np.corrcoef(u, v)[0, 1] for u, v in zip(a, b, strict=True)])


@pytest.mark.parametrize("to_sparse", [False, True])
def test_pearson_per_cell_matches_corrcoef(pair, to_sparse):
    real, generated = pair
    real_in = sp.csr_matrix(real) if to_sparse else real
    np.testing.assert_allclose(
        pearson_per_cell(real_in, generated), _corrcoef_rows(real, generated), rtol=1e-10
    )


@pytest.mark.parametrize("to_sparse", [False, True])
def test_pearson_per_feature_matches_corrcoef(pair, to_sparse):
    real, generated = pair
    real_in = sp.csr_matrix(real) if to_sparse else real
    np.testing.assert_allclose(
        pearson_per_feature(real_in, generated), _corrcoef_rows(real.T, generated.T), rtol=1e-10
    )


def test_row_blocks_give_the_same_result(pair, monkeypatch):
    real, generated = pair
    whole = (pearson_per_cell(real, generated), pearson_per_feature(real, generated), rmse(real, generated))
    # 60 entries per block = 2 rows of 25 features, so 30 blocks
    monkeypatch.setattr(_inputs, "_BLOCK_ENTRIES", 60)
    blocked = (pearson_per_cell(real, generated), pearson_per_feature(real, generated), rmse(real, generated))
    np.testing.assert_allclose(blocked[0], whole[0], rtol=1e-12)
    np.testing.assert_allclose(blocked[1], whole[1], rtol=1e-12)
    assert blocked[2] == pytest.approx(whole[2], rel=1e-12)


def test_integer_and_float32_inputs_match_float64():
    rng = np.random.default_rng(7)
    counts = rng.poisson(2.0, size=(40, 30))
    generated = rng.poisson(2.0, size=counts.shape).astype(np.float32)
    as_float = generation_fidelity(counts.astype(float), generated.astype(float))
    for real in (counts.astype(np.int32), sp.csr_matrix(counts.astype(np.int32))):
        for key, value in generation_fidelity(real, generated).items():
            assert value == pytest.approx(as_float[key], rel=1e-6)


def test_constant_profiles_give_nan():
    real = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    generated = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0]])
    per_cell = pearson_per_cell(real, generated)
    per_feature = pearson_per_feature(real, generated)
    assert np.isnan(per_cell[2]) and np.isfinite(per_cell[:2]).all()
    assert np.isnan(per_feature[1]) and np.isfinite(per_feature[[0, 2]]).all()


def test_rmse_matches_numpy(pair):
    real, generated = pair
    expected = np.sqrt(np.mean((real - generated) ** 2))
    assert rmse(sp.csr_matrix(real), generated) == pytest.approx(expected, rel=1e-12)
    assert rmse(real, real) == 0.0


def test_auroc_matches_sklearn():
    rng = np.random.default_rng(1)
    truth = rng.random((80, 40)) < 0.2
    scores = truth * 0.3 + rng.random(truth.shape)
    expected = roc_auc_score(truth.ravel(), scores.ravel())
    assert auroc_binary(sp.csr_matrix(truth.astype(int)), scores) == pytest.approx(expected, abs=1e-12)
    # counts, not only 0/1, are accepted: anything > 0 is positive
    assert auroc_binary(truth * 3, scores) == pytest.approx(expected, abs=1e-12)


def test_auroc_subsampling_is_close_and_reproducible():
    rng = np.random.default_rng(2)
    truth = rng.random((200, 300)) < 0.1
    scores = truth * 0.5 + rng.random(truth.shape)
    exact = auroc_binary(truth, scores, max_entries=None)
    sampled = auroc_binary(sp.csr_matrix(truth), scores, max_entries=20_000, seed=3)
    assert abs(sampled - exact) < 0.02
    assert sampled == auroc_binary(sp.csr_matrix(truth), scores, max_entries=20_000, seed=3)


def test_auroc_needs_both_classes():
    with pytest.raises(ValueError, match="only one class"):
        auroc_binary(np.zeros((3, 3)), np.ones((3, 3)))


def test_proportion_correlation():
    labels = np.array(["B"] * 50 + ["T"] * 30 + ["NK"] * 20)
    assert cell_type_proportion_correlation(labels, labels) == pytest.approx(1.0)
    # same proportions from a different number of cells
    assert cell_type_proportion_correlation(labels, labels[::2]) == pytest.approx(1.0)
    # a type absent from the prediction counts as proportion 0: [.5, .3, .2] vs [.5, .5, 0]
    predicted = np.array(["B"] * 50 + ["T"] * 50)
    expected = np.corrcoef([0.2, 0.5, 0.3], [0.0, 0.5, 0.5])[0, 1]
    assert cell_type_proportion_correlation(labels, predicted) == pytest.approx(expected)
    with pytest.raises(ValueError, match="at least two"):
        cell_type_proportion_correlation(["B", "B"], ["B"])


def _typed_expression(rng, n_per_type=40, n_features=60):
    labels = np.repeat(["B", "T", "NK", "Mono"], n_per_type)
    real = rng.poisson(0.5, size=(labels.size, n_features)).astype(float)
    for i, t in enumerate(["B", "T", "NK", "Mono"]):
        real[labels == t, 10 * i : 10 * i + 5] += rng.poisson(4.0, size=((labels == t).sum(), 5))
    return np.log1p(real), labels


def test_marker_correlation_high_for_faithful_and_low_for_shuffled():
    rng = np.random.default_rng(3)
    real, labels = _typed_expression(rng)
    assert marker_correlation(real, real, labels) == pytest.approx(1.0)
    assert marker_correlation(sp.csr_matrix(real), real + 0.1 * rng.normal(size=real.shape), labels) > 0.95
    shuffled = real[rng.permutation(real.shape[0])]
    assert marker_correlation(real, shuffled, labels) < 0.5


def test_marker_correlation_matrix_scores_every_type_at_every_marker():
    rng = np.random.default_rng(4)
    real, labels = _typed_expression(rng)
    # T cells given B's markers at B's level: each type's own markers are untouched, so only the
    # full (types x markers) matrix sees the lost contrast
    generated = real.copy()
    generated[labels == "T", 0:5] = real[labels == "B", 0:5].mean(0)
    assert marker_correlation(real, generated, labels, entries="own") == pytest.approx(1.0)
    assert marker_correlation(real, generated, labels, entries="matrix") < 0.9


def test_marker_correlation_validates_inputs():
    real = np.zeros((6, 8))
    with pytest.raises(ValueError, match="single cell type"):
        marker_correlation(real, real, ["B"] * 6)
    with pytest.raises(ValueError, match="n_markers"):
        marker_correlation(real, real, ["B", "T"] * 3, n_markers=9)
    with pytest.raises(ValueError, match="labels has 5 entries"):
        marker_correlation(real, real, ["B", "T", "B", "T", "B"])
    with pytest.raises(ValueError, match="entries="):
        marker_correlation(real, real, ["B", "T"] * 3, entries="pairs")


def test_generation_fidelity_counts():
    rng = np.random.default_rng(4)
    expression, labels = _typed_expression(rng)
    counts = np.expm1(expression)
    perfect = generation_fidelity(sp.csr_matrix(counts), counts, labels=labels)
    assert set(perfect) == {
        "pearson_per_cell",
        "pearson_per_feature",
        "rmse",
        "marker_correlation",
        "marker_correlation_own",
    }
    assert perfect["pearson_per_cell"] == pytest.approx(1.0)
    assert perfect["pearson_per_feature"] == pytest.approx(1.0)
    assert perfect["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert perfect["marker_correlation"] == pytest.approx(1.0)
    assert perfect["marker_correlation_own"] == pytest.approx(1.0)
    noisy = generation_fidelity(counts, rng.poisson(counts + 0.5), labels=labels)
    assert 0.3 < noisy["pearson_per_cell"] < perfect["pearson_per_cell"]
    assert noisy["rmse"] > 0.1


def test_log_normalisation_matches_scanpy():
    import anndata as ad
    import scanpy as sc

    rng = np.random.default_rng(5)
    counts = rng.poisson(2.0, size=(30, 20)).astype(float)
    generated = rng.poisson(2.0, size=counts.shape).astype(float)
    reference = [ad.AnnData(m.copy()) for m in (counts, generated)]
    for adata in reference:
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
    expected = rmse(reference[0].X, reference[1].X)
    assert generation_fidelity(counts, generated)["rmse"] == pytest.approx(expected, rel=1e-10)
    assert generation_fidelity(counts, generated, log_normalize=False)["rmse"] == pytest.approx(
        rmse(counts, generated)
    )


def test_generation_fidelity_binary():
    rng = np.random.default_rng(6)
    accessible = rng.random((50, 80)) < 0.15
    probabilities = np.clip(accessible * 0.4 + rng.random(accessible.shape) * 0.6, 0, 1)
    scores = generation_fidelity(sp.csr_matrix(accessible * 2), probabilities, binary=True)
    assert set(scores) == {"pearson_per_cell", "pearson_per_feature", "rmse", "auroc"}
    assert scores["auroc"] == pytest.approx(roc_auc_score(accessible.ravel(), probabilities.ravel()))
    assert scores["auroc"] > 0.8


def test_mismatched_or_invalid_inputs_raise():
    with pytest.raises(ValueError, match=r"real has shape \(3, 4\) but generated has shape \(3, 5\)"):
        pearson_per_cell(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="real_binary has shape"):
        auroc_binary(np.zeros((3, 4)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        rmse(np.full((2, 2), np.nan), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="log_normalize=False"):
        generation_fidelity(np.ones((3, 3)), -np.ones((3, 3)))
