"""The data likelihoods of the decoder heads, one class each, registered by name in ``LIKELIHOODS``.

A likelihood class owns everything that depends on the distribution: the shape parameters it
adds to its :class:`~crossomics.nn._batch_affine.BatchAffineLikelihood` head, the head's start
at the data marginal, decoder outputs -> parameters -> :class:`torch.distributions.Distribution`
(scvi-tools' negative binomials, torch's Bernoulli and Normal, :class:`ZeroInflatedLogNormal`
here), the per-cell log-likelihood that training minimises, the mean, the detection probability,
a seeded sampler and, optionally, the in-place finish of the head's fast decode path (the base
class, with its defaults, is in ``_likelihood_base.py``). Adding a likelihood is one class here
plus its test (``docs/contributing.md``).

Every head follows scCross eq. 7 / 35: the location is ``alpha_b * h + beta_b``, and the shape
parameters (NB dispersion, Normal / log-normal scale, zero-inflation) are batch specific (eq. 33-34).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scvi.distributions
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from crossomics._constants import TARGET_SUM
from crossomics.nn._likelihood_base import Likelihood

_EPS = 1e-8


def _logit(probability: np.ndarray) -> np.ndarray:
    return np.log(probability) - np.log1p(-probability)


def _log_sigmoids(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log sigmoid(logits)`` and ``log sigmoid(-logits)``: a structural zero and its complement."""
    return -F.softplus(-logits), -F.softplus(logits)


def _keep_mask(zi_logits: torch.Tensor, generator) -> torch.Tensor:
    """Entries that escape the structural zero, drawn with probability ``1 - sigmoid(zi_logits)``."""
    uniform = torch.rand(zi_logits.shape, generator=generator, device=zi_logits.device)
    return uniform >= torch.sigmoid(zi_logits)


def _nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The NB log-likelihood of each entry (eq. 6), as scvi-tools' ``NegativeBinomial.log_prob``
    computes it, on parameters left unbroadcast."""
    log_theta_mu = torch.log(theta + mu + _EPS)
    return (
        theta * (torch.log(theta + _EPS) - log_theta_mu)
        + x * (torch.log(mu + _EPS) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def nb_log_prob_per_cell(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The NB log-likelihood summed over features, touching only the non-zero counts elementwise.

    For ``x = 0`` it reduces to ``theta * (log theta - log(theta + mu))``, so that term is the
    only dense one; the count-dependent terms (the ``x * log`` ratio and the three log-gamma
    functions) are evaluated on the non-zero entries alone. ATAC counts are almost all zeros,
    and the dense ``lgamma`` calls dominated the training step of a wide ATAC modality
    (measured in ``docs/concepts.md``, "Training speed").
    """
    log_theta_mu = torch.log(theta + mu + _EPS)
    # theta log theta depends on the batch only: summed before broadcasting over cells
    theta_log_theta_mu = log_theta_mu @ theta[0] if theta.shape[0] == 1 else (theta * log_theta_mu).sum(-1)
    per_cell = (theta * torch.log(theta + _EPS)).sum(-1) - theta_log_theta_mu
    rows, cols = torch.nonzero(x, as_tuple=True)
    # a (1, features) theta is gathered by column: gathering its expanded view made autograd
    # zero-fill a cells x features gradient (12 ms per 256 x 25,734 step)
    theta_nz = theta[0, cols] if theta.shape[0] == 1 else theta[rows, cols]
    counts, mu_nz = x[rows, cols], mu[rows, cols]
    count_terms = (
        # log(theta + mu) recomputed from the gathered entries: a second gather from the dense
        # tensor would cost another zero-filled cells x features gradient
        counts * (torch.log(mu_nz + _EPS) - torch.log(theta_nz + mu_nz + _EPS))
        + torch.lgamma(counts + theta_nz)
        - torch.lgamma(theta_nz)
        - torch.lgamma(counts + 1)
    )
    return per_cell.index_add(0, rows, count_terms)


