"""Parameter descriptions that several public functions share, written once.

A function decorated with ``@shared_docs.dedent`` writes ``%(param_name)s`` on its own line in
its docstring; the text below replaces it when the module is imported, so ``help()`` and the
built documentation show the full description. Only parameters that mean exactly the same in
every function that takes them belong here.
"""

from __future__ import annotations

from docrep import DocstringProcessor

_SHARED = {
    # train() of SCCROSS and MINNET
    "param_train_size": """\
train_size, validation_size
    Fraction of the cells (of each modality) that trains, or that is held out to compute
    ``validation_loss`` (give one; default 0.9 / 0.1).""",
    "param_shuffle_set_split": """\
shuffle_set_split
    Hold out random cells (default) or the last cells (of each modality).""",
    "param_early_stopping_monitor": """\
early_stopping_monitor
    Only ``"validation_loss"`` (accepted for scvi-tools compatibility).""",
    "param_datasplitter_kwargs": """\
datasplitter_kwargs
    Not supported: the model builds its own loaders. An error names the arguments that
    replace it.""",
    "param_trainer_kwargs": """\
**trainer_kwargs
    Passed to :class:`scvi.train.Trainer` (e.g. ``enable_progress_bar=False``).""",
    # fitted input transforms (PCA, LSI)
    "param_random_state_svd": """\
random_state
    Seed of the randomised SVD.""",
    "param_feature_names": """\
feature_names
    Optional feature names stored on the result, so callers can check feature order.""",
    # metrics comparing generated with measured values of the same cells
    "param_real": """\
real
    Measured values, shape ``(n_cells, n_features)``, dense or sparse; usually log-normalised.""",
    "param_generated": """\
generated
    Generated values for the same cells and features.""",
}

shared_docs = DocstringProcessor(**_SHARED)
