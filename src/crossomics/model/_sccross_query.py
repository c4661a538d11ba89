"""Reference mapping for SCCROSS: query data onto a trained reference (scArches-style)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from mudata import MuData

from crossomics import pp
from crossomics._constants import ATAC
from crossomics._validation import get_matrix
from crossomics.metrics._label_transfer import vote_labels
from crossomics.model._sccross_inputs import check_modality_data, data_manager
from crossomics.train._multimodal_data import batch_key


def _as_reference(cls, reference):
    """A reference model object from a model or a directory written by ``save``."""
    if isinstance(reference, str | os.PathLike):
        return cls.load(os.fspath(reference))
    if not isinstance(reference, cls):
        raise TypeError(
            f"reference must be a trained {cls.__name__} or the directory it was saved to, "
            f"not {type(reference).__name__}"
        )
    return reference


def _matrix_on_reference_features(adata: AnnData, layer, reference_names: pd.Index, kind: str, modality: str):
    """The query's data re-indexed onto the reference features, and a note on what was filled."""
    X = get_matrix(adata, layer, name=f"query modality {modality!r}")
    X = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
    names = adata.var_names
    if not names.is_unique:
        duplicated = list(names[names.duplicated()].unique()[:3])
        raise ValueError(
            f"query modality {modality!r} has duplicated feature names (e.g. {duplicated}); call "
            "adata.var_names_make_unique() or drop the duplicates"
        )
    positions = names.get_indexer(reference_names)
    if kind == ATAC and (positions < 0).any():
        # peak sets differ between runs: move the counts onto the reference peaks they overlap
        mapping = pp.peak_overlap_map(adata, reference_names)
        mapped = sp.csr_matrix(X) @ mapping
        total = float(X.sum())
        placed = float(mapped.sum())
        covered = int((mapping.sum(0) > 0).sum())
        note = (
            f"query modality {modality!r}: {adata.n_vars} peaks mapped onto the reference's "
            f"{len(reference_names)} peaks by genomic overlap; {covered} reference peaks "
            f"({covered / len(reference_names):.1%}) overlap a query peak, the others are zero, and "
            f"{placed / max(total, 1.0):.1%} of the query's counts fall on reference peaks"
        )
        return (mapped if sp.issparse(X) else mapped.toarray()), note
    found = positions >= 0
    # a selection matrix moves each found query column to its reference position; missing ones stay 0
    selection = sp.csr_matrix(
        (np.ones(int(found.sum()), dtype=np.float32), (positions[found], np.flatnonzero(found))),
        shape=(adata.n_vars, len(reference_names)),
    )
    out = sp.csr_matrix(X @ selection) if sp.issparse(X) else np.asarray(X @ selection)
    n_missing = int((~found).sum())
    note = None
    if n_missing:
        note = (
            f"query modality {modality!r}: {n_missing} of the reference's {len(reference_names)} features "
            f"({n_missing / len(reference_names):.1%}) are missing from the query and are filled with zeros"
        )
    return out, note