class NegativeBinomialLikelihood(Likelihood):
    """Counts: a softmax composition scaled by the cell's total, with a batch-specific dispersion (eq. 6)."""

    counts = True
    has_zeros = True
    shape_tables = ("log_theta",)
    in_place_outputs = frozenset({"mean", "normalized", "detection"})

    def add_parameters(self, head, n_hidden, n_features, n_batches):
        head.log_theta = nn.Parameter(torch.full((n_batches, n_features), 1.0))

    def initial_location(self, X, nonzero):
        # the log of each feature's share of all counts: the composition of an average cell
        totals = np.asarray(X.sum(0), dtype=np.float64).ravel()
        return np.log((totals + 1.0) / (totals.sum() + X.shape[1]))

    def params(self, head, location, hidden, per_cell, library):
        composition = torch.softmax(location, dim=-1)
        return {
            "composition": composition,
            "mu": composition * library.view(-1, 1),
            "theta": per_cell(torch.exp(head.log_theta)),
        }

    def distribution(self, p):
        return scvi.distributions.NegativeBinomial(mu=p["mu"], theta=p["theta"])

    def log_prob(self, x, p):
        return nb_log_prob_per_cell(x, p["mu"], p["theta"])

    def mean(self, p, library=None):
        return p["mu"] if library is None else p["composition"] * library

    def normalized(self, p):
        return torch.log1p(p["composition"] * TARGET_SUM)

    def detection_probability(self, p):
        # 1 - (theta / (theta + mu))^theta
        theta = p["theta"]
        return -torch.expm1(-theta * torch.log1p(p["mu"] / theta))

    def draw(self, p, generator):
        # the Gamma-Poisson mixture
        rate = torch.distributions.Gamma(p["theta"], p["theta"] / (p["mu"] + _EPS)).sample()
        return torch.poisson(rate, generator=generator)

    def in_place_finish(self, head, code, output):
        theta = torch.exp(head.log_theta)[code] if output == "detection" else None

        def finish(block: torch.Tensor, library: torch.Tensor) -> None:
            torch.softmax(block, dim=-1, out=block)  # row-wise, element by element: in place is safe
            if output != "normalized":
                block.mul_(library.view(-1, 1))
            if output == "detection":
                # P(x > 0) = 1 - (1 + mu / theta)^(-theta), in place
                block.div_(theta).log1p_().mul_(-theta).expm1_().neg_()
            elif output == "normalized":
                block.mul_(TARGET_SUM).log1p_()

        return finish


class ZeroInflatedNegativeBinomialLikelihood(NegativeBinomialLikelihood):
    """The negative binomial with a structural zero whose logits come from the hidden units."""

    # the zero inflation comes from a second linear layer: the fast path decodes only the first
    in_place_outputs = frozenset()

    def add_parameters(self, head, n_hidden, n_features, n_batches):
        super().add_parameters(head, n_hidden, n_features, n_batches)
        head.zi_linear = nn.Linear(n_hidden, n_features)

    def params(self, head, location, hidden, per_cell, library):
        return {
            **super().params(head, location, hidden, per_cell, library),
            "zi_logits": head.zi_linear(hidden),
        }

    def distribution(self, p):
        return scvi.distributions.ZeroInflatedNegativeBinomial(
            mu=p["mu"], theta=p["theta"], zi_logits=p["zi_logits"]
        )

    def log_prob(self, x, p):
        # dense, with a (1, features) theta left unbroadcast: scvi's distribution expands it,
        # which sums its gradient in another order (the values agree to float64 rounding, tested)
        mu, theta = p["mu"], p["theta"]
        nb = _nb_log_prob(x, mu, theta)
        log_pi, log_not_pi = _log_sigmoids(p["zi_logits"])
        nb_zero = theta * (torch.log(theta + _EPS) - torch.log(theta + mu + _EPS))
        is_zero = (x < 0.5).float()
        zero_case = torch.logaddexp(log_pi, log_not_pi + nb_zero)
        return (is_zero * zero_case + (1 - is_zero) * (log_not_pi + nb)).sum(-1)

    def mean(self, p, library=None):
        return super().mean(p, library) * torch.sigmoid(-p["zi_logits"])

    def detection_probability(self, p):
        return super().detection_probability(p) * torch.sigmoid(-p["zi_logits"])

    def draw(self, p, generator):
        return super().draw(p, generator) * _keep_mask(p["zi_logits"], generator)


class BernoulliLikelihood(Likelihood):
    """Binary detection (``x > 0``) with logits ``alpha_b * h + beta_b``."""

    counts = True
    has_zeros = True
    in_place_outputs = frozenset({"mean", "normalized", "detection"})

    def initial_location(self, X, nonzero):
        return _logit((nonzero + 0.5) / (X.shape[0] + 1.0))

    def params(self, head, location, hidden, per_cell, library):
        return {"logits": location}

    def distribution(self, p):
        return torch.distributions.Bernoulli(logits=p["logits"], validate_args=False)

    def log_prob(self, x, p):
        return self.distribution(p).log_prob((x > 0).to(p["logits"].dtype)).sum(-1)

    def mean(self, p, library=None):
        return torch.sigmoid(p["logits"])

    def detection_probability(self, p):
        return self.mean(p)

    def draw(self, p, generator):
        return torch.bernoulli(torch.sigmoid(p["logits"]), generator=generator)

    def in_place_finish(self, head, code, output):
        # the mean, "normalized" and "detection" outputs of a Bernoulli head are all probabilities
        def finish(block: torch.Tensor, library: torch.Tensor) -> None:
            torch.sigmoid(block, out=block)

        return finish


