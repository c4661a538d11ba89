"""Checks around scvi-tools registration shared by the models' ``setup_mudata`` and ``__init__``.

Registration is the one step that writes to the user's data (scvi-tools' ``_scvi_*`` columns
and ``uns`` keys). These helpers refuse what registration cannot use before it starts, and undo
a registration that fails half-way, so a failed setup leaves the data as they were.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Mapping
from numbers import Number

from anndata import AnnData
from mudata import MuData


def check_mudata(mdata, model: str) -> None:
    """Raise unless ``mdata`` is a MuData of its own (a single AnnData and a view are the common mistakes)."""
    if isinstance(mdata, MuData):
        views = [m for m, adata in mdata.mod.items() if adata.is_view]
        if mdata.is_view or views:
            what = "mdata is a view of another MuData" if mdata.is_view else f"modalities {views} are views"
            raise ValueError(
                f"{what} (e.g. mdata[cells]); registration writes to the data, so make a copy of its own "
                "first, e.g. mdata = mdata[cells].copy()"
            )
        return
    if isinstance(mdata, AnnData):
        raise TypeError(
            f"mdata is an AnnData, not a MuData; {model} takes several modalities in one MuData, "
            "e.g. mudata.MuData({'rna': rna, 'atac': atac})"
        )
    raise TypeError(
        f"mdata is a {type(mdata).__name__}, not a MuData; build one from the modalities' AnnData, "
        "e.g. mudata.MuData({'rna': rna, 'atac': atac})"
    )


def check_setup_kwargs(kwargs: Mapping, method) -> None:
    """Refuse keyword arguments that neither ``method`` nor scvi-tools' registration takes.

    ``setup_mudata(**kwargs)`` hands its extra arguments to ``register_fields``, which only
    uses them with a ``source_registry``; anything else is a misspelt argument.
    """
    if not kwargs or "source_registry" in kwargs:
        return
    known = [p for p in inspect.signature(method).parameters if p not in ("cls", "self", "kwargs")]
    hints = []
    for key in kwargs:
        close = difflib.get_close_matches(str(key), known, n=1)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    raise TypeError(
        f"{method.__qualname__} got unexpected keyword arguments {', '.join(hints)}; "
        f"its arguments are {known}"
    )


def _scvi_fields(mdata: MuData) -> dict[str, set]:
    fields = {"obs": set(mdata.obs.columns), "uns": set(mdata.uns)}
    for m, adata in mdata.mod.items():
        fields[f"{m}.obs"] = set(adata.obs.columns)
        fields[f"{m}.uns"] = set(adata.uns)
    return fields


def register_or_undo(adata_manager, mdata: MuData, **kwargs) -> None:
    """``adata_manager.register_fields(mdata)``; on failure the ``_scvi`` fields it added are removed."""
    before = _scvi_fields(mdata)
    try:
        adata_manager.register_fields(mdata, **kwargs)
    except Exception:
        slots = {"obs": mdata.obs, "uns": mdata.uns}
        for m, adata in mdata.mod.items():
            slots[f"{m}.obs"], slots[f"{m}.uns"] = adata.obs, adata.uns
        for where, slot in slots.items():
            added = [
                k for k in list(slot.keys()) if k not in before.get(where, ()) and str(k).startswith("_scvi")
            ]
            for key in added:
                del slot[key]
        raise


def check_batch_column(adata: AnnData, key: str | None, modality: str, argument: str) -> None:
    """Raise unless ``key`` (when given) is a complete column of the modality's ``obs``."""
    if key is None:
        return
    if key not in adata.obs:
        available = [c for c in adata.obs.columns if not str(c).startswith("_scvi")]
        raise ValueError(
            f"{argument} {key!r} is not a column of mdata.mod[{modality!r}].obs; available: {available}"
        )
    n_missing = int(adata.obs[key].isna().sum())
    if n_missing:
        raise ValueError(
            f"{n_missing} cells of mdata.mod[{modality!r}] have no batch in .obs[{key!r}] (NaN); "
            "fill them with a batch name (e.g. 'unknown') or drop those cells"
        )
    check_one_type(adata.obs[key], key, modality)
    column = adata.obs[key]
    if hasattr(column, "cat"):
        used = set(column.unique())
        unused = [c for c in column.cat.categories if c not in used]
        if unused:
            warnings.warn(
                f".obs[{key!r}] of mdata.mod[{modality!r}] has categories without cells: {unused[:10]}; "
                "they become batches whose parameters never train. Drop them first with "
                f"mdata.mod[{modality!r}].obs[{key!r}] = mdata.mod[{modality!r}].obs[{key!r}]"
                ".cat.remove_unused_categories()",
                UserWarning,
                stacklevel=4,
            )


def check_one_type(column, key: str, modality: str) -> None:
    """Raise if a label column mixes value types (``1`` and ``"a"`` cannot be sorted into categories)."""
    values = column.cat.categories if hasattr(column, "cat") else column.dropna().unique()
    types = sorted(
        {
            "text" if isinstance(v, str) else "number" if isinstance(v, Number) else type(v).__name__
            for v in values
        }
    )
    if len(types) > 1:
        raise ValueError(
            f".obs[{key!r}] of mdata.mod[{modality!r}] mixes value types ({', '.join(types)}); make them one "
            f"type, e.g. mdata.mod[{modality!r}].obs[{key!r}] = mdata.mod[{modality!r}].obs[{key!r}].astype(str)"
        )


def check_registered(model_cls, mdata) -> None:
    """Raise, naming ``setup_mudata``, unless ``mdata`` was registered for ``model_cls``."""
    check_mudata(mdata, model_cls.__name__)
    if model_cls._get_most_recent_anndata_manager(mdata, required=False) is None:
        raise ValueError(
            f"this MuData is not registered for {model_cls.__name__}; call "
            f"co.{model_cls.__name__}.setup_mudata(mdata, modalities=[...], ...) first"
        )
