"""Build ``src/crossomics/datasets/data/pbmc_mosaic_cite.h5mu`` from the upstream MIDAS file.

Usage: ``python scripts/vendor_pbmc_mosaic.py SOURCE.h5mu``, where ``SOURCE.h5mu`` is
``src/scmidas/data/quickstart_pbmc_mosaic.h5mu`` of GitHub ``labomics/midas`` at commit
``5f0f57973bd6bea6f9ed034fffb4d9b3aa703777`` (MIT licence). The script checks the file's
SHA-256 and writes the vendored copy with the conventions of the other bundled data sets:

- counts as int32 CSR (upstream stores the same integers as float32), gzip-compressed;
- the label column ``celltype`` renamed ``cell_type``, kept in each modality's ``obs`` and in
  the top-level ``obs``; ``batch`` unchanged;
- ``uns['source']`` naming the repository, commit, path and licence.

All 1,600 cells and all features are kept; paired cells keep their shared ``obs_names``, so
``mdata.obsmap`` pairs them.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import mudata as md
import numpy as np
import scipy.sparse as sp

SOURCE_SHA256 = "ba7e65819b77dca7cae0473043893a471920e25a07ee08bc91b3eb9fcc2e1cdd"
TARGET = Path(__file__).resolve().parents[1] / "src/crossomics/datasets/data/pbmc_mosaic_cite.h5mu"
SOURCE_NOTE = {
    "repository": "https://github.com/labomics/midas",
    "commit": "5f0f57973bd6bea6f9ed034fffb4d9b3aa703777",
    "path": "src/scmidas/data/quickstart_pbmc_mosaic.h5mu",
    "license": "MIT",
    "note": (
        "Hao et al. 2021 PBMC CITE-seq arranged as a mosaic by the MIDAS authors: batch p1_0 RNA "
        "only, p2_0 protein only, p3_0 and p4_0 paired (shared obs_names). X converted from "
        "float32 to int32 (all values integers); obs 'celltype' renamed 'cell_type'."
    ),
}


def as_int32_counts(X) -> sp.csr_matrix:
    X = sp.csr_matrix(X)
    if not np.array_equal(X.data, np.round(X.data)) or (X.data < 0).any():
        raise ValueError("upstream matrix holds non-integer or negative values")
    X = X.astype(np.int32)
    X.sort_indices()
    return X


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    digest = hashlib.sha256(args.source.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{args.source} has SHA-256 {digest}, expected {SOURCE_SHA256}")

    with md.set_options(pull_on_update=False):
        source = md.read_h5mu(args.source)
        modalities = {}
        for name in ("rna", "adt"):
            adata = source.mod[name].copy()
            adata.X = as_int32_counts(adata.X)
            adata.obs = adata.obs.rename(columns={"celltype": "cell_type"})[["batch", "cell_type"]]
            modalities[name] = adata
        mdata = md.MuData(modalities)
        labels = source.obs.rename(columns={"celltype": "cell_type"})[["batch", "cell_type"]]
        mdata.obs = labels.loc[mdata.obs_names].copy()
        mdata.uns["source"] = SOURCE_NOTE
        mdata.uns["organism"] = "human"
        mdata.uns["dataset_id"] = "pbmc_mosaic_cite"
        mdata.write_h5mu(args.out, compression="gzip")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): {mdata}")


if __name__ == "__main__":
    main()
