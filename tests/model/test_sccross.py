"""SCCROSS on tiny real data (BMMC multiome, 500 cells): integration, generation, errors."""

from __future__ import annotations

import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch

import crossomics as co
from crossomics.metrics import foscttm

FAST = {"enable_progress_bar": False, "enable_model_summary": False}


def _mudata(mods: dict) -> md.MuData:
    with md.set_options(pull_on_update=False):
        return md.MuData(mods)


def _train(mdata, seed=0, epochs=6, batch_size=128, **model_kwargs):
    scvi.settings.seed = seed
    co.SCCROSS.setup_mudata(mdata, modalities=[m for m in mdata.mod], gene_annotation="hg38")
    model = co.SCCROSS(mdata, n_hidden=64, n_latent=16, n_components=20, **model_kwargs)
    model.train(max_epochs=epochs, pretrain_epochs=epochs // 3, batch_size=batch_size, **FAST)
    return model


@pytest.fixture(scope="module")
def paired():
    torch.set_num_threads(1)
    mdata = co.datasets.bmmc_multiome()
    return mdata, _train(mdata, epochs=30, batch_size=64)


def test_paired_integration_shapes_and_alignment(paired):
    mdata, model = paired
    z_rna = model.get_latent_representation(modality="rna")
    z_atac = model.get_latent_representation(modality="atac")
    assert z_rna.shape == (500, 16) and z_atac.shape == (500, 16)
    assert np.isfinite(z_rna).all()
    # true pairs are used for alignment: the matched cells must be far closer than random (0.5)
    # measured 0.32 with 240 steps (random: 0.5); the prior of this 36-common-gene data is 0.46
    assert foscttm(z_rna, z_atac) < 0.25  # measured 0.173; the MNN prior alone gives 0.464
    assert model.n_pairs_ == {"rna:atac": 500}
    np.testing.assert_array_equal(z_rna, model.get_latent_representation(modality="rna"))
    assert set(model.history) >= {"train_loss", "validation_loss", "train_mnn", "train_discriminator_loss"}


def test_prior_uses_automatic_metacells_unless_told(monkeypatch):
    calls = []

    def recording_prior(mdata, modalities, **kwargs):
        calls.append(kwargs)
        return {m: np.zeros((mdata.mod[m].n_obs, 2)) for m in modalities}

    monkeypatch.setattr(co.pp, "mnn_prior", recording_prior)
    mdata = co.datasets.bmmc_multiome()
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
    co.SCCROSS(mdata, n_hidden=16, n_latent=4, n_components=5)
    co.SCCROSS(mdata, n_hidden=16, n_latent=4, n_components=5, prior_kwargs={"n_metacells": None})
    assert calls[0]["n_metacells"] == "auto" and calls[0]["n_comps"] == 20
    assert calls[1]["n_metacells"] is None


def test_unpaired_and_partly_paired():
    torch.set_num_threads(1)
    full = co.datasets.bmmc_multiome()
    rna = full.mod["rna"][:300].copy()
    atac = full.mod["atac"][200:].copy()  # cells 200-299 are in both modalities
    unpaired_atac = atac.copy()
    unpaired_atac.obs_names = [f"atac_{n}" for n in atac.obs_names]
    model = _train(_mudata({"rna": rna.copy(), "atac": unpaired_atac}), epochs=3)
    assert model.n_pairs_ == {}
    assert model.get_latent_representation("atac").shape == (300, 16)
    model = _train(_mudata({"rna": rna, "atac": atac}), epochs=3)
    assert model.n_pairs_ == {"rna:atac": 100}


def test_unpaired_cortex_is_one_joint_space():
    """Real unpaired RNA + ATAC (mouse cortex): the modalities mix, and match the MNN prior; the
    regional alignment mixes them further without losing the matching."""
    torch.set_num_threads(1)
    full = co.datasets.mouse_motor_cortex()
    rows = np.sort(np.random.default_rng(0).choice(full.n_obs, 1200, replace=False))
    rna = full.mod["rna"][rows].copy()
    atac = full.mod["atac"][rows].copy()
    atac.obs_names = [f"atac_{name}" for name in atac.obs_names]
    scvi.settings.seed = 0
    mdata = _mudata({"rna": rna, "atac": atac})
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
    model = co.SCCROSS(mdata, n_hidden=128)
    model.train(max_epochs=25, pretrain_epochs=5, batch_size=128, **FAST)
    assert model.n_pairs_ == {}
    z = {m: model.get_latent_representation(modality=m) for m in ("rna", "atac")}
    prior = foscttm(model.mnn_prior_["rna"], model.mnn_prior_["atac"])
    raw = {m: model._latent(m, None, None, aligned=False) for m in ("rna", "atac")}
    # measured: mixing 0.99 (the aligners' embedding before the regional alignment: 0.69),
    # FOSCTTM 0.194 (0.194 before the alignment), prior 0.202
    assert co.metrics.modality_mixing(z) > 0.8
    assert co.metrics.modality_mixing(z) > co.metrics.modality_mixing(raw) + 0.15
    assert foscttm(z["rna"], z["atac"]) <= min(prior, foscttm(raw["rna"], raw["atac"]) + 0.005)


def test_paired_cortex_modalities_mix():
    """Truly paired RNA + ATAC with the pairs' weight at 5 (the anchors' weight): each cell's
    modalities meet, and the modalities mix. At the default weight of 1 they form two islands
    around the same partners (docs/concepts.md, "One joint space")."""
    torch.set_num_threads(1)
    full = co.datasets.mouse_motor_cortex()
    rows = np.sort(np.random.default_rng(0).choice(full.n_obs, 1200, replace=False))
    scvi.settings.seed = 0
    mdata = _mudata({m: full.mod[m][rows].copy() for m in ("rna", "atac")})
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
    model = co.SCCROSS(mdata, n_hidden=128, lambda_pairs=5.0)
    model.train(max_epochs=25, pretrain_epochs=5, batch_size=128, **FAST)
    assert model.n_pairs_ == {"rna:atac": 1200}
    z = {m: model.get_latent_representation(modality=m) for m in ("rna", "atac")}
    # measured: mixing 0.83, FOSCTTM 0.065
    assert co.metrics.modality_mixing(z) > 0.5
    assert foscttm(z["rna"], z["atac"]) < 0.15


def test_three_modalities():
    torch.set_num_threads(1)
    full = co.datasets.bmmc_multiome()
    mods = {
        "rna": full.mod["rna"][:250].copy(),
        "atac": full.mod["atac"].copy(),
        "gex": full.mod["rna"][250:].copy(),
    }
    model = _train(_mudata(mods), epochs=3)
    assert model.module.latent_discriminator.head.out_features == 3
    for m, n in (("rna", 250), ("atac", 500), ("gex", 250)):
        assert model.get_latent_representation(m).shape == (n, 16)


def test_same_seed_gives_identical_training():
    torch.set_num_threads(1)
    full = co.datasets.bmmc_multiome()
    runs = [
        _train(_mudata({m: full.mod[m][:200].copy() for m in ("rna", "atac")}), seed=3, epochs=2)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(
        runs[0].get_latent_representation("rna"), runs[1].get_latent_representation("rna")
    )


def test_save_load_round_trip(paired, tmp_path):
    mdata, model = paired
    model.save(tmp_path / "model", overwrite=True)
    loaded = co.SCCROSS.load(tmp_path / "model", adata=mdata)
    for m in ("rna", "atac"):
        np.testing.assert_array_equal(model.get_latent_representation(m), loaded.get_latent_representation(m))
    np.testing.assert_array_equal(
        model.cross_generate("atac", "rna").X, loaded.cross_generate("atac", "rna").X
    )


def test_query_data_uses_stored_transform(paired):
    mdata, model = paired
    query = mdata.mod["atac"][:50].copy()
    expected = model.get_latent_representation("atac", indices=np.arange(50))
    shuffled = query[:, np.random.default_rng(0).permutation(query.n_vars)].copy()
    np.testing.assert_allclose(model.get_latent_representation("atac", adata=shuffled), expected, atol=1e-5)
    with pytest.raises(ValueError, match="different features"):
        model.get_latent_representation("atac", adata=query[:, :100].copy())


def test_data_discriminator_trains_the_decoders_only(paired):
    mdata, model = paired
    module = model.module
    X = {m: torch.as_tensor(mdata.mod[m].X[:32].toarray(), dtype=torch.float32) for m in ("rna", "atac")}
    tensors = {m: {"x": x, "batch": torch.zeros(32, 1, dtype=torch.long)} for m, x in X.items()}
    module.zero_grad(set_to_none=True)
    encoded = module.inference(tensors)
    views = module.cross_generated_views(tensors, encoded, module.generative(tensors, encoded, stage=2))
    # the reference side (decoded from each modality's own latents) is a constant for the generator
    assert not any(real.requires_grad for real, _ in views.values())
    fooled = sum(module.data_discriminator[k](fake).sum() for k, (_, fake) in views.items())
    fooled.backward()
    for m in ("rna", "atac"):
        assert module.decoder[m][0].weight.grad.abs().sum() > 0
        assert module.aligner_decoder[m].mean.weight.grad.abs().sum() > 0
        assert all(p.grad is None for p in module.encoder[m].parameters())
        assert all(p.grad is None for p in module.aligner_encoder[m].parameters())
    module.zero_grad(set_to_none=True)


def test_sccross_decoders_start_at_the_data_marginal(paired):
    mdata, _ = paired
    untrained = co.SCCROSS(mdata, n_hidden=64, n_latent=16, n_components=20)
    X = mdata.mod["rna"].X
    head = untrained.module.likelihood["rna"]
    totals = np.asarray(X.sum(0)).ravel()
    share = (totals + 1) / (totals.sum() + X.shape[1])
    np.testing.assert_allclose(torch.softmax(head.linear.bias, -1).detach().numpy(), share, rtol=1e-5)


def test_translation_loss_decodes_each_modality_from_the_other(paired):
    mdata, model = paired
    module = model.module
    X = {m: torch.as_tensor(mdata.mod[m].X[:32].toarray(), dtype=torch.float32) for m in ("rna", "atac")}
    pairs = {
        ("rna", "atac"): {m: {"x": x, "batch": torch.zeros(32, 1, dtype=torch.long)} for m, x in X.items()}
    }
    module.zero_grad(set_to_none=True)
    losses = module.paired_losses(pairs)
    assert set(losses) == {"pairs", "translation"}
    assert torch.isfinite(losses["translation"]) and losses["translation"] > 0
    losses["translation"].backward()
    for m in ("rna", "atac"):  # each modality's decoder and the other's encoder both learn from it
        assert module.decoder[m][0].weight.grad.abs().sum() > 0
        assert module.encoder[m].mean.weight.grad.abs().sum() > 0
    module.zero_grad(set_to_none=True)
    module.lambda_translation = 0.0
    try:
        assert set(module.paired_losses(pairs)) == {"pairs"}
    finally:
        module.lambda_translation = 1.0


def test_cross_generate(paired):
    mdata, model = paired
    out = model.cross_generate(source="atac", target="rna")
    assert out.shape == (500, mdata.mod["rna"].n_vars)
    assert list(out.obs_names) == list(mdata.mod["atac"].obs_names)
    assert list(out.var_names) == list(mdata.mod["rna"].var_names)
    assert np.all(out.X >= 0)
    np.testing.assert_array_equal(out.X, model.cross_generate(source="atac", target="rna").X)
    counts = model.cross_generate(
        source="rna", target="atac", indices=[0, 1, 2], n_samples=2, output="counts"
    )
    assert counts.shape == (6, mdata.mod["atac"].n_vars) and sp.issparse(counts.X)
    assert list(counts.obs_names[:2]) == [
        f"{mdata.mod['rna'].obs_names[0]}-0",
        f"{mdata.mod['rna'].obs_names[0]}-1",
    ]
    # generated RNA must carry cell-type signal: per-gene Pearson with the real RNA above zero
    real = np.log1p(mdata.mod["rna"].X.toarray() / mdata.mod["rna"].X.sum(1).A * 1e4)
    generated = model.cross_generate(source="atac", target="rna", output="normalized").X
    assert np.nanmean(co.metrics.pearson_per_feature(real, generated)) > 0.05


def test_simulate(paired):
    _, model = paired
    sim = model.simulate(groupby="cell_type", group="CD14+ Mono", n_cells=40, seed=1)
    assert set(sim.mod) == {"rna", "atac"}
    assert sim.mod["rna"].shape[0] == sim.mod["atac"].shape[0] == 40
    assert list(sim.mod["rna"].obs_names) == list(sim.mod["atac"].obs_names)
    again = model.simulate(groupby="cell_type", group="CD14+ Mono", n_cells=40, seed=1)
    np.testing.assert_array_equal(sim.mod["rna"].X.toarray(), again.mod["rna"].X.toarray())
    with pytest.raises(ValueError, match="no cells"):
        model.simulate(groupby="cell_type", group="Neuron", n_cells=5)


def test_simulate_posterior_from_one_modality(paired):
    _, model = paired
    kwargs = {"groupby": "cell_type", "group": "CD14+ Mono", "n_cells": 60, "output": "mean", "seed": 2}
    both = model.simulate(**kwargs)
    rna_only = model.simulate(**kwargs, posterior_from="rna")
    assert rna_only.mod["atac"].shape == both.mod["atac"].shape == (60, model.adata.mod["atac"].n_vars)
    # the same component and noise draws from a different mixture: other latents, other profiles
    assert not np.allclose(rna_only.mod["rna"].X, both.mod["rna"].X)
    np.testing.assert_array_equal(
        rna_only.mod["rna"].X, model.simulate(**kwargs, posterior_from=["rna"]).mod["rna"].X
    )
    detected = model.simulate(**{**kwargs, "output": "detection"}, posterior_from="rna")
    assert 0 <= detected.mod["atac"].X.min() and detected.mod["atac"].X.max() <= 1
    with pytest.raises(ValueError, match="unknown modality"):
        model.simulate(**kwargs, posterior_from="adt")


def test_perturb(paired):
    mdata, model = paired
    genes = list(mdata.mod["rna"].var_names[:30])
    scores = model.perturb(
        "rna", genes=genes, groupby="cell_type", perturb_group="CD14+ Mono", reference_group="CD8+ T"
    )
    assert scores.shape[0] == 30 and set(scores.index) == set(genes)
    assert {"score_up", "score_down", "best_score", "rank"} <= set(scores.columns)
    assert np.isfinite(scores[["score_up", "score_down"]].to_numpy()).all()
    assert scores["rank"].tolist() == list(range(1, 31))
    again = model.perturb(
        "rna", genes=genes, groupby="cell_type", perturb_group="CD14+ Mono", reference_group="CD8+ T"
    )
    np.testing.assert_array_equal(scores["score_up"].to_numpy(), again["score_up"].to_numpy())
    _, generated = model.perturb(
        "rna",
        genes=genes[:5],
        groupby="cell_type",
        perturb_group="CD14+ Mono",
        reference_group="CD8+ T",
        target="atac",
    )
    assert generated.shape == (
        (mdata.mod["rna"].obs["cell_type"] == "CD14+ Mono").sum(),
        mdata.mod["atac"].n_vars,
    )
    assert "unperturbed" in generated.layers
    with pytest.raises(ValueError, match="not features"):
        model.perturb(
            "rna",
            genes=["NOT_A_GENE"],
            groupby="cell_type",
            perturb_group="CD14+ Mono",
            reference_group="CD8+ T",
        )


def test_perturb_scores_match_brute_force(paired):
    """Only expressed (cell, gene) pairs are re-encoded; the scores must equal a full recompute."""
    mdata, model = paired
    genes = list(mdata.mod["rna"].var_names[:4])
    kwargs = {"groupby": "cell_type", "perturb_group": "CD14+ Mono", "reference_group": "CD8+ T"}
    scores = model.perturb("rna", genes=genes, direction="up", **kwargs)
    labels = mdata.mod["rna"].obs["cell_type"].to_numpy()
    module = model.module
    with torch.no_grad():
        x = torch.as_tensor(mdata.mod["rna"].X[labels == "CD14+ Mono"].toarray(), dtype=torch.float32)
        # the module's encodings of the perturbed cells live in the aligners' space, before the
        # regional alignment of the returned embedding: the reference is read there too
        reference = torch.as_tensor(
            model._latent("rna", None, np.flatnonzero(labels == "CD8+ T"), aligned=False)
        )
        direction = torch.nn.functional.normalize(reference, dim=-1).mean(0)
        neighbours = module.graph_neighbour_mean("rna", x)
        for gene in genes:
            perturbed = x.clone()
            column = mdata.mod["rna"].var_names.get_loc(gene)
            perturbed[:, column] *= 1.5
            z = torch.nn.functional.normalize(
                module.encode_with_neighbours("rna", perturbed, neighbours), dim=-1
            )
            expected = 1.0 - float(z.mean(0) @ direction)
            assert scores.loc[gene, "distance_up"] == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------------------- errors
def _snapshot(mdata):
    return {m: (a.X.copy(), list(a.obs.columns), list(a.layers)) for m, a in mdata.mod.items()}


def _assert_unchanged(mdata, snapshot):
    for m, (X, columns, layers) in snapshot.items():
        now = mdata.mod[m].X
        assert np.array_equal(now.toarray(), X.toarray(), equal_nan=True)
        assert list(mdata.mod[m].obs.columns) == columns and list(mdata.mod[m].layers) == layers


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (None, {"modalities": ["rna", "protein"]}, "not in the MuData"),
        ("fractional", {}, "non-integer values.*raw counts"),
        ("nan", {}, "NaN/inf"),
        ("all-empty", {}, "zero counts in all 500 cells"),
        (None, {"modalities": ["rna", "atac"], "likelihoods": {"rna": "poisson"}}, "choose one of"),
    ],
)
def test_setup_errors_leave_input_unchanged(mutate, kwargs, message):
    mdata = co.datasets.bmmc_multiome()
    X = mdata.mod["rna"].X.astype(np.float32).toarray()
    if mutate == "fractional":
        X[0, :5] += 0.5
    elif mutate == "nan":
        X[1, 0] = np.nan
    elif mutate == "all-empty":
        X[:] = 0
    mdata.mod["rna"].X = sp.csr_matrix(X)
    snapshot = _snapshot(mdata)
    with pytest.raises(ValueError, match=message):
        co.SCCROSS.setup_mudata(mdata, **{"modalities": ["rna", "atac"], "gene_annotation": "hg38", **kwargs})
    _assert_unchanged(mdata, snapshot)


