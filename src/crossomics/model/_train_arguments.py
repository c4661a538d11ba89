"""Training arguments shared by SCCROSS and MINNET: one signature style, one set of checks.

Both models take scvi-tools' split and early-stopping arguments (``train_size`` or
``validation_size``, ``shuffle_set_split``, ``early_stopping_monitor``) and reject
``datasplitter_kwargs`` with the arguments that replace it, since each builds its own loaders,
and both hand their plan and loaders to scvi-tools' runner the same way.
"""

from __future__ import annotations

import numpy as np
from scvi.train import TrainRunner

from crossomics._validation import check_number

MONITORED = "validation_loss"


def resolve_validation_size(train_size, validation_size) -> float:
    """The held-out fraction from scvi-tools' ``train_size`` or crossomics' ``validation_size``."""
    if train_size is None:
        return 0.1 if validation_size is None else validation_size
    check_number(train_size, "train_size", 0.9, low=0, high=1, low_open=True)
    if validation_size is not None and abs(train_size + validation_size - 1) > 1e-9:
        raise ValueError(
            f"train_size={train_size} and validation_size={validation_size} do not add up to 1; every cell "
            "not held out for validation trains, so pass only one of them"
        )
    return 1.0 - train_size


def check_split_arguments(
    model: str, shuffle_set_split, early_stopping_monitor, datasplitter_kwargs, loaders: str
) -> None:
    """scvi-tools' split and early-stopping arguments that ``model`` supports, or a clear error;
    ``loaders`` says how the model batches its cells (why ``datasplitter_kwargs`` cannot apply)."""
    if not isinstance(shuffle_set_split, bool):
        raise ValueError(
            f"shuffle_set_split={shuffle_set_split!r}; pass True (random split) or False (in order)"
        )
    if early_stopping_monitor != MONITORED:
        raise ValueError(
            f"early_stopping_monitor={early_stopping_monitor!r} is not logged by {model}; early stopping "
            f"monitors {MONITORED!r}"
        )
    if datasplitter_kwargs:
        raise ValueError(
            f"datasplitter_kwargs={datasplitter_kwargs!r} is not supported: {model} {loaders}; use "
            "train_size= or validation_size=, shuffle_set_split= and batch_size="
        )


def split_rows(
    n_rows: int, validation_size: float, shuffle: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows: ``validation_size`` of the rows held out, at random
    (reproducible under ``seed``) or the last ones when not ``shuffle``."""
    check_number(validation_size, "validation_size", 0.1, low=0, high=1, high_open=True)
    n_train = int(np.ceil((1.0 - validation_size) * n_rows))
    order = np.random.default_rng(seed).permutation(n_rows) if shuffle else np.arange(n_rows)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def run_training(model, training_plan, data_module, max_epochs: int, accelerator, devices, **trainer_kwargs):
    """Train ``model`` with scvi-tools' :class:`~scvi.train.TrainRunner` on the model's own
    data module (``trainer_kwargs`` go to :class:`scvi.train.Trainer`); returns the runner's
    result."""
    runner = TrainRunner(
        model,
        training_plan=training_plan,
        data_splitter=data_module,
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        **trainer_kwargs,
    )
    return runner()
