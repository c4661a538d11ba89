"""The decoder output head: a batch-specific affine map into one likelihood's parameters.

The head holds the parameters every likelihood shares (the output layer, ``log_alpha`` and
``beta``) and defers everything distribution-specific to its likelihood class from
:data:`~crossomics.nn._likelihoods.LIKELIHOODS`. It also holds the in-place fast decode path of
wide modalities and the BLAS product that path runs on.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from crossomics.nn._likelihoods import LIKELIHOODS

# rows of one BLAS call in _matmul_into, whatever the number of threads
_MATMUL_ROWS = 128


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
        A name in :data:`~crossomics.nn._likelihoods.LIKELIHOODS`: ``"nb"``, ``"zinb"``,
        ``"ziln"``, ``"normal"`` or ``"bernoulli"``.
    """

    def __init__(self, n_hidden: int, n_features: int, n_batches: int, likelihood: str):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {list(LIKELIHOODS)}")
        self.family = LIKELIHOODS[likelihood]()
        self.linear = nn.Linear(n_hidden, n_features)
        self.log_alpha = nn.Parameter(torch.zeros(n_batches, n_features))
        self.beta = nn.Parameter(torch.zeros(n_batches, n_features))
        self.family.add_parameters(self, n_hidden, n_features, n_batches)

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
        nonzero = np.asarray((X != 0).sum(0), dtype=np.float64).ravel()
        self.family.initialize(self, X, nonzero)

    def batch_tables(self) -> dict[str, nn.Parameter]:
        """The batch-specific parameters, each of shape ``(n_batches, n_features)``."""
        names = ("log_alpha", "beta", *self.family.shape_tables)
        return {name: getattr(self, name) for name in names}

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
        return self.family.params(self, location, hidden, per_cell, library)

    def distribution(self, p: dict) -> Distribution:
        """The likelihood as a :class:`torch.distributions.Distribution` over each entry."""
        return self.family.distribution(p)

    def log_prob(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Per-cell log-likelihood summed over features."""
        return self.family.log_prob(x, p)

    def mean(self, p: dict, library: float | None = None) -> torch.Tensor:
        """Expected value of the data under the likelihood; with ``library``, count likelihoods
        give it at that total count instead of the one ``p`` was made for."""
        return self.family.mean(p, library)

    def detection_probability(self, p: dict) -> torch.Tensor:
        """Probability that an entry is non-zero, ``P(x > 0)``.

        NB: ``1 - (theta / (theta + mu))^theta``; ZINB multiplies it by ``1 - pi``; Bernoulli:
        the probability itself; ZILN: ``1 - pi``. For a binary read-out of counts (accessible
        or not) this, not the expected count, is the score to rank entries by: two features
        with the same mean but different dispersion are detected at different rates.
        """
        return self.family.detection_probability(p)

    def sample(self, p: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw one observation per entry (used for ``output="counts"``), on ``generator``'s device."""
        return self.family.sample(p, generator)

    def decode(self, p: dict, output: str, generator: torch.Generator | None = None) -> torch.Tensor:
        """The generation ``output`` from parameters ``p``: ``"mean"``, ``"normalized"``,
        ``"detection"`` or ``"counts"`` (one draw, seeded by ``generator``)."""
        if output == "mean":
            return self.mean(p)
        if output == "detection":
            return self.detection_probability(p)
        if output == "normalized":
            return self.family.normalized(p)
        return self.sample(p, generator)

    def decodes_in_place(self, output: str) -> bool:
        """Whether :meth:`decode_into` computes ``output`` for this likelihood."""
        return output in self.family.in_place_outputs

    def decode_into(
        self,
        hidden: torch.Tensor,
        code: int,
        library: torch.Tensor,
        output: str,
        dest: torch.Tensor,
        precision: str = "float32",
    ) -> None:
        """:meth:`decode` of ``params(hidden, code, library)`` written into ``dest`` (all cells in batch ``code``).

        The values of :meth:`decode` up to float32 rounding, with no (cells x features)
        temporaries: the linear layer writes into ``dest`` itself (through numpy's BLAS on CPU,
        see :func:`_matmul_into`), then the batch affine map and the likelihood's in-place
        finish (the softmax with library scaling of an NB head, the sigmoid of a Bernoulli
        head) run there. Only for the outputs :meth:`decodes_in_place` accepts.

        ``precision="bfloat16"`` runs the output layer's product in bfloat16 (the rest stays
        float32); see :meth:`crossomics.SCCROSS.cross_generate`.
        """
        direct = hidden.device == dest.device and hidden.dtype == dest.dtype and dest.is_contiguous()
        work = dest if direct else torch.empty(dest.shape, dtype=hidden.dtype, device=hidden.device)
        finish = self.family.in_place_finish(self, code, output)
        # a one-hot row product picks the row exactly, so indexing gives the same alpha and beta
        alpha = torch.exp(self.log_alpha)[code]
        # location = beta + alpha * (h W^T + b) = (beta + alpha * b) + alpha * (h W^T)
        shift = torch.addcmul(self.beta[code], alpha, self.linear.bias)
        # row blocks of ~4 MB on CPU, so that the passes after the product run in cache
        rows = len(work) if work.device.type != "cpu" else max(1, 2**20 // max(1, work.shape[1]))
        if precision == "bfloat16":
            # alpha folded into the weights; each 512-row product lands in one reused bfloat16
            # buffer (smaller products ran the kernel below its speed, a fresh buffer paid its
            # page faults every time) and is widened, shifted and finished in cache-sized rows
            left = hidden.to(torch.bfloat16)
            weight = (self.linear.weight.T * alpha).to(torch.bfloat16)
            step = min(512, len(work))
            product = torch.empty((step, work.shape[1]), dtype=torch.bfloat16, device=work.device)
            for first in range(0, len(work), step):
                n = min(step, len(work) - first)
                torch.matmul(left[first : first + n], weight, out=product[:n])
                for offset in range(0, n, rows):
                    block = work[first + offset : first + min(n, offset + rows)]
                    block.copy_(product[offset : offset + len(block)]).add_(shift)
                    finish(block, library[first + offset : first + offset + len(block)])
        else:
            if not _matmul_into(hidden, self.linear.weight.T, work):
                torch.mm(hidden, self.linear.weight.T, out=work)
            for start in range(0, len(work), rows):
                block = work[start : start + rows]
                torch.addcmul(shift, alpha, block, out=block)
                finish(block, library[start : start + len(block)])
        if work is not dest:
            dest.copy_(work)


def _matmul_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> bool:
    """``out = a @ b`` through numpy's BLAS for float32 CPU tensors; ``False`` (nothing done) otherwise.

    The decoder head of a wide modality (cells x hidden units @ hidden units x ATAC peaks) is
    most of the time of generating it, and numpy's OpenBLAS ran this product faster than
    torch's bundled MKL on the benchmark machine.

    Blocks of ``_MATMUL_ROWS`` rows are shared out over ``torch.get_num_threads()`` Python
    threads, each running single-threaded BLAS (numpy releases the GIL). OpenBLAS's own threads
    busy-wait between calls, and on a machine shared with other jobs that took the CPU from
    torch's threads and made generation slower than this split (both measured in
    ``docs/concepts.md``, "Generation speed"). The blocks do not depend on the number of
    threads: OpenBLAS gives different bits for different row counts on some CPUs (an AMD EPYC
    with AVX2 did, an Intel Xeon did not), so splitting by thread count made results depend on
    it.
    """
    if not (a.device.type == b.device.type == out.device.type == "cpu"):
        return False
    if not (a.dtype == b.dtype == out.dtype == torch.float32):
        return False
    controller = _blas_controller()
    if controller is None:
        return False
    left, right, result = a.detach().numpy(), b.detach().numpy(), out.numpy()
    starts = range(0, len(left), _MATMUL_ROWS)
    n_threads = max(1, min(torch.get_num_threads(), len(starts)))

    def block(start: int) -> None:
        rows = slice(start, start + _MATMUL_ROWS)
        np.matmul(left[rows], right, out=result[rows])

    with controller.limit(limits=1, user_api="blas"):
        if n_threads == 1:
            for start in starts:
                block(start)
        else:
            list(_blas_pool(n_threads).map(block, starts))
    return True


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, built once: building it scans every
    loaded shared library, a visible share of a generation call (``docs/concepts.md``,
    "Generation speed")."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # a dependency of scikit-learn, so normally present
        return None
    return ThreadpoolController()


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None


def _blas_pool(n_threads: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``n_threads`` workers, rebuilt when the thread count changes or
    after a fork (a forked child has none of its parent's threads)."""
    global _POOL
    if _POOL is None or _POOL[:2] != (os.getpid(), n_threads):
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)
        _POOL = (os.getpid(), n_threads, ThreadPoolExecutor(n_threads, thread_name_prefix="crossomics-blas"))
    return _POOL[2]
