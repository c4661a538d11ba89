"""cross_generate (CSR encoders, in-place decoding) equals a straightforward dense computation."""

from __future__ import annotations

import warnings

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scvi
import torch

import crossomics as co
from crossomics.nn._layers import bfloat16_is_fast

FAST = {"enable_progress_bar": False, "enable_model_summary": False}


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    full = co.datasets.bmmc_multiome()
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({m: full.mod[m].copy() for m in ("rna", "atac")})
    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38", batch_keys="batch")
    model = co.SCCROSS(mdata, n_hidden=32, n_latent=8, n_components=10)
    model.train(max_epochs=2, pretrain_epochs=1, batch_size=128, **FAST)
    # two short epochs leave the batch-specific decoder parameters near their start: spread them
    # so that a wrong batch row or a missing affine step would show
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for head in model.module.likelihood.values():
            head.log_alpha.copy_(0.3 * torch.randn(head.log_alpha.shape, generator=generator))
            head.beta.copy_(torch.randn(head.beta.shape, generator=generator))
    return mdata, model


def _dense_reference(model, source, target, output, batch_code, library, rows=None):
    """x (dense) -> module.encode -> module.decode -> likelihood mean, with no fast path."""
    X = model.adata_manager.get_from_registry(f"X_{source}")
    X = X if rows is None else X[rows]
    x = torch.as_tensor(X.toarray(), dtype=torch.float32)
    with torch.inference_mode():
        z = model.module.encode(source, x, sample=False)["z"]
        batch = torch.full((len(z),), batch_code, dtype=torch.long)
        params, _, _ = model.module.decode(target, z, batch, torch.as_tensor(library), sample=False)
        if output == "normalized":
            return torch.log1p(params["composition"] * 1e4).numpy()
        if output == "detection" and "theta" in params:
            theta = params["theta"]
            return (1 - (theta / (theta + params["mu"])) ** theta).numpy()
        return model.module.likelihood[target].mean(params).numpy()


def _median_total(mdata, modality):
    return np.float32(np.median(np.asarray(mdata.mod[modality].X.sum(1)).ravel()))


