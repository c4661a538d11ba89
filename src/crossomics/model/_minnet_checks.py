"""Checks of the data registered with MINNET, and its training / validation split."""

from __future__ import annotations

from collections.abc import Mapping

from anndata import AnnData
from mudata import MuData

from crossomics._constants import ATAC
from crossomics.model._registration import check_one_type
from crossomics.pp._modality_kinds import infer_modality_kind


def two_modalities(mdata: MuData, modalities) -> list[str]:
    """``modalities`` as a list of two distinct modality names of ``mdata``."""
    if isinstance(modalities, str) or modalities is None or len(modalities) != 2:
        raise ValueError(
            f"modalities must name two modalities of mdata, e.g. ['rna', 'atac'], got {modalities!r}"
        )
    modalities = list(modalities)
    unknown = [m for m in modalities if m not in mdata.mod]
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r}; mdata.mod has {list(mdata.mod)}")
    if modalities[0] == modalities[1]:
        raise ValueError(f"modalities must be two different modalities, got {modalities}")
    return modalities


def layers_per_modality(layers, modalities: list[str]) -> dict[str, str | None]:
    """Expand one layer name (or ``None``) or a ``{modality: layer}`` mapping to every modality."""
    if isinstance(layers, Mapping):
        unknown = set(layers) - set(modalities)
        if unknown:
            raise ValueError(
                f"layers names modalities {sorted(unknown)} that are not in modalities={modalities}"
            )
        return {m: layers.get(m) for m in modalities}
    return dict.fromkeys(modalities, layers)


def check_labels(adata: AnnData, labels_key: str | None, modality: str) -> None:
    """Raise unless ``labels_key`` is a complete cell-type column with at least two types."""
    if labels_key is None:
        raise ValueError(
            f"MINNET is supervised: pass labels_key= naming the cell-type column of mdata.mod[{modality!r}].obs"
        )
    if labels_key not in adata.obs:
        raise ValueError(
            f"labels_key {labels_key!r} is not a column of mdata.mod[{modality!r}].obs; "
            f"available: {list(adata.obs.columns)}"
        )
    labels = adata.obs[labels_key]
    if labels.isna().any():
        raise ValueError(
            f"{int(labels.isna().sum())} cells have no {labels_key!r} label; MINNET trains on labelled "
            "cells only, so subset mdata to labelled cells first"
        )
    check_one_type(labels, labels_key, modality)
    if labels.nunique() < 2:
        raise ValueError(
            f"labels_key {labels_key!r} holds a single cell type ({labels.iloc[0]!r}); MINNET needs at "
            "least two cell types for its classifier and cell-type margin"
        )


def peak_modality(mdata: MuData, modalities: list[str]) -> str:
    """The modality whose features are genomic intervals (ATAC peaks)."""
    with_peaks = [m for m in modalities if _features_are_peaks(m, mdata.mod[m].var)]
    if len(with_peaks) != 1:
        raise ValueError(
            "gene_annotation turns the ATAC peaks into gene activity, so exactly one modality must have "
            f"peak coordinates (var columns chrom/chromStart/chromEnd or names like chr1:100-200); "
            f"found {len(with_peaks)} among {modalities}"
        )
    return with_peaks[0]


def _features_are_peaks(modality: str, var) -> bool:
    """Whether the features say ATAC (names or coordinates of peaks), whatever the name says."""
    try:
        return infer_modality_kind(modality, var, from_name=False) == ATAC
    except ValueError:
        return False
