import numpy as np
import pytest
from scipy.spatial.distance import cdist

from crossomics.metrics import foscttm, foscttm_per_cell


def _brute_force(x, y):
    dist = cdist(x, y)
    true = np.diag(dist)
    x_to_y = (dist < true[:, None]).sum(axis=1) / len(x)
    y_to_x = (dist < true[None, :]).sum(axis=0) / len(x)
    return x_to_y, y_to_x


def test_identical_embeddings_score_zero():
    z = np.random.default_rng(0).normal(size=(300, 8))
    assert foscttm(z, z) == 0.0


def test_independent_embeddings_score_one_half():
    rng = np.random.default_rng(1)
    score = foscttm(rng.normal(size=(500, 10)), rng.normal(size=(500, 10)))
    assert abs(score - 0.5) < 0.05


def test_hand_computed_case():
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.array([[0.0], [1.6], [1.2]])
    x_to_y, y_to_x = foscttm_per_cell(x, y)
    # x1=1: y2 (0.2 away) is closer than y1 (0.6); x2=2: y1 (0.4) closer than y2 (0.8); same for y
    np.testing.assert_allclose(x_to_y, [0, 1 / 3, 1 / 3])
    np.testing.assert_allclose(y_to_x, [0, 1 / 3, 1 / 3])
    assert foscttm(x, y) == pytest.approx(2 / 9)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_chunked_matches_brute_force(chunk_size):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, 5))
    y = x + rng.normal(scale=0.8, size=x.shape)
    expected_x_to_y, expected_y_to_x = _brute_force(x, y)
    x_to_y, y_to_x = foscttm_per_cell(x, y, chunk_size=chunk_size)
    np.testing.assert_array_equal(x_to_y, expected_x_to_y)
    np.testing.assert_array_equal(y_to_x, expected_y_to_x)
    assert foscttm(x, y, chunk_size=chunk_size) == pytest.approx(
        (expected_x_to_y.mean() + expected_y_to_x.mean()) / 2
    )


def test_swapping_arguments_swaps_directions():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(80, 4)), rng.normal(size=(80, 4))
    x_to_y, y_to_x = foscttm_per_cell(x, y)
    swapped_x_to_y, swapped_y_to_x = foscttm_per_cell(y, x)
    np.testing.assert_array_equal(swapped_x_to_y, y_to_x)
    np.testing.assert_array_equal(swapped_y_to_x, x_to_y)
    assert foscttm(x, y) == pytest.approx(foscttm(y, x))


def test_better_alignment_scores_lower():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 6))
    noisy = [foscttm(x, x + rng.normal(scale=s, size=x.shape)) for s in (0.1, 0.5, 2.0)]
    assert noisy[0] < noisy[1] < noisy[2]


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="same cells in the same order"):
        foscttm(np.zeros((10, 3)), np.zeros((9, 3)))
    with pytest.raises(ValueError, match="2-D"):
        foscttm(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="chunk_size"):
        foscttm(np.zeros((10, 3)), np.zeros((10, 3)), chunk_size=0)


def test_collapsed_embeddings_score_as_random_not_perfect():
    collapsed = np.zeros((100, 5))
    assert foscttm(collapsed, collapsed) == pytest.approx(0.495)  # ties count half: 99 / 2 / 100
    # partial collapse: two groups of identical points, the true match ties with its group
    grouped = np.repeat([[0.0], [10.0]], 50, axis=0)
    assert foscttm(grouped, grouped) == pytest.approx(49 / 2 / 100)
