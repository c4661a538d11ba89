"""Likelihoods and their decoder heads: start at the data marginal, log-likelihood against a
reference, seeded sampler, detection probability, in-place decoding, the registry.

A new likelihood gets a case in ``_CASES`` (parameters, data and reference log-density) and,
unless its distribution gives it, its variance in ``_VARIANCES``; every test here then runs on it.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats
import scvi.distributions
import torch

from crossomics.nn._batch_affine import BatchAffineLikelihood
from crossomics.nn._likelihood_base import Likelihood
from crossomics.nn._likelihoods import COUNT_LIKELIHOODS, LIKELIHOODS


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


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def _nb_case(generator, shape):
    return {
        "mu": torch.rand(shape, generator=generator, dtype=torch.float64) * 6 + 0.1,
        "theta": torch.rand((1, shape[1]), generator=generator, dtype=torch.float64) * 3 + 0.3,
    }


def _nb_reference(x, p):
    theta = p["theta"].expand_as(p["mu"])
    return scvi.distributions.NegativeBinomial(mu=p["mu"], theta=theta).log_prob(x)


def _zinb_reference(x, p):
    return scvi.distributions.ZeroInflatedNegativeBinomial(
        mu=p["mu"], theta=p["theta"].expand_as(p["mu"]), zi_logits=p["zi_logits"]
    ).log_prob(x)


def _ziln_reference(x, p):
    loc, scale, zero = p["loc"].numpy(), p["scale"].numpy(), _sigmoid(p["zi_logits"].numpy())
    x = x.numpy()
    positive = np.log1p(-zero) + scipy.stats.lognorm.logpdf(
        np.where(x > 0, x, 1.0), s=scale, scale=np.exp(loc)
    )
    return torch.as_tensor(np.where(x > 0, positive, np.log(zero)))


def _logits(generator, shape):
    return torch.randn(shape, generator=generator, dtype=torch.float64) * 1.5


# name -> (parameters of a (cells, features) grid, data drawn independently, reference log-density
# of each entry)
_CASES = {
    "nb": (
        _nb_case,
        lambda g, p: torch.poisson(p["mu"] * 1.3, generator=g),
        _nb_reference,
    ),
    "zinb": (
        lambda g, shape: {**_nb_case(g, shape), "zi_logits": _logits(g, shape)},
        lambda g, p: (
            torch.poisson(p["mu"], generator=g)
            * (torch.rand(p["mu"].shape, generator=g, dtype=torch.float64) > 0.3)
        ),
        _zinb_reference,
    ),
    "bernoulli": (
        lambda g, shape: {"logits": _logits(g, shape)},
        lambda g, p: torch.poisson(torch.full(p["logits"].shape, 0.8, dtype=torch.float64), generator=g),
        lambda x, p: torch.as_tensor(
            scipy.stats.bernoulli.logpmf((x > 0).numpy(), _sigmoid(p["logits"].numpy()))
        ),
    ),
    "normal": (
        lambda g, shape: {
            "loc": _logits(g, shape),
            "scale": torch.rand((1, shape[1]), generator=g, dtype=torch.float64) + 0.2,
        },
        lambda g, p: torch.randn(p["loc"].shape, generator=g, dtype=torch.float64) * 2,
        lambda x, p: torch.as_tensor(
            scipy.stats.norm.logpdf(x.numpy(), p["loc"].numpy(), p["scale"].numpy())
        ),
    ),
    "ziln": (
        lambda g, shape: {
            "loc": _logits(g, shape) * 0.5,
            "scale": torch.rand((1, shape[1]), generator=g, dtype=torch.float64) * 0.6 + 0.2,
            "zi_logits": _logits(g, shape),
        },
        lambda g, p: (
            torch.exp(torch.randn(p["loc"].shape, generator=g, dtype=torch.float64))
            * (torch.rand(p["loc"].shape, generator=g, dtype=torch.float64) > 0.4)
        ),
        _ziln_reference,
    ),
}


def _ziln_variance(p):
    keep = torch.sigmoid(-p["zi_logits"])
    second_moment = keep * torch.exp(2 * p["loc"] + 2 * p["scale"] ** 2)
    return second_moment - (keep * torch.exp(p["loc"] + 0.5 * p["scale"] ** 2)) ** 2


# variances the distribution object does not give
_VARIANCES = {"ziln": _ziln_variance}


def _variance(name, p):
    return _VARIANCES[name](p) if name in _VARIANCES else LIKELIHOODS[name]().distribution(p).variance


def test_every_likelihood_has_a_test_case():
    assert set(_CASES) == set(LIKELIHOODS)
    assert COUNT_LIKELIHOODS == tuple(name for name in LIKELIHOODS if LIKELIHOODS[name].counts)


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_log_prob_matches_the_reference_density(name):
    """scvi-tools' NB / ZINB, scipy's Bernoulli, normal and log-normal densities, to float64
    rounding (ZINB and normal arrange the same terms differently; the sparse NB sums in another
    order)."""
    params_of, data_of, reference = _CASES[name]
    generator = torch.Generator().manual_seed(0)
    params = params_of(generator, (50, 40))
    x = data_of(generator, params)
    likelihood = LIKELIHOODS[name]()
    got = likelihood.log_prob(x, params)
    assert got.shape == (50,) and torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), reference(x, params).sum(-1).numpy(), rtol=0, atol=1e-9)
    # the distribution object agrees with the training form
    np.testing.assert_allclose(
        likelihood.distribution(params)
        .log_prob(x if name != "bernoulli" else (x > 0).double())
        .sum(-1)
        .numpy(),
        got.numpy(),
        rtol=0,
        atol=1e-9,
    )


def test_elementwise_nb_is_scvi_tools_negative_binomial_bit_for_bit():
    from crossomics.nn._likelihoods import _nb_log_prob

    generator = torch.Generator().manual_seed(1)
    params = _nb_case(generator, (30, 20))
    x = torch.poisson(params["mu"], generator=generator)
    assert torch.equal(_nb_log_prob(x, params["mu"], params["theta"]), _nb_reference(x, params))


def _sampling_params(name, n_cells=20_000, n_features=5):
    """One cell's parameters (float32, as a head gives them) repeated over ``n_cells`` cells; the
    shape parameters stay ``(1, features)`` rows, as in a head with one batch."""
    params = _CASES[name][0](torch.Generator().manual_seed(2), (1, n_features))
    return {
        k: v.float() if k in ("theta", "scale") else v.float().expand(n_cells, -1) for k, v in params.items()
    }


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_sampler_moments_match_the_distribution(name):
    likelihood = LIKELIHOODS[name]()
    params = _sampling_params(name)
    draws = likelihood.sample(params, torch.Generator().manual_seed(0)).double()
    assert draws.shape == (20_000, 5)
    mean = likelihood.mean(params)[0].double()
    variance = _variance(name, params).expand(20_000, -1)[0].double()
    # five standard errors of the mean; the variance within 10% (20,000 draws)
    np.testing.assert_allclose(draws.mean(0), mean, rtol=0, atol=float(5 * (variance / 20_000).sqrt().max()))
    np.testing.assert_allclose(draws.var(0), variance, rtol=0.1)
    if name in COUNT_LIKELIHOODS:
        assert torch.equal(draws, draws.round()) and draws.min() >= 0


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_sampler_is_seeded_by_its_generator_alone(name):
    likelihood = LIKELIHOODS[name]()
    params = _sampling_params(name, n_cells=200)
    global_state = torch.get_rng_state()
    first = likelihood.sample(params, torch.Generator().manual_seed(7))
    torch.manual_seed(123)  # another global state: the draws do not depend on it
    again = likelihood.sample(params, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    assert not torch.equal(first, likelihood.sample(params, torch.Generator().manual_seed(8)))
    torch.set_rng_state(global_state)
    likelihood.sample(params, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), global_state)  # the caller's random state is left alone


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_sampler_draws_on_the_generators_device(name):
    likelihood = LIKELIHOODS[name]()
    params = {k: v.cuda() for k, v in _sampling_params(name, n_cells=2_000).items()}
    on_device = likelihood.sample(params, torch.Generator(device="cuda").manual_seed(3))
    assert on_device.device.type == "cuda"
    assert torch.equal(on_device, likelihood.sample(params, torch.Generator(device="cuda").manual_seed(3)))
    # a CPU generator draws on the CPU: the same cells as a model on the CPU
    cpu_params = {k: v.cpu() for k, v in params.items()}
    from_cpu = likelihood.sample(params, torch.Generator().manual_seed(3))
    assert from_cpu.device.type == "cuda"
    assert torch.equal(from_cpu.cpu(), likelihood.sample(cpu_params, torch.Generator().manual_seed(3)))


def _random_head(name, n_batches=3, n_hidden=8, n_features=300):
    head = BatchAffineLikelihood(n_hidden, n_features, n_batches, name)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for table in head.batch_tables().values():
            table.copy_(0.3 * torch.randn(table.shape, generator=generator))
    return head


@pytest.mark.parametrize("name", list(LIKELIHOODS))
@pytest.mark.parametrize("output", ["mean", "normalized", "detection"])
def test_in_place_decoding_equals_the_parameters_route(name, output):
    head = _random_head(name)
    if not head.decodes_in_place(output):
        assert name not in ("nb", "bernoulli")  # the wide modalities' heads always can
        return
    hidden = torch.randn(1_000, 8, generator=torch.Generator().manual_seed(5))
    library = torch.rand(1_000, generator=torch.Generator().manual_seed(6)) * 1e4 + 100
    with torch.no_grad():
        params = head.params(hidden, torch.full((1_000,), 2, dtype=torch.long), library)
        expected = head.decode(params, output)
        dest = torch.empty(1_000, 300)
        head.decode_into(hidden, 2, library, output, dest)
        np.testing.assert_allclose(
            dest.numpy(), expected.numpy(), rtol=2e-4, atol=1e-6 * float(expected.abs().max())
        )
        head.decode_into(hidden, 2, library, output, dest, precision="bfloat16")
        np.testing.assert_allclose(
            dest.numpy(), expected.numpy(), rtol=0.05, atol=0.02 * float(expected.abs().max())
        )
    assert not head.decodes_in_place("counts")


class _Poisson(Likelihood):
    """A likelihood added in one place: counts with rate ``library * softmax(location)``."""

    counts = True

    def initial_location(self, X, nonzero):
        return np.zeros(X.shape[1])

    def params(self, head, location, hidden, per_cell, library):
        return {"rate": torch.softmax(location, -1) * library.view(-1, 1)}

    def distribution(self, p):
        return torch.distributions.Poisson(p["rate"], validate_args=False)

    def draw(self, p, generator):
        return torch.poisson(p["rate"], generator=generator)


def test_a_likelihood_added_to_the_registry_works_through_the_head(monkeypatch):
    monkeypatch.setitem(LIKELIHOODS, "poisson", _Poisson)
    head = BatchAffineLikelihood(8, 30, 2, "poisson")
    head.initialize_from_data(_counts())
    assert set(head.batch_tables()) == {"log_alpha", "beta"}
    hidden = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        params = head.params(hidden, torch.tensor([0, 1] * 5), torch.full((10,), 50.0))
        x = head.sample(params, torch.Generator().manual_seed(0))
        assert head.log_prob(x, params).shape == (10,)
        np.testing.assert_allclose(head.decode(params, "mean").sum(1).numpy(), 50.0, rtol=1e-5)
    with pytest.raises(ValueError, match="no zeros to detect"):
        head.decode(params, "detection")
