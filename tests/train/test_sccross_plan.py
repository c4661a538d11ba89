"""SCCROSS training on tiny real data (BMMC multiome): the module's LossOutput, the two stages
and early stopping."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import mudata as md
import numpy as np
import pytest
import scvi
import torch

import crossomics as co

FAST = {"enable_progress_bar": False, "enable_model_summary": False}
VAE = ("encoder.", "decoder.", "likelihood.")
JOINT = ("aligner_encoder.", "aligner_decoder.", "latent_discriminator.", "data_discriminator.")


class _EpochWeights(pl.Callback):
    """The module's parameters after each training epoch (validation sees the same weights)."""

    def __init__(self):
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.states.append({k: p.detach().clone() for k, p in pl_module.module.named_parameters()})


def _model(n_cells: int = 200, **model_kwargs) -> co.SCCROSS:
    torch.set_num_threads(1)
    full = co.datasets.bmmc_multiome()
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({m: full.mod[m][:n_cells].copy() for m in ("rna", "atac")})
    scvi.settings.seed = 0
    co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="hg38")
    return co.SCCROSS(mdata, n_hidden=32, n_latent=8, n_components=10, **model_kwargs)


def _changed(before: dict, after: dict, prefixes: tuple[str, ...]) -> bool:
    names = [k for k in before if k.startswith(prefixes)]
    assert names
    return any(not torch.equal(before[k], after[k]) for k in names)


@pytest.fixture(scope="module")
def module_and_batch():
    model = _model(n_cells=64)
    mdata = model.adata
    tensors = {
        m: {
            "x": torch.as_tensor(mdata.mod[m].X.toarray(), dtype=torch.float32),
            "batch": torch.zeros(64, 1, dtype=torch.long),
            "prior": torch.as_tensor(model.mnn_prior_[m], dtype=torch.float32),
        }
        for m in ("rna", "atac")
    }
    tensors["pairs"] = {
        ("rna", "atac"): {m: {k: v[:32] for k, v in tensors[m].items()} for m in ("rna", "atac")}
    }
    # evaluation mode: no dropout, so equal seeds give equal draws in every call below
    return model.module.eval(), tensors


def test_module_loss_output_adds_every_term_at_its_weight(module_and_batch):
    module, tensors = module_and_batch
    module.lambda_mnn, module.lambda_anchor, module.lambda_pairs, module.lambda_translation = (
        0.3,
        2.0,
        0.7,
        1.5,
    )
    torch.manual_seed(0)
    encoded, decoded, out = module(tensors, generative_kwargs={"stage": 2}, loss_kwargs={"stage": 2})
    terms = out.extra_metrics
    assert set(terms) == {"mnn", "anchor", "pairs", "translation"}
    assert out.n_obs_minibatch == 128
    expected = (
        out.reconstruction_loss["reconstruction"]
        + out.kl_local["kl"]
        + 0.3 * terms["mnn"]
        + 2.0 * terms["anchor"]
        + 0.7 * terms["pairs"]
        + 1.5 * terms["translation"]
    )
    torch.testing.assert_close(out.loss, expected)
    # the truly paired modality pair takes no prior anchors; without its pairs it does
    assert (
        float(terms["anchor"].detach()) == 0
        and min(float(terms[k].detach()) for k in ("mnn", "pairs", "translation")) > 0
    )
    unpaired = {m: tensors[m] for m in ("rna", "atac")}
    _, _, out_unpaired = module(unpaired, generative_kwargs={"stage": 2}, loss_kwargs={"stage": 2})
    terms_unpaired = out_unpaired.extra_metrics
    assert set(terms_unpaired) == {"mnn", "anchor"} and float(terms_unpaired["anchor"].detach()) > 0
    torch.testing.assert_close(
        out_unpaired.loss,
        out_unpaired.reconstruction_loss["reconstruction"]
        + out_unpaired.kl_local["kl"]
        + 0.3 * terms_unpaired["mnn"]
        + 2.0 * terms_unpaired["anchor"],
    )

    generated = module.cross_generated_views(tensors, encoded, decoded)
    module.lambda_adversarial = 0.25
    with_adversarial = module.with_adversarial_loss(out, encoded, generated)
    adversarial = module.generator_adversarial_loss(encoded, generated)
    torch.testing.assert_close(with_adversarial.extra_metrics["adversarial"], adversarial)
    torch.testing.assert_close(with_adversarial.loss, out.loss + 0.25 * adversarial)
    torch.testing.assert_close(
        module.discriminator_loss(encoded, generated), 0.25 * module.adversarial_losses(encoded, generated)
    )


