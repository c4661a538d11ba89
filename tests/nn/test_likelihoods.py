"""Decoder heads: start at the data marginal, detection probability, NB log-likelihood."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from crossomics.nn._batch_affine import BatchAffineLikelihood


def _counts(seed=0, n_cells=400, n_features=30):
    rng = np.random.default_rng(seed)
    # one feature holds most counts, like Malat1 in the mouse cortex RNA
    rates = np.r_[40.0, rng.gamma(0.5, 1.0, n_features - 1)]
    return sp.csr_matrix(rng.poisson(rates, (n_cells, n_features)).astype(np.float32))


def _params_at_zero_hidden(head, n_cells=1, library=1.0):
    hidden = torch.zeros(n_cells, head.linear.in_features)
    batch = torch.zeros(n_cells, dtype=torch.long)
    with torch.no_grad():
        return head.params(hidden, batch, torch.full((n_cells,), library))


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_count_heads_start_at_each_features_share(likelihood):
    X = _counts()
    head = BatchAffineLikelihood(8, X.shape[1], 1, likelihood)
    head.initialize_from_data(X)
    composition = _params_at_zero_hidden(head)["composition"].numpy().ravel()
    totals = np.asarray(X.sum(0)).ravel()
    np.testing.assert_allclose(composition, (totals + 1) / (totals.sum() + X.shape[1]), rtol=1e-5)
    assert composition[0] > 0.5  # the dominant feature, not a uniform 1/30


def test_bernoulli_normal_and_ziln_heads_start_at_the_marginal():
    X = _counts(1)
    n_cells = X.shape[0]
    detected = np.asarray((X > 0).sum(0)).ravel()
    bernoulli = BatchAffineLikelihood(8, X.shape[1], 1, "bernoulli")
    bernoulli.initialize_from_data(X)
    probability = bernoulli.mean(_params_at_zero_hidden(bernoulli)).numpy().ravel()
    np.testing.assert_allclose(probability, (detected + 0.5) / (n_cells + 1), rtol=1e-5)

    dense = X.toarray()
    normal = BatchAffineLikelihood(8, X.shape[1], 1, "normal")
    normal.initialize_from_data(dense)
    np.testing.assert_allclose(
        _params_at_zero_hidden(normal)["loc"].numpy().ravel(), dense.mean(0), rtol=1e-5
    )

    ziln = BatchAffineLikelihood(8, X.shape[1], 1, "ziln")
    ziln.initialize_from_data(X)
    params = _params_at_zero_hidden(ziln)
    zero_probability = torch.sigmoid(params["zi_logits"]).numpy().ravel()
    np.testing.assert_allclose(zero_probability, (n_cells - detected + 0.5) / (n_cells + 1), rtol=1e-4)
    logs = np.where(dense > 0, np.log(np.where(dense > 0, dense, 1.0)), 0.0).sum(0) / np.maximum(detected, 1)
    np.testing.assert_allclose(params["loc"].numpy().ravel(), logs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "bernoulli", "ziln"])
def test_detection_probability_matches_the_fraction_of_nonzero_draws(likelihood):
    head = BatchAffineLikelihood(8, 6, 1, likelihood)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        head.beta.copy_(torch.linspace(-3.0, 1.0, 6).view(1, -1))
        if likelihood in ("nb", "zinb"):
            head.log_theta.copy_(torch.linspace(-1.5, 2.0, 6).view(1, -1))
        if likelihood in ("zinb", "ziln"):
            head.zi_linear.bias.copy_(torch.linspace(-2.0, 1.0, 6))
    params = _params_at_zero_hidden(head, n_cells=20_000, library=5.0)
    detected = head.detection_probability(params)
    assert detected.shape == (20_000, 6) and float(detected.min()) > 0 and float(detected.max()) < 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        draws = head.sample(params, generator=generator)
    # 20,000 draws per feature: the standard error of a fraction is at most 0.0036
    np.testing.assert_allclose((draws > 0).float().mean(0).numpy(), detected[0].numpy(), atol=0.015)


def test_normal_head_has_no_detection_probability():
    head = BatchAffineLikelihood(8, 6, 1, "normal")
    with pytest.raises(ValueError, match="no zeros to detect"):
        head.detection_probability(_params_at_zero_hidden(head))


@pytest.mark.parametrize("per_cell_theta", [False, True])
def test_sparse_nb_log_prob_matches_the_dense_form_and_its_gradients(per_cell_theta):
    """The training loss evaluates count terms on non-zero entries only; values and gradients
    must equal the dense NB log-likelihood (one batch: theta is a (1, features) row)."""
    from crossomics.nn._likelihoods import _nb_log_prob, nb_log_prob_per_cell

    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 300, generator=generator) < 0.1) * torch.randint(1, 6, (40, 300), generator=generator)
    mu = (torch.rand(40, 300, generator=generator, dtype=torch.float64) * 3).requires_grad_()
    theta = (
        torch.rand(40 if per_cell_theta else 1, 300, generator=generator, dtype=torch.float64) + 0.3
    ).requires_grad_()
    sparse = nb_log_prob_per_cell(x.double(), mu, theta)
    dense = _nb_log_prob(x.double(), mu, theta).sum(-1)
    np.testing.assert_allclose(sparse.detach().numpy(), dense.detach().numpy(), rtol=1e-10)
    for got, want in zip(
        torch.autograd.grad(sparse.sum(), (mu, theta)),
        torch.autograd.grad(dense.sum(), (mu, theta)),
        strict=True,
    ):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-8, atol=1e-10)
    # scvi-tools' NegativeBinomial gives the same values
    from scvi.distributions import NegativeBinomial

    scvi_value = NegativeBinomial(mu=mu, theta=theta.expand_as(mu)).log_prob(x.double()).sum(-1)
    np.testing.assert_allclose(sparse.detach().numpy(), scvi_value.detach().numpy(), rtol=1e-6)