def test_generation_errors(paired):
    _, model = paired
    with pytest.raises(ValueError, match="unknown modality"):
        model.cross_generate(source="atac", target="protein")
    with pytest.raises(ValueError, match="not a column"):
        model.perturb("rna", groupby="celltype", perturb_group="a", reference_group="b")
    with pytest.raises(ValueError, match="is not in"):
        model.perturb("rna", groupby="cell_type", perturb_group="Neuron", reference_group="CD8+ T")


def test_mnn_anchor_loss_pulls_prior_neighbours_together_unless_truly_paired():
    mdata = co.datasets.bmmc_multiome()
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
    module = co.SCCROSS(mdata, n_hidden=16, n_latent=4, n_components=5).module
    generator = torch.Generator().manual_seed(0)
    prior = torch.randn(40, 3, generator=generator)
    shuffled = prior[torch.randperm(40, generator=generator)]
    same = {"rna": prior, "atac": shuffled}
    shifted = {"rna": prior, "atac": shuffled + 1.0}
    # a constant offset between the modalities costs, whatever the anchors' own distances
    assert module.mnn_anchor_loss(shifted, same).item() > module.mnn_anchor_loss(same, same).item() + 0.1
    assert module.mnn_anchor_loss(shifted, same, skip={("rna", "atac")}).item() == 0.0
    # with one neighbour the anchors are the same cells, found by prior distance, not row order
    module.n_anchor_neighbours = 1
    assert module.mnn_anchor_loss(same, same).item() == pytest.approx(0.0, abs=1e-6)


