"""MINNET flexible margin: per-minibatch shortest paths and Siamese pair sampling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra

from crossomics.module._minnet import MINNETModule
from crossomics.train._graph_margin import GraphDistances
from crossomics.train._minnet_pairs import ShuffledBatchSampler, SiamesePairDataset


def knn_like_graph(n_cells: int = 300, n_neighbors: int = 6, seed: int = 0) -> sp.csr_matrix:
    """Symmetric KNN graph of random points with edge lengths in (0.01, 1.01], like 1.01 - connectivity."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n_cells, 3))
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    neighbours = np.argsort(squared, axis=1)[:, 1 : n_neighbors + 1]
    rows = np.repeat(np.arange(n_cells), n_neighbors)
    lengths = 1.01 - rng.uniform(0.0, 1.0, size=rows.size)
    graph = sp.csr_matrix((lengths, (rows, neighbours.ravel())), shape=(n_cells, n_cells))
    return graph.maximum(graph.T).tocsr()


def test_pair_distances_match_dense_all_pairs_dijkstra():
    graph = knn_like_graph()
    dense = dijkstra(graph, directed=False)
    rng = np.random.default_rng(1)
    sources, targets = rng.integers(300, size=500), rng.integers(300, size=500)

    distances = GraphDistances(graph).between(sources, targets)

    np.testing.assert_allclose(distances, dense[sources, targets])


def test_limited_search_is_exact_below_the_limit_and_capped_above():
    graph = knn_like_graph()
    dense = dijkstra(graph, directed=False)
    limit = float(np.median(dense))
    rng = np.random.default_rng(2)
    sources, targets = rng.integers(300, size=500), rng.integers(300, size=500)

    distances = GraphDistances(graph, max_distance=limit).between(sources, targets)

    expected = dense[sources, targets]
    near = expected <= limit
    assert 0 < near.sum() < near.size
    np.testing.assert_allclose(distances[near], expected[near])
    np.testing.assert_allclose(distances[~near], limit)


def test_disconnected_pairs_get_the_largest_distance_seen():
    graph = sp.block_diag([knn_like_graph(50, seed=3), knn_like_graph(50, seed=4)]).tocsr()
    distances = GraphDistances(graph).between(np.array([0, 0]), np.array([1, 75]))
    assert np.isfinite(distances).all()
    assert distances[1] >= distances[0]


def make_dataset(strategy: str = "between") -> SiamesePairDataset:
    n_cells = 300
    rng = np.random.default_rng(5)
    inputs = tuple(sp.csr_matrix(rng.poisson(1.0, size=(n_cells, n)).astype(np.float32)) for n in (20, 15))
    labels = rng.integers(3, size=n_cells)
    return SiamesePairDataset(
        inputs, labels, GraphDistances(knn_like_graph()), n_sources=8, negative_strategy=strategy
    )


@pytest.mark.parametrize("strategy", ["between", "within"])
def test_minibatch_has_three_negatives_per_positive_with_graph_margins(strategy):
    dataset = make_dataset(strategy)
    cells = np.arange(10, 74)
    batch = dataset[(cells, 123)]

    assert batch["x_first"].shape == (64, 20) and batch["x_second"].shape == (64, 15)
    anchor, partner = batch["negative_anchor"].numpy(), batch["negative_partner"].numpy()
    assert anchor.size == 3 * 64
    assert np.all(anchor != partner)
    assert np.unique(anchor).size <= 8
    same_modality = batch["negative_anchor_modality"] == batch["negative_partner_modality"]
    assert bool(same_modality.all()) if strategy == "within" else not bool(same_modality.any())
    expected = dijkstra(dataset.distances.graph, directed=False)[cells[anchor], cells[partner]]
    np.testing.assert_allclose(batch["negative_distance"].numpy(), expected, rtol=1e-6)


def test_same_seed_gives_the_same_pairs_and_batches():
    dataset = make_dataset()
    first = dataset[(np.arange(40), 7)]
    second = dataset[(np.arange(40), 7)]
    for key in first:
        assert torch.equal(first[key], second[key])
    order_a = [b.tolist() for b, _ in ShuffledBatchSampler(np.arange(98), 32, seed=3)]
    order_b = [b.tolist() for b, _ in ShuffledBatchSampler(np.arange(98), 32, seed=3)]
    assert order_a == order_b
    # three full batches of distinct cells; the trailing batch of 2 cells is dropped this epoch
    assert [len(b) for b in order_a] == [32, 32, 32]
    assert np.unique(np.concatenate(order_a)).size == 96


def test_flexible_margin_adds_the_cell_type_offset():
    module = MINNETModule(
        (np.zeros(4), np.zeros(3)), (np.ones(4), np.ones(3)), n_labels=2, n_hidden=8, n_latent=2
    )
    # identical embeddings for everyone: the negative loss is then exactly 0.5 * mean(margin^2) terms
    inference = {"z": torch.zeros(2, 2, 2), "logits": torch.zeros(2, 2, 2)}
    tensors = {
        "labels": torch.tensor([0, 1]),
        "negative_anchor": torch.tensor([0, 0]),
        "negative_partner": torch.tensor([1, 1]),
        "negative_anchor_modality": torch.tensor([0, 0]),
        "negative_partner_modality": torch.tensor([1, 1]),
        "negative_distance": torch.tensor([0.5, 0.5]),
    }
    loss = module.loss(tensors, inference, {})
    distance = np.sqrt(1e-3)
    margin = 10.0 * (0.5 + 3.0)
    expected = 0.5 * (2 * (margin - distance) ** 2) / 4  # 2 positives (0) + 2 negatives
    np.testing.assert_allclose(loss.extra_metrics["contrastive_loss"].item(), expected, rtol=1e-5)
