"""Model files that hold tensors and plain data only, read without unpickling objects.

A crossomics model file (``model.pt``) is one :func:`torch.save` of a dict whose leaves are
tensors, ``str``, ``int``, ``float``, ``bool`` and ``None``, inside ``dict`` / ``list``
containers. :func:`read_model_file` reads it with ``torch.load(weights_only=True)``, which
rebuilds exactly those types and refuses any other pickled object before creating it, so a
tampered file cannot run code (scvi-tools' own ``load`` uses ``weights_only=False``).

Fixed transforms are stored as their buffers (in the module's state dict) plus a plain
description of each transform (:func:`describe_transform`): its class, taken from a fixed list
of crossomics transforms, its plain attributes and the shapes of its buffers. A model is rebuilt
from that description and its hyper-parameters, then the state dict fills in the values.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from importlib.metadata import version

import numpy as np
import pandas as pd
import torch
from torch import nn

from crossomics.nn._transforms import GeneSetScores, ReferenceGraphConvolution, SparseLinearMap
from crossomics.pp._common_gene_space import CommonGeneProjection
from crossomics.pp._lsi import TfidfLSI
from crossomics.pp._pca import LogNormalizedPCA, StandardizedPCA

MODEL_FILE = "model.pt"
DATA_FILE = "mdata.h5mu"
FORMAT = "crossomics-model-1"

_TRANSFORMS: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        LogNormalizedPCA,
        TfidfLSI,
        StandardizedPCA,
        ReferenceGraphConvolution,
        GeneSetScores,
        SparseLinearMap,
        CommonGeneProjection,
    )
}


def to_plain(value, where: str = "model state"):
    """``value`` as tensors and plain python data (the only content of a model file).

    numpy arrays and pandas indexes become lists (numeric arrays of more than one dimension
    become tensors), numpy scalars python scalars, tuples lists, tables :func:`table_to_plain`
    dicts. Anything else is an error naming where it was found.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, int | float):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, pd.DataFrame):
        return table_to_plain(value)
    if isinstance(value, pd.Series):
        return to_plain(value.to_dict(), where)
    if isinstance(value, pd.Index):
        return to_plain(value.to_numpy(), where)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf" and value.ndim > 1:
            return torch.from_numpy(np.ascontiguousarray(value))
        return [to_plain(v, where) for v in value.tolist()]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string; a model file holds string keys only")
            out[key] = to_plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{where} holds a {type(value).__name__}; a model file stores only tensors and plain python data"
    )


def table_to_plain(table: pd.DataFrame) -> dict:
    """A table as ``{"index": [...], "columns": {name: [...]}}`` (plain lists)."""
    return {
        "index": to_plain(table.index.to_numpy(dtype=object)),
        "columns": {str(c): to_plain(table[c].to_numpy(dtype=object)) for c in table.columns},
    }


def table_from_plain(data: dict) -> pd.DataFrame:
    """Inverse of :func:`table_to_plain`."""
    return pd.DataFrame(data["columns"], index=pd.Index(data["index"]))


def is_table(value) -> bool:
    return isinstance(value, dict) and set(value) == {"index", "columns"}


def describe_transform(module: nn.Module) -> dict:
    """Plain description of a fixed transform: class, plain attributes, buffer shapes, children."""
    name = type(module).__name__
    if name not in _TRANSFORMS:
        raise TypeError(f"{name} is not a known fixed transform; add it to crossomics.model._artifact")
    attributes = {
        k: to_plain(v, f"{name}.{k}")
        for k, v in vars(module).items()
        if not k.startswith("_") and k != "training"
    }
    return {
        "class": name,
        "attributes": attributes,
        "buffers": {
            k: {"shape": list(b.shape), "dtype": str(b.dtype).removeprefix("torch.")}
            for k, b in module._buffers.items()
            if b is not None
        },
        "children": {k: describe_transform(c) for k, c in module._modules.items() if c is not None},
    }