def test_training_split_one_more_than_a_batch_trains():
    """257 training cells with batch size 256 left a one-cell batch that BatchNorm rejects."""
    torch.set_num_threads(1)
    full = co.datasets.bmmc_multiome()
    mdata = _mudata({m: full.mod[m][:286].copy() for m in ("rna", "atac")})
    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
    model = co.SCCROSS(mdata, n_hidden=16, n_latent=4, n_components=5)
    model.train(max_epochs=2, pretrain_epochs=1, **FAST)  # 10% validation: 257 training cells
    assert np.isfinite(model.get_latent_representation("rna")).all()


def test_perturb_refuses_the_same_group_twice(paired):
    _, model = paired
    with pytest.raises(ValueError, match="both 'CD8\\+ T'"):
        model.perturb("rna", groupby="cell_type", perturb_group="CD8+ T", reference_group="CD8+ T")


def test_setup_reads_the_genome_from_var_and_refuses_the_wrong_one():
    mdata = co.datasets.bmmc_multiome()  # 10x wrote var["genome"] = "GRCh38" for the genes
    snapshot = _snapshot(mdata)
    with pytest.raises(ValueError, match="look like hg38; pass gene_annotation='hg38'"):
        co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="GRCm38")
    _assert_unchanged(mdata, snapshot)
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"])
    assert (
        co.SCCROSS._get_most_recent_anndata_manager(mdata).registry["setup_args"]["gene_annotation"] == "hg38"
    )