def _assert_close(actual, expected):
    # float32 rounding only: the CSR encoders fold the gene-set layer into one matrix and the
    # decoder writes in place; nothing is approximated
    np.testing.assert_allclose(actual, expected, rtol=2e-4, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize(("source", "target"), [("atac", "rna"), ("rna", "atac")])
@pytest.mark.parametrize("output", ["mean", "normalized", "detection"])
def test_cross_generate_equals_dense_computation(trained, source, target, output):
    mdata, model = trained
    n = mdata.mod[source].n_obs
    library = np.full(n, _median_total(mdata, target), dtype=np.float32)
    expected = _dense_reference(model, source, target, output, 0, library)
    # several chunks, the last one partial
    out = model.cross_generate(source, target, output=output, batch_size=96)
    assert out.X.dtype == np.float32 and out.shape == expected.shape
    _assert_close(out.X, expected)
    # a query AnnData (features shuffled) goes through the same computation
    query = mdata.mod[source].copy()
    query = query[:, np.random.default_rng(0).permutation(query.n_vars)].copy()
    _assert_close(model.cross_generate(source, target, adata=query, output=output).X, expected)


def test_cross_generate_target_batch_library_and_samples(trained):
    mdata, model = trained
    batches = list(model.batch_categories_["rna"])
    assert len(batches) > 1
    rows = np.arange(40, 140)
    library = np.asarray(mdata.mod["rna"].X[rows].sum(1)).ravel().astype(np.float32)
    expected = _dense_reference(model, "rna", "rna", "mean", 1, library, rows)
    out = model.cross_generate("rna", "rna", indices=rows, target_batch=batches[1], batch_size=64)
    _assert_close(out.X, expected)
    fixed = model.cross_generate("atac", "rna", indices=rows, library_size=2000.0, target_batch=batches[1])
    _assert_close(
        fixed.X, _dense_reference(model, "atac", "rna", "mean", 1, np.full(100, 2000.0, np.float32), rows)
    )
    np.testing.assert_allclose(fixed.X.sum(1), 2000.0, rtol=1e-4)
    # deterministic outputs repeat per sample, cell-major
    repeated = model.cross_generate("atac", "rna", indices=rows, n_samples=3, batch_size=64)
    single = model.cross_generate("atac", "rna", indices=rows, batch_size=64)
    np.testing.assert_array_equal(repeated.X, np.repeat(single.X, 3, axis=0))
    names = mdata.mod["atac"].obs_names[rows]
    assert list(repeated.obs_names[:3]) == [f"{names[0]}-{k}" for k in range(3)]


def test_cross_generate_counts_order_and_seed(trained):
    mdata, model = trained
    kwargs = {"indices": np.arange(50), "n_samples": 2, "output": "counts", "batch_size": 32}
    first = model.cross_generate("rna", "atac", **kwargs)
    np.testing.assert_array_equal(
        first.X.toarray(), model.cross_generate("rna", "atac", **kwargs).X.toarray()
    )
    assert first.shape == (100, mdata.mod["atac"].n_vars)
    assert np.array_equal(first.X.data, np.round(first.X.data)) and (first.X.data > 0).all()
    # draws are made chunk by chunk, sample by sample: the first chunk's first sample is the
    # same draw whatever n_samples is
    one = model.cross_generate("rna", "atac", indices=np.arange(50), output="counts", batch_size=32)
    np.testing.assert_array_equal(first.X.toarray()[0:64:2], one.X.toarray()[:32])


def test_sampled_counts_take_the_depth_of_their_source_cell(trained):
    """Cross-generated counts get the target's training total at the source total's quantile."""
    mdata, model = trained
    source_totals = np.asarray(mdata.mod["rna"].X.sum(1)).ravel()
    target_totals = np.asarray(mdata.mod["atac"].X.sum(1)).ravel()
    rows = np.argsort(source_totals)[[0, len(source_totals) // 2, -1]]  # shallowest, median, deepest
    expected = np.quantile(target_totals, [0.5 / len(source_totals), 0.5, 1 - 0.5 / len(source_totals)])
    mean = model.cross_generate("rna", "atac", indices=rows, output="mean")
    # each NB mean sums to its library; ATAC is NB here, so the row sums are the libraries used
    counts = model.cross_generate("rna", "atac", indices=rows, output="counts", n_samples=200, seed=1)
    totals = np.asarray(counts.X.sum(1)).ravel().reshape(3, 200).mean(1)
    np.testing.assert_allclose(totals, expected, rtol=0.1)
    assert totals[0] < totals[1] < totals[2]
    # expected values stay at one common depth (the target's median), as documented
    np.testing.assert_allclose(np.asarray(mean.X.sum(1)).ravel(), np.median(target_totals), rtol=1e-3)
    # an explicit library_size still wins
    fixed = model.cross_generate(
        "rna", "atac", indices=rows, output="counts", library_size=500.0, n_samples=200
    )
    np.testing.assert_allclose(np.asarray(fixed.X.sum(1)).ravel().reshape(3, 200).mean(1), 500, rtol=0.1)


def test_matmul_into_splits_rows_without_changing_bits():
    from crossomics.nn._batch_affine import _matmul_into

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(301, 40, generator=generator)
    b = torch.randn(70, 40, generator=generator).T  # a transposed view, as for a Linear weight
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            out = torch.empty(301, 70)
            assert _matmul_into(a, b, out)
            results.append(out)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])
    torch.testing.assert_close(results[0], a @ b)
    assert not _matmul_into(a.double(), b.double(), torch.empty(301, 70, dtype=torch.float64))


def test_bernoulli_target_equals_dense_computation():
    full = co.datasets.bmmc_multiome()
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({m: full.mod[m][:300].copy() for m in ("rna", "atac")})
    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(
        mdata, modalities=["rna", "atac"], gene_annotation="hg38", likelihoods={"atac": "bernoulli"}
    )
    model = co.SCCROSS(mdata, n_hidden=32, n_latent=8, n_components=10, gene_sets=None)
    model.train(max_epochs=1, pretrain_epochs=1, batch_size=128, **FAST)
    with torch.no_grad():
        head = model.module.likelihood["atac"]
        head.beta.copy_(torch.randn(head.beta.shape, generator=torch.Generator().manual_seed(0)))
    library = np.full(300, _median_total(mdata, "atac"), dtype=np.float32)
    expected = _dense_reference(model, "rna", "atac", "mean", 0, library)
    for output in ("mean", "normalized", "detection"):  # all probabilities for a Bernoulli head
        out = model.cross_generate("rna", "atac", output=output, batch_size=96)
        _assert_close(out.X, expected)
    assert 0 < out.X.min() and out.X.max() < 1


@pytest.mark.parametrize(("source", "target"), [("atac", "rna"), ("rna", "atac")])
def test_bfloat16_output_layer_stays_close_to_float32(trained, source, target):
    _, model = trained
    exact = model.cross_generate(source, target, output="mean")
    emulated = not bfloat16_is_fast(model.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = model.cross_generate(source, target, output="mean", precision="bfloat16")
    # a CPU without bfloat16 instructions emulates it, much slower: the user is told
    assert any("emulated" in str(w.message) for w in caught) == emulated
    assert fast.X.dtype == np.float32 and fast.shape == exact.shape
    relative = np.abs(fast.X - exact.X) / np.abs(exact.X).max(1, keepdims=True)
    assert 0 < relative.max() < 0.05  # bfloat16 did run, and moved no value by 5% of its row's range
    per_cell = [np.corrcoef(a, b)[0, 1] for a, b in zip(exact.X, fast.X, strict=True)]
    assert min(per_cell) > 0.999
    with pytest.raises(ValueError, match="precision"):
        model.cross_generate(source, target, precision="float16")


@pytest.mark.parametrize("library_size", [-100, 0, float("nan"), float("inf")])
def test_cross_generate_rejects_a_library_size_that_is_not_positive(trained, library_size):
    _, model = trained
    with pytest.raises(ValueError, match="positive number"):
        model.cross_generate("atac", "rna", library_size=library_size)


@pytest.mark.parametrize("max_epochs", [0, -1, 2.5])
def test_train_rejects_fewer_than_one_epoch(trained, max_epochs):
    _, model = trained
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    with pytest.raises(ValueError, match=rf"max_epochs={max_epochs!r}; pass a positive integer"):
        model.train(max_epochs=max_epochs)
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m: m.simulate(groupby="cell_type", group="CD8+ T", n_cells=2.5),
            r"n_cells=2.5; pass a positive",
        ),
        (lambda m: m.simulate(groupby="cell_type", group="CD8+ T", n_cells=0), r"n_cells=0; pass a positive"),
        (lambda m: m.cross_generate("rna", "atac", n_samples=True), r"n_samples=True; pass a positive"),
        (
            lambda m: m.perturb(
                "rna",
                genes=None,
                groupby="cell_type",
                perturb_group="CD14+ Mono",
                reference_group="CD8+ T",
                max_cells=0,
            ),
            r"max_cells=0; pass a positive",
        ),
        (
            lambda m: m.get_latent_representation("rna", indices=[0.5, 1.0]),
            "integer row positions or a boolean mask",
        ),
        (lambda m: m.get_latent_representation("rna", indices=[10**6]), r"indices \[1000000\] are outside"),
    ],
)
def test_count_arguments_are_checked(trained, call, message):
    _, model = trained
    with pytest.raises(ValueError, match=message):
        call(model)


