"""Reading gene sets from GMT files (the bundled GO file and users' own)."""

from __future__ import annotations

import gzip
from os import PathLike
from pathlib import Path

_UNINFORMATIVE_DESCRIPTIONS = {"", "na", "none", "-"}


def _set_name(identifier: str, description: str) -> str:
    # MSigDB puts a URL in the description column; GO-style files put the term name there
    description = description.strip()
    if description.lower() in _UNINFORMATIVE_DESCRIPTIONS or "://" in description:
        return identifier
    return f"{identifier} {description}"


def read_gmt(path: str | PathLike) -> dict[str, list[str]]:
    """Read gene sets from a GMT file (plain text or gzip-compressed ``.gz``).

    Each line is ``identifier<TAB>description<TAB>gene<TAB>gene...``.

    Parameters
    ----------
    path
        File path; names ending in ``.gz`` are decompressed.

    Returns
    -------
    dict
        Set name -> gene symbols (duplicates removed, file order kept). The name is
        ``"identifier description"`` (e.g. ``"GO:0001553 luteinization"``), or just the
        identifier when the description is empty, ``NA`` or a URL (as in MSigDB files).

    Raises
    ------
    ValueError
        If a line has fewer than two columns or a set name occurs twice.

    Examples
    --------
    >>> import crossomics as co
    >>> sets = co.datasets.go_biological_process()  # calls read_gmt on the bundled file
    >>> sets["GO:0001553 luteinization"][:3]
    ['A2M', 'FZD4', 'GDF9']
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    gene_sets: dict[str, list[str]] = {}
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if not line.strip():
                continue
            if len(fields) < 2:
                raise ValueError(f"{path}:{line_number} is not GMT: expected name<TAB>description<TAB>genes")
            name = _set_name(fields[0].strip(), fields[1])
            if name in gene_sets:
                raise ValueError(f"{path}:{line_number} repeats the gene set {name!r}")
            genes = (gene.strip() for gene in fields[2:])
            gene_sets[name] = list(dict.fromkeys(gene for gene in genes if gene))
    return gene_sets