def rebuild_transform(description: dict) -> nn.Module:
    """An empty transform of the described class and shapes; ``load_state_dict`` fills it."""
    name = description["class"]
    if name not in _TRANSFORMS:
        raise ValueError(f"the model file names an unknown transform {name!r}; known: {sorted(_TRANSFORMS)}")
    cls = _TRANSFORMS[name]
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    for key, spec in description["buffers"].items():
        module.register_buffer(key, torch.zeros(spec["shape"], dtype=getattr(torch, spec["dtype"])))
    for key, child in description["children"].items():
        module.add_module(key, rebuild_transform(child))
    for key, value in description["attributes"].items():
        setattr(module, key, value)
    return module


def history_to_plain(history: dict | None) -> dict | None:
    if history is None:
        return None
    return {str(k): table_to_plain(v) for k, v in history.items()}


def history_from_plain(history: dict | None) -> dict | None:
    if history is None:
        return None
    return {k: table_from_plain(v) for k, v in history.items()}


def versions() -> dict[str, str]:
    return {p: version(p) for p in ("crossomics", "scvi-tools", "torch")}


def write_model_file(dir_path: str, payload: dict, prefix: str | None = None, overwrite: bool = False) -> str:
    """Write ``payload`` (made plain first) to ``<dir_path>/<prefix>model.pt``."""
    if os.path.exists(dir_path) and not overwrite:
        raise ValueError(f"{dir_path} already exists; pass overwrite=True or choose another directory")
    os.makedirs(dir_path, exist_ok=True)
    path = os.path.join(dir_path, f"{prefix or ''}{MODEL_FILE}")
    torch.save(to_plain({"format": FORMAT, "versions": versions(), **payload}), path)
    return path


def read_model_file(dir_path: str, model_name: str, prefix: str | None = None) -> dict:
    """Read a model file with ``torch.load(weights_only=True)``: tensors and plain data only."""
    path = os.path.join(dir_path, f"{prefix or ''}{MODEL_FILE}")
    if not os.path.exists(path):
        raise ValueError(f"no model file at {path}; save a model there with model.save({dir_path!r})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"refusing to load {path}: it holds objects other than tensors and plain python data, "
            "which crossomics model files never contain (a file from an older crossomics version, "
            "from another tool, or tampered with). Nothing in it was run. Details: "
            f"{str(error).splitlines()[0]}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a crossomics model file (format {FORMAT!r})")
    if payload.get("model") != model_name:
        raise ValueError(
            f"{path} holds a {payload.get('model')} model; load it with co.{payload.get('model')}.load"
        )
    return payload


