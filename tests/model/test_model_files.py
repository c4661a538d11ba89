"""Saved models are portable artifacts: loaded without data, on other cells, in any feature order,
and never by unpickling objects (tiny real data: BMMC multiome, 500 cells)."""

from __future__ import annotations

import mudata as md
import numpy as np
import pytest
import scvi
import torch

import crossomics as co

FAST = {"enable_progress_bar": False, "enable_model_summary": False}
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def _mudata(mods: dict) -> md.MuData:
    with md.set_options(pull_on_update=False):
        return md.MuData(mods)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained SCCROSS, its data and its saved directory."""
    torch.set_num_threads(1)
    mdata = co.datasets.bmmc_multiome()
    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
    model = co.SCCROSS(mdata, n_hidden=32, n_latent=8, n_components=10, n_graph_reference=400)
    model.train(max_epochs=4, pretrain_epochs=2, batch_size=128, **FAST)
    path = tmp_path_factory.mktemp("sccross") / "model"
    model.save(path)
    return model, mdata, path


def _assert_same_outputs(model, loaded, rows=None, query=None):
    """Latents and cross-generation of ``loaded`` (its own data, or ``query``) equal the original's."""
    for m in ("rna", "atac"):
        if query is None and m not in loaded._data:
            continue
        expected = model.get_latent_representation(m, indices=rows)
        got = loaded.get_latent_representation(m, adata=query)
        np.testing.assert_allclose(got, expected, **TOLERANCE)
    for source, target in (("atac", "rna"), ("rna", "atac")):
        if query is None and source not in loaded._data:
            continue
        expected = model.cross_generate(source, target, indices=rows)
        got = loaded.cross_generate(source, target, adata=query)
        # columns are the model's features in training order, each with its own values
        assert list(got.var_names) == list(model.adata.mod[target].var_names)
        assert list(got.obs_names) == list(expected.obs_names)
        np.testing.assert_allclose(got.X, expected.X, **TOLERANCE)


def test_load_without_data(saved):
    model, mdata, path = saved
    loaded = co.SCCROSS.load(path)
    assert loaded.adata is None and loaded.is_trained_
    assert loaded.mnn_prior_["rna"].shape == model.mnn_prior_["rna"].shape
    _assert_same_outputs(model, loaded, query=mdata)
    with pytest.raises(ValueError, match="loaded without it.*pass adata="):
        loaded.get_latent_representation("rna")
    with pytest.raises(RuntimeError, match="loaded from a file"):
        loaded.train(max_epochs=1)
    # perturbation and simulation take the cells as an argument
    kwargs = {"groupby": "cell_type", "perturb_group": "CD14+ Mono", "reference_group": "CD8+ T"}
    genes = list(mdata.mod["rna"].var_names[:5])
    np.testing.assert_allclose(
        loaded.perturb("rna", genes=genes, adata=mdata, **kwargs)["score_up"],
        model.perturb("rna", genes=genes, **kwargs)["score_up"],
        rtol=1e-4,
        atol=1e-6,
    )
    sim = {"groupby": "cell_type", "group": "CD14+ Mono", "n_cells": 20, "output": "mean", "seed": 1}
    np.testing.assert_allclose(
        loaded.simulate(**sim, mdata=mdata).mod["rna"].X, model.simulate(**sim).mod["rna"].X, **TOLERANCE
    )


def test_load_with_300_other_cells(saved):
    model, mdata, path = saved
    rows = np.sort(np.random.default_rng(1).choice(mdata.n_obs, 300, replace=False))
    subset = _mudata({m: mdata.mod[m][rows].copy() for m in ("rna", "atac")})
    loaded = co.SCCROSS.load(path, adata=subset)
    # the graph reference is the training cells' (from the file), not re-derived from these cells
    reference = model.module.graph["rna"].reference
    assert loaded.module.graph["rna"].reference.shape == reference.shape == (400, 10)
    torch.testing.assert_close(loaded.module.graph["rna"].reference, reference)
    _assert_same_outputs(model, loaded, rows=rows)


def test_load_with_features_permuted(saved):
    model, mdata, path = saved
    rng = np.random.default_rng(2)
    permuted = _mudata(
        {m: mdata.mod[m][:, rng.permutation(mdata.mod[m].n_vars)].copy() for m in ("rna", "atac")}
    )
    assert list(permuted.mod["rna"].var_names) != list(mdata.mod["rna"].var_names)
    loaded = co.SCCROSS.load(path, adata=permuted)
    _assert_same_outputs(model, loaded)
    # the generated var table is the data's, re-ordered with its names
    generated = loaded.cross_generate("atac", "rna")
    assert (generated.var.index == model.adata.mod["rna"].var_names).all()


def test_load_with_only_the_atac_anndata(saved):
    model, mdata, path = saved
    atac = mdata.mod["atac"][:120].copy()
    loaded = co.SCCROSS.load(path, adata=atac)
    assert list(loaded._data) == ["atac"]
    _assert_same_outputs(model, loaded, rows=np.arange(120))
    with pytest.raises(ValueError, match="holds no 'rna' data"):
        loaded.cross_generate("rna", "atac")


def test_same_results_after_every_load(saved):
    model, mdata, path = saved
    first, second = co.SCCROSS.load(path, adata=mdata), co.SCCROSS.load(path)
    kwargs = {"indices": np.arange(40), "output": "counts", "n_samples": 2, "seed": 3}
    expected = model.cross_generate("atac", "rna", **kwargs).X.toarray()
    assert expected.sum() > 0
    np.testing.assert_array_equal(first.cross_generate("atac", "rna", **kwargs).X.toarray(), expected)
    np.testing.assert_array_equal(
        second.cross_generate("atac", "rna", adata=mdata, **kwargs).X.toarray(), expected
    )