def test_stage_one_loss_is_the_per_modality_elbo(module_and_batch):
    module, tensors = module_and_batch
    _, decoded, out = module(tensors, generative_kwargs={"stage": 1}, loss_kwargs={"stage": 1})
    assert out.extra_metrics == {}
    assert set(decoded["rna"]) == {"params"}  # decoded from z_k, the aligners are not used
    torch.testing.assert_close(out.loss, out.reconstruction_loss["reconstruction"] + out.kl_local["kl"])
    # sampling needs no training step either: one count vector per cell and modality
    samples = module.sample({m: tensors[m] for m in ("rna", "atac")})
    assert samples["rna"].shape == tensors["rna"]["x"].shape
    assert torch.isfinite(samples["atac"]).all()


def test_stage_one_trains_only_the_vaes_then_stage_two_trains_the_joint_space():
    model = _model()
    initial = {k: p.detach().clone() for k, p in model.module.named_parameters()}
    weights = _EpochWeights()
    model.train(max_epochs=3, pretrain_epochs=2, batch_size=64, callbacks=[weights], **FAST)
    np.testing.assert_array_equal(model.history["stage"]["stage"].to_numpy(), [1.0, 1.0, 2.0])
    first, second, third = weights.states
    assert _changed(initial, first, VAE) and _changed(first, second, VAE)
    # stage 1: aligners and discriminators have no gradient and keep their initial weights
    assert not _changed(initial, second, JOINT)
    for prefix in JOINT:
        assert _changed(second, third, (prefix,)), prefix
    # the discriminators are first trained (and their loss first logged) at the stage-2 epoch
    adversarial = model.history["train_discriminator_loss"]["train_discriminator_loss"]
    assert adversarial.index.tolist() == [2] and np.isfinite(adversarial.to_numpy(dtype=float)).all()


def _stopping_epochs(losses: np.ndarray, stages: np.ndarray, patience: int, min_delta: float = 1e-3):
    """The last epoch of stage 1 and of training by the plan's rule, from the logged losses."""
    ends, best, waited = [], math.inf, 0
    for epoch, (loss, stage) in enumerate(zip(losses, stages, strict=True)):
        if epoch and stage != stages[epoch - 1]:
            best, waited = math.inf, 0
        if math.isinf(best) or loss < best - min_delta * abs(best):
            best, waited = loss, 0
            continue
        waited += 1
        if waited == patience:
            ends.append(epoch)
            best, waited = math.inf, 0
    return ends


def test_early_stopping_ends_each_stage_when_validation_stalls():
    model = _model()
    model.train(
        max_epochs=30,
        pretrain_epochs=15,
        batch_size=64,
        early_stopping=True,
        early_stopping_patience=2,
        **FAST,
    )
    losses = model.history["validation_loss"]["validation_loss"].to_numpy()
    stages = model.history["stage"]["stage"].to_numpy()
    n_stage_one = int((stages == 1).sum())
    # stage 1 stalled before its 15 epochs and handed over at the next epoch; stage 2 then stalled
    assert 2 <= n_stage_one < 15 and len(losses) < 30
    assert (stages[:n_stage_one] == 1).all() and (stages[n_stage_one:] == 2).all()
    assert _stopping_epochs(losses, stages, patience=2) == [n_stage_one - 1, len(losses) - 1]
    # stopping left the last `patience` epochs of each stage without a new best
    stage_two = losses[n_stage_one:]
    assert stage_two[-2:].min() > stage_two[:-2].min() * (1 - 1e-3)
