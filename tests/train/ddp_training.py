"""Train SCCROSS on a small unpaired cortex subset with 1 or N CPU processes (run by
``test_ddp.py``; Lightning's ``strategy="ddp"`` re-runs this script once per rank)."""

from __future__ import annotations

import json
import os
import sys
import warnings

import mudata as md
import numpy as np
import scvi
import torch

import crossomics as co

warnings.filterwarnings("ignore")
md.set_options(pull_on_update=False)
devices, out = int(sys.argv[1]), sys.argv[2]
torch.set_num_threads(1)
scvi.settings.seed = 0
cortex = co.datasets.mouse_motor_cortex()
cells = np.sort(np.random.default_rng(0).permutation(cortex.n_obs)[:800])
rna, atac = cortex.mod["rna"][cells].copy(), cortex.mod["atac"][cells].copy()
atac.obs_names = "atac_" + atac.obs_names  # unpaired
mdata = md.MuData({"rna": rna, "atac": atac})
co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
model = co.SCCROSS(mdata, n_hidden=32, n_latent=8, n_components=16, gene_sets=None)
processes = {"devices": devices, "strategy": "ddp"} if devices > 1 else {"devices": 1}
model.train(max_epochs=20, batch_size=64, accelerator="cpu", enable_progress_bar=False, **processes)
rank = int(os.environ.get("LOCAL_RANK", 0))
z = {m: model.get_latent_representation(m) for m in ("rna", "atac")}
loaders = model.trainer.datamodule.train_dataloader().iterables
result = {
    "rank": rank,
    "foscttm": float(co.metrics.foscttm(z["rna"], z["atac"])),
    "finite": bool(all(np.isfinite(v).all() for v in z.values())),
    "train_rows": {m: model.trainer.datamodule.train_rows[m].tolist() for m in ("rna", "atac")},
    "shard_rows": {m: loaders[m].dataset.indices.tolist() for m in ("rna", "atac")},
    "batches_per_epoch": int(model.trainer.num_training_batches),
    "parameter_sum": float(sum(p.detach().double().sum() for p in model.module.parameters())),
}
with open(f"{out}.rank{rank}.json", "w") as handle:
    json.dump(result, handle)