def test_pairs_follow_cell_names_even_when_obsmap_is_stale():
    """A modality filtered in place without mdata.update() used to pair 292 of 299 cells wrongly."""
    import scanpy as sc

    from crossomics.model._sccross_inputs import pair_rows

    mdata = co.datasets.bmmc_multiome()[:300].copy()
    atac = mdata.mod["atac"]
    first_counts = atac.X[0].copy()
    atac.X[0] = 0  # a cell without ATAC counts, filtered the way the error hint suggests
    sc.pp.filter_cells(atac, min_counts=1)  # in place, no mdata.update(): obsmap is stale
    assert atac.n_obs == 299 and first_counts.sum() > 0
    pairs = pair_rows(dict(mdata.mod), ["rna", "atac"])
    rows_rna, rows_atac = pairs[("rna", "atac")]
    assert len(rows_rna) == 299
    assert list(mdata.mod["rna"].obs_names[rows_rna]) == list(atac.obs_names[rows_atac])
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
    model = co.SCCROSS(mdata, n_hidden=16, n_latent=4, n_components=8, n_graph_reference=200)
    model.train(max_epochs=1, pretrain_epochs=0, batch_size=128, **FAST)
    assert model.n_pairs_ == {"rna:atac": 299}


def test_missing_batches_and_empty_modalities_are_clear_errors():
    mdata = co.datasets.bmmc_multiome()
    batches = mdata.mod["rna"].obs["batch"].astype(object)
    batches.iloc[3] = np.nan
    mdata.mod["rna"].obs["batch"] = batches
    snapshot = _snapshot(mdata)
    with pytest.raises(ValueError, match=r"1 cells of mdata.mod\['rna'\] have no batch in .obs\['batch'\]"):
        co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38", batch_keys="batch")
    _assert_unchanged(mdata, snapshot)
    empty = _mudata({"rna": mdata.mod["rna"][:0].copy(), "atac": mdata.mod["atac"].copy()})
    with pytest.raises(ValueError, match="modality 'rna' has 0 cells and 600 features"):
        co.SCCROSS.setup_mudata(empty, modalities=["rna", "atac"], gene_annotation="hg38")


