"""Gene bodies from a GTF or GFF3 file, read with pyranges (the ``gtf`` extra)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

ANNOTATION_SUFFIXES = (".gtf", ".gff", ".gff3", ".gtf.gz", ".gff.gz", ".gff3.gz")
# attribute holding the gene symbol, by preference: GENCODE/Ensembl GTF and GFF3, then RefSeq
_NAME_ATTRIBUTES = ("gene_name", "Name", "gene", "gene_id", "ID")


def is_annotation_file(value) -> bool:
    """Whether ``value`` names a GTF/GFF file (by its suffix, or an existing path)."""
    if not isinstance(value, str | os.PathLike):
        return False
    text = str(value).lower()
    return text.endswith(ANNOTATION_SUFFIXES) or (isinstance(value, os.PathLike) and Path(value).is_file())


def read_gene_annotation(path: str | os.PathLike, feature: str = "gene") -> pd.DataFrame:
    """Gene bodies from a GTF or GFF3 file (plain or gzipped), in the bundled annotations' form.

    The file is parsed with `pyranges <https://github.com/pyranges/pyranges>`_ (install with
    ``pip install crossomics[gtf]``). Rows whose type is ``feature`` are kept; each is named by
    its first present attribute among ``gene_name``, ``Name``, ``gene``, ``gene_id``, ``ID``.
    A name that occurs on several rows (a gene on two scaffolds, PAR copies) keeps its longest
    row. Coordinates become BED-like (0-based start, exclusive end), as pyranges reads them.

    Parameters
    ----------
    path
        A ``.gtf``, ``.gff``, ``.gff3`` file, optionally ``.gz``.
    feature
        The feature type that holds gene bodies.

    Returns
    -------
    pandas.DataFrame
        Columns ``chrom``, ``start``, ``end``, ``strand``, indexed by unique gene name; what
        :func:`crossomics.datasets.gene_annotation` returns and every ``gene_annotation=``
        argument accepts.

    Raises
    ------
    ValueError
        When the file is missing, has no ``feature`` rows, or names no gene.
    ImportError
        When pyranges is not installed.

    Examples
    --------
    >>> genes = co.pp.read_gene_annotation("gencode.vM25.annotation.gtf.gz")
    >>> co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation=genes)
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"gene annotation file {str(path)!r} does not exist; pass a GTF/GFF3 path or a genome name"
        )
    try:
        import pyranges
    except ImportError as error:
        raise ImportError(
            "reading GTF/GFF files needs pyranges: pip install 'crossomics[gtf]' (or pip install pyranges)"
        ) from error
    gff3 = path.name.lower().removesuffix(".gz").endswith((".gff", ".gff3"))
    table = (pyranges.read_gff3 if gff3 else pyranges.read_gtf)(str(path), as_df=True)
    if "Feature" not in table or not (table["Feature"] == feature).any():
        found = sorted(table["Feature"].astype(str).unique())[:10] if "Feature" in table else []
        raise ValueError(
            f"{str(path)!r} has no {feature!r} rows (feature types found: {found}); pass feature="
        )
    genes = table[table["Feature"] == feature]
    names = pd.Series(np.nan, index=genes.index, dtype=object)
    for attribute in _NAME_ATTRIBUTES:
        if attribute in genes:
            names = names.fillna(genes[attribute])
    if names.isna().all():
        raise ValueError(
            f"the {feature!r} rows of {str(path)!r} carry none of the attributes {list(_NAME_ATTRIBUTES)}"
        )
    annotation = pd.DataFrame(
        {
            "chrom": genes["Chromosome"].astype(str).to_numpy(),
            "start": genes["Start"].to_numpy(dtype=np.int64),
            "end": genes["End"].to_numpy(dtype=np.int64),
            "strand": genes["Strand"].astype(str).to_numpy(),
        },
        index=pd.Index(names.astype(str).to_numpy(), name="gene"),
    )[names.notna().to_numpy()]
    length = annotation["end"] - annotation["start"]
    longest_first = annotation.assign(length=length.to_numpy()).sort_values(
        "length", ascending=False, kind="stable"
    )
    return (
        longest_first[~longest_first.index.duplicated()]
        .drop(columns="length")
        .sort_values(["chrom", "start"])
    )


def annotation_argument(value):
    """A model's ``gene_annotation=`` as stored: a bundled genome's name (checked), or a table.

    A GTF/GFF path is read here, so the model keeps the genes themselves and works where the
    file is absent.
    """
    if value is None or isinstance(value, pd.DataFrame):
        return value
    if is_annotation_file(value):
        return read_gene_annotation(value)
    from crossomics.datasets._loaders import genome_name

    return genome_name(value)  # fails early on an unknown genome
