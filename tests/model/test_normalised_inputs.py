"""Normalised and continuous inputs (log-normalised RNA, TF-IDF ATAC, methylation rates) end to end.

Real cortex cells (SNARE-seq, paired); the methylation modality is built from the bundled RNA
with the documented sign: gene-body methylation falls as expression rises. No real methylation
data is bundled.
"""

from __future__ import annotations

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
import scvi
import torch

import crossomics as co
from crossomics.metrics import foscttm

FAST = {"enable_progress_bar": False, "enable_model_summary": False}
N_CELLS = 600


def _mudata(mods: dict) -> md.MuData:
    with md.set_options(pull_on_update=False):
        return md.MuData(mods)


@pytest.fixture(scope="module")
def cortex_cells():
    full = co.datasets.mouse_motor_cortex()
    rows = np.sort(np.random.default_rng(0).choice(full.n_obs, N_CELLS, replace=False))
    return full["rna"][rows].copy(), full["atac"][rows].copy()


def _log_normalised(rna):
    out = rna.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def _tfidf(atac):
    out = atac.copy()
    X = sp.csr_matrix(atac.X, dtype=np.float32)
    idf = np.log1p(X.shape[0] / (1.0 + np.asarray((X > 0).sum(0)).ravel()))
    tf = sp.diags(1.0 / np.maximum(np.asarray(X.sum(1)).ravel(), 1.0)) @ X
    out.X = sp.csr_matrix(tf @ sp.diags(idf)) * 1e4
    out.X.data = np.log1p(out.X.data)
    return out


def _methylation_rates(rna, seed=0):
    """Gene-level methylation fractions that fall as the gene's expression rises (plus noise)."""
    logged = _log_normalised(rna).X.toarray()
    z = (logged - logged.mean(0)) / np.maximum(logged.std(0), 1e-6)
    rng = np.random.default_rng(seed)
    rates = 1.0 / (1.0 + np.exp(z + rng.normal(0.0, 0.5, z.shape)))
    rates[rng.random(z.shape) < 0.1] = 0.0  # uncovered sites read as zero, as ZILN expects
    return rates.astype(np.float32)


def test_mnn_prior_of_log_normalised_rna_equals_the_prior_of_its_counts(cortex_cells):
    rna, atac = cortex_cells
    counts = co.pp.mnn_prior(
        _mudata({"rna": rna, "atac": atac}), ["rna", "atac"], gene_annotation="mm10", n_comps=10
    )
    given = co.pp.mnn_prior(
        _mudata({"rna": _log_normalised(rna), "atac": atac}),
        ["rna", "atac"],
        gene_annotation="mm10",
        n_comps=10,
        normalized=["rna"],
    )
    # the same up to each PCA axis' sign and the per-cell totals (all genes for the given
    # values, the common genes for the counts)
    for m in ("rna", "atac"):
        r = [abs(np.corrcoef(given[m][:, d], counts[m][:, d])[0, 1]) for d in range(10)]
        assert min(r) > 0.99, (m, r)
    assert abs(foscttm(given["rna"], given["atac"]) - foscttm(counts["rna"], counts["atac"])) < 0.005


def test_normalised_values_outside_normalized_are_refused(cortex_cells):
    rna, atac = cortex_cells
    mdata = _mudata({"rna": _log_normalised(rna), "atac": atac})
    with pytest.raises(ValueError, match=r"non-integer.*normalized=\['rna'\]"):
        co.pp.common_gene_views(mdata, ["rna", "atac"], gene_annotation="mm10")
    with pytest.raises(ValueError, match="normalized names \\['protein'\\]"):
        co.pp.common_gene_views(mdata, ["rna", "atac"], gene_annotation="mm10", normalized=["protein"])