def test_pairing_can_be_turned_off():
    mdata = co.datasets.bmmc_multiome()[:200].copy()
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38", paired=False)
    model = co.SCCROSS(mdata, n_hidden=16, n_latent=4, n_components=8, n_graph_reference=200)
    model.train(max_epochs=1, pretrain_epochs=0, batch_size=128, **FAST)
    assert model.n_pairs_ == {}
    with pytest.raises(ValueError, match="paired='yes'; pass True"):
        co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38", paired="yes")


def test_explicit_pairing_equals_pairing_by_name(tmp_path):
    """Cells named differently per modality pair through an explicit table, exactly as if they
    shared names; bad tables name the problem."""
    source = co.datasets.bmmc_multiome()[:200].copy()
    rna, atac = source.mod["rna"], source.mod["atac"].copy()
    paired_cells = np.arange(150)
    by_name = atac.copy()
    by_name.obs_names = [n if i in paired_cells else f"other_{n}" for i, n in enumerate(atac.obs_names)]
    renamed = atac.copy()
    renamed.obs_names = [f"atac_{n}" for n in atac.obs_names]
    table = pd.DataFrame({"rna": rna.obs_names[paired_cells], "atac": renamed.obs_names[paired_cells]})

    def train(mdata, **setup):
        scvi.settings.seed = 0
        co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38", **setup)
        model = co.SCCROSS(
            mdata, n_hidden=16, n_latent=4, n_components=8, n_graph_reference=200, gene_sets=None
        )
        model.train(max_epochs=3, pretrain_epochs=1, batch_size=64, **FAST)
        return model

    explicit = train(_mudata({"rna": rna.copy(), "atac": renamed.copy()}), paired=table)
    named = train(_mudata({"rna": rna.copy(), "atac": by_name.copy()}))
    assert explicit.n_pairs_ == named.n_pairs_ == {"rna:atac": 150}
    np.testing.assert_allclose(
        explicit.get_latent_representation("atac"), named.get_latent_representation("atac"), atol=1e-5
    )
    explicit.save(tmp_path / "explicit")  # the pairing is kept in the registry as plain lists
    loaded = co.SCCROSS.load(tmp_path / "explicit", adata=explicit.adata)
    np.testing.assert_array_equal(
        loaded.get_latent_representation("atac"), explicit.get_latent_representation("atac")
    )
    mdata = _mudata({"rna": rna.copy(), "atac": renamed.copy()})
    for bad, message in [
        (table.rename(columns={"atac": "adt"}), r"columns \['rna', 'adt'\].*unknown: \['adt'\]"),
        (table.assign(atac=rna.obs_names[paired_cells]), r"150 cells that are not in mdata.mod\['atac'\]"),
        (pd.concat([table, table.iloc[:1]]), r"names cells of modality 'rna' twice"),
        ({"rna": ["a", "b"], "atac": ["c"]}, r"differ in length"),
    ]:
        with pytest.raises(ValueError, match=message):
            co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38", paired=bad)
    assert not any(c.startswith("_scvi") for m in mdata.mod for c in mdata.mod[m].obs.columns)


