"""Decoding joint latents into a modality's values for SCCROSS's generation methods.

Library sizes and batches of the target, the one decode path from joint latents to a
likelihood output (mean, normalised values, detection probabilities, draws; the likelihood
heads in ``crossomics.nn`` compute them), and the AnnData the generated values are returned in.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from crossomics.model._sccross_data import SCCROSSDataMixin
from crossomics.nn._likelihoods import LIKELIHOODS

_OUTPUTS = ("counts", "normalized", "mean", "detection")


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

    def _decode(
        self,
        target: str,
        z: torch.Tensor,
        batch: int | torch.Tensor,
        library: torch.Tensor,
        output: str,
        generator: torch.Generator | None = None,
        out: torch.Tensor | None = None,
        precision: str = "float32",
    ) -> torch.Tensor:
        """Joint latents ``z`` decoded into ``output`` of ``target``: the one decode path of
        generation, simulation, perturbation and the decoded values of
        :meth:`get_normalized_expression` and the differential tests.

        ``batch`` is one batch code of ``target`` for all cells, or a long tensor of codes;
        ``library`` holds the cells' total counts; ``generator`` seeds ``output="counts"``.
        With ``out`` and one batch code, the outputs the head computes in place are decoded
        straight into ``out`` (see
        :meth:`~crossomics.nn._batch_affine.BatchAffineLikelihood.decode_into`, which the
        ``precision`` applies to); the others go through the likelihood's parameters and are
        copied there. Returns ``out`` when given.
        """
        head = self.module.likelihood[target]
        if out is not None and isinstance(batch, int) and head.decodes_in_place(output):
            zk, _ = self.module.aligner_decoder[target](z)
            head.decode_into(self.module.decoder[target](zk), batch, library, output, out, precision)
            return out
        if isinstance(batch, int):
            batch = torch.full((len(z),), batch, dtype=torch.long, device=z.device)
        params, _, _ = self.module.decode(target, z, batch, library, sample=False)
        values = head.decode(params, output, generator)
        return values if out is None else out.copy_(values)

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
            if output == "detection" and not LIKELIHOODS[self.likelihoods_[m]].has_zeros:
                raise ValueError(
                    f"output='detection' needs a count, binary or zero-inflated likelihood; modality {m!r} "
                    f"has a {self.likelihoods_[m]} likelihood (use output='mean')"
                )

    def _target_batch(self, target: str, batch: str | None) -> int:
        categories = list(self.batch_categories_[target])
        if batch is None:
            return 0
        if batch not in categories:
            raise ValueError(f"batch {batch!r} is not a batch of modality {target!r}; batches: {categories}")
        return categories.index(batch)
