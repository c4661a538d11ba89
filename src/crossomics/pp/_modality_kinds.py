"""What a modality holds (RNA, ATAC, protein or methylation): the one inference of a modality's
kind, used by :mod:`crossomics.pp` and by the models' ``setup_mudata``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from crossomics._constants import ATAC, METHYLATION, MODALITY_KINDS, PROTEIN, RNA

from ._peaks import parse_peaks

_NAME_HINTS = {
    RNA: ("rna", "gex", "gene", "expression"),
    ATAC: ("atac", "peak", "chromatin"),
    PROTEIN: ("adt", "protein", "cite", "antibod"),
    METHYLATION: ("methyl", "snmc", "mcg"),
}


def infer_modality_kind(modality: str, var: pd.DataFrame | None = None, *, from_name: bool = True) -> str:
    """The kind of ``modality``: from its name when the hints of exactly one kind are in it
    (``rna``/``gex``, ``atac``/``peak``, ``adt``/``protein``/``cite``, ``methyl``/``snmc``, ...),
    else from its features ``var``: names or ``chrom``/``chromStart``/``chromEnd`` columns that
    parse as peaks mean ATAC. ``from_name=False`` looks at the features only (MINNET, whose gene
    activity needs the peak coordinates themselves).

    Raises
    ------
    ValueError
        When neither tells, naming the ``kinds=`` argument that does.
    """
    if from_name:
        name = modality.lower()
        guesses = [kind for kind, hints in _NAME_HINTS.items() if any(hint in name for hint in hints)]
        if len(guesses) == 1:
            return guesses[0]
    if var is not None:
        try:
            parse_peaks(var)
        except ValueError:
            pass
        else:
            return ATAC
    evidence = " or ".join(
        (["its name"] if from_name else []) + (["its features (not peaks)"] if var is not None else [])
    )
    raise ValueError(
        f"cannot infer the kind of modality {modality!r} from {evidence or 'nothing'}; pass "
        f"kinds={{{modality!r}: 'rna' | 'atac' | 'protein' | 'methylation'}}"
    )


def infer_modality_kinds(
    modalities: Sequence[str],
    kinds: Mapping[str, str] | None = None,
    variables: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, str]:
    """Kind (``rna``, ``atac``, ``protein``, ``methylation``) of each modality: given in
    ``kinds``, or inferred by :func:`infer_modality_kind` from its name and, when
    ``variables`` holds its ``var``, its features."""
    kinds = dict(kinds or {})
    variables = variables or {}
    resolved = {}
    for modality in modalities:
        if modality in kinds:
            kind = kinds[modality]
            if kind not in MODALITY_KINDS:
                raise ValueError(f"kinds[{modality!r}] is {kind!r}; use one of {list(MODALITY_KINDS)}")
        else:
            kind = infer_modality_kind(modality, variables.get(modality))
        resolved[modality] = kind
    return resolved