def test_batch_categories_without_cells_are_named_at_setup():
    """An unused category would become a batch whose decoder parameters never train."""
    mdata = co.datasets.bmmc_multiome()
    batches = mdata["rna"].obs["batch"].astype(str)
    mdata["rna"].obs["batch"] = pd.Categorical(batches, categories=[*batches.unique(), "ghost"])
    with pytest.warns(UserWarning, match=r"categories without cells: \['ghost'\].*remove_unused_categories"):
        co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38", batch_keys="batch")


def test_zero_count_cells_are_left_out_of_their_modality_only():
    """Cells without ATAC counts are dropped from ATAC, with a warning: the model trains exactly
    as on data where the user removed them from ATAC first, keeps them in RNA, pairs the rest,
    and returns NaN for their ATAC outputs."""
    empty_rows = np.array([3, 10, 57])
    base = co.datasets.bmmc_multiome()[:300].copy()
    atac = base.mod["atac"].X.tolil()
    atac[empty_rows] = 0
    base.mod["atac"].X = atac.tocsr()
    base.mod["atac"].X.eliminate_zeros()
    filtered = base.copy()
    keep = np.setdiff1d(np.arange(300), empty_rows)
    filtered = _mudata({"rna": filtered.mod["rna"], "atac": filtered.mod["atac"][keep].copy()})
    atac_before = base.mod["atac"].X.copy()

    def train(mdata):
        scvi.settings.seed = 0
        co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
        model = co.SCCROSS(
            mdata, n_hidden=16, n_latent=4, n_components=8, n_graph_reference=200, gene_sets=None
        )
        model.train(max_epochs=4, pretrain_epochs=2, batch_size=64, **FAST)
        return model

    with pytest.warns(
        UserWarning, match=r"3 of 300 cells have zero counts .*leaves them out of modality 'atac'"
    ):
        dropped = train(base)
    kept = train(filtered)
    assert dropped.n_pairs_ == kept.n_pairs_ == {"rna:atac": 297}
    np.testing.assert_allclose(
        dropped.get_latent_representation(modality="rna"),
        kept.get_latent_representation(modality="rna"),
        atol=1e-5,
    )
    with pytest.warns(UserWarning, match=r"3 of 300 cells have zero counts in modality 'atac'"):
        z_atac = dropped.get_latent_representation(modality="atac")
    assert np.isnan(z_atac[empty_rows]).all()
    np.testing.assert_allclose(z_atac[keep], kept.get_latent_representation(modality="atac"), atol=1e-5)
    with pytest.warns(UserWarning, match="generated rows are NaN"):
        rna_from_atac = dropped.cross_generate(source="atac", target="rna")
    assert rna_from_atac.shape == (300, base.mod["rna"].n_vars)
    assert np.isnan(rna_from_atac.X[empty_rows]).all() and np.isfinite(rna_from_atac.X[keep]).all()
    simulated = dropped.simulate(
        groupby="cell_type", group=str(base.mod["atac"].obs["cell_type"].iloc[3]), n_cells=20
    )
    assert all(np.isfinite(simulated.mod[m].X.toarray()).all() for m in simulated.mod)
    assert base.mod["atac"].n_obs == 300 and (base.mod["atac"].X != atac_before).nnz == 0