def test_no_indices_give_no_cells(trained):
    _, model = trained
    assert model.get_latent_representation("rna", indices=[]).shape == (0, model.module.n_latent)
    mask = np.zeros(model.adata.mod["rna"].n_obs, dtype=bool)
    mask[[2, 5]] = True
    np.testing.assert_allclose(
        model.get_latent_representation("rna", indices=mask),
        model.get_latent_representation("rna", indices=[2, 5]),
    )


def test_an_untrained_model_warns_before_generating():
    mdata = co.datasets.bmmc_multiome()[:200].copy()
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
    model = co.SCCROSS(mdata, n_hidden=16, n_latent=4, n_components=8, n_graph_reference=200)
    for call in (
        lambda: model.cross_generate("atac", "rna"),
        lambda: model.simulate(groupby="cell_type", group="CD8+ T", n_cells=5),
        lambda: model.perturb(
            "rna", genes=None, groupby="cell_type", perturb_group="CD14+ Mono", reference_group="CD8+ T"
        ),
    ):
        with pytest.warns(UserWarning, match="untrained model"):
            call()


def test_cells_without_a_label_join_no_group(trained):
    """A NaN in the group column is a missing label, not a group called "nan"."""
    mdata, model = trained
    rna = mdata["rna"].copy()
    rna.obs["cell_type"] = rna.obs["cell_type"].astype(object)
    rna.obs.iloc[:5, rna.obs.columns.get_loc("cell_type")] = np.nan
    types = rna.obs["cell_type"].dropna().value_counts().index[:2]
    with pytest.raises(ValueError, match="group 'nan' is not in 'cell_type'"):
        model.perturb(
            "rna",
            genes=list(rna.var_names[:3]),
            groupby="cell_type",
            perturb_group="nan",
            reference_group=types[0],
            adata=rna,
        )
    scores = model.perturb(
        "rna",
        genes=list(rna.var_names[:3]),
        groupby="cell_type",
        perturb_group=types[0],
        reference_group=types[1],
        adata=rna,
    )
    assert np.isfinite(scores["best_score"]).all()