class SCCROSSQueryMixin:
    """Reference mapping: prepare query data, map it onto a trained reference, transfer labels."""

    @classmethod
    def prepare_query_mudata(cls, query: MuData | AnnData, reference, modality: str | None = None) -> MuData:
        """Query data on the reference's features, ready for :meth:`load_query_data`.

        Returns a new MuData; ``query`` is not modified. For each of the reference's
        modalities present in the query:

        - genes (and proteins) are matched by name, re-ordered into the reference's order, and
          reference features the query lacks are filled with zeros, with a warning that states
          the fraction;
        - ATAC peaks that do not all match the reference's by name are mapped onto the reference
          peaks by genomic overlap (:func:`crossomics.pp.peak_overlap_map`: each query peak goes
          to the reference peak it overlaps most, so the counts of all query peaks on a reference
          peak are summed), with a warning that states the fraction of reference peaks covered
          and of query counts placed. Peaks must be named ``chr1:100-200`` (or ``-``/``_``
          separated) or carry ``chrom``/``chromStart``/``chromEnd`` columns.

        Extra query features are dropped. The data go into the layer the reference was trained
        on (``.X`` when it used ``.X``); ``.obs`` is copied. Cells keep their names, so MuData
        pairs cells of different modalities that share a name.

        Parameters
        ----------
        query
            A MuData holding any of the reference's modalities (by name), or one modality's AnnData.
        reference
            A trained :class:`SCCROSS` or the directory it was saved to.
        modality
            For an AnnData query, which reference modality it holds (needed when its features
            share no name with the reference's, e.g. peaks called anew).

        Returns
        -------
        MuData with one modality per reference modality found in ``query``.

        Examples
        --------
        >>> query = co.SCCROSS.prepare_query_mudata(new_atac, "sccross_cortex", modality="atac")
        >>> model = co.SCCROSS.load_query_data(query, "sccross_cortex")
        """
        reference = _as_reference(cls, reference)
        if isinstance(query, MuData):
            if modality is not None:
                raise ValueError("modality= names the modality of an AnnData query; a MuData names its own")
            data = {m: query.mod[m] for m in reference.modalities_ if m in query.mod}
            if not data:
                raise ValueError(
                    f"the query has modalities {list(query.mod)} but the reference has "
                    f"{reference.modalities_}; name the query's modalities as the reference's"
                )
        elif isinstance(query, AnnData):
            if modality is None:
                modality = reference._modality_of(query)
            reference._check_modality(modality)
            data = {modality: query}
        else:
            raise TypeError(f"query must be a MuData or an AnnData, not {type(query).__name__}")
        prepared = {}
        for m, adata in data.items():
            layer = reference.layers_[m]
            X, note = _matrix_on_reference_features(
                adata, layer, reference.feature_names_[m], reference.kinds_[m], m
            )
            if note:
                warnings.warn(note, UserWarning, stacklevel=2)
            var = pd.DataFrame(index=pd.Index(reference.feature_names_[m]).copy())
            if layer is None:
                prepared[m] = AnnData(X=X, obs=adata.obs.copy(), var=var)
            else:
                prepared[m] = AnnData(obs=adata.obs.copy(), var=var, layers={layer: X})
        return MuData(prepared)

    @classmethod
    def load_query_data(cls, query: MuData, reference, train_encoders: bool = False):
        """A model for query cells, built on a trained reference (reference mapping).

        The query's modalities (any subset of the reference's: RNA only or ATAC only is the
        common case) are registered like :meth:`setup_mudata` would (this adds scvi-tools'
        ``_scvi_*`` columns to their ``.obs``). Query batches the reference has not seen are
        appended to the batch-specific decoder parameters, each starting at the mean of the
        reference's batches. The fixed input transforms, graph reference, encoders, aligners
        and discriminators are the reference's and are not refitted.

        :meth:`train` then fine-tunes only what the query needs: the new batches' decoder
        parameters, plus the modality encoders with ``train_encoders=True``; the frozen
        decoders keep fine-tuned encoders in the reference's joint space (the scArches
        argument). Latents need no fine-tuning unless encoders are trained: the reference's
        encoders map the query as they are. The reference model is not changed.

        Parameters
        ----------
        query
            A MuData whose modalities have exactly the reference's features in its order
            (:meth:`prepare_query_mudata` makes one from any query).
        reference
            A trained :class:`SCCROSS` or the directory it was saved to.
        train_encoders
            Also fine-tune the modality encoders in :meth:`train`.

        Returns
        -------
        A new model whose data are the query.

        Examples
        --------
        >>> query = co.SCCROSS.prepare_query_mudata(query_mdata, "sccross_cortex")
        >>> model = co.SCCROSS.load_query_data(query, "sccross_cortex")
        >>> model.train(max_epochs=20)
        >>> labels = model.transfer_labels("atac", "cell_type", reference=reference_mdata)
        """
        from scvi.model.base import BaseModelClass

        reference = _as_reference(cls, reference)
        if not isinstance(query, MuData):
            raise TypeError(
                f"query must be a MuData, not {type(query).__name__}; make one with "
                f"{cls.__name__}.prepare_query_mudata(query, reference)"
            )
        present = [m for m in reference.modalities_ if m in query.mod]
        if not present:
            raise ValueError(
                f"the query has modalities {list(query.mod)} but the reference has {reference.modalities_}"
            )
        for m in present:
            if not query.mod[m].var_names.equals(reference.feature_names_[m]):
                raise ValueError(
                    f"query modality {m!r} does not have the reference's {len(reference.feature_names_[m])} "
                    f"features in the reference's order; pass it through "
                    f"{cls.__name__}.prepare_query_mudata(query, reference) first"
                )
            check_modality_data(
                m, query.mod[m], reference.layers_[m], reference.likelihoods_[m], reference.batch_keys_[m]
            )
        registry = reference.registry_
        manager = data_manager(
            present,
            reference.layers_,
            reference.likelihoods_,
            reference.batch_keys_,
            {k: registry[k] for k in ("model_name", "setup_args") if k in registry},
        )
        manager.register_fields(query, source_registry=registry, extend_categories=True)
        cls.register_manager(manager)

        model = cls.__new__(cls)
        BaseModelClass.__init__(model, query)
        model.init_params_ = {"kwargs": {}, "non_kwargs": dict(reference.init_params_["non_kwargs"])}
        model._restore_artifact(reference._artifact_payload())
        model.module.load_state_dict(reference.module.state_dict())
        n_new = {}
        for m in present:
            categories = list(manager.get_state_registry(batch_key(m))["categorical_mapping"])
            n_new[m] = len(categories) - len(model.batch_categories_[m])
            model.batch_categories_[m] = categories
        model.module.add_batches(n_new)
        model._set_reference_mapping_state(
            reference_batches={m: len(reference.batch_categories_[m]) for m in present},
            train_encoders=bool(train_encoders),
            reference_data=reference._data,
        )
        model._data = {m: query.mod[m] for m in present}
        model.is_trained_ = False
        model.history_ = None
        model.to_device(reference.device)
        model.module.eval()
        return model

    def transfer_labels(
        self,
        query_modality: str,
        labels_key: str,
        reference: MuData | AnnData | None = None,
        query: MuData | AnnData | None = None,
        reference_modalities: Sequence[str] | None = None,
        n_neighbors: int = 15,
        batch_size: int | None = None,
    ) -> pd.DataFrame:
        """Labels for query cells from labelled reference cells in the joint space.

        Reference and query cells are embedded by this model; each query cell takes the label
        of the inverse-distance weighted vote of its ``n_neighbors`` nearest labelled
        reference cells (:func:`crossomics.metrics.transfer_labels`), and the winning label's
        share of the votes is its confidence.

        Parameters
        ----------
        query_modality
            The modality of the cells to label.
        labels_key
            ``.obs`` column of the reference cells' labels.
        reference
            Labelled reference cells: a MuData (every modality in ``reference_modalities``
            contributes its cells) or one modality's AnnData. ``None``: the data of the
            reference this model was mapped onto (:meth:`load_query_data`), else this model's
            own data.
        query
            The cells to label (AnnData of ``query_modality`` or a MuData holding it);
            ``None``: this model's ``query_modality`` data.
        reference_modalities
            Which modalities of ``reference`` give labelled cells. Default: every modality
            whose ``.obs`` has ``labels_key``, except the query cells themselves.
        n_neighbors
            Neighbours that vote.
        batch_size
            Cells per forward pass.

        Returns
        -------
        DataFrame indexed by the query's cell names, with columns ``labels_key`` (predicted
        label) and ``"confidence"`` (in ``(0, 1]``).

        Examples
        --------
        >>> result = model.transfer_labels("atac", "cell_type", reference=reference_mdata)
        >>> query_mdata["atac"].obs[["cell_type", "confidence"]] = result
        """
        self._check_modality(query_modality)
        query_data = self._data_of(query_modality, query)
        if reference is None:
            reference_data = self.reference_data_ or self._data
        elif isinstance(reference, MuData):
            reference_data = {m: reference.mod[m] for m in self.modalities_ if m in reference.mod}
        elif isinstance(reference, AnnData):
            reference_data = {self._modality_of(reference): reference}
        else:
            raise TypeError(f"reference must be a MuData or an AnnData, not {type(reference).__name__}")
        if reference_modalities is None:
            reference_modalities = [
                m
                for m, adata in reference_data.items()
                if labels_key in adata.obs and adata is not query_data
            ]
        else:
            reference_modalities = list(reference_modalities)
            for m in reference_modalities:
                if m not in reference_data:
                    raise ValueError(
                        f"reference_modalities names {m!r}, but the reference data hold {list(reference_data)}"
                    )
                if labels_key not in reference_data[m].obs:
                    raise ValueError(f"reference modality {m!r} has no .obs[{labels_key!r}]")
        if not reference_modalities:
            raise ValueError(
                f"no reference cells carry .obs[{labels_key!r}] (reference modalities: {list(reference_data)}); "
                "pass reference= with labelled cells of the reference"
            )
        embeddings, labels = [], []
        for m in reference_modalities:
            cell_labels = reference_data[m].obs[labels_key]
            known = cell_labels.notna().to_numpy()
            z = self.get_latent_representation(m, adata=reference_data[m], batch_size=batch_size)
            embeddings.append(z[known])
            labels.append(cell_labels.to_numpy()[known])
        query_z = self.get_latent_representation(query_modality, adata=query_data, batch_size=batch_size)
        predicted, confidence = vote_labels(
            np.concatenate(embeddings), np.concatenate(labels), query_z, k=n_neighbors
        )
        return pd.DataFrame(
            {labels_key: predicted, "confidence": confidence}, index=query_data.obs_names.copy()
        )
