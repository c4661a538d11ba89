"""In-silico perturbation scores of SCCROSS (paper Fig. 6)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from anndata import AnnData
from mudata import MuData
from tqdm.auto import tqdm

from crossomics._validation import check_positive_int
from crossomics.model._sccross_decoding import SCCROSSDecodingMixin
from crossomics.model._selection import obs_labels, selected_genes
from crossomics.nn._likelihoods import COUNT_LIKELIHOODS
from crossomics.pp._normalize import column_moments


class SCCROSSPerturbationMixin(SCCROSSDecodingMixin):
    """In-silico perturbation of :class:`crossomics.SCCROSS` (paper Fig. 6)."""

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
        continuous = self._check_perturbation(
            modality, direction, fold, groupby, perturb_group, reference_group, target
        )
        query = adata
        adata = self._data_of(modality, query)
        labels = self._perturbation_labels(modality, adata, groupby, perturb_group, reference_group)
        features = self.feature_names_[modality]
        gene_list = selected_genes(genes, features, modality)
        if target is not None:
            check_positive_int(n_target_genes, "n_target_genes", 20)
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size", 4096)
        gene_index = features.get_indexer(gene_list)
        if max_cells is not None:
            check_positive_int(max_cells, "max_cells", 1000)
        data, perturb_rows, reference_rows = self._perturbation_rows(
            modality, query, labels, perturb_group, reference_group, max_cells, seed
        )
        self.module.eval()
        x, neighbour_mean, reference_direction = self._perturbation_inputs(
            modality, query, perturb_rows, reference_rows
        )
        perturbed_values, expressed = _perturbation_rule(data, x, gene_index, fold, continuous)
        baseline, distances = self._perturbation_distances(
            modality,
            x,
            neighbour_mean,
            reference_direction,
            gene_index,
            ["up", "down"] if direction == "both" else [direction],
            perturbed_values,
            expressed,
            batch_size,
        )
        result = _score_table(gene_list, baseline, distances, perturb_group, reference_group)
        if target is None:
            return result
        chosen = result.index[:n_target_genes] if genes is None else result.index
        perturbed = x.clone()
        for gene, best in zip(chosen, result.loc[chosen, "best_direction"], strict=True):
            column = features.get_loc(gene)
            perturbed[:, column] = perturbed_values(perturbed[:, column], column, best)
        obs = adata.obs.iloc[perturb_rows].copy()
        out = self._generation_output(
            target,
            [self._cross_generate_tensor(modality, target, perturbed, neighbour_mean)],
            "mean",
            obs[[c for c in obs.columns if not str(c).startswith("_scvi")]],
            {"source": modality, "perturbed_genes": list(chosen)},
        )
        out.layers["unperturbed"] = self._cross_generate_tensor(modality, target, x, neighbour_mean)
        return result, out

    def _check_perturbation(
        self, modality, direction, fold, groupby, perturb_group, reference_group, target
    ) -> bool:
        """Check the arguments of :meth:`perturb` that need no data; whether the modality is continuous."""
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
        return continuous

    def _perturbation_labels(self, modality, adata, groupby, perturb_group, reference_group) -> pd.Series:
        """The cells' labels in ``groupby``, checked to hold both groups."""
        labels = obs_labels(adata, groupby, f"mdata.mod[{modality!r}]")
        groups = set(labels.dropna())
        for name in (perturb_group, reference_group):
            if str(name) not in groups:
                raise ValueError(
                    f"group {name!r} is not in {groupby!r} of modality {modality!r}; groups: "
                    f"{sorted(groups)[:20]}"
                )
        return labels

    def _perturbation_rows(self, modality, query, labels, perturb_group, reference_group, max_cells, seed):
        """The modality's data matrix, the rows of the cells to perturb (at most ``max_cells``, a
        random subset) and the rows of the reference cells."""
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
        return data, perturb_rows, reference_rows

    def _perturbation_inputs(self, modality, query, perturb_rows, reference_rows):
        """The perturbed cells' profiles (dense, on the model's device), the means of their graph
        neighbours, and the mean unit joint latent of the reference cells."""
        reference_direction = F.normalize(
            # the perturbed cells are encoded by the module: the reference in the same, unaligned space
            torch.as_tensor(self._latent(modality, query, reference_rows, aligned=False)),
            dim=-1,
        ).mean(0)
        X, _, _ = self._modality_data(modality, query, perturb_rows)
        x = torch.as_tensor(X.toarray() if sp.issparse(X) else np.asarray(X), dtype=torch.float32)
        x = x.to(self.device)
        reference_direction = reference_direction.to(self.device)
        neighbour_mean = self.module.graph_neighbour_mean(modality, x)
        return x, neighbour_mean, reference_direction

    def _perturbation_distances(
        self,
        modality: str,
        x: torch.Tensor,
        neighbour_mean: torch.Tensor,
        reference_direction: torch.Tensor,
        gene_index: np.ndarray,
        directions: list[str],
        perturbed_values,
        expressed: torch.Tensor,
        batch_size: int | None,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """The kernel of :meth:`perturb`: the mean cosine distance of the cells ``x`` to the
        reference direction unperturbed (``baseline``) and, per direction, with each gene of
        ``gene_index`` perturbed. Only the (cell, gene) pairs in ``expressed`` are re-encoded, in
        chunks of about ``batch_size`` profiles; the other cells keep their unperturbed latents."""

        def unit_latents(profiles: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
            return F.normalize(
                self.module.encode_with_neighbours(modality, profiles, neighbour_mean[cells]), dim=-1
            )

        all_cells = torch.arange(len(x), device=x.device)
        baseline_units = unit_latents(x, all_cells)
        baseline_sum = baseline_units.sum(0)
        baseline = float(1.0 - (baseline_sum / len(x)) @ reference_direction)
        chunks = _chunks_by_budget(expressed.sum(0).cpu().numpy(), batch_size or max(1, 2**25 // x.shape[1]))
        distances = {}
        for d in directions:
            distances[d] = np.empty(len(gene_index), dtype=np.float64)
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
                distances[d][start:stop] = (1.0 - (sums / len(x)) @ reference_direction).cpu().numpy()
        return baseline, distances

    def _cross_generate_tensor(
        self, source: str, target: str, x: torch.Tensor, neighbour_mean: torch.Tensor
    ) -> np.ndarray:
        z = self.module.encode_with_neighbours(source, x, neighbour_mean)
        library = torch.as_tensor(self._target_library(target, None, len(x)), device=z.device)
        return self._decode(target, z, 0, library, "mean").cpu().numpy()


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


def _perturbation_rule(data, x: torch.Tensor, gene_index: np.ndarray, fold: float, continuous: bool):
    """How :meth:`SCCROSS.perturb` changes a gene, ``perturbed_values(values, feature, direction)``,
    and which (cell, gene) pairs it changes at all: counts scale by ``1 +/- fold`` (a zero stays
    zero, so only pairs with counts), continuous values shift by ``+/- fold`` standard deviations
    of the gene over ``data``'s cells (every pair)."""
    if continuous:
        feature_std = torch.as_tensor(
            np.sqrt(np.maximum(column_moments(data)[1], 0.0)),
            dtype=torch.float32,
            device=x.device,
        )
        signs = {"up": 1.0, "down": -1.0}

        def perturbed_values(values, feature, d):
            return values + signs[d] * fold * feature_std[feature]

        return perturbed_values, torch.ones(len(x), len(gene_index), dtype=torch.bool, device=x.device)
    factors = {"up": 1.0 + fold, "down": 1.0 - fold}

    def perturbed_values(values, feature, d):
        return values * factors[d]

    return perturbed_values, x[:, torch.as_tensor(gene_index, device=x.device)] > 0


def _score_table(
    gene_list: list, baseline: float, distances: dict, perturb_group, reference_group
) -> pd.DataFrame:
    """The scores of :meth:`SCCROSS.perturb`, one row per gene, strongest move toward the reference first."""
    result = pd.DataFrame(index=pd.Index(gene_list, name="gene"))
    for d, values in distances.items():
        result[f"distance_{d}"] = values
        result[f"score_{d}"] = baseline - values
    score_columns = [f"score_{d}" for d in distances]
    result["best_score"] = result[score_columns].max(axis=1)
    result["best_direction"] = result[score_columns].idxmax(axis=1).str.replace("score_", "", regex=False)
    result["rank"] = result["best_score"].rank(ascending=False, method="first").astype(int)
    result.attrs.update(
        baseline_distance=baseline, perturb_group=str(perturb_group), reference_group=str(reference_group)
    )
    return result.sort_values("rank")