class ModelFileMixin:
    """``save`` and ``load`` of crossomics models through plain model files.

    A model class provides ``_artifact_payload()`` (its hyper-parameters, registry, fitted
    state and transform descriptions, all plain data or tensors), ``_restore_artifact(payload)``
    (rebuilds the data description and the module from it, without data) and
    ``_attach_data(adata)`` (checks and keeps query data given to :meth:`load`).
    """

    def save(
        self,
        dir_path: str,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        **anndata_write_kwargs,
    ) -> None:
        """Save the model to ``dir_path``: hyper-parameters, fitted state and weights.

        The file holds tensors and plain python data only (see :meth:`load`); nothing of the
        training data is stored unless ``save_anndata=True``, which also writes the model's
        data to ``<prefix>mdata.h5mu``.

        Parameters
        ----------
        dir_path
            Directory to write to (created if needed).
        prefix
            Prefix of the file names.
        overwrite
            Replace an existing directory's files.
        save_anndata
            Also write the model's data.
        **anndata_write_kwargs
            Passed to :meth:`mudata.MuData.write`.

        Examples
        --------
        >>> model.save("sccross_cortex", overwrite=True)
        >>> model = co.SCCROSS.load("sccross_cortex")
        """
        payload = {
            "model": type(self).__name__,
            **self._artifact_payload(),
            "is_trained": bool(self.is_trained_),
            "history": history_to_plain(self.history_),
            "module_state": self.module.state_dict(),
        }
        write_model_file(dir_path, payload, prefix=prefix, overwrite=overwrite)
        if save_anndata:
            from mudata import MuData

            if not isinstance(self.adata, MuData):
                raise ValueError("save_anndata=True saves a model's MuData; this model holds none")
            self.adata.write(os.path.join(dir_path, f"{prefix or ''}{DATA_FILE}"), **anndata_write_kwargs)

    def to_hub_model(
        self,
        dir_path: str,
        license_info: str = "cc-by-4.0",
        description: str | None = None,
        training_data: str | None = None,
        metrics: Mapping[str, float] | None = None,
        save_anndata: bool = False,
        overwrite: bool = False,
    ):
        """Save the model as a local :class:`scvi.hub.HubModel`: model file, metadata, model card.

        Everything stays in ``dir_path``; nothing is uploaded (``HubModel.push_to_huggingface_hub``
        does that, with your credentials). The model card records the data the model was trained
        on (modalities, features, cells, batches, and ``training_data``), the package versions,
        the hyper-parameters and ``metrics``. Load it back with
        ``scvi.hub.HubModel(dir_path).load_model(adata=...)`` (``adata`` may be omitted when
        ``save_anndata=True``) or, without data, with ``co.<Model>.load(dir_path)``.

        Parameters
        ----------
        dir_path
            Directory to write.
        license_info
            Licence of the model (an SPDX identifier, as the Hugging Face Hub expects).
        description
            Free text for the card: what the model is for.
        training_data
            Where the training data come from (a citation, an accession or a URL).
        metrics
            ``{name: value}`` measured for this model, written to the card as a table.
        save_anndata
            Also write the training data to ``mdata.h5mu`` (the file ``HubModel`` reads).
        overwrite
            Replace an existing directory's files.

        Returns
        -------
        The :class:`scvi.hub.HubModel`.

        Examples
        --------
        >>> hub = model.to_hub_model("sccross_cortex_hub", metrics={"FOSCTTM": 0.170})
        >>> model = scvi.hub.HubModel("sccross_cortex_hub").load_model(adata=mdata)
        """
        try:
            import anndata
            from huggingface_hub import ModelCard, ModelCardData
            from scvi.hub import HubMetadata, HubModel
        except ImportError as error:
            raise ImportError(
                f"to_hub_model needs huggingface_hub ({error}); install it with pip install 'crossomics[hub]'"
            ) from None
        self.save(dir_path, overwrite=overwrite, save_anndata=save_anndata)
        name = type(self).__name__
        package_versions = {**versions(), "anndata": anndata.__version__}
        card_data = ModelCardData(
            license=license_info,
            library_name="scvi-tools",
            tags=["biology", "genomics", "single-cell", "crossomics", f"model_cls_name:{name}"]
            + [f"modality:{m}" for m in self.modalities_],
        )
        data_lines = [f"- `{m}`: {text}" for m, text in self._data_summary().items()]
        data_lines.append(f"- Source: {training_data or 'not recorded'}")
        metric_lines = ["| metric | value |", "|---|---|"] + [
            f"| {k} | {float(v):.4g} |" for k, v in (metrics or {}).items()
        ]
        card = "\n".join(
            [
                "---",
                card_data.to_yaml(),
                "---",
                "",
                f"# {name} (crossomics)",
                "",
                description or f"A trained crossomics {name} model.",
                "",
                "## Training data",
                "",
                *data_lines,
                "",
                "## Versions",
                "",
                *[f"- {package}: {v}" for package, v in package_versions.items()],
                "",
                "## Hyper-parameters",
                "",
                "```json",
                json.dumps(to_plain(self.init_params_["non_kwargs"]), indent=2),
                "```",
                "",
                "## Metrics",
                "",
                *(metric_lines if metrics else ["None recorded."]),
                "",
                "## Loading",
                "",
                "```python",
                "import crossomics as co",
                f"model = co.{name}.load(path)  # no data needed; or scvi.hub.HubModel(path).load_model(adata=...)",
                "```",
                "",
                "The model file holds tensors and plain python data only and is read with "
                "`torch.load(weights_only=True)`.",
                "",
            ]
        )
        metadata = HubMetadata(
            scvi_version=package_versions["scvi-tools"],
            anndata_version=package_versions["anndata"],
            model_cls_name=name,
            model_parent_module="crossomics",
        )
        hub = HubModel(os.fspath(dir_path), metadata=metadata, model_card=ModelCard(card))
        hub.save(overwrite=True)
        return hub

    @classmethod
    def load(
        cls,
        dir_path: str,
        adata=None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
    ):
        """Load a saved model; no data are needed and nothing is refitted.

        The model is rebuilt from the hyper-parameters and fitted state in the file (input
        transforms, graph reference, gene-set and common-gene projections, MNN prior,
        feature names, batch categories, modality kinds) and its weights are loaded. Data
        given here become the model's default data for its methods; without them, pass
        ``adata=`` to :meth:`get_latent_representation`, ``cross_generate``, ``perturb``
        (and ``mdata=`` to ``simulate``).

        **What a model file may contain.** ``<prefix>model.pt`` is read with
        ``torch.load(weights_only=True)``, which rebuilds only tensors, ``str``, ``int``,
        ``float``, ``bool`` and ``None`` inside ``dict`` and ``list`` containers. A file
        holding any other pickled object (a class instance, a function, anything with a
        custom ``__reduce__``) is refused with a ``ValueError`` before that object is
        created, so loading an untrusted file runs no code from it. The file holds: the
        format tag and package versions; the hyper-parameters; the scvi-tools registry with
        the setup arguments (lists and strings; a gene-annotation table as a
        ``{"index", "columns"}`` dict of lists); the fitted state, for SCCROSS per modality the
        feature names, batch categories, kind, likelihood, layer, training library sizes and
        MNN prior (tensors) plus a description of each fixed transform (its class, from a
        fixed list of crossomics transforms, plain attributes and buffer shapes), for MINNET
        the input recipes (feature names, gene-activity annotation) and cell types; the
        training history as plain tables; and the module's state dict (tensors, including
        every fixed transform's buffers).

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            Optional data: a MuData holding any of the model's modalities, or one modality's
            AnnData (recognised by its feature names). Features are matched by name in any
            order; missing or extra features are an error. Any cells may be given (they are
            not the training cells' graph or prior, which come from the file). ``None`` loads
            ``<prefix>mdata.h5mu`` when :meth:`save` wrote one, else no data.
        accelerator, device
            Where to put the model (as in scvi-tools).
        prefix
            Prefix of the file names.

        Returns
        -------
        The model, in evaluation mode.

        Examples
        --------
        >>> model = co.SCCROSS.load("sccross_cortex")
        >>> z = model.get_latent_representation("atac", adata=query_atac)
        """
        from scvi.model._utils import parse_device_args
        from scvi.model.base import BaseModelClass

        _, _, torch_device = parse_device_args(
            accelerator=accelerator, devices=device, return_device="torch", validate_single_device=True
        )
        payload = read_model_file(dir_path, cls.__name__, prefix=prefix)
        data_path = os.path.join(dir_path, f"{prefix or ''}{DATA_FILE}")
        if adata is None and os.path.exists(data_path):
            import mudata

            adata = mudata.read_h5mu(data_path)
        model = cls.__new__(cls)
        BaseModelClass.__init__(model, registry=payload["registry"])
        model.init_params_ = {"kwargs": {}, "non_kwargs": payload["hyperparameters"]}
        model._restore_artifact(payload)
        model.module.load_state_dict(payload["module_state"])
        model.is_trained_ = payload["is_trained"]
        model.history_ = history_from_plain(payload["history"])
        model._attach_data(adata)
        model.to_device(torch_device)
        model.module.eval()
        return model
