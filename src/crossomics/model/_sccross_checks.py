"""Checks of the arguments of SCCROSS's ``setup_mudata``, ``__init__`` and ``train``.

Each raises before anything is registered, fitted or trained, naming the bad value and the fix.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

from mudata import MuData

from crossomics._constants import PAIRS_KEY
from crossomics._validation import check_number, check_positive_int

_RESERVED = (PAIRS_KEY,)
_POSITIVE_INTS = {
    "n_latent": 50,
    "n_hidden": 256,
    "n_layers": 2,
    "n_components": 50,
    "n_graph_reference": 20_000,
    "n_gene_set_components": 20,
}
_LOSS_WEIGHTS = {
    "lambda_adversarial": 0.05,
    "lambda_mnn": 0.04,
    "lambda_pairs": 1.0,
    "lambda_translation": 1.0,
    "lambda_anchor": 5.0,
}
# arguments of pp.mnn_prior that SCCROSS sets itself; prior_kwargs may set the others
_PRIOR_SET_BY_MODEL = (
    "mdata",
    "modalities",
    "kinds",
    "gene_annotation",
    "protein_to_gene",
    "layers",
    "normalized",
    "random_state",
)


def checked_modalities(mdata: MuData, modalities: Sequence[str]) -> list[str]:
    """``modalities`` as a list of at least two distinct, unreserved modality names of ``mdata``."""
    if isinstance(modalities, str) or not isinstance(modalities, Sequence):
        raise ValueError(
            f"modalities={modalities!r}; pass a list of the modality names to integrate, e.g. ['rna', 'atac']"
        )
    modalities = list(modalities)
    if len(modalities) < 2:
        raise ValueError(f"SCCROSS integrates at least 2 modalities; got modalities={modalities}")
    unknown = [m for m in modalities if m not in mdata.mod]
    if unknown:
        raise ValueError(f"modalities {unknown} are not in the MuData; it has {list(mdata.mod)}")
    repeated = sorted({m for m in modalities if modalities.count(m) > 1})
    if repeated:
        raise ValueError(f"modalities={modalities} names {repeated[0]!r} twice; list each modality once")
    for m in modalities:
        if ":" in m or m in _RESERVED:
            raise ValueError(f"modality name {m!r} is reserved or contains ':'; rename it in mdata.mod")
    return modalities


def check_init_arguments(arguments: Mapping) -> None:
    """The hyper-parameters of ``SCCROSS.__init__`` (its ``locals()``)."""
    for name, example in _POSITIVE_INTS.items():
        check_positive_int(arguments[name], name, example)
    check_positive_int(
        arguments["n_graph_neighbors"],
        "n_graph_neighbors",
        15,
        minimum=0,
        why=", 0 to turn the graph convolution off",
    )
    check_number(arguments["dropout"], "dropout", 0.2, low=0, high=1, high_open=True)
    check_number(arguments["graph_self_weight"], "graph_self_weight", 0.5, low=0, high=1)
    for name, example in _LOSS_WEIGHTS.items():
        check_number(arguments[name], name, example, low=0)
    if arguments["n_alignment_regions"] is not None:
        check_positive_int(
            arguments["n_alignment_regions"], "n_alignment_regions", 30, why=", or None to turn it off"
        )
    if arguments["n_fit_cells"] is not None:
        check_positive_int(
            arguments["n_fit_cells"],
            "n_fit_cells",
            50_000,
            minimum=100,
            why=" (the fixed projections need more cells than components), or None to fit on every cell",
        )
    prior_kwargs = arguments["prior_kwargs"]
    if prior_kwargs is None:
        return
    from crossomics.pp._mnn_prior import mnn_prior  # the function itself, even when pp's name is patched

    allowed = [p for p in inspect.signature(mnn_prior).parameters if p not in _PRIOR_SET_BY_MODEL]
    if not isinstance(prior_kwargs, Mapping):
        raise TypeError(
            f"prior_kwargs={prior_kwargs!r}; pass a dict of arguments of pp.mnn_prior, e.g. {{'k': 20}}"
        )
    unknown = [k for k in prior_kwargs if k not in allowed]
    if unknown:
        raise ValueError(
            f"prior_kwargs names {unknown}, which SCCROSS cannot pass to crossomics.pp.mnn_prior; "
            f"valid: {allowed}"
        )


def check_train_arguments(pretrain_epochs, batch_size, lr, validation_size) -> None:
    """The arguments of ``SCCROSS.train`` besides ``max_epochs``."""
    if pretrain_epochs is not None:
        check_positive_int(pretrain_epochs, "pretrain_epochs", 40, minimum=0)
    check_positive_int(
        batch_size, "batch_size", 256, minimum=2, why=": batch normalisation needs two cells per minibatch"
    )
    check_number(lr, "lr", 2e-3, low=0, low_open=True)
    check_number(validation_size, "validation_size", 0.1, low=0, high=1, high_open=True)
