"""Decoding joint latents into a modality's values for SCCROSS's generation methods.

Library sizes and batches of the target, the likelihood outputs (mean, normalised values,
detection probabilities, draws), the in-place fast path of wide NB and Bernoulli heads and
the BLAS product it runs on, and the AnnData the generated values are returned in.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from numbers import Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from crossomics._constants import TARGET_SUM
from crossomics.model._sccross_data import SCCROSSDataMixin

_OUTPUTS = ("counts", "normalized", "mean", "detection")
# rows of one BLAS call in _matmul_into, whatever the number of threads
_MATMUL_ROWS = 128


class SCCROSSDecodingMixin(SCCROSSDataMixin):
    """Decoding helpers shared by generation, simulation and perturbation of :class:`crossomics.SCCROSS`."""

    def _target_library(self, target: str, library_size, n_cells: int, source_library=None) -> np.ndarray:
        if isinstance(library_size, Real) and not isinstance(library_size, bool):
            if not np.isfinite(library_size) or library_size <= 0:
                raise ValueError(
                    f"library_size={library_size!r}; it is the total count of each generated cell, "
                    "so pass a positive number (e.g. 1e4), or None for the target's median"
                )
            return np.full(n_cells, float(library_size), dtype=np.float32)
        if library_size is not None:
            raise ValueError(f"library_size={library_size!r}; pass a number or None")
        if source_library is not None:
            return np.asarray(source_library, dtype=np.float32)
        return np.full(n_cells, float(np.median(self.library_sizes_[target])), dtype=np.float32)

    def _matched_library(self, source: str, target: str, source_library: np.ndarray) -> np.ndarray:
        """Each cell's total in ``target`` at the quantile its ``source`` total has among the
        training cells' totals: sampled counts get the spread of real depths, and deeper
        source cells get deeper target profiles."""
        trained = np.sort(self.library_sizes_[source])
        rank = np.searchsorted(trained, source_library, side="left") + np.searchsorted(
            trained, source_library, side="right"
        )
        quantile = np.clip(rank / (2 * len(trained)), 0.0, 1.0)
        return np.quantile(self.library_sizes_[target], quantile).astype(np.float32)

    def _decode_to_output(
        self, target: str, z: torch.Tensor, batch, library, output: str, generator
    ) -> np.ndarray:
        return self._decode_tensor(target, z, batch, library, output, generator).cpu().numpy()

    def _decode_tensor(
        self, target: str, z: torch.Tensor, batch, library, output: str, generator
    ) -> torch.Tensor:
        params, _, _ = self.module.decode(target, z, batch, library, sample=False)
        head = self.module.likelihood[target]
        if output == "mean":
            return head.mean(params)
        if output == "detection":
            return head.detection_probability(params)
        if output == "normalized":
            if "composition" in params:
                return torch.log1p(params["composition"] * TARGET_SUM)
            return head.mean(params)
        # torch's Gamma sampler has no generator argument: seed a forked global state from ours,
        # so draws are reproducible and the caller's random state is left alone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))
            return head.sample(params, generator=generator)

    def _decode_into(
        self,
        target: str,
        z: torch.Tensor,
        code: int,
        library: torch.Tensor,
        output: str,
        generator,
        dest,
        precision: str = "float32",
    ) -> None:
        """Decode ``z`` (all cells in target batch ``code``) into the float32 CPU tensor ``dest``.

        The values of :meth:`_decode_tensor` up to float32 rounding. For the expected counts,
        normalised values and detection probabilities of an NB head and the probabilities of a
        Bernoulli head (RNA and ATAC, the common cases) the output-sized work happens in
        ``dest`` itself, with no (cells x features) temporaries: the head's linear layer writes
        there (through numpy's BLAS on CPU, see :func:`_matmul_into`), then the batch affine
        map and either the softmax with library scaling (NB) or the sigmoid (Bernoulli) run in
        place. Other outputs and likelihoods go through :meth:`_decode_tensor`.

        ``precision="bfloat16"`` runs that output layer's product in bfloat16 (the rest stays
        float32); see :meth:`cross_generate`.
        """
        head = self.module.likelihood[target]
        if output == "counts" or head.likelihood not in ("nb", "bernoulli"):
            batch = torch.full((len(z),), code, dtype=torch.long, device=z.device)
            dest.copy_(self._decode_tensor(target, z, batch, library, output, generator))
            return
        # the operations of module.decode(..., sample=False) and head.params, for one batch code
        zk, _ = self.module.aligner_decoder[target](z)
        hidden = self.module.decoder[target](zk)
        direct = hidden.device == dest.device and hidden.dtype == dest.dtype and dest.is_contiguous()
        work = dest if direct else torch.empty(dest.shape, dtype=hidden.dtype, device=hidden.device)
        # a one-hot row product picks the row exactly, so indexing gives the same alpha and beta
        alpha = torch.exp(head.log_alpha)[code]
        beta = head.beta[code]
        theta = torch.exp(head.log_theta)[code] if output == "detection" and head.likelihood == "nb" else None
        # row blocks of ~4 MB on CPU, so that the passes after the product run in cache
        rows = len(work) if work.device.type != "cpu" else max(1, 2**20 // max(1, work.shape[1]))

        def finish(block: torch.Tensor, start: int) -> None:
            """Likelihood mean, probability or normalised value from the located ``block``."""
            if head.likelihood == "bernoulli":
                # the mean, "normalized" and "detection" outputs of a Bernoulli head are all probabilities
                torch.sigmoid(block, out=block)
                return
            torch.softmax(block, dim=-1, out=block)  # row-wise, element by element: in place is safe
            if output != "normalized":
                block.mul_(library[start : start + len(block)].view(-1, 1))
            if output == "detection":
                # P(x > 0) = 1 - (1 + mu / theta)^(-theta), in place
                block.div_(theta).log1p_().mul_(-theta).expm1_().neg_()
            elif output == "normalized":
                block.mul_(TARGET_SUM).log1p_()

        # location = beta + alpha * (h W^T + b) = (beta + alpha * b) + alpha * (h W^T)
        shift = torch.addcmul(beta, alpha, head.linear.bias)
        if precision == "bfloat16":
            # alpha folded into the weights; each 512-row product lands in one reused bfloat16
            # buffer (smaller products ran the kernel below its speed, a fresh buffer paid its
            # page faults every time) and is widened, shifted and finished in cache-sized rows
            left = hidden.to(torch.bfloat16)
            weight = (head.linear.weight.T * alpha).to(torch.bfloat16)
            step = min(512, len(work))
            product = torch.empty((step, work.shape[1]), dtype=torch.bfloat16, device=work.device)
            for first in range(0, len(work), step):
                n = min(step, len(work) - first)
                torch.matmul(left[first : first + n], weight, out=product[:n])
                for offset in range(0, n, rows):
                    block = work[first + offset : first + min(n, offset + rows)]
                    block.copy_(product[offset : offset + len(block)]).add_(shift)
                    finish(block, first + offset)
        else:
            if not _matmul_into(hidden, head.linear.weight.T, work):
                torch.mm(hidden, head.linear.weight.T, out=work)
            for start in range(0, len(work), rows):
                block = work[start : start + rows]
                torch.addcmul(shift, alpha, block, out=block)
                finish(block, start)
        if work is not dest:
            dest.copy_(work)

    def _generation_output(
        self, target: str, values: list[np.ndarray] | np.ndarray, output: str, obs: pd.DataFrame, extra: dict
    ):
        if isinstance(values, np.ndarray):
            stacked = values
        elif len(values) == 1:
            stacked = values[0]
        elif values:
            stacked = np.concatenate(values)
        else:
            stacked = np.zeros((0, len(self.feature_names_[target])), np.float32)
        stacked = stacked.astype(np.float32, copy=False)
        X = sp.csr_matrix(stacked) if output == "counts" else stacked
        names = self.feature_names_[target]
        data = self._data.get(target)
        # the model's feature order, annotated from its data (any order) when it has some
        var = data.var.reindex(names) if data is not None else pd.DataFrame(index=names)
        var = var[[c for c in var.columns if not str(c).startswith("_scvi")]]
        return AnnData(
            X=X, obs=obs, var=var, uns={"sccross_generation": {"target": target, "output": output, **extra}}
        )

    def _check_output(self, output: str, modalities: Sequence[str]) -> None:
        if output not in _OUTPUTS:
            raise ValueError(f"output={output!r}; choose one of {list(_OUTPUTS)}")
        for m in modalities:
            if output == "detection" and self.likelihoods_[m] == "normal":
                raise ValueError(
                    f"output='detection' needs a count, binary or zero-inflated likelihood; modality {m!r} "
                    "has a normal likelihood (use output='mean')"
                )

    def _target_batch(self, target: str, batch: str | None) -> int:
        categories = list(self.batch_categories_[target])
        if batch is None:
            return 0
        if batch not in categories:
            raise ValueError(f"batch {batch!r} is not a batch of modality {target!r}; batches: {categories}")
        return categories.index(batch)


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
