import mudata as md
import numpy as np
import pytest
import scipy.sparse as sp
import scvi

import crossomics as co

CELL_TYPES = {
    "CD4 T": 506,
    "Mono": 438,
    "CD8 T": 264,
    "NK": 154,
    "B": 108,
    "other T": 78,
    "DC": 29,
    "other": 23,
}


@pytest.fixture(scope="module")
def mosaic() -> md.MuData:
    return co.datasets.pbmc_mosaic()


def test_shapes_and_counts(mosaic):
    assert mosaic.shape == (1600, 724)
    assert mosaic["rna"].shape == (1200, 500)
    assert mosaic["adt"].shape == (1200, 224)
    for modality in ("rna", "adt"):
        X = mosaic[modality].X
        assert sp.isspmatrix_csr(X) and X.dtype == np.int32
        assert X.data.min() > 0
        assert (np.asarray(X.sum(axis=1)).ravel() > 0).all()
    assert mosaic["adt"].var_names[:3].tolist() == ["cd39", "cd107a", "cd62p"]
    assert mosaic.uns["source"]["license"] == "MIT"


def test_batches_are_a_mosaic(mosaic):
    per_batch = {m: mosaic[m].obs["batch"].value_counts().to_dict() for m in ("rna", "adt")}
    assert per_batch["rna"] == {"p1_0": 400, "p3_0": 400, "p4_0": 400}
    assert per_batch["adt"] == {"p2_0": 400, "p3_0": 400, "p4_0": 400}
    assert mosaic.obs["batch"].value_counts().to_dict() == dict.fromkeys(
        ["p1_0", "p2_0", "p3_0", "p4_0"], 400
    )


def test_cell_types(mosaic):
    assert mosaic.obs["cell_type"].value_counts().to_dict() == CELL_TYPES
    for modality in ("rna", "adt"):
        obs = mosaic[modality].obs
        np.testing.assert_array_equal(
            obs["cell_type"].astype(str), mosaic.obs.loc[obs.index, "cell_type"].astype(str)
        )


def test_pairing(mosaic):
    rna_rows, adt_rows = np.asarray(mosaic.obsmap["rna"]), np.asarray(mosaic.obsmap["adt"])
    paired = (rna_rows > 0) & (adt_rows > 0)
    assert paired.sum() == 800
    assert ((rna_rows > 0) & (adt_rows == 0)).sum() == 400
    assert ((rna_rows == 0) & (adt_rows > 0)).sum() == 400
    assert set(mosaic.obs.loc[paired, "batch"]) == {"p3_0", "p4_0"}
    # a pair is the same cell in both modalities, with the same label
    rna_obs = mosaic["rna"].obs.iloc[rna_rows[paired] - 1]
    adt_obs = mosaic["adt"].obs.iloc[adt_rows[paired] - 1]
    np.testing.assert_array_equal(rna_obs.index, adt_obs.index)
    np.testing.assert_array_equal(rna_obs["cell_type"].astype(str), adt_obs["cell_type"].astype(str))


def test_sccross_integrates_it_as_is():
    mosaic = co.datasets.pbmc_mosaic()  # registration adds columns: keep the shared fixture clean
    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(mosaic, modalities=["rna", "adt"], batch_keys="batch")
    model = co.SCCROSS(mosaic, n_latent=8)
    assert model.kinds_ == {"rna": "rna", "adt": "protein"}
    # the antibodies reach the MNN prior through their genes (70 antibodies on 66 RNA genes)
    views = co.pp.common_gene_views(mosaic, ["rna", "adt"])
    assert views["adt"].n_vars == 66
    model.train(max_epochs=2, batch_size=128, enable_progress_bar=False)
    assert model.n_pairs_ == {"rna:adt": 800}
    for modality in ("rna", "adt"):
        latent = model.get_latent_representation(modality)
        assert latent.shape == (1200, 8)
        assert np.isfinite(latent).all()