def test_get_normalized_expression_follows_scvi_conventions(trained):
    mdata, model = trained
    proportions = model.get_normalized_expression()
    assert isinstance(proportions, pd.DataFrame) and proportions.shape == (
        mdata.mod["rna"].n_obs,
        mdata.mod["rna"].n_vars,
    )
    assert list(proportions.index) == list(mdata.mod["rna"].obs_names)
    np.testing.assert_allclose(proportions.sum(1), 1.0, rtol=1e-4)  # library_size=1: proportions
    genes = list(mdata.mod["rna"].var_names[[5, 1]])
    subset = model.get_normalized_expression(gene_list=genes, library_size=1e4)
    np.testing.assert_allclose(subset.to_numpy(), proportions[genes].to_numpy() * 1e4, rtol=1e-4)
    # cross-modal: RNA decoded from ATAC equals cross_generate's expected values at the same depth
    from_atac = model.get_normalized_expression(source="atac", library_size=1e4, return_numpy=True)
    generated = model.cross_generate(source="atac", target="rna", library_size=1e4, output="mean")
    np.testing.assert_allclose(from_atac, np.asarray(generated.X), rtol=1e-4, atol=1e-6)
    draws = model.get_normalized_expression(gene_list=genes, n_samples=3, return_mean=False)
    assert draws.shape == (3, mdata.mod["rna"].n_obs, 2) and not np.allclose(draws[0], draws[1])
    np.testing.assert_array_equal(
        draws, model.get_normalized_expression(gene_list=genes, n_samples=3, return_mean=False)
    )
    accessibility = model.get_normalized_accessibility(indices=[0, 1, 2])
    assert (
        accessibility.shape == (3, mdata.mod["atac"].n_vars) and np.isfinite(accessibility.to_numpy()).all()
    )
    with pytest.raises(ValueError, match=r"gene_list=\[\] selects no gene"):
        model.get_normalized_expression(gene_list=[])


def test_generated_cortex_counts_pass_for_real_better_than_controls():
    """RNA generated from held-out cortex ATAC, sampled counts: closer to the real RNA than a
    gene-shuffled copy of the real cells, and closer with source-matched depths than at one
    common depth (two_sample_realism: classifier AUC, kNN mixing)."""
    torch.set_num_threads(1)
    full = co.datasets.mouse_motor_cortex()
    rows = np.random.default_rng(0).permutation(full.n_obs)[:1600]
    train, query = np.sort(rows[:800]), np.sort(rows[800:])
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({m: full.mod[m][train].copy() for m in ("rna", "atac")})
    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
    model = co.SCCROSS(mdata, n_hidden=64, n_latent=16, gene_sets=None)
    model.train(max_epochs=15, pretrain_epochs=6, batch_size=128, **FAST)
    real = full.mod["rna"][query].X
    atac = full.mod["atac"][query].copy()
    generated = model.cross_generate("atac", "rna", adata=atac, output="counts", seed=0).X
    common_depth = model.cross_generate(
        "atac",
        "rna",
        adata=atac,
        output="counts",
        seed=0,
        library_size=float(np.median(model.library_sizes_["rna"])),
    ).X
    shuffled = real[:, np.random.default_rng(1).permutation(real.shape[1])]
    score = {
        name: co.metrics.two_sample_realism(real, x).loc["all"]
        for name, x in (("generated", generated), ("common depth", common_depth), ("shuffled", shuffled))
    }
    # measured: AUC 0.696 / 0.694 / 1.000, mixing 0.631 / 0.462 / 0.000
    assert score["generated"]["auc"] < score["shuffled"]["auc"] - 0.2
    assert score["generated"]["mixing"] > score["shuffled"]["mixing"] + 0.4
    assert score["generated"]["mixing"] > score["common depth"]["mixing"] + 0.1
