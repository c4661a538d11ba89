"""The base of the likelihood classes of ``crossomics.nn._likelihoods``: what a decoder head asks
of its likelihood, with the defaults most likelihoods keep."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution

# an in-place finish: (located block of rows, those rows' library sizes) -> None
InPlaceFinish = Callable[[torch.Tensor, torch.Tensor], None]


class Likelihood:
    """Base of the likelihood classes; a head holds one and defers every distribution-specific step to it.

    ``params`` dicts map names to ``(cells, features)`` tensors; with one batch the shape
    parameters are ``(1, features)`` rows that broadcast over cells.
    """

    counts = False
    """The data are non-negative counts (input checks and transforms of count data)."""
    has_zeros = False
    """It puts mass on zero, so :meth:`detection_probability` is defined (``output="detection"``)."""
    shape_tables: tuple[str, ...] = ()
    """Its batch-specific parameters besides the head's ``log_alpha`` and ``beta``."""
    in_place_outputs: frozenset[str] = frozenset()
    """Outputs that :meth:`in_place_finish` computes (the head's fast decode path)."""

    def add_parameters(self, head: nn.Module, n_hidden: int, n_features: int, n_batches: int) -> None:
        """Register the shape parameters on ``head`` (after its linear layer, ``log_alpha`` and ``beta``)."""

    def initial_location(self, X, nonzero: np.ndarray) -> np.ndarray:
        """The per-feature location of the data marginal, where the head's output bias starts."""
        raise NotImplementedError

    def initialize(self, head: nn.Module, X, nonzero: np.ndarray) -> None:
        """Start ``head`` at the marginal of ``X`` (cells x features; ``nonzero`` counts per feature)."""
        location = self.initial_location(X, nonzero)
        head.linear.bias.copy_(torch.as_tensor(location, dtype=head.linear.bias.dtype))

    def params(self, head, location, hidden, per_cell, library) -> dict[str, torch.Tensor]:
        """Parameters from the located outputs; ``per_cell`` maps a batch table to the cells' rows."""
        raise NotImplementedError

    def distribution(self, p: dict) -> Distribution:
        """The likelihood of each entry as a :class:`torch.distributions.Distribution`."""
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Per-cell log-likelihood summed over features (the training loss)."""
        return self.distribution(p).log_prob(x).sum(-1)

    def mean(self, p: dict, library: float | None = None) -> torch.Tensor:
        """Expected value; count likelihoods take ``library`` as the total count instead of ``p``'s."""
        return self.distribution(p).mean

    def normalized(self, p: dict) -> torch.Tensor:
        """The ``output="normalized"`` value: the mean unless the likelihood has a composition."""
        return self.mean(p)

    def detection_probability(self, p: dict) -> torch.Tensor:
        """``P(x > 0)``, the score to rank entries by for a binary read-out (accessible or not)."""
        raise ValueError(f"a {type(self).__name__} has no zeros to detect; use output='mean'")

    def sample(self, p: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw per entry, made on ``generator``'s device (the CPU without one) and moved to ``p``'s.

        Draws on the generator's device make a CPU seed give the same cells whether the model
        runs on a CPU or a GPU. torch's Gamma sampler takes no generator, so the draw runs on a
        forked global state seeded from ``generator``: the same seed gives the same draws and
        the caller's random state is left alone.
        """
        device = torch.device("cpu") if generator is None else generator.device
        home = next(iter(p.values())).device
        if home.type != device.type:
            return self.sample({k: v.detach().to(device) for k, v in p.items()}, generator).to(home)
        if generator is None:
            return self.draw(p, None)
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device], device_type=device.type):
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=generator, device=device)))
            return self.draw(p, generator)

    def draw(self, p: dict, generator: torch.Generator | None) -> torch.Tensor:
        """The draws of :meth:`sample`, on the parameters' device."""
        raise NotImplementedError

    def in_place_finish(self, head: nn.Module, code: int, output: str) -> InPlaceFinish:
        """For one batch ``code``, a function that turns located rows into ``output`` in place."""
        raise NotImplementedError
