"""Fixed (non-trainable) input transforms stored in the module as buffers.

They are fitted once on the training data (see :mod:`crossomics.pp`) and then applied
identically at training, inference, generation and perturbation, so a perturbed or query cell
goes through exactly the same first layer as the training cells (architecture decision 3).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from crossomics._constants import TARGET_SUM

_TOTAL_FLOOR = 1e-12


def _buffer(value) -> torch.Tensor:
    # C order, as a saved buffer comes back: a Fortran-ordered array (scikit-learn's PCA
    # components) sends products through another BLAS kernel, whose rounding then differed
    # between a model and its saved copy
    return torch.as_tensor(np.ascontiguousarray(value, dtype=np.float32))


def _is_csr(x: torch.Tensor) -> bool:
    return x.layout == torch.sparse_csr


def to_torch_rows(chunk, device: torch.device | str = "cpu") -> torch.Tensor:
    """Rows of a scipy sparse or numpy matrix as a float32 tensor: CSR when ``chunk`` is sparse.

    Every transform here works on the stored entries of a CSR tensor, so a chunk of a wide
    sparse modality (ATAC peaks) never needs densifying on its way in.
    """
    if not sp.issparse(chunk):
        return torch.as_tensor(np.asarray(chunk), dtype=torch.float32, device=device)
    chunk = sp.csr_matrix(chunk, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's "CSR is beta" notice
        return torch.sparse_csr_tensor(
            torch.as_tensor(chunk.indptr, dtype=torch.int64),
            torch.as_tensor(chunk.indices, dtype=torch.int64),
            torch.as_tensor(chunk.data),
            chunk.shape,
            device=device,
        )


def _csr_entries(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row index, column index and value of every stored entry of a CSR ``x``, and row totals.

    The inference paths (embedding, generation) pass minibatches as CSR tensors: the
    transforms then touch only the stored entries, since every zero count maps to a
    per-feature constant. Densifying a 1,024 x 25,734 ATAC batch cost more than the networks.
    """
    crow, col, values = x.crow_indices(), x.col_indices(), x.values()
    rows = torch.repeat_interleave(torch.arange(x.shape[0], device=x.device), crow.diff())
    totals = torch.zeros(x.shape[0], dtype=values.dtype, device=x.device).index_add_(0, rows, values)
    return rows, col, values, totals


def _csr_like(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), values, x.shape)


def _cached(owner: nn.Module, name: str, sources: tuple[torch.Tensor, ...], build):
    """``build()``, computed once and reused while the ``sources`` tensors are unchanged.

    For matrices derived from buffers (inference only, no gradients): the key is each source's
    storage, device and version counter, so ``load_state_dict`` (an in-place copy), ``.to()``
    and replacing a buffer all trigger a rebuild. Inference tensors keep no version counter:
    with such a source the value is rebuilt on every call.
    """
    if any(t.is_inference() for t in sources):
        with torch.no_grad():
            return build()
    key = tuple((t.data_ptr(), t.device, t._version) for t in sources)
    cached = owner.__dict__.get(name)
    if cached is None or cached[0] != key:
        # a plain (non-inference) tensor, so the cache is also usable outside inference mode
        with torch.inference_mode(False), torch.no_grad():
            cached = (key, build())
        owner.__dict__[name] = cached
    return cached[1]


