"""Cross-modal generation, simulation and in-silico perturbation for SCCROSS."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from numbers import Real

import mudata
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from anndata import AnnData
from mudata import MuData
from tqdm.auto import tqdm

from crossomics._validation import check_positive_int
from crossomics.nn._layers import bfloat16_is_fast
from crossomics.nn._likelihoods import COUNT_LIKELIHOODS
from crossomics.pp._normalize import column_moments

_OUTPUTS = ("counts", "normalized", "mean", "detection")
# cells per forward pass of cross_generate (defaults). Expected values are decoded in place in
# row blocks, so a larger pass only saves per-pass overhead (RNA -> ATAC, 10,309 cortex cells,
# 2 threads, bfloat16: best of 3 runs 10,335 cells/s at 2,048 against 9,560 at 1,024); drawing
# counts makes several (cells x features) temporaries, so it keeps smaller passes.
_GENERATION_BATCH_SIZE = 2048
_SAMPLING_BATCH_SIZE = 1024
# rows of one BLAS call in _matmul_into, whatever the number of threads
_MATMUL_ROWS = 128


def _obs_values(adata: AnnData, groupby: str, name: str) -> pd.Series:
    if groupby not in adata.obs:
        raise ValueError(f"{groupby!r} is not a column of {name}.obs; available: {list(adata.obs.columns)}")
    return _group_labels(adata.obs[groupby])


def _group_labels(values: pd.Series) -> pd.Series:
    """Labels as strings for matching a group name; missing labels stay missing, so a cell
    without a label never joins a group (``astype(str)`` alone would make them a group "nan")."""
    return values.astype(str).where(values.notna(), None)


class SCCROSSGenerationMixin:
    """Generation methods of :class:`crossomics.SCCROSS` (paper eq. 14-16 and Fig. 6)."""

    # ------------------------------------------------------------------ helpers
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
                return torch.log1p(params["composition"] * 1e4)
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
                block.mul_(1e4).log1p_()

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

    # ------------------------------------------------------------------ cross generation
    @torch.inference_mode()
    def cross_generate(
        self,
        source: str,
        target: str,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        n_samples: int = 1,
        library_size: float | None = None,
        output: str = "mean",
        target_batch: str | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        precision: str = "float32",
    ) -> AnnData:
        """Generate the ``target`` modality for cells measured in ``source`` (paper eq. 14).

        ``x_source -> z_source -> z -> z_target -> x_target`` with posterior means along the way,
        so the result is deterministic except for ``output="counts"``. ``source == target`` is
        self-augmentation.

        Parameters
        ----------
        source, target
            Modality names.
        adata
            Query data of the source modality: an AnnData or a MuData holding it (training
            features, any order). ``None`` uses the model's source cells (registered, or given
            to :meth:`load`).
        indices
            Subset of source rows.
        n_samples
            Generated profiles per cell (rows are repeated, obs_names get ``-<k>``); useful with
            ``output="counts"``.
        library_size
            Total counts of generated count profiles. ``None``: a cell's own total when
            ``source == target``; for ``output="counts"`` from another count modality, the
            target's training total at the quantile the source cell's total has among the
            source's training totals (sampled cells get the spread of real depths); else the
            median total of the target's training cells.
        output
            ``"mean"`` (expected values), ``"normalized"`` (``log1p`` of the composition scaled
            to 1e4, count likelihoods), ``"detection"`` (``P(x > 0)`` under the likelihood at
            ``library_size``: for ATAC the probability that a peak is accessible, the score to
            compare with binarised data; not defined for a normal likelihood) or ``"counts"``
            (one draw from the likelihood, sparse).
        target_batch
            Batch of the target modality whose decoder parameters are used (default: the first).
        batch_size
            Cells per forward pass (default 2,048; 1,024 for ``output="counts"``, whose draws
            need several cells x features temporaries). The output matrix is allocated once and
            every chunk is decoded straight into its rows.
        seed
            Seed of the draws for ``output="counts"``.
        precision
            ``"float32"`` (default) or ``"bfloat16"``: the arithmetic of the target decoder's
            output layer (hidden units x features, most of the time for wide modalities) for
            ``output="mean"`` / ``"normalized"`` / ``"detection"`` of NB and Bernoulli
            modalities; everything else stays float32. bfloat16 keeps 8 significant bits of
            each operand: on CPUs with bfloat16 instructions it generates wide modalities
            faster, and the generated values stay close to those of float32 (measured in
            ``docs/concepts.md``, "Generation speed").

        Returns
        -------
        AnnData with the target's features (``var``) and the source cells' ``obs``.

        Examples
        --------
        >>> rna_from_atac = model.cross_generate(source="atac", target="rna")
        >>> sc.pp.log1p(rna_from_atac)
        """
        self._check_modality(target)
        self._check_output(output, [target])
        self._check_if_trained(warn=True)
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision={precision!r}; choose 'float32' or 'bfloat16'")
        if precision == "bfloat16" and not bfloat16_is_fast(self.device):
            warnings.warn(
                f"precision='bfloat16' on {self.device}, which has no bfloat16 instructions: the "
                "arithmetic is emulated and much slower than float32; use precision='float32'",
                UserWarning,
                stacklevel=2,
            )
        check_positive_int(n_samples, "n_samples", 1)
        X, source_adata, _ = self._modality_data(source, adata, indices)
        measured = self._measured_cells(source, X)
        if not measured.all():
            warnings.warn(
                f"{int((~measured).sum())} of {X.shape[0]} source cells have zero counts in modality "
                f"{source!r}; their generated rows are NaN (the cells were not measured in it)",
                UserWarning,
                stacklevel=2,
            )
            X = X[measured]
        source_library = np.asarray(X.sum(1)).ravel()
        if source == target:
            library = self._target_library(target, library_size, X.shape[0], source_library)
        elif output == "counts" and library_size is None and self.likelihoods_[source] in COUNT_LIKELIHOODS:
            library = self._matched_library(source, target, source_library)
        else:
            library = self._target_library(target, library_size, X.shape[0])
        code = self._target_batch(target, target_batch)
        generator = torch.Generator().manual_seed(seed)
        self.module.eval()
        n_cells, n_features = X.shape[0], len(self.feature_names_[target])
        # Rows are cell-major, sample-minor; every chunk is decoded straight into its rows. The
        # buffer comes from torch, not numpy: numpy asks for transparent huge pages, and on the
        # benchmark machine a fresh 1 GB output then took 1-2.7 s to fault in (memory
        # compaction) against 0.55-0.7 s with ordinary pages.
        rows = torch.empty((n_cells, n_samples, n_features), dtype=torch.float32)
        stacked = rows.view(n_cells * n_samples, n_features).numpy()
        library = torch.as_tensor(library)
        start = 0
        default_batch = _SAMPLING_BATCH_SIZE if output == "counts" else _GENERATION_BATCH_SIZE
        for x in self._batches(X, default_batch if batch_size is None else batch_size):
            z = self.module.encode(source, x, sample=False)["z"]
            n = len(z)
            lib = library[start : start + n].to(z.device)
            block = rows[start : start + n]
            if output == "counts":
                # one draw per sample, in the generator order of earlier versions (chunk, sample)
                for k in range(n_samples):
                    self._decode_into(target, z, code, lib, output, generator, block[:, k], precision)
            else:
                # deterministic outputs: decode once, repeat for the other samples
                first = block[:, 0] if n_samples == 1 else torch.empty((n, n_features), dtype=torch.float32)
                self._decode_into(target, z, code, lib, output, generator, first, precision)
                if n_samples > 1:
                    block.copy_(first.unsqueeze(1).expand(-1, n_samples, -1))
            start += n
        if not measured.all():
            generated = np.full((len(measured), n_samples, n_features), np.nan, dtype=np.float32)
            generated[measured] = stacked.reshape(n_cells, n_samples, n_features)
            stacked = generated.reshape(len(measured) * n_samples, n_features)
        obs = source_adata.obs.copy()
        obs = obs[[c for c in obs.columns if not str(c).startswith("_scvi")]]
        if n_samples > 1:
            obs = obs.loc[obs.index.repeat(n_samples)]
            obs.index = [f"{name}-{k}" for name in source_adata.obs_names for k in range(n_samples)]
        return self._generation_output(target, stacked, output, obs, {"source": source})

    # ------------------------------------------------------------------ normalised values
    @torch.inference_mode()
    def get_normalized_expression(
        self,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        modality: str = "rna",
        source: str | None = None,
        transform_batch: str | None = None,
        gene_list: Sequence[str] | None = None,
        library_size: float = 1.0,
        n_samples: int = 1,
        return_mean: bool = True,
        return_numpy: bool = False,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> pd.DataFrame | np.ndarray:
        """Decoded expected values of ``modality`` for each cell, as scvi-tools' models give them.

        Each cell of ``source`` (default: ``modality`` itself) is encoded into the joint space
        and decoded into ``modality``; the value is the likelihood's mean at ``library_size``
        total counts (count likelihoods; e.g. 1 gives proportions, 1e4 counts per 10k), the
        detection probability for Bernoulli modalities, or the location for continuous ones.
        Cells with zero counts in ``source`` get NaN rows.

        Parameters
        ----------
        adata, indices
            Cells of ``source`` (default: the model's data), as in :meth:`cross_generate`.
        modality
            The modality whose features are returned.
        source
            The modality whose cells are encoded; a different one gives cross-modal values.
        transform_batch
            Decode as this batch of ``modality``; default the cells' own batches when ``source``
            is ``modality``, else its first batch.
        gene_list
            Features to return (default: all).
        library_size
            Total count of each decoded cell (count likelihoods).
        n_samples
            Draws of the joint latent from the posterior; 1 uses the posterior mean.
        return_mean
            Average the draws; ``False`` returns an array ``(n_samples, n_cells, n_genes)``.
        return_numpy
            An array instead of a DataFrame (cells x genes, indexed by ``obs_names``).
        batch_size
            Cells per forward pass.
        seed
            Seed of the posterior draws.

        Examples
        --------
        >>> expression = model.get_normalized_expression(gene_list=["Gad1", "Slc17a7"], library_size=1e4)
        >>> accessibility = model.get_normalized_accessibility()
        """
        source = modality if source is None else source
        for m in (modality, source):
            self._check_modality(m)
        self._check_if_trained(warn=True)
        if not isinstance(library_size, Real) or not np.isfinite(library_size) or library_size <= 0:
            raise ValueError(f"library_size={library_size!r}; pass a positive total count, e.g. 1 or 1e4")
        check_positive_int(n_samples, "n_samples", 1)
        features = self.feature_names_[modality]
        genes = _gene_list(gene_list, features, modality, argument="gene_list")
        columns = features.get_indexer(genes)
        X, source_adata, own_batches = self._modality_data(source, adata, indices)
        if transform_batch is not None:
            own_batches = np.full(X.shape[0], self._target_batch(modality, transform_batch))
        elif source != modality:
            own_batches = np.zeros(X.shape[0], dtype=np.int64)
        values = self._decoded_values(
            modality,
            source,
            X,
            own_batches,
            columns,
            library_size,
            n_samples,
            n_samples > 1,
            seed,
            batch_size,
        )
        if not return_mean:
            return values
        mean = values.mean(0)
        if return_numpy:
            return mean
        return pd.DataFrame(mean, index=source_adata.obs_names.copy(), columns=pd.Index(genes, name=modality))

    def _decoded_values(
        self,
        modality: str,
        source: str,
        X,
        batches: np.ndarray,
        columns: np.ndarray,
        library_size: float,
        n_samples: int,
        sample: bool,
        seed: int,
        batch_size: int | None,
        detection: bool = False,
    ) -> np.ndarray:
        """Likelihood means of ``modality`` decoded from the cells of ``X`` (measured in
        ``source``), ``(n_samples, n_cells, len(columns))``: from posterior draws of the joint
        latent when ``sample``, else from its mean; NaN rows for cells not measured. With
        ``detection``, the probabilities ``P(x > 0)`` at ``library_size`` instead of the means."""
        measured = self._measured_cells(source, X)
        values = np.full((n_samples, X.shape[0], len(columns)), np.nan, dtype=np.float32)
        rows = np.flatnonzero(measured)
        head = self.module.likelihood[modality]
        self.module.eval()
        with torch.inference_mode(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            start = 0
            for x in self._batches(X[measured], batch_size):
                chunk = rows[start : start + x.shape[0]]
                batch = torch.as_tensor(batches[chunk], dtype=torch.long, device=self.device)
                library = torch.full((len(chunk),), float(library_size), device=self.device)
                for k in range(n_samples):
                    z = self.module.encode(source, x, sample=sample)["z"]
                    params = self.module.decode(modality, z, batch, library, sample=False)[0]
                    decoded = head.detection_probability(params) if detection else head.mean(params)
                    values[k, chunk] = decoded[:, columns].cpu().numpy()
                start += len(chunk)
        return values

    def get_normalized_accessibility(
        self, *args, modality: str = "atac", **kwargs
    ) -> pd.DataFrame | np.ndarray:
        """:meth:`get_normalized_expression` of the ATAC modality (detection probabilities for a
        Bernoulli decoder, expected counts at ``library_size`` for an NB one)."""
        return self.get_normalized_expression(*args, modality=modality, **kwargs)

    # ------------------------------------------------------------------ simulation
    @torch.inference_mode()
    def simulate(
        self,
        groupby: str,
        group: str,
        n_cells: int,
        modalities: Sequence[str] | None = None,
        output: str = "counts",
        seed: int = 0,
        batch_size: int | None = None,
        posterior_from: str | Sequence[str] | None = None,
        mdata: MuData | None = None,
    ) -> MuData:
        """Simulate matched multi-omics cells of one population (paper eq. 15-16, Fig. 5).

        Joint latents are drawn from the population's aggregate posterior: a mixture with one
        Gaussian ``q(z | x_i)`` per cell ``i`` of the group, over the group's cells in every
        modality of ``posterior_from`` that has ``groupby``. Every modality is then decoded from
        the *same* draw, so row ``k`` of each modality is one simulated cell. Library sizes are
        drawn from the group's observed totals of each modality. Vectorised: no per-cell Python
        loop.

        Which encodings define the population matters when the modalities tell cell types apart
        unequally. On the mouse cortex, ATAC encodings of astrocytes sit partly among
        neighbouring types, so fewer simulated astrocytes are classified as astrocytes when the
        mixture includes them than with ``posterior_from="rna"`` (measured in
        ``docs/concepts.md``, "Bidirectional aligners and the joint space").

        Parameters
        ----------
        groupby
            ``.obs`` column holding the population labels (in at least one modality).
        group
            The population to simulate.
        n_cells
            Number of simulated cells.
        modalities
            Modalities to generate: one name or a list (default: all).
        output
            ``"counts"``, ``"mean"``, ``"normalized"`` or ``"detection"`` (see
            :meth:`cross_generate`).
        seed
            Random seed.
        batch_size
            Cells per forward pass (default 1,024).
        posterior_from
            Modalities whose encodings of the group's cells form the mixture (default: all).
        mdata
            Cells that define the population (their modalities' features in any order);
            default: the model's data. A model loaded without data needs it.

        Returns
        -------
        MuData with one AnnData per modality, the same ``obs_names`` in each (paired cells).

        Examples
        --------
        >>> sim = model.simulate(groupby="cell_type", group="Astro", n_cells=500)
        >>> sim.mod["rna"].shape
        (500, 1677)
        """
        if modalities is None:
            modalities = list(self.modalities_)
        modalities = [modalities] if isinstance(modalities, str) else list(modalities)
        for m in modalities:
            self._check_modality(m)
        self._check_output(output, modalities)
        self._check_if_trained(warn=True)
        check_positive_int(n_cells, "n_cells", 500)
        if posterior_from is None:
            posterior_from = list(self.modalities_)
        elif isinstance(posterior_from, str):
            posterior_from = [posterior_from]
        for m in posterior_from:
            self._check_modality(m)
        self.module.eval()
        means, log_vars, libraries = [], [], {}
        found_column = False
        available = list(mdata.mod) if mdata is not None else list(self._data)
        if not any(m in available for m in self.modalities_):
            raise ValueError(
                "this model holds no data (it was loaded without it); pass mdata= with the cells to simulate from"
            )
        for m in self.modalities_:
            if m not in available:
                continue
            adata = self._data_of(m, mdata)
            if groupby not in adata.obs:
                continue
            found_column = True
            rows = np.flatnonzero(_group_labels(adata.obs[groupby]).to_numpy() == str(group))
            if not len(rows) or (m not in posterior_from and m not in modalities):
                continue
            X, _, _ = self._modality_data(m, mdata, rows)
            X = X[self._measured_cells(m, X)]
            if not X.shape[0]:
                continue
            libraries[m] = np.asarray(X.sum(1)).ravel()
            if m not in posterior_from:
                continue
            for x in self._batches(X, batch_size):
                encoded = self.module.encode(m, x, sample=False)
                means.append(encoded["z_mean"])
                log_vars.append(encoded["z_log_var"])
        if not found_column:
            raise ValueError(f"{groupby!r} is not an .obs column of any modality {self.modalities_}")
        if not means:
            where = "" if set(posterior_from) == set(self.modalities_) else f" of modalities {posterior_from}"
            raise ValueError(f"group {group!r} has no cells in column {groupby!r}{where}")
        mean, log_var = torch.cat(means), torch.cat(log_vars)
        generator = torch.Generator().manual_seed(seed)
        component = torch.randint(len(mean), (n_cells,), generator=generator)
        noise = torch.randn((n_cells, mean.shape[1]), generator=generator).to(mean.device)
        component = component.to(mean.device)
        z = mean[component] + torch.exp(0.5 * log_var[component]) * noise
        rng = np.random.default_rng(seed)
        names = [f"sim_{group}_{k}" for k in range(n_cells)]
        obs = pd.DataFrame({groupby: pd.Categorical([str(group)] * n_cells)}, index=names)
        mods = {}
        for m in modalities:
            observed = libraries.get(m)
            if observed is None:
                observed = self.library_sizes_[m]
            library = torch.as_tensor(rng.choice(observed, n_cells).astype(np.float32), device=z.device)
            batch = torch.zeros(n_cells, dtype=torch.long, device=z.device)
            step = batch_size or 1024
            values = [
                self._decode_to_output(
                    m, z[i : i + step], batch[i : i + step], library[i : i + step], output, generator
                )
                for i in range(0, n_cells, step)
            ]
            mods[m] = self._generation_output(m, values, output, obs.copy(), {"simulated_group": str(group)})
        # the simulated cells are matched row by row; nothing to pull from the modalities
        with mudata.set_options(pull_on_update=False):
            return MuData(mods)

    # ------------------------------------------------------------------ perturbation
    @torch.inference_mode()
    def perturb(
        self,
        modality: str,
        genes: Sequence[str] | None = None,
        direction: str = "both",
        fold: float = 0.5,
        groupby: str | None = None,
        perturb_group: str | None = None,
        reference_group: str | None = None,
        target: str | None = None,
        n_target_genes: int = 20,
        max_cells: int | None = 1000,
        batch_size: int | None = None,
        seed: int = 0,
        adata: AnnData | MuData | None = None,
    ):
        """In-silico perturbation scores (paper Fig. 6): which genes move cells toward a reference.

        For every gene, its counts in the perturbed cells are scaled by ``1 + fold`` (up) and
        ``1 - fold`` (down). In a continuous modality (``normal`` or ``ziln`` likelihood:
        log-normalised, TF-IDF or z-scored values, methylation rates) scaling has no fixed
        meaning, so the value is shifted by ``+fold`` / ``-fold`` standard deviations of the gene
        over the data's cells instead (``direction="down"`` then needs no ``fold < 1``). The
        cells are re-encoded through the stored input transform with posterior means, and the
        mean cosine distance to the reference cells in the joint latent is compared with the
        unperturbed one. ``score = baseline - perturbed distance``: positive
        scores move the perturbed cells toward the reference.

        The graph convolution keeps each cell's neighbours from its unperturbed profile (the
        graph is the data's graph; only the cell's own features change). Scaling a zero count
        changes nothing, so only the (cell, gene) pairs with counts are re-encoded; genes are
        processed in vectorised chunks of about ``batch_size`` such profiles, with a progress
        bar. The result is exact, not an approximation.

        Parameters
        ----------
        modality
            Modality whose features are perturbed.
        genes
            Features to perturb: one name or a list of distinct names (default: all features of
            the modality).
        direction
            ``"up"``, ``"down"`` or ``"both"``.
        fold
            Relative change of the counts (paper: 0.5); for continuous data, the shift in
            standard deviations of the gene.
        groupby, perturb_group, reference_group
            ``.obs`` column of the modality and the two groups (perturbed cells, reference cells).
        target
            Another modality: also return it cross-generated from the perturbed cells, with the
            top ``n_target_genes`` genes (or all ``genes`` given explicitly) perturbed jointly in
            their best direction (paper Fig. 6d-f). The unperturbed generation is in
            ``layers["unperturbed"]``.
        max_cells
            Perturb at most this many cells of ``perturb_group`` (a fixed random subset).
        batch_size
            Perturbed cell profiles encoded per forward pass (default: as many as fit in about
            32 million matrix entries, i.e. 128 MB of float32).
        adata
            Cells to perturb and reference cells: an AnnData of ``modality`` or a MuData
            holding it (features in any order); default: the model's data.

        Returns
        -------
        DataFrame indexed by gene with ``score_up`` / ``score_down`` (and ``distance_*``),
        ``best_score``, ``best_direction`` and ``rank`` (1 = strongest move toward the
        reference); with ``target``, a tuple ``(scores, generated_target)``.

        Examples
        --------
        >>> scores = model.perturb("rna", groupby="cell_type", perturb_group="L6", reference_group="L4/5")
        >>> scores.head()
        """
        self._check_modality(modality)
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction={direction!r}; choose 'up', 'down' or 'both'")
        continuous = self.likelihoods_[modality] not in COUNT_LIKELIHOODS
        if not isinstance(fold, Real) or not np.isfinite(fold) or fold <= 0:
            raise ValueError(f"fold={fold!r} must be a positive number, e.g. fold=0.5")
        if fold >= 1 and direction != "up" and not continuous:
            raise ValueError(
                f"fold={fold} must lie in (0, 1) for down-perturbation (counts scale by 1 - fold)"
            )
        if groupby is None or perturb_group is None or reference_group is None:
            raise ValueError("pass groupby=, perturb_group= and reference_group=")
        if str(perturb_group) == str(reference_group):
            raise ValueError(
                f"perturb_group and reference_group are both {perturb_group!r}: the scores measure how "
                "far perturbing moves one group towards another, so name two different groups"
            )
        if target is not None:
            self._check_modality(target)
        self._check_if_trained(warn=True)
        query = adata
        adata = self._data_of(modality, query)
        labels = _obs_values(adata, groupby, f"mdata.mod[{modality!r}]")
        groups = set(labels.dropna())
        for name in (perturb_group, reference_group):
            if str(name) not in groups:
                raise ValueError(
                    f"group {name!r} is not in {groupby!r} of modality {modality!r}; groups: "
                    f"{sorted(groups)[:20]}"
                )
        features = self.feature_names_[modality]
        gene_list = _gene_list(genes, features, modality)
        if target is not None:
            check_positive_int(n_target_genes, "n_target_genes", 20)
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size", 4096)
        gene_index = features.get_indexer(gene_list)
        if max_cells is not None:
            check_positive_int(max_cells, "max_cells", 1000)
        rng = np.random.default_rng(seed)
        # cells with zero counts in the modality were not measured in it: neither perturbed nor reference
        data = self._modality_data(modality, query)[0]
        measured = self._measured_cells(modality, data)
        perturb_rows = np.flatnonzero((labels.to_numpy() == str(perturb_group)) & measured)
        if max_cells is not None and len(perturb_rows) > max_cells:
            perturb_rows = np.sort(rng.choice(perturb_rows, max_cells, replace=False))
        reference_rows = np.flatnonzero((labels.to_numpy() == str(reference_group)) & measured)
        for name, rows in ((perturb_group, perturb_rows), (reference_group, reference_rows)):
            if not len(rows):
                raise ValueError(
                    f"group {name!r} has no cells with counts in modality {modality!r}; choose a group "
                    "measured in it"
                )
        self.module.eval()
        reference_direction = F.normalize(
            torch.as_tensor(self.get_latent_representation(modality, adata=query, indices=reference_rows)),
            dim=-1,
        ).mean(0)
        X, _, _ = self._modality_data(modality, query, perturb_rows)
        x = torch.as_tensor(X.toarray() if sp.issparse(X) else np.asarray(X), dtype=torch.float32)
        x = x.to(self.device)
        reference_direction = reference_direction.to(self.device)
        neighbour_mean = self.module.graph_neighbour_mean(modality, x)

        def unit_latents(profiles: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
            return F.normalize(
                self.module.encode_with_neighbours(modality, profiles, neighbour_mean[cells]), dim=-1
            )

        all_cells = torch.arange(len(x), device=x.device)
        baseline_units = unit_latents(x, all_cells)
        baseline_sum = baseline_units.sum(0)
        baseline = float(1.0 - (baseline_sum / len(x)) @ reference_direction)
        directions = ["up", "down"] if direction == "both" else [direction]
        if continuous:
            feature_std = torch.as_tensor(
                np.sqrt(np.maximum(column_moments(data)[1], 0.0)),
                dtype=torch.float32,
                device=x.device,
            )
            signs = {"up": 1.0, "down": -1.0}

            def perturbed_values(values, feature, d):
                return values + signs[d] * fold * feature_std[feature]

            # a shift changes every cell's value, zeros included
            expressed = torch.ones(len(x), len(gene_index), dtype=torch.bool, device=x.device)
        else:
            factors = {"up": 1.0 + fold, "down": 1.0 - fold}

            def perturbed_values(values, feature, d):
                return values * factors[d]

            # scaling a zero count changes nothing, so only (cell, gene) pairs with counts are re-encoded
            expressed = x[:, torch.as_tensor(gene_index, device=x.device)] > 0
        result = pd.DataFrame(index=pd.Index(gene_list, name="gene"))
        chunks = _chunks_by_budget(expressed.sum(0).cpu().numpy(), batch_size or max(1, 2**25 // x.shape[1]))
        for d in directions:
            distances = np.empty(len(gene_list), dtype=np.float64)
            for start, stop in tqdm(chunks, desc=f"perturb {d}", leave=False):
                cells, local_gene = torch.nonzero(expressed[:, start:stop], as_tuple=True)
                genes_of_pairs = torch.as_tensor(gene_index[start:stop], device=x.device)[local_gene]
                profiles = x[cells]
                pair_rows = torch.arange(len(cells), device=x.device)
                profiles[pair_rows, genes_of_pairs] = perturbed_values(
                    profiles[pair_rows, genes_of_pairs], genes_of_pairs, d
                )
                change = unit_latents(profiles, cells) - baseline_units[cells]
                sums = baseline_sum.repeat(stop - start, 1).index_add_(0, local_gene, change)
                distances[start:stop] = (1.0 - (sums / len(x)) @ reference_direction).cpu().numpy()
            result[f"distance_{d}"] = distances
            result[f"score_{d}"] = baseline - distances
        score_columns = [f"score_{d}" for d in directions]
        result["best_score"] = result[score_columns].max(axis=1)
        result["best_direction"] = result[score_columns].idxmax(axis=1).str.replace("score_", "", regex=False)
        result["rank"] = result["best_score"].rank(ascending=False, method="first").astype(int)
        result.attrs.update(
            baseline_distance=baseline, perturb_group=str(perturb_group), reference_group=str(reference_group)
        )
        result = result.sort_values("rank")
        if target is None:
            return result
        chosen = result.index[:n_target_genes] if genes is None else result.index
        perturbed = x.clone()
        for gene, best in zip(chosen, result.loc[chosen, "best_direction"], strict=True):
            column = features.get_loc(gene)
            perturbed[:, column] = perturbed_values(perturbed[:, column], column, best)
        generated = self._cross_generate_tensor(modality, target, perturbed, neighbour_mean)
        unperturbed = self._cross_generate_tensor(modality, target, x, neighbour_mean)
        obs = adata.obs.iloc[perturb_rows].copy()
        obs = obs[[c for c in obs.columns if not str(c).startswith("_scvi")]]
        out = self._generation_output(
            target, [generated], "mean", obs, {"source": modality, "perturbed_genes": list(chosen)}
        )
        out.layers["unperturbed"] = unperturbed
        return result, out

    def _cross_generate_tensor(
        self, source: str, target: str, x: torch.Tensor, neighbour_mean: torch.Tensor
    ) -> np.ndarray:
        z = self.module.encode_with_neighbours(source, x, neighbour_mean)
        library = torch.as_tensor(self._target_library(target, None, len(x)), device=z.device)
        batch = torch.zeros(len(x), dtype=torch.long, device=z.device)
        params, _, _ = self.module.decode(target, z, batch, library, sample=False)
        return self.module.likelihood[target].mean(params).cpu().numpy()


def _gene_list(genes, features: pd.Index, modality: str, argument: str = "genes") -> list:
    """Selected features: all (``None``), one name, or a list of distinct feature names."""
    if genes is None:
        return list(features)
    gene_list = [genes] if isinstance(genes, str) else list(genes)
    if not gene_list:
        raise ValueError(
            f"{argument}={genes!r} selects no gene; pass at least one gene name, or {argument}=None for all"
        )
    missing = [g for g in gene_list if g not in features]
    if missing:
        raise ValueError(
            f"{len(missing)} genes are not features of {modality!r}: {missing[:5]}; pass names from "
            f"model.feature_names_[{modality!r}]"
        )
    names = pd.Index(gene_list)
    repeated = list(names[names.duplicated()].unique())
    if repeated:
        raise ValueError(f"{argument} lists {repeated[0]!r} twice; list each gene once")
    return gene_list


def _chunks_by_budget(sizes: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges whose ``sizes`` add up to at most ``budget`` (one item at least)."""
    chunks, start, total = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > budget:
            chunks.append((start, i))
            start, total = i, 0
        total += int(size)
    if start < len(sizes):
        chunks.append((start, len(sizes)))
    return chunks


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