def test_normalised_rna_and_atac_from_setup_to_perturb(cortex_cells, tmp_path):
    torch.set_num_threads(1)
    rna, atac = cortex_cells
    mdata = _mudata({"rna": _log_normalised(rna), "atac": _tfidf(atac)})
    before = mdata["rna"].X.copy()
    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10", likelihoods="normal")
    model = co.SCCROSS(mdata, n_hidden=64, n_latent=16, n_components=20)
    model.train(max_epochs=15, pretrain_epochs=5, batch_size=128, **FAST)
    assert (mdata["rna"].X != before).nnz == 0

    z_rna = model.get_latent_representation(modality="rna")
    z_atac = model.get_latent_representation(modality="atac")
    prior = model.mnn_prior_
    # the joint space must match the cells better than chance (0.5) and no worse than its prior
    assert foscttm(z_rna, z_atac) < min(0.4, foscttm(prior["rna"], prior["atac"]) + 0.05)

    generated = model.cross_generate("atac", "rna")
    assert generated.shape == mdata["rna"].shape and np.isfinite(np.asarray(generated.X)).all()

    types = rna.obs["cell_type"].value_counts().index[:2]
    genes = list(rna.var_names[:40])
    scores = model.perturb(
        "rna", genes=genes, groupby="cell_type", perturb_group=types[0], reference_group=types[1], fold=0.5
    )
    assert set(scores.index) == set(genes) and np.isfinite(scores["best_score"]).all()
    # a shift of zero standard deviations would score 0; these shifts move the cells
    assert scores["best_score"].abs().max() > 0

    model.save(tmp_path / "normalised", overwrite=True)
    loaded = co.SCCROSS.load(tmp_path / "normalised", adata=mdata)
    np.testing.assert_array_equal(loaded.get_latent_representation(modality="atac"), z_atac)


def test_methylation_enters_the_common_gene_view_with_the_opposite_sign(cortex_cells):
    rna, _ = cortex_cells
    mc = sc.AnnData(_methylation_rates(rna), obs=pd.DataFrame(index="mc_" + rna.obs_names), var=rna.var[[]])
    mdata = _mudata({"rna": rna, "mc": mc})
    views = co.pp.common_gene_views(mdata, ["rna", "mc"], kinds={"mc": "methylation"}, normalized=["mc"])
    expression = _log_normalised(rna).X.toarray()
    methylation = views["mc"].X.toarray()
    varying = expression.std(0) > 0.3
    r = [np.corrcoef(expression[:, g], methylation[:, g])[0, 1] for g in np.flatnonzero(varying)[:200]]
    # negated, so the view correlates positively with expression (noise and dropouts keep r < 1)
    assert np.median(r) > 0.3 and np.mean(np.asarray(r) > 0) > 0.95

    as_kind = co.pp.mnn_prior(
        mdata, ["rna", "mc"], kinds={"mc": "methylation"}, normalized=["mc"], n_comps=10
    )
    as_expression = co.pp.mnn_prior(mdata, ["rna", "mc"], kinds={"mc": "rna"}, normalized=["mc"], n_comps=10)
    matched = foscttm(as_kind["rna"], as_kind["mc"])
    assert matched < 0.15 and matched < foscttm(as_expression["rna"], as_expression["mc"]) - 0.1


def test_methylation_sites_map_to_genes_and_train(cortex_cells):
    torch.set_num_threads(1)
    rna, _ = cortex_cells
    annotation = co.datasets.gene_annotation("mm10")
    genes = rna.var_names[rna.var_names.isin(annotation.index)]
    rna = rna[:, genes].copy()
    bodies = annotation.loc[genes]
    # one CpG 100 bp inside each gene body, named like methylation callers write them
    sites = pd.Index(bodies["chrom"] + ":" + (bodies["start"] + 100).astype(str))
    mc = sc.AnnData(
        _methylation_rates(rna), obs=pd.DataFrame(index="mc_" + rna.obs_names), var=pd.DataFrame(index=sites)
    )
    mdata = _mudata({"rna": rna, "mc": mc})
    views = co.pp.common_gene_views(
        mdata, ["rna", "mc"], kinds={"mc": "methylation"}, gene_annotation="mm10", normalized=["mc"]
    )
    assert views["mc"].n_vars > 0.9 * len(genes)

    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(
        mdata, modalities=["rna", "mc"], kinds={"mc": "methylation"}, gene_annotation="mm10"
    )
    model = co.SCCROSS(mdata, n_hidden=64, n_latent=16, n_components=20)
    assert model.likelihoods_["mc"] == "ziln"  # the paper's likelihood for methylation rates
    model.train(max_epochs=15, pretrain_epochs=5, batch_size=128, **FAST)
    z_rna = model.get_latent_representation(modality="rna")
    z_mc = model.get_latent_representation(modality="mc")
    assert foscttm(z_rna, z_mc) < 0.3