def test_train_takes_scvi_split_arguments():
    """train_size is the complement of validation_size (identical training); an in-order split
    holds out each modality's last cells."""
    histories = []
    for split in ({"train_size": 0.9}, {"validation_size": 0.1}):
        mdata = co.datasets.bmmc_multiome()[:120].copy()
        scvi.settings.seed = 0
        co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
        model = co.SCCROSS(
            mdata, n_hidden=16, n_latent=4, n_components=8, n_graph_reference=60, gene_sets=None
        )
        model.train(max_epochs=2, pretrain_epochs=1, batch_size=32, **split, **FAST)
        histories.append(model.history["validation_loss"].to_numpy())
    np.testing.assert_array_equal(*histories)
    from crossomics.train._multimodal_data import MultiModalDataModule

    data = MultiModalDataModule(
        model.adata_manager,
        rows={"rna": np.arange(120)},
        priors={},
        validation_size=0.25,
        shuffle_set_split=False,
    )
    assert list(data.validation_rows["rna"]) == list(range(90, 120))


def test_view_anndata_setup_works(paired, capsys):
    """scvi-tools' view_anndata_setup calls rich.pretty, which crossomics imports for it."""
    _, model = paired
    model.view_anndata_setup()
    assert "modalities" in capsys.readouterr().out


