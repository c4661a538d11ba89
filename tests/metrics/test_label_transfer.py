import numpy as np
import pytest

from crossomics.metrics import label_transfer_accuracy, transfer_labels


def _clusters(rng, n_per_type, types, spread=1.0):
    labels = np.repeat(types, n_per_type)
    centres = {t: 20.0 * i for i, t in enumerate(types)}
    x = np.array([centres[t] for t in labels])[:, None] + spread * rng.normal(size=(labels.size, 6))
    return x, labels


@pytest.mark.parametrize("weighted", [True, False])
def test_separated_clusters_transfer_perfectly(weighted):
    rng = np.random.default_rng(0)
    reference, reference_labels = _clusters(rng, 40, ["B", "T", "NK"])
    query, query_labels = _clusters(rng, 25, ["B", "T", "NK"])
    predicted = transfer_labels(reference, reference_labels, query, weighted=weighted)
    np.testing.assert_array_equal(predicted, query_labels)
    assert label_transfer_accuracy(reference, reference_labels, query, query_labels, weighted=weighted) == 1.0


def test_random_embeddings_score_chance():
    rng = np.random.default_rng(1)
    types = np.array(["a", "b", "c", "d"])
    accuracy = label_transfer_accuracy(
        rng.normal(size=(1000, 5)),
        rng.choice(types, 1000),
        rng.normal(size=(1000, 5)),
        rng.choice(types, 1000),
    )
    assert abs(accuracy - 1 / 4) < 0.05


def test_weighted_vote_favours_close_neighbours():
    reference = np.array([[0.1], [1.0], [1.1]])
    labels = np.array(["A", "B", "B"])
    query = np.array([[0.0]])
    # weights 1/0.1 = 10 for A against 1/1.0 + 1/1.1 = 1.9 for B
    assert transfer_labels(reference, labels, query, k=3, weighted=True)[0] == "A"
    assert transfer_labels(reference, labels, query, k=3, weighted=False)[0] == "B"


def test_categorical_labels_are_compared_by_value():
    import pandas as pd

    rng = np.random.default_rng(2)
    reference, reference_labels = _clusters(rng, 20, ["B", "T"])
    query, query_labels = _clusters(rng, 10, ["B", "T"])
    accuracy = label_transfer_accuracy(
        reference, pd.Categorical(reference_labels), query, pd.Series(query_labels, dtype="category"), k=5
    )
    assert accuracy == 1.0


def test_invalid_inputs_raise():
    reference = np.zeros((10, 3))
    labels = np.array(["a"] * 10)
    with pytest.raises(ValueError, match="same joint space"):
        transfer_labels(reference, labels, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="reference_labels has 9 entries"):
        transfer_labels(reference, labels[:9], np.zeros((4, 3)))
    with pytest.raises(ValueError, match="k must be between 1 and the number of reference cells"):
        transfer_labels(reference, labels, np.zeros((4, 3)), k=11)
    with pytest.raises(ValueError, match="query_labels has 3 entries"):
        label_transfer_accuracy(reference, labels, np.zeros((4, 3)), labels[:3])