class _LocationScaleLikelihood(Likelihood):
    """Continuous values drawn around the location ``alpha_b * h + beta_b`` with a batch-specific scale."""

    shape_tables = ("log_scale",)

    def add_parameters(self, head, n_hidden, n_features, n_batches):
        head.log_scale = nn.Parameter(torch.zeros(n_batches, n_features))

    def params(self, head, location, hidden, per_cell, library):
        return {"loc": location, "scale": per_cell(F.softplus(head.log_scale)) + 1e-4}

    def draw(self, p, generator):
        noise = torch.randn(p["loc"].shape, generator=generator, device=p["loc"].device)
        return p["loc"] + p["scale"] * noise


class NormalLikelihood(_LocationScaleLikelihood):
    """Continuous values of any sign (log-normalised, TF-IDF or z-scored data)."""

    def initial_location(self, X, nonzero):
        return np.asarray(X.mean(0), dtype=np.float64).ravel()

    def distribution(self, p):
        return torch.distributions.Normal(p["loc"], p["scale"], validate_args=False)

    def log_prob(self, x, p):
        # written out with a (1, features) scale left unbroadcast: torch's Normal expands it and
        # orders its terms differently (the values agree to float64 rounding, tested)
        loc, scale = p["loc"], p["scale"]
        return (-torch.log(scale) - 0.5 * math.log(2 * math.pi) - 0.5 * ((x - loc) / scale) ** 2).sum(-1)

    def mean(self, p, library=None):
        return p["loc"]


class ZeroInflatedLogNormalLikelihood(_LocationScaleLikelihood):
    """Non-negative continuous values: a log-normal with a structural zero (eq. 32)."""

    has_zeros = True

    def add_parameters(self, head, n_hidden, n_features, n_batches):
        super().add_parameters(head, n_hidden, n_features, n_batches)
        head.zi_linear = nn.Linear(n_hidden, n_features)

    def initial_location(self, X, nonzero):
        # the mean log of the non-zero values
        if sp.issparse(X):
            logs = X.astype(np.float64)  # a copy
            logs.data = np.log(np.maximum(logs.data, 1e-8))
            sums = np.asarray(logs.sum(0)).ravel()
        else:
            sums = np.where(X > 0, np.log(np.where(X > 0, X, 1.0)), 0.0).sum(0)
        return sums / np.maximum(nonzero, 1.0)

    def initialize(self, head, X, nonzero):
        super().initialize(head, X, nonzero)
        # only the zero inflation makes zeros, so it starts at each feature's zero fraction
        zero = (X.shape[0] - nonzero + 0.5) / (X.shape[0] + 1.0)
        head.zi_linear.bias.copy_(torch.as_tensor(_logit(zero), dtype=head.zi_linear.bias.dtype))

    def params(self, head, location, hidden, per_cell, library):
        return {
            **super().params(head, location, hidden, per_cell, library),
            "zi_logits": head.zi_linear(hidden),
        }

    def distribution(self, p):
        return ZeroInflatedLogNormal(p["loc"], p["scale"], p["zi_logits"])

    def detection_probability(self, p):
        return torch.sigmoid(-p["zi_logits"]).expand_as(p["loc"])

    def draw(self, p, generator):
        values = super().draw(p, generator)
        return torch.exp(values) * _keep_mask(p["zi_logits"], generator)


class ZeroInflatedLogNormal(Distribution):
    """Zero with probability ``sigmoid(zi_logits)``, else ``exp(N(loc, scale^2))``.

    The parameters are kept as given: a ``(1, features)`` scale is not expanded to the cells, so
    its gradient is summed in the order training has always used.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive, "zi_logits": constraints.real}
    support = constraints.greater_than_eq(0.0)

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, zi_logits: torch.Tensor, validate_args=False):
        self.loc, self.scale, self.zi_logits = loc, scale, zi_logits
        shape = torch.broadcast_shapes(loc.shape, scale.shape, zi_logits.shape)
        super().__init__(batch_shape=shape, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(-self.zi_logits) * torch.exp(self.loc + 0.5 * self.scale**2)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        is_zero = (value <= 0).float()
        log_pi, log_not_pi = _log_sigmoids(self.zi_logits)
        log_value = torch.log(torch.where(value > 0, value, torch.ones_like(value)))
        lognormal = (
            -log_value
            - torch.log(self.scale)
            - 0.5 * math.log(2 * math.pi)
            - 0.5 * ((log_value - self.loc) / self.scale) ** 2
        )
        return is_zero * log_pi + (1 - is_zero) * (log_not_pi + lognormal)


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "nb": NegativeBinomialLikelihood,
    "zinb": ZeroInflatedNegativeBinomialLikelihood,
    "ziln": ZeroInflatedLogNormalLikelihood,
    "normal": NormalLikelihood,
    "bernoulli": BernoulliLikelihood,
}
"""Likelihood classes by the name ``SCCROSS.setup_mudata(likelihoods=...)`` takes."""
COUNT_LIKELIHOODS = tuple(name for name, likelihood in LIKELIHOODS.items() if likelihood.counts)
