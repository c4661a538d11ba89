#!/usr/bin/env bash
# GPU check in one command (issue 17): the gpu-marked tests, then one timed mouse cortex epoch
# per stage on the GPU. Run from the repository root on a machine with CUDA and the dev install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
"$PY" -m pytest -q -m gpu tests/test_gpu.py
"$PY" - <<'PYTHON'
import time, warnings
import mudata as md, scvi, torch
import crossomics as co

warnings.filterwarnings("ignore")
md.set_options(pull_on_update=False)
full = co.datasets.mouse_motor_cortex()
atac = full["atac"].copy()
atac.obs_names = "atac_" + atac.obs_names
mdata = md.MuData({"rna": full["rna"].copy(), "atac": atac})
scvi.settings.seed = 0
co.SCCROSS.setup_mudata(mdata, modalities=["rna", "atac"], gene_annotation="mm10")
model = co.SCCROSS(mdata)
start = time.perf_counter()
model.train(max_epochs=2, pretrain_epochs=1, accelerator="gpu", devices=1, enable_progress_bar=False)
print(f"mouse cortex, 10,309 cells per modality: 1 stage-1 + 1 stage-2 epoch in {time.perf_counter() - start:.1f} s "
      f"on {torch.cuda.get_device_name(0)}, peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
PYTHON
