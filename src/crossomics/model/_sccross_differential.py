"""Differential expression and accessibility of :class:`crossomics.SCCROSS` through scvi-tools.

scvi-tools' :class:`~scvi.model.base.DifferentialComputation` does the statistics (posterior
samples of two groups' decoded values, Bayes factors, the change mode's log-fold changes). What it
reads from a model is small: a function returning decoded values for sampled cells, the cells'
counts and the batch categories. :class:`_DifferentialData` provides the last two for one modality,
so SCCROSS gives the test its decoders without registering an AnnData per modality.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.model.base import DifferentialComputation

from crossomics._constants import TARGET_SUM
from crossomics._validation import check_positive_int
from crossomics.model._selection import compared_groups

_BAYES_FACTOR_OPTIONS = frozenset(inspect.signature(DifferentialComputation.get_bayes_factors).parameters) - {
    "self",
    "idx1",
    "idx2",
    "mode",
    "delta",
    "batchid1",
    "batchid2",
    "use_observed_batches",
}


class _DifferentialData:
    """What :class:`~scvi.model.base.DifferentialComputation` reads from an ``AnnDataManager``:
    the cells (``adata``, only their number and names), their counts of the tested modality (a
    stand-in for cells of another modality, or ``None`` when a pseudocount is given) and the
    batch categories of the tested modality."""

    def __init__(self, obs_names: pd.Index, counts, batch_categories: Sequence[str]):
        self.adata = AnnData(obs=pd.DataFrame(index=obs_names.copy()))
        self._counts = counts
        self._batches = SimpleNamespace(categorical_mapping=np.asarray(batch_categories, dtype=object))

    def get_from_registry(self, key: str):
        if key != REGISTRY_KEYS.X_KEY or self._counts is None:
            raise KeyError(f"{key!r} is not available for this differential test")
        return self._counts

    def get_state_registry(self, key: str) -> SimpleNamespace:
        if key != REGISTRY_KEYS.BATCH_KEY:
            raise KeyError(f"{key!r} is not available for this differential test")
        return self._batches


class _RepeatedRow:
    """An ``(n_rows, len(row))`` matrix whose rows all equal ``row``, materialised only for the
    rows asked for (``matrix[rows]``)."""

    def __init__(self, row: np.ndarray, n_rows: int):
        self.row, self.shape = row, (n_rows, len(row))

    def __getitem__(self, rows) -> np.ndarray:
        return np.broadcast_to(self.row, (len(np.arange(self.shape[0])[rows]), len(self.row)))


def _expected_false_discovery_mask(proba_de: np.ndarray, fdr: float) -> np.ndarray:
    """Features called differential at posterior expected FDR ``fdr``: the largest set of most
    probable features whose mean probability of *not* being differential stays within ``fdr``."""
    order = np.argsort(-proba_de, kind="stable")
    expected_fdr = np.cumsum(1.0 - proba_de[order]) / np.arange(1, len(order) + 1)
    n_called = int(np.flatnonzero(expected_fdr <= fdr).max()) + 1 if (expected_fdr <= fdr).any() else 0
    called = np.zeros(len(proba_de), dtype=bool)
    called[order[:n_called]] = True
    return called


def _count_statistics(counts, rows1: np.ndarray, rows2: np.ndarray) -> dict[str, np.ndarray]:
    """Per-feature raw mean, detection rate and mean of counts per 10k of two groups of cells."""
    totals = np.asarray(counts.sum(1)).ravel()
    out = {}
    for suffix, rows in (("1", rows1), ("2", rows2)):
        group = counts[rows]
        scale = TARGET_SUM / np.maximum(totals[rows], 1.0)
        normalised = group.multiply(scale[:, None]) if sp.issparse(group) else group * scale[:, None]
        out[f"raw_mean{suffix}"] = np.asarray(group.mean(0)).ravel()
        out[f"non_zeros_proportion{suffix}"] = np.asarray((group != 0).mean(0)).ravel()
        out[f"raw_normalized_mean{suffix}"] = np.asarray(normalised.mean(0)).ravel()
    return out


class SCCROSSDifferentialMixin:
    """:meth:`differential_expression` and :meth:`differential_accessibility` of SCCROSS."""

    def differential_expression(
        self,
        adata: AnnData | MuData | None = None,
        groupby: str | None = None,
        group1: str | Sequence[str] | None = None,
        group2: str | None = None,
        idx1: Sequence[int] | Sequence[bool] | None = None,
        idx2: Sequence[int] | Sequence[bool] | None = None,
        modality: str = "rna",
        source: str | None = None,
        mode: str = "change",
        delta: float = 0.25,
        batch_size: int | None = None,
        all_stats: bool = True,
        batch_correction: bool = False,
        batchid1: Sequence[str] | None = None,
        batchid2: Sequence[str] | None = None,
        fdr_target: float = 0.05,
        silent: bool = False,
        seed: int = 0,
        **kwargs,
    ) -> pd.DataFrame:
        r"""Bayesian differential expression of ``modality`` between groups of cells, as in scvi-tools.

        Decoded values (:meth:`get_normalized_expression` at library size 1, from posterior
        draws of the joint latent) of cells sampled from each group are compared by
        :class:`scvi.model.base.DifferentialComputation`. ``mode="change"`` gives the posterior
        probability that the log2 fold change exceeds ``delta`` in either direction
        (``proba_de``, with the calls ``is_de_fdr_<fdr_target>`` at that posterior expected
        FDR); ``mode="vanilla"`` the Bayes factor of ``group1 > group2``.

        The cells come from ``source`` (default: ``modality`` itself). A different ``source``
        tests expression *generated* from it: e.g. genes that differ between cell types of
        ATAC-only cells, decoded into RNA. The change mode's pseudocount then comes from the
        features near zero in the model's own ``modality`` cells (scvi-tools takes them from
        the two groups' counts, which cells of another modality do not have).

        Parameters
        ----------
        adata
            Cells of ``source`` (an AnnData, or a MuData holding it); default the model's data.
        groupby
            ``.obs`` column of the ``source`` cells that defines the groups.
        group1
            Group(s) tested one at a time; default every group of ``groupby``.
        group2
            Reference group; default all other cells ("Rest").
        idx1, idx2
            Instead of ``groupby``: the two groups as row positions or boolean masks of the
            ``source`` cells (``idx2`` default: the other cells).
        modality
            The modality whose features are tested.
        source
            The modality whose cells are encoded (default: ``modality``).
        mode
            ``"change"`` or ``"vanilla"``.
        delta
            Smallest log2 fold change that counts as differential (``mode="change"``).
        batch_size
            Cells per forward pass.
        all_stats
            Add raw-count statistics of the two groups (``raw_mean``, ``non_zeros_proportion``,
            ``raw_normalized_mean`` per 10k counts); only when ``source`` is ``modality``.
        batch_correction
            Decode every cell as each batch of ``modality`` in turn (``batchid1`` / ``batchid2``
            restrict them) instead of its own batch.
        batchid1, batchid2
            Batches of ``modality`` to decode the groups as, with ``batch_correction``.
        fdr_target
            Posterior expected false discovery rate of the ``is_de_fdr_*`` calls.
        silent
            Hide the progress bar over groups.
        seed
            Seed of the cell sampling and the posterior draws; the same seed gives the same table.
        **kwargs
            Further options of :meth:`~scvi.model.base.DifferentialComputation.get_bayes_factors`
            (e.g. ``n_samples_overall``, ``pseudocounts``, ``test_mode``).

        Returns
        -------
        One table per tested group, stacked: features as index, the largest increase of decoded
        expression in group 1 (``scale1 - scale2``) first and decreases last, with columns
        ``comparison``, ``group1`` and ``group2``.

        Examples
        --------
        >>> de = model.differential_expression(groupby="cell_type", group1="Astro")
        >>> de[de["is_de_fdr_0.05"] & (de["lfc_mean"] > 1)].head(20)
        """
        if mode not in ("change", "vanilla"):
            raise ValueError(f"mode={mode!r}; choose 'change' or 'vanilla'")
        return self._differential(
            adata, groupby, group1, group2, idx1, idx2, modality, source, mode, delta, batch_size,
            all_stats, batch_correction, batchid1, batchid2, fdr_target, silent, seed, kwargs,
        )  # fmt: skip

    def differential_accessibility(
        self,
        adata: AnnData | MuData | None = None,
        groupby: str | None = None,
        group1: str | Sequence[str] | None = None,
        group2: str | None = None,
        idx1: Sequence[int] | Sequence[bool] | None = None,
        idx2: Sequence[int] | Sequence[bool] | None = None,
        modality: str = "atac",
        source: str | None = None,
        delta: float = 0.05,
        two_sided: bool = True,
        batch_size: int | None = None,
        all_stats: bool = True,
        batch_correction: bool = False,
        batchid1: Sequence[str] | None = None,
        batchid2: Sequence[str] | None = None,
        fdr_target: float = 0.05,
        silent: bool = False,
        seed: int = 0,
        **kwargs,
    ) -> pd.DataFrame:
        """Differential accessibility of ``modality``'s peaks between groups of cells, as PeakVI's.

        The change is the difference of decoded detection probabilities (group1 - group2), each
        cell decoded at the modality's median total count so that depth does not enter: a peak
        is differentially accessible with probability ``prob_da`` that the difference exceeds
        ``delta`` (in absolute value when ``two_sided``). Arguments as in
        :meth:`differential_expression`.

        Returns
        -------
        Stacked tables with columns ``prob_da``, ``is_da_fdr_<fdr_target>``, ``bayes_factor``,
        ``effect_size`` (estimated ``est_prob1 - est_prob2``), ``emp_effect`` (observed
        ``emp_prob1 - emp_prob2``, the fractions of cells with the peak open; only when
        ``source`` is ``modality``), ``comparison``, ``group1`` and ``group2``.

        Examples
        --------
        >>> da = model.differential_accessibility(groupby="cell_type", group1="Astro")
        >>> da[da["is_da_fdr_0.05"]].sort_values("effect_size", ascending=False).head()
        """

        def difference(scales1, scales2, pseudocounts):  # DifferentialComputation passes 3 arguments
            return scales1 - scales2

        def beyond_delta(change):
            if two_sided:
                return np.abs(change) >= delta, np.zeros_like(change, dtype=bool)
            return change >= delta, np.zeros_like(change, dtype=bool)

        kwargs = {"change_fn": difference, "m1_domain_fn": beyond_delta, "pseudocounts": 0.0, **kwargs}
        table = self._differential(
            adata, groupby, group1, group2, idx1, idx2, modality, source, "change", delta, batch_size,
            all_stats, batch_correction, batchid1, batchid2, fdr_target, silent, seed, kwargs, detection=True,
        )  # fmt: skip
        out = pd.DataFrame(
            {
                "prob_da": table["proba_de"],
                f"is_da_fdr_{fdr_target}": table[f"is_de_fdr_{fdr_target}"],
                "bayes_factor": table["bayes_factor"],
                "effect_size": table["scale1"] - table["scale2"],
                "est_prob1": table["scale1"],
                "est_prob2": table["scale2"],
            },
            index=table.index,
        )
        if "non_zeros_proportion1" in table:
            out["emp_prob1"] = table["non_zeros_proportion1"]
            out["emp_prob2"] = table["non_zeros_proportion2"]
            out["emp_effect"] = out["emp_prob1"] - out["emp_prob2"]
        for column in ("comparison", "group1", "group2"):
            out[column] = table[column]
        return out

    def _mean_count_rows(self, modality: str, n_rows: int) -> _RepeatedRow:
        """Stand-in counts for cells of another modality: every row is the mean count of each
        feature over the model's own ``modality`` cells. scvi-tools' change mode reads them only
        to find the features near zero in both groups, from which it sets the pseudocount that
        keeps log-fold changes of features decoded as (numerically) zero finite."""
        if modality not in self._data:
            raise ValueError(
                f"testing {modality!r} values generated from another modality needs pseudocounts= (e.g. 1e-6) "
                f"when the model holds no {modality!r} data to estimate it from"
            )
        X = self._modality_data(modality)[0]
        mean = np.asarray(X[self._measured_cells(modality, X)].mean(0), dtype=np.float64).ravel()
        return _RepeatedRow(mean, n_rows)

    def _differential(
        self, adata, groupby, group1, group2, idx1, idx2, modality, source, mode, delta, batch_size,
        all_stats, batch_correction, batchid1, batchid2, fdr_target, silent, seed, options,
        detection=False,
    ) -> pd.DataFrame:  # fmt: skip
        source = modality if source is None else source
        for m in (modality, source):
            self._check_modality(m)
        self._check_if_trained(warn=True)
        unknown = sorted(set(options) - _BAYES_FACTOR_OPTIONS)
        if unknown:
            raise TypeError(
                f"unknown argument(s) {unknown}; differential tests take the options of "
                f"DifferentialComputation.get_bayes_factors: {sorted(_BAYES_FACTOR_OPTIONS)}"
            )
        if not 0 < fdr_target < 1:
            raise ValueError(f"fdr_target={fdr_target!r}; pass a rate between 0 and 1, e.g. 0.05")
        if delta is not None and not delta >= 0:
            raise ValueError(f"delta={delta!r}; pass a non-negative change, e.g. 0.25")
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size", 1024)
        if not batch_correction and (batchid1 is not None or batchid2 is not None):
            raise ValueError(
                "batchid1/batchid2 choose the batches to decode as under batch_correction; pass batch_correction=True with them"
            )
        X, source_adata, own_batches = self._modality_data(source, adata)
        measured = self._measured_cells(source, X)
        comparisons = compared_groups(source_adata, source, groupby, group1, group2, idx1, idx2, measured)
        categories = [str(c) for c in self.batch_categories_[modality]]
        for name, chosen in (("batchid1", batchid1), ("batchid2", batchid2)):
            missing = [b for b in chosen or () if str(b) not in categories]
            if missing:
                raise ValueError(
                    f"{name}: {missing} are not batches of modality {modality!r}; batches: {categories}"
                )
        counts = X if source == modality else None
        zero_reference = counts
        if counts is None and options.get("pseudocounts") is None:
            zero_reference = self._mean_count_rows(modality, X.shape[0])
        features = self.feature_names_[modality]
        columns = np.arange(len(features))
        # proportions at library 1 for expression; for accessibility the probability that a peak is
        # detected in a cell of the modality's median depth, the same depth for every cell
        library = float(np.median(self.library_sizes_[modality])) if detection else 1.0
        rng = np.random.default_rng(seed)

        def decoded(_adata, indices, transform_batch=None, n_samples_overall=None):
            cells = rng.choice(indices, n_samples_overall) if n_samples_overall else np.asarray(indices)
            if transform_batch is None:
                batches = own_batches[cells] if source == modality else np.zeros(len(cells), dtype=np.int64)
            else:
                batches = np.full(len(cells), self._target_batch(modality, str(transform_batch)))
            draw_seed = int(rng.integers(2**31))
            return self._decoded_values(
                modality,
                source,
                X[cells],
                batches,
                columns,
                library,
                1,
                True,
                draw_seed,
                batch_size,
                detection,
            )[0]

        computation = DifferentialComputation(
            decoded, None, _DifferentialData(source_adata.obs_names, zero_reference, categories)
        )
        tables = []
        # scvi-tools pairs the samples with numpy's global generator: seed it, then restore it
        global_state = np.random.get_state()  # noqa: NPY002
        np.random.seed(seed)  # noqa: NPY002
        try:
            for label1, rows1, label2, rows2 in _progress(comparisons, silent):
                result = computation.get_bayes_factors(
                    rows1, rows2, mode=mode, delta=delta, batchid1=batchid1, batchid2=batchid2,
                    use_observed_batches=not batch_correction, **options,
                )  # fmt: skip
                if all_stats and counts is not None:
                    result.update(_count_statistics(counts, rows1, rows2))
                table = pd.DataFrame(result, index=pd.Index(features, name=modality))
                table = _ranked(table, mode, by_probability=detection)
                if mode == "change":
                    table[f"is_de_fdr_{fdr_target}"] = _expected_false_discovery_mask(
                        table["proba_de"].to_numpy(), fdr_target
                    )
                table["comparison"] = f"{label1} vs {label2}"
                table["group1"], table["group2"] = label1, label2
                tables.append(table)
        finally:
            np.random.set_state(global_state)  # noqa: NPY002
        return pd.concat(tables)


def _ranked(table: pd.DataFrame, mode: str, by_probability: bool) -> pd.DataFrame:
    """Expression (``by_probability=False``): the largest increase of decoded normalised
    expression from group 2 to group 1 first, decreases last, as scanpy lists markers. The
    probability of a change is a poor order for expression: on 3,000 cortex cells it reached 0.99
    for no gene of most groups, and ordering by it put 3 of scanpy's Wilcoxon top 50 into the
    L2/3 top 50 (17 for Astro), against 40 (42) by the decoded increase
    (``docs/concepts.md``, "Differential expression and accessibility").

    Accessibility: most probable changes first. A well-separated group saturates the probability
    at 1 for many peaks, so ties are broken by the size of the change: the mean absolute change
    in change mode, the difference of the group means in vanilla mode. Stable sorts keep the
    order reproducible."""
    if not by_probability:
        increase = (table["scale1"] - table["scale2"]).to_numpy()
        return table.iloc[np.argsort(-increase, kind="stable")]
    if mode == "change":
        keys = pd.DataFrame({"p": table["proba_de"], "size": table["lfc_mean"].abs()})
    else:
        keys = pd.DataFrame({"p": table["bayes_factor"], "size": (table["scale1"] - table["scale2"]).abs()})
    order = np.lexsort((-keys["size"].to_numpy(), -keys["p"].to_numpy()))
    return table.iloc[order]


def _progress(comparisons: list, silent: bool):
    if silent or len(comparisons) == 1:
        return comparisons
    from tqdm.auto import tqdm

    return tqdm(comparisons, desc="differential test", unit="group")
