"""scib-metrics Benchmarker for joint embeddings of several modalities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from numpy.typing import ArrayLike

from ._inputs import as_embedding, as_labels
from ._neighbors import exact_neighbors

_LABEL_KEY = "cell_type"
_MODALITY_KEY = "modality"
_PRE_INTEGRATED_KEY = "_pre_integrated"
# Benchmarker always computes 90 neighbours (the LISI metrics use them)
_MAX_NEIGHBORS = 90


def scib_benchmark(
    embeddings: Mapping[str, ArrayLike] | AnnData,
    labels: ArrayLike | str,
    modality: ArrayLike | str,
    *,
    embedding_keys: Sequence[str] | None = None,
    pre_integrated: ArrayLike | str | None = None,
    fast: bool = True,
    neighbors: Literal["auto", "exact", "pynndescent"] = "auto",
    n_jobs: int = 1,
    progress_bar: bool = True,
) -> pd.DataFrame:
    """Score joint embeddings with the scib-metrics :class:`~scib_metrics.benchmark.Benchmarker`.

    The modalities play the role of batches: bio-conservation metrics ask whether cell types stay
    apart, batch-correction metrics whether modalities mix. Embeddings hold one row per cell per
    modality, stacked the same way for every method, e.g.
    ``{"SCCROSS": np.vstack([z_rna, z_atac]), "MINNET": np.vstack([m_rna, m_atac])}`` with
    ``labels = np.concatenate([rna_types, atac_types])`` and
    ``modality = np.repeat(["rna", "atac"], [n_rna, n_atac])``.

    Parameters
    ----------
    embeddings
        Method name -> joint embedding of shape ``(n_rows, n_dims)`` (dims may differ by method);
        or an AnnData whose ``obsm`` holds the embeddings (its ``X`` is not used).
    labels
        Cell type per row; the name of an ``obs`` column when ``embeddings`` is an AnnData.
    modality
        Modality per row; the name of an ``obs`` column when ``embeddings`` is an AnnData.
    embedding_keys
        With an AnnData, the ``obsm`` keys to score (default: all of them).
    pre_integrated
        An unintegrated embedding of the same rows (or its ``obsm`` key) for the
        "PCR comparison" metric, which is skipped when ``None``: modalities have different features,
        so there is no shared matrix from which to compute one.
    fast
        Skip kBET, iLISI and cLISI, the slowest metrics (they dominate the run time on large data).
        Still computed: isolated labels, KMeans NMI/ARI, silhouette label, BRAS, graph connectivity
        (and PCR comparison with ``pre_integrated``).
    neighbors
        ``"exact"``: scikit-learn exact kNN (deterministic, no compilation; fine up to ~50k rows);
        ``"pynndescent"``: scib-metrics' default approximate kNN; ``"auto"``: exact below 50,000 rows.
    n_jobs
        Parallel jobs for the pynndescent neighbour search.
    progress_bar
        Show scib-metrics' progress bars.

    Returns
    -------
    The Benchmarker's results table (``get_results(min_max_scale=False)``): one row per method and
    a final ``"Metric Type"`` row; one column per metric (raw values, all in ``[0, 1]``, higher is
    better) plus the aggregates ``"Batch correction"``, ``"Bio conservation"`` and ``"Total"``
    (0.4 batch + 0.6 bio, as in scIB).

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import scib_benchmark
    >>> rng = np.random.default_rng(0)
    >>> cell_type = np.repeat(["B", "T", "NK"], 50)
    >>> centres = {"B": 0.0, "T": 8.0, "NK": 16.0}
    >>> rna = np.array([centres[t] for t in cell_type])[:, None] + rng.normal(size=(150, 10))
    >>> joint = np.vstack([rna, rna + 0.3 * rng.normal(size=rna.shape)])
    >>> table = scib_benchmark(
    ...     {"good": joint, "random": rng.normal(size=joint.shape)},
    ...     labels=np.concatenate([cell_type, cell_type]),
    ...     modality=np.repeat(["rna", "atac"], 150),
    ...     progress_bar=False,
    ... )  # doctest: +SKIP
    >>> table.loc["good", "Total"] > table.loc["random", "Total"]  # doctest: +SKIP
    True
    """
    # scib-metrics pulls in JAX; import it only when this metric runs
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    adata = _benchmark_anndata(embeddings, labels, modality, embedding_keys, pre_integrated)
    keys = [key for key in adata.obsm if key != _PRE_INTEGRATED_KEY]
    n_rows = adata.n_obs
    if n_rows <= _MAX_NEIGHBORS:
        raise ValueError(
            f"scib_benchmark needs more than {_MAX_NEIGHBORS} rows (cells x modalities), got {n_rows}"
        )
    if neighbors == "auto":
        neighbors = "exact" if n_rows < 50_000 else "pynndescent"
    if neighbors not in ("exact", "pynndescent"):
        raise ValueError(f"neighbors must be 'auto', 'exact' or 'pynndescent', got {neighbors!r}")

    has_pre_integrated = _PRE_INTEGRATED_KEY in adata.obsm
    benchmarker = Benchmarker(
        adata,
        batch_key=_MODALITY_KEY,
        label_key=_LABEL_KEY,
        embedding_obsm_keys=keys,
        bio_conservation_metrics=BioConservation(clisi_knn=not fast),
        batch_correction_metrics=BatchCorrection(
            ilisi_knn=not fast, kbet_per_label=not fast, pcr_comparison=has_pre_integrated
        ),
        # without a pre-integrated embedding, point at any embedding so that Benchmarker does not
        # run PCA on adata.X (there is none); it is only read by the disabled PCR comparison
        pre_integrated_embedding_obsm_key=_PRE_INTEGRATED_KEY if has_pre_integrated else keys[0],
        n_jobs=n_jobs,
        progress_bar=progress_bar,
    )
    benchmarker.prepare(neighbor_computer=exact_neighbors if neighbors == "exact" else None)
    benchmarker.benchmark()
    return benchmarker.get_results(min_max_scale=False)


def _benchmark_anndata(
    embeddings: Mapping[str, ArrayLike] | AnnData,
    labels: ArrayLike | str,
    modality: ArrayLike | str,
    embedding_keys: Sequence[str] | None,
    pre_integrated: ArrayLike | str | None,
) -> AnnData:
    """A fresh AnnData (the input is never modified) with labels, modality and the embeddings in obsm."""
    if isinstance(embeddings, AnnData):
        source = embeddings
        for name, key in (("labels", labels), ("modality", modality)):
            if not isinstance(key, str) or key not in source.obs:
                raise ValueError(f"with an AnnData, {name} must name an obs column; got {key!r}")
        labels, modality = source.obs[labels].to_numpy(), source.obs[modality].to_numpy()
        keys = list(source.obsm) if embedding_keys is None else list(embedding_keys)
        missing = [key for key in keys if key not in source.obsm]
        if missing:
            raise ValueError(f"embedding_keys {missing} are not in obsm; available: {list(source.obsm)}")
        embeddings = {key: source.obsm[key] for key in keys}
        if isinstance(pre_integrated, str):
            if pre_integrated not in source.obsm:
                raise ValueError(
                    f"pre_integrated {pre_integrated!r} is not in obsm; available: {list(source.obsm)}"
                )
            pre_integrated = source.obsm[pre_integrated]
    elif embedding_keys is not None:
        raise ValueError(
            "embedding_keys is only used with an AnnData; pass a dict with just the methods to score"
        )
    elif isinstance(pre_integrated, str):
        raise ValueError("pre_integrated can name an obsm key only with an AnnData; pass the array itself")
    if not embeddings:
        raise ValueError("no embeddings to score; pass at least one method name -> joint embedding")

    arrays = {name: as_embedding(emb, f"embeddings[{name!r}]") for name, emb in embeddings.items()}
    n_rows = {name: arr.shape[0] for name, arr in arrays.items()}
    if len(set(n_rows.values())) > 1:
        raise ValueError(
            f"embeddings have different numbers of rows {n_rows}; stack the same cells for every method"
        )
    n_obs = next(iter(n_rows.values()))
    labels = as_labels(labels, n_obs, "labels")
    modality = as_labels(modality, n_obs, "modality")
    if np.unique(modality).size < 2:
        raise ValueError(
            "modality has a single value; the benchmark needs the rows of at least two modalities"
        )

    obs = pd.DataFrame(
        {_LABEL_KEY: pd.Categorical(labels.astype(str)), _MODALITY_KEY: pd.Categorical(modality.astype(str))},
        index=pd.RangeIndex(n_obs).astype(str),
    )
    adata = AnnData(obs=obs)
    for name, arr in arrays.items():
        adata.obsm[name] = arr.astype(np.float32)
    if pre_integrated is not None:
        pre_integrated = as_embedding(pre_integrated, "pre_integrated")
        if pre_integrated.shape[0] != n_obs:
            raise ValueError(
                f"pre_integrated has {pre_integrated.shape[0]} rows but the embeddings have {n_obs}"
            )
        adata.obsm[_PRE_INTEGRATED_KEY] = pre_integrated.astype(np.float32)
    return adata