def test_missing_or_extra_features_are_a_clear_error(saved):
    _, mdata, path = saved
    fewer = _mudata({"rna": mdata.mod["rna"][:, 5:].copy(), "atac": mdata.mod["atac"]})
    with pytest.raises(ValueError, match=r"5 of the model's 600 'rna' features are missing \(e.g. \['"):
        co.SCCROSS.load(path, adata=fewer)
    renamed = mdata.mod["atac"][:50].copy()
    renamed.var_names = ["chr1-1-2", *renamed.var_names[1:]]
    loaded = co.SCCROSS.load(path)
    with pytest.raises(
        ValueError,
        match=r"1 of the model's .* missing .* 1 of its .* not the model's \(e.g. \['chr1-1-2'\]\)",
    ):
        loaded.get_latent_representation("atac", adata=renamed)


class _Payload:
    """Unpickling this object creates ``marker``: the stand-in for code planted in a model file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(directory, marker) -> None:
    path = directory / "model.pt"
    payload = torch.load(path, weights_only=True)
    payload["hyperparameters"]["n_hidden"] = _Payload(marker)
    torch.save(payload, path)


@pytest.mark.parametrize("model_name", ["SCCROSS", "MINNET"])
def test_a_planted_object_is_refused_and_never_runs(saved, model_name, tmp_path):
    _, mdata, path = saved
    cls = getattr(co, model_name)
    directory = tmp_path / "model"
    if model_name == "SCCROSS":
        torch.save(torch.load(path / "model.pt", weights_only=True), tmp_path / "copy.pt")
        directory.mkdir()
        (tmp_path / "copy.pt").rename(directory / "model.pt")
    else:
        minnet_data = _mudata({m: mdata.mod[m].copy() for m in ("rna", "atac")})
        co.MINNET.setup_mudata(minnet_data, modalities=["rna", "atac"], labels_key="cell_type")
        co.MINNET(minnet_data, n_hidden=16, n_latent=4).save(directory)
    marker = tmp_path / "payload_ran"
    _plant(directory, marker)
    with pytest.raises(ValueError, match="refusing to load .*Nothing in it was run"):
        cls.load(directory)
    assert not marker.exists()
    # the planted object is live: unpickling the file the unsafe way runs it
    torch.load(directory / "model.pt", weights_only=False)
    assert marker.exists()


def test_minnet_loads_without_data_and_aligns_features(saved, tmp_path):
    _, mdata, _ = saved
    data = _mudata({m: mdata.mod[m][:250].copy() for m in ("rna", "atac")})
    scvi.settings.seed = 0
    co.MINNET.setup_mudata(data, modalities=["rna", "atac"], labels_key="cell_type")
    model = co.MINNET(data, n_hidden=16, n_latent=4)
    model.train(max_epochs=2, batch_size=128, **FAST)
    model.save(tmp_path / "minnet")
    loaded = co.MINNET.load(tmp_path / "minnet")
    assert list(loaded.cell_types_) == list(model.cell_types_)
    rna = data.mod["rna"]
    permuted = rna[:, np.random.default_rng(0).permutation(rna.n_vars)].copy()
    for query in (rna, permuted):
        np.testing.assert_allclose(
            loaded.get_latent_representation("rna", adata=query),
            model.get_latent_representation("rna"),
            **TOLERANCE,
        )
    np.testing.assert_array_equal(loaded.predict("rna", adata=rna), model.predict("rna"))
    with pytest.raises(ValueError, match="loaded without it"):
        loaded.get_latent_representation("atac")
    on_atac = co.MINNET.load(tmp_path / "minnet", adata=data.mod["atac"])
    np.testing.assert_allclose(
        on_atac.get_latent_representation("atac"), model.get_latent_representation("atac"), **TOLERANCE
    )


def test_hub_model_round_trip_offline(saved, tmp_path):
    """scvi.hub.HubModel in a local directory: card with data, versions and metrics; same outputs."""
    from scvi.hub import HubModel

    model, mdata, _ = saved
    metrics = {"FOSCTTM": 0.25, "label transfer": 0.5}
    model.to_hub_model(
        tmp_path / "hub", description="BMMC test model", training_data="NeurIPS 2021 BMMC", metrics=metrics
    )
    hub = HubModel(str(tmp_path / "hub"))  # metadata and card read back from the directory
    card = hub.model_card.content
    assert hub.metadata.model_cls_name == "SCCROSS" and hub.metadata.model_parent_module == "crossomics"
    for text in (
        "license: cc-by-4.0",
        "BMMC test model",
        "NeurIPS 2021 BMMC",
        "`atac`: atac, 600 features, 500 training cells",
        f"scvi-tools: {scvi.__version__}",
        f"torch: {torch.__version__}",
        "| FOSCTTM | 0.25 |",
        '"n_latent": 8',
    ):
        assert text in card, text
    hub.load_model(adata=mdata, accelerator="cpu")
    _assert_same_outputs(model, hub.model)
    assert co.SCCROSS.load(str(tmp_path / "hub")).is_trained_
    # with the training data inside, HubModel loads without being given any
    model.to_hub_model(tmp_path / "hub_with_data", save_anndata=True)
    with_data = HubModel(str(tmp_path / "hub_with_data"))
    with_data.load_model(accelerator="cpu")
    np.testing.assert_allclose(
        with_data.model.get_latent_representation("rna"), model.get_latent_representation("rna"), **TOLERANCE
    )
