"""Bundled real single-cell data sets (no network access at run time).

Every loader reads files vendored inside the package and returns raw integer counts with
cell labels. Provenance and licences are listed in ``docs/data.md``.
"""

from ._loaders import (
    bmmc_cite,
    bmmc_multiome,
    gene_annotation,
    go_biological_process,
    mouse_motor_cortex,
    pbmc_ifnb,
    pbmc_mosaic,
)

__all__ = [
    "bmmc_cite",
    "bmmc_multiome",
    "gene_annotation",
    "go_biological_process",
    "mouse_motor_cortex",
    "pbmc_ifnb",
    "pbmc_mosaic",
]
