"""Every public method with the model on a CUDA device (skipped where there is none).

``scripts/gpu_check.sh`` runs these plus a timing of one mouse cortex epoch.
"""

from __future__ import annotations

import numpy as np
import pytest
import scvi
import torch

import crossomics as co
from crossomics.metrics import foscttm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
FAST = {"enable_progress_bar": False, "enable_model_summary": False}


@pytest.fixture(scope="module")
def cuda_model():
    mdata = co.datasets.bmmc_multiome()
    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
    model = co.SCCROSS(mdata, n_hidden=64, n_latent=16, n_components=20)
    model.train(max_epochs=15, pretrain_epochs=5, batch_size=128, accelerator="gpu", devices=1, **FAST)
    assert next(model.module.parameters()).is_cuda
    return mdata, model


def test_training_and_latents_on_cuda(cuda_model):
    _, model = cuda_model
    z_rna = model.get_latent_representation(modality="rna")
    z_atac = model.get_latent_representation(modality="atac")
    assert np.isfinite(z_rna).all() and np.isfinite(z_atac).all()
    assert foscttm(z_rna, z_atac) < 0.35


@pytest.mark.parametrize("output", ["counts", "normalized", "mean", "detection"])
def test_every_generation_output_on_cuda(cuda_model, output):
    mdata, model = cuda_model
    generated = model.cross_generate("atac", "rna", output=output, seed=0)
    values = generated.X.toarray() if hasattr(generated.X, "toarray") else np.asarray(generated.X)
    assert generated.shape == mdata["rna"].shape and np.isfinite(values).all()
    # draws are made on the CPU, so a seed gives the same cells on any device
    again = model.cross_generate("atac", "rna", output=output, seed=0)
    again_values = again.X.toarray() if hasattr(again.X, "toarray") else np.asarray(again.X)
    np.testing.assert_array_equal(values, again_values)


def test_simulate_and_perturb_on_cuda(cuda_model):
    mdata, model = cuda_model
    group = mdata["rna"].obs["cell_type"].value_counts().index[0]
    simulated = model.simulate(groupby="cell_type", group=group, n_cells=50)
    assert all(
        np.isfinite(simulated[m].X.toarray() if hasattr(simulated[m].X, "toarray") else simulated[m].X).all()
        for m in simulated.mod
    )
    types = mdata["rna"].obs["cell_type"].value_counts().index[:2]
    scores = model.perturb(
        "rna",
        genes=list(mdata["rna"].var_names[:20]),
        groupby="cell_type",
        perturb_group=types[0],
        reference_group=types[1],
    )
    assert np.isfinite(scores["best_score"]).all()


def test_minnet_on_cuda():
    mdata = co.datasets.bmmc_multiome()
    scvi.settings.seed = 0
    co.MINNET.setup_mudata(mdata, modalities=["rna", "atac"], labels_key="cell_type", gene_annotation="hg38")
    model = co.MINNET(mdata)
    model.train(max_epochs=5, accelerator="gpu", devices=1, enable_progress_bar=False)
    z = model.get_latent_representation(modality="atac")
    assert np.isfinite(z).all()
