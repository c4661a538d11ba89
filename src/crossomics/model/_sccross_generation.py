"""Cross-modal generation and decoded normalised values of SCCROSS (paper eq. 14)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from numbers import Real

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData

from crossomics._validation import check_positive_int
from crossomics.model._sccross_decoding import SCCROSSDecodingMixin
from crossomics.model._selection import selected_genes
from crossomics.nn._layers import bfloat16_is_fast
from crossomics.nn._likelihoods import COUNT_LIKELIHOODS

# cells per forward pass of cross_generate (defaults). Expected values are decoded in place in
# row blocks, so a larger pass only saves per-pass overhead (RNA -> ATAC, 10,309 cortex cells,
# 2 threads, bfloat16: best of 3 runs 10,335 cells/s at 2,048 against 9,560 at 1,024); drawing
# counts makes several (cells x features) temporaries, so it keeps smaller passes.
_GENERATION_BATCH_SIZE = 2048
_SAMPLING_BATCH_SIZE = 1024


class SCCROSSGenerationMixin(SCCROSSDecodingMixin):
    """Cross-modal generation of :class:`crossomics.SCCROSS` (paper eq. 14) and its decoded normalised values."""

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
                    self._decode(target, z, code, lib, output, generator, block[:, k], precision)
            else:
                # deterministic outputs: decode once, repeat for the other samples
                first = block[:, 0] if n_samples == 1 else torch.empty((n, n_features), dtype=torch.float32)
                self._decode(target, z, code, lib, output, generator, first, precision)
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
        genes = selected_genes(gene_list, features, modality, argument="gene_list")
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
                    decoded = self._decode(modality, z, batch, library, "detection" if detection else "mean")
                    values[k, chunk] = decoded[:, columns].cpu().numpy()
                start += len(chunk)
        return values

    def get_normalized_accessibility(
        self, *args, modality: str = "atac", **kwargs
    ) -> pd.DataFrame | np.ndarray:
        """:meth:`get_normalized_expression` of the ATAC modality (detection probabilities for a
        Bernoulli decoder, expected counts at ``library_size`` for an NB one)."""
        return self.get_normalized_expression(*args, modality=modality, **kwargs)
