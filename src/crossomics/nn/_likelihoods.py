"""Per-modality data likelihoods with batch-specific scale, bias and dispersion.

Every decoder head follows scCross eq. 7 / 35: the MLP output ``h`` is turned into the
likelihood's location by a batch-specific affine map ``alpha_b * h + beta_b`` (``alpha_b > 0``),
and the shape parameters (NB dispersion, Normal / log-normal scale, zero-inflation) are also
batch specific (eq. 33-34).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

COUNT_LIKELIHOODS = ("nb", "zinb", "bernoulli")
LIKELIHOODS = ("nb", "zinb", "ziln", "normal", "bernoulli")
_EPS = 1e-8


def nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Negative binomial log-likelihood with mean ``mu`` and inverse dispersion ``theta`` (eq. 6)."""
    log_theta_mu = torch.log(theta + mu + _EPS)
    return (
        theta * (torch.log(theta + _EPS) - log_theta_mu)
        + x * (torch.log(mu + _EPS) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def nb_log_prob_per_cell(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """:func:`nb_log_prob` summed over features, touching only the non-zero counts elementwise.

    For ``x = 0`` the NB log-likelihood reduces to ``theta * (log theta - log(theta + mu))``,
    so that term is the only dense one; the count-dependent terms (the ``x * log`` ratio and
    the three log-gamma functions) are evaluated on the non-zero entries alone. ATAC counts are
    almost all zeros, and the dense ``lgamma`` calls dominated the training step of a wide ATAC
    modality (measured in ``docs/concepts.md``, "Training speed").
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


def zinb_log_prob(x, mu, theta, zi_logits) -> torch.Tensor:
    """Zero-inflated NB log-likelihood; ``zi_logits`` are the logits of the structural zero."""
    nb = nb_log_prob(x, mu, theta)
    log_pi = -F.softplus(-zi_logits)  # log sigmoid
    log_not_pi = -F.softplus(zi_logits)
    nb_zero = theta * (torch.log(theta + _EPS) - torch.log(theta + mu + _EPS))
    is_zero = (x < 0.5).float()
    zero_case = torch.logaddexp(log_pi, log_not_pi + nb_zero)
    return is_zero * zero_case + (1 - is_zero) * (log_not_pi + nb)


def ziln_log_prob(x, loc, scale, zi_logits) -> torch.Tensor:
    """Zero-inflated log-normal log-likelihood (eq. 32)."""
    is_zero = (x <= 0).float()
    log_pi = -F.softplus(-zi_logits)
    log_not_pi = -F.softplus(zi_logits)
    safe_x = torch.where(x > 0, x, torch.ones_like(x))
    log_x = torch.log(safe_x)
    lognormal = -log_x - torch.log(scale) - 0.5 * math.log(2 * math.pi) - 0.5 * ((log_x - loc) / scale) ** 2
    return is_zero * log_pi + (1 - is_zero) * (log_not_pi + lognormal)


def normal_log_prob(x, loc, scale) -> torch.Tensor:
    return -torch.log(scale) - 0.5 * math.log(2 * math.pi) - 0.5 * ((x - loc) / scale) ** 2


def _logit(probability: np.ndarray) -> np.ndarray:
    return np.log(probability) - np.log1p(-probability)


class BatchAffineLikelihood(nn.Module):
    """Decoder output head: batch-specific affine map plus the likelihood's parameters.

    Parameters
    ----------
    n_hidden
        Width of the decoder MLP's last hidden layer.
    n_features
        Number of features of the modality (the original feature space).
    n_batches
        Number of batches of this modality (1 when no batch key was given).
    likelihood
        One of ``"nb"``, ``"zinb"``, ``"ziln"``, ``"normal"``, ``"bernoulli"``.
    """

    def __init__(self, n_hidden: int, n_features: int, n_batches: int, likelihood: str):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {list(LIKELIHOODS)}")
        self.likelihood = likelihood
        self.linear = nn.Linear(n_hidden, n_features)
        self.log_alpha = nn.Parameter(torch.zeros(n_batches, n_features))
        self.beta = nn.Parameter(torch.zeros(n_batches, n_features))
        if likelihood in ("nb", "zinb"):
            self.log_theta = nn.Parameter(torch.full((n_batches, n_features), 1.0))
        if likelihood in ("ziln", "normal"):
            self.log_scale = nn.Parameter(torch.zeros(n_batches, n_features))
        if likelihood in ("zinb", "ziln"):
            self.zi_linear = nn.Linear(n_hidden, n_features)

    @torch.no_grad()
    def initialize_from_data(self, X) -> None:
        """Start the location at the data's per-feature marginal (before any training).

        ``X`` is the (cells x features) training matrix, dense or scipy sparse. The output
        bias becomes the log of each feature's share of all counts (NB, ZINB: the softmax
        composition of an average cell), the logit of its detection rate (Bernoulli), its
        mean (Normal) or the mean log of its non-zero values (ZILN, whose zero-inflation
        bias starts at the logit of the feature's zero fraction: only that part makes zeros).
        Pseudo-counts keep absent features finite.

        Why: from the default near-uniform start, the softmax of an NB head overshoots the
        few features that hold most counts. The NB gradient of a feature whose mean exceeds
        its dispersion is bounded by ``theta``, so the excess drains slowly: on the mouse
        cortex Malat1 still held more of the decoded RNA than of the real counts after 20
        epochs (measured in ``docs/concepts.md``, "Where crossomics had to choose"). Decoded
        cells then had too few detected genes, and their sampled counts were classified as
        the wrong cell type.
        """
        X = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
        n_cells, n_features = X.shape
        nonzero = np.asarray((X != 0).sum(0), dtype=np.float64).ravel()
        if self.likelihood in ("nb", "zinb"):
            totals = np.asarray(X.sum(0), dtype=np.float64).ravel()
            location = np.log((totals + 1.0) / (totals.sum() + n_features))
        elif self.likelihood == "bernoulli":
            location = _logit((nonzero + 0.5) / (n_cells + 1.0))
        elif self.likelihood == "normal":
            location = np.asarray(X.mean(0), dtype=np.float64).ravel()
        else:  # ziln: mean log of the non-zero values
            if sp.issparse(X):
                logs = X.astype(np.float64)  # a copy
                logs.data = np.log(np.maximum(logs.data, 1e-8))
                sums = np.asarray(logs.sum(0)).ravel()
            else:
                sums = np.where(X > 0, np.log(np.where(X > 0, X, 1.0)), 0.0).sum(0)
            location = sums / np.maximum(nonzero, 1.0)
        self.linear.bias.copy_(torch.as_tensor(location, dtype=self.linear.bias.dtype))
        if self.likelihood == "ziln":
            zero = (n_cells - nonzero + 0.5) / (n_cells + 1.0)
            self.zi_linear.bias.copy_(torch.as_tensor(_logit(zero), dtype=self.zi_linear.bias.dtype))

    def batch_tables(self) -> dict[str, nn.Parameter]:
        """The batch-specific parameters, each of shape ``(n_batches, n_features)``."""
        names = ("log_alpha", "beta", "log_theta", "log_scale")
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    @torch.no_grad()
    def add_batches(self, n_new: int) -> None:
        """Append ``n_new`` batches (reference mapping), each starting at the mean of the known ones."""
        for name, table in self.batch_tables().items():
            new_rows = table.mean(0, keepdim=True).expand(n_new, -1)
            setattr(self, name, nn.Parameter(torch.cat([table, new_rows])))

    def params(self, hidden: torch.Tensor, batch: torch.Tensor, library: torch.Tensor) -> dict:
        """Likelihood parameters for cells with decoder activations ``hidden``.

        ``batch`` is a long tensor of batch codes, ``library`` the per-cell total counts used to
        scale the softmax composition (count likelihoods only). With a single batch the shape
        parameters (``theta``, ``scale``) are ``(1, n_features)`` rows that broadcast over cells.
        """
        n_batches = self.log_alpha.shape[0]
        if n_batches == 1:
            # one batch: the (1, n_features) rows broadcast, no (cells x features) products needed
            def per_cell(table):
                return table
        else:
            # a one-hot product instead of row indexing: its backward is a matmul, not a slow scatter
            onehot = F.one_hot(batch.view(-1), n_batches).to(hidden.dtype)

            def per_cell(table):
                return onehot @ table

        location = torch.addcmul(
            per_cell(self.beta), per_cell(torch.exp(self.log_alpha)), self.linear(hidden)
        )
        out: dict[str, torch.Tensor] = {}
        if self.likelihood in ("nb", "zinb"):
            out["composition"] = torch.softmax(location, dim=-1)
            out["mu"] = out["composition"] * library.view(-1, 1)
            out["theta"] = per_cell(torch.exp(self.log_theta))
        elif self.likelihood == "bernoulli":
            out["logits"] = location
        else:
            out["loc"] = location
            out["scale"] = per_cell(F.softplus(self.log_scale)) + 1e-4
        if self.likelihood in ("zinb", "ziln"):
            out["zi_logits"] = self.zi_linear(hidden)
        return out

    def log_prob(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Per-cell log-likelihood summed over features."""
        if self.likelihood == "nb":
            return nb_log_prob_per_cell(x, p["mu"], p["theta"])
        if self.likelihood == "zinb":
            lp = zinb_log_prob(x, p["mu"], p["theta"], p["zi_logits"])
        elif self.likelihood == "bernoulli":
            lp = -F.binary_cross_entropy_with_logits(p["logits"], (x > 0).float(), reduction="none")
        elif self.likelihood == "ziln":
            lp = ziln_log_prob(x, p["loc"], p["scale"], p["zi_logits"])
        else:
            lp = normal_log_prob(x, p["loc"], p["scale"])
        return lp.sum(-1)

    def mean(self, p: dict, library: float | None = None) -> torch.Tensor:
        """Expected value of the data under the likelihood; with ``library``, count likelihoods
        give it at that total count instead of the one ``p`` was made for."""
        if self.likelihood in ("nb", "zinb"):
            mu = p["mu"] if library is None else p["composition"] * library
            return mu if self.likelihood == "nb" else mu * torch.sigmoid(-p["zi_logits"])
        if self.likelihood == "bernoulli":
            return torch.sigmoid(p["logits"])
        if self.likelihood == "ziln":
            return torch.sigmoid(-p["zi_logits"]) * torch.exp(p["loc"] + 0.5 * p["scale"] ** 2)
        return p["loc"]

    def detection_probability(self, p: dict) -> torch.Tensor:
        """Probability that an entry is non-zero, ``P(x > 0)``.

        NB: ``1 - (theta / (theta + mu))^theta``; ZINB multiplies it by ``1 - pi``; Bernoulli:
        the probability itself; ZILN: ``1 - pi``. For a binary read-out of counts (accessible
        or not) this, not the expected count, is the score to rank entries by: two features
        with the same mean but different dispersion are detected at different rates.
        """
        if self.likelihood in ("nb", "zinb"):
            theta = p["theta"]
            detected = -torch.expm1(-theta * torch.log1p(p["mu"] / theta))
            if self.likelihood == "zinb":
                detected = detected * torch.sigmoid(-p["zi_logits"])
            return detected
        if self.likelihood == "bernoulli":
            return torch.sigmoid(p["logits"])
        if self.likelihood == "ziln":
            return torch.sigmoid(-p["zi_logits"]).expand_as(p["loc"])
        raise ValueError("a normal likelihood has no zeros to detect; use output='mean'")

    def sample(self, p: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw one observation per entry (used for ``output="counts"``).

        Draws are made on the CPU and moved to the parameters' device: the seeded
        ``generator`` is a CPU generator, and CPU draws make a seed give the same cells whether
        the model runs on a CPU or a GPU.
        """
        device = next(iter(p.values())).device
        if device.type != "cpu":
            return self.sample({k: v.detach().cpu() for k, v in p.items()}, generator).to(device)
        if self.likelihood in ("nb", "zinb"):
            # Gamma-Poisson mixture; torch's Gamma has no generator argument, so seed globally upstream
            rate = torch.distributions.Gamma(p["theta"], p["theta"] / (p["mu"] + _EPS)).sample()
            counts = torch.poisson(rate, generator=generator)
            if self.likelihood == "zinb":
                keep = torch.rand(counts.shape, generator=generator) >= torch.sigmoid(p["zi_logits"])
                counts = counts * keep
            return counts
        if self.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(p["logits"]), generator=generator)
        noise = torch.randn(p["loc"].shape, generator=generator)
        values = p["loc"] + p["scale"] * noise
        if self.likelihood == "ziln":
            keep = torch.rand(values.shape, generator=generator) >= torch.sigmoid(p["zi_logits"])
            return torch.exp(values) * keep
        return values
