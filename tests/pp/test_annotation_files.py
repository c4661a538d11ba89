"""Gene bodies from GTF/GFF3 files give the same gene mapping as the bundled annotation."""

from __future__ import annotations

import gzip

import mudata as md
import numpy as np
import pandas as pd
import pytest

import crossomics as co

pytest.importorskip("pyranges")


@pytest.fixture(scope="module")
def genes():
    """60 mm10 genes from the bundled annotation (BED-like coordinates)."""
    annotation = co.datasets.gene_annotation("mm10")
    return annotation.iloc[np.random.default_rng(0).choice(len(annotation), 60, replace=False)].sort_index()


def _gtf_lines(genes: pd.DataFrame) -> list[str]:
    lines = ["#!genome-build GRCm38"]
    for i, (name, row) in enumerate(genes.iterrows()):
        start, end = row["start"] + 1, row["end"]  # GTF is 1-based and closed
        common = f"{row['chrom'].removeprefix('chr')}\ttest\t{{}}\t{start}\t{end}\t.\t{row['strand']}\t.\t"
        lines.append(common.format("gene") + f'gene_id "ENSMUSG{i:011d}"; gene_name "{name}";')
        lines.append(
            common.format("exon") + f'gene_id "ENSMUSG{i:011d}"; gene_name "{name}"; transcript_id "T{i}";'
        )
    return lines


def _gff3_lines(genes: pd.DataFrame) -> list[str]:
    lines = ["##gff-version 3"]
    for i, (name, row) in enumerate(genes.iterrows()):
        lines.append(
            f"{row['chrom']}\ttest\tgene\t{row['start'] + 1}\t{row['end']}\t.\t{row['strand']}\t.\t"
            f"ID=gene:G{i};Name={name};biotype=protein_coding"
        )
    return lines


def test_gtf_and_gff3_files_read_as_the_bundled_gene_bodies(genes, tmp_path):
    gtf = tmp_path / "genes.gtf.gz"
    with gzip.open(gtf, "wt") as handle:
        handle.write("\n".join(_gtf_lines(genes)) + "\n")
    gff3 = tmp_path / "genes.gff3"
    gff3.write_text("\n".join(_gff3_lines(genes)) + "\n")

    for path, chrom_prefix in ((gtf, ""), (gff3, "chr")):
        table = co.pp.read_gene_annotation(path)
        assert list(table.columns) == ["chrom", "start", "end", "strand"]
        table = table.loc[genes.index]
        np.testing.assert_array_equal(table["start"], genes["start"])
        np.testing.assert_array_equal(table["end"], genes["end"])
        np.testing.assert_array_equal(table["strand"], genes["strand"])
        np.testing.assert_array_equal(table["chrom"], chrom_prefix + genes["chrom"].str.removeprefix("chr"))


def test_a_gtf_path_maps_peaks_like_the_bundled_genome(genes, tmp_path):
    """Ensembl-style chromosome names (1, not chr1) in the file meet UCSC-named peaks."""
    path = tmp_path / "genes.gtf"
    path.write_text("\n".join(_gtf_lines(genes)) + "\n")
    peaks = [f"{row['chrom']}:{row['start'] + 10}-{row['start'] + 500}" for _, row in genes.iterrows()]
    from_file, file_genes = co.pp.peak_to_gene_matrix(peaks, str(path))
    bundled, bundled_genes = co.pp.peak_to_gene_matrix(peaks, genes)
    assert set(file_genes) == set(bundled_genes) and len(file_genes) >= 55
    order = pd.Index(file_genes).get_indexer(bundled_genes)
    assert (from_file[:, order] != bundled).nnz == 0


def test_duplicated_names_keep_the_longest_body_and_bad_files_are_named(genes, tmp_path):
    first = genes.iloc[:2].copy()
    twin = first.iloc[[0]].copy()
    twin["end"] = twin["start"] + 10  # a short second copy (PAR, patch scaffold)
    path = tmp_path / "twins.gtf"
    path.write_text("\n".join(_gtf_lines(pd.concat([first, twin]))) + "\n")
    table = co.pp.read_gene_annotation(path)
    assert table.index.is_unique and table.loc[first.index[0], "end"] == first.iloc[0]["end"]

    with pytest.raises(ValueError, match="missing.gtf.*does not exist"):
        co.pp.read_gene_annotation(tmp_path / "missing.gtf")
    with pytest.raises(ValueError, match="no 'transcript' rows.*feature types found: \\['exon', 'gene'\\]"):
        co.pp.read_gene_annotation(path, feature="transcript")


def test_setup_reads_a_gtf_path_and_keeps_the_genes(tmp_path):
    annotation = co.datasets.gene_annotation("mm10")
    path = tmp_path / "mm10.gtf"
    path.write_text("\n".join(_gtf_lines(annotation)) + "\n")
    cortex = co.datasets.mouse_motor_cortex()
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({"rna": cortex["rna"][:200].copy(), "atac": cortex["atac"][:200].copy()})
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation=str(path))
    stored = co.SCCROSS._get_most_recent_anndata_manager(mdata).registry["setup_args"]["gene_annotation"]
    assert isinstance(stored, pd.DataFrame) and len(stored) == len(annotation)