def test_latents_of_every_modality_stack_into_one_anndata(paired):
    mdata, model = paired
    joint = model.get_latent_representation()
    assert joint.shape == (1000, 16) and list(joint.obs["modality"].cat.categories) == ["rna", "atac"]
    np.testing.assert_array_equal(joint.X[:500], model.get_latent_representation("rna"))
    np.testing.assert_array_equal(joint.obsm["X_sccross"][500:], model.get_latent_representation("atac"))
    assert joint.obs_names[0] == "rna:" + mdata.mod["rna"].obs_names[0] and joint.obs_names.is_unique
    assert (joint.obs["cell"].to_numpy()[:500] == mdata.mod["rna"].obs_names).all()
    assert "cell_type" in joint.obs and not any(c.startswith("_scvi") for c in joint.obs)
    mean, variance = model.get_latent_representation("atac", return_dist=True)
    np.testing.assert_array_equal(mean, model.get_latent_representation("atac"))
    assert variance.shape == mean.shape and (variance > 0).all()
    with_dist = model.get_latent_representation(return_dist=True)
    np.testing.assert_array_equal(with_dist.obsm["X_sccross_var"][500:], variance)
    with pytest.raises(ValueError, match="indices= selects rows of one modality"):
        model.get_latent_representation(indices=[0, 1])