class SparseLinearMap(nn.Module):
    """Multiplication by a fixed sparse matrix (features x outputs), kept as CSR buffers.

    The transposed matrix is stored in CSR form: CSR x dense products are several times faster
    on CPU than COO ones, which must coalesce on every call. The untransposed CSR form that
    CSR inputs need is derived once and cached (rebuilt only when the buffers change).
    """

    def __init__(self, matrix: sp.spmatrix):
        super().__init__()
        transposed = sp.csr_matrix(matrix.T, dtype=np.float32)
        transposed.sort_indices()
        self.register_buffer("crow_indices", torch.as_tensor(transposed.indptr.astype(np.int64)))
        self.register_buffer("col_indices", torch.as_tensor(transposed.indices.astype(np.int64)))
        self.register_buffer("values", _buffer(transposed.data))
        self.shape = matrix.shape

    def _transposed(self) -> torch.Tensor:
        with warnings.catch_warnings():
            # torch flags CSR support as beta on every construction; the products used here are stable
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                self.crow_indices, self.col_indices, self.values, (self.shape[1], self.shape[0])
            )

    def matrix(self) -> torch.Tensor:
        """The matrix itself (features x outputs) as a CSR tensor, cached."""

        def build():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return self._transposed().t().to_sparse_csr()

        return _cached(self, "_matrix_csr", (self.crow_indices, self.col_indices, self.values), build)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ matrix`` for a dense ``x``; a CSR ``x`` gives a CSR result."""
        if _is_csr(x):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return torch.sparse.mm(x, self.matrix())
        return torch.sparse.mm(self._transposed(), x.T.contiguous()).T


class ComponentProjection(nn.Module):
    """A fixed input transform whose last step projects on ``components`` (one row per output)."""

    @property
    def n_output(self) -> int:
        """Width of the output: the number of rows of the ``components`` buffer."""
        return self.components.shape[0]


class GeneSetScores(ComponentProjection):
    """Gene-set score features (paper eq. 1), reduced by a fixed PCA.

    ``x`` (counts) -> optional peak-to-gene map (gene activity) -> ``log1p`` normalisation
    (skipped when ``log_normalize`` is false: normalised values are used as given) -> mean
    over each set's genes -> standardise -> projection on ``components``.
    """

    log_normalize = True
    """Class default, so that model files written before normalised inputs load unchanged."""

    def __init__(
        self,
        membership: sp.spmatrix,
        components,
        score_mean,
        score_std,
        feature_to_gene=None,
        log_normalize: bool = True,
    ):
        super().__init__()
        self.log_normalize = bool(log_normalize)
        sizes = np.asarray(membership.sum(axis=0)).ravel()
        self.set_mean = SparseLinearMap(sp.csr_matrix(membership) @ sp.diags(1.0 / np.maximum(sizes, 1)))
        self.feature_to_gene = None if feature_to_gene is None else SparseLinearMap(feature_to_gene)
        self.register_buffer("components", _buffer(components))
        self.register_buffer("score_mean", _buffer(score_mean))
        self.register_buffer("score_std", _buffer(score_std))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        genes = x if self.feature_to_gene is None else self.feature_to_gene(x)
        if _is_csr(genes):
            genes = genes.to_dense()  # cells x genes is small; the wide peak space stayed sparse
        if not self.log_normalize:
            return self.set_mean(genes)
        total = genes.sum(-1, keepdim=True).clamp_min(_TOTAL_FLOOR)
        return self.set_mean(torch.log1p(genes / total * TARGET_SUM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense ``x``, or a CSR ``x`` (inference), which never densifies the gene matrix.

        After the ``log1p`` normalisation (zeros stay zero) the layer is linear, so for CSR
        input the set means, standardisation and projection are folded into one
        ``genes x components`` matrix applied to the stored entries only; the result equals
        the dense path up to float32 rounding (tests/nn/test_sparse_transforms.py).
        """
        if _is_csr(x):
            genes = x if self.feature_to_gene is None else self.feature_to_gene(x)
            rows, _, values, totals = _csr_entries(genes)
            logged = (
                torch.log1p(values / totals[rows].clamp_min(_TOTAL_FLOOR) * TARGET_SUM)
                if self.log_normalize
                else values
            )
            weights, offset = self._folded()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # torch's "CSR is beta" notice
                return torch.sparse.mm(_csr_like(genes, logged), weights) - offset
        return ((self.scores(x) - self.score_mean) / self.score_std) @ self.components.T

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``set_mean @ (components / score_std).T`` and ``(score_mean / score_std) @ components.T``."""
        sources = (
            self.set_mean.crow_indices,
            self.set_mean.col_indices,
            self.set_mean.values,
            self.components,
            self.score_mean,
            self.score_std,
        )

        def build():
            scaled = (self.components / self.score_std).T.contiguous()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                weights = torch.sparse.mm(self.set_mean.matrix(), scaled)
            return weights, (self.score_mean / self.score_std) @ self.components.T

        return _cached(self, "_folded_projection", sources, build)


class ReferenceGraphConvolution(nn.Module):
    """One fixed graph-convolution step over a stored reference KNN graph (SGC-style).

    A cell's input ``p`` (its projection) is mixed with the mean projection of its ``k``
    nearest reference cells: ``self_weight * p + (1 - self_weight) * mean_kNN(p)``. The
    reference is a fixed sample of training-cell projections, so the operation is defined for
    any cell (training, query, generated or perturbed) and gives the same result for a cell
    wherever it comes from (architecture decision 4). ``n_neighbors=0`` disables it.
    """

    def __init__(self, reference, n_neighbors: int = 15, self_weight: float = 0.5):
        super().__init__()
        self.register_buffer("reference", _buffer(reference))
        self.n_neighbors = int(n_neighbors)
        self.self_weight = float(self_weight)

    def neighbour_mean(self, p: torch.Tensor) -> torch.Tensor:
        """Mean of the ``k`` nearest reference projections of each row of ``p``."""
        if self.n_neighbors == 0:
            return p
        distances = torch.cdist(p, self.reference)
        neighbours = distances.topk(self.n_neighbors, dim=1, largest=False).indices
        return self.reference[neighbours].mean(1)

    def mix(self, p: torch.Tensor, neighbour_mean: torch.Tensor) -> torch.Tensor:
        """The convolution output given precomputed neighbour means."""
        if self.n_neighbors == 0:
            return p
        return self.self_weight * p + (1 - self.self_weight) * neighbour_mean

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.mix(p, self.neighbour_mean(p))
