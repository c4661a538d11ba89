"""Parameter descriptions shared through ``crossomics._docs`` are filled in at import time."""

from __future__ import annotations

import inspect

import pytest

import crossomics as co


def _documented_parameters(function) -> list[str]:
    """Names of the entries of the numpydoc ``Parameters`` section, as the built docs list them."""
    lines = inspect.cleandoc(function.__doc__).splitlines()
    start = lines.index("Parameters") + 2
    names = []
    for line in lines[start:]:
        if line in ("Returns", "Examples"):
            break
        if line and not line.startswith(" "):
            names.extend(name.strip() for name in line.split(","))
    return names


@pytest.mark.parametrize(
    "function",
    [
        co.SCCROSS.train,
        co.model.MINNET.train,
        co.pp.fit_pca,
        co.pp.fit_lsi,
        co.pp.lsi,
        co.metrics.pearson_per_cell,
        co.metrics.pearson_per_feature,
        co.metrics.rmse,
        co.metrics.marker_correlation,
    ],
)
def test_every_parameter_is_documented_with_shared_text_filled_in(function):
    assert "%(" not in function.__doc__
    signature = [
        ("**" if p.kind is p.VAR_KEYWORD else "") + name
        for name, p in inspect.signature(function).parameters.items()
        if name != "self"
    ]
    assert _documented_parameters(function) == signature


def test_shared_descriptions_are_the_same_text_in_each_function():
    text = 'Only ``"validation_loss"`` (accepted for scvi-tools compatibility).'
    assert text in co.SCCROSS.train.__doc__ and text in co.model.MINNET.train.__doc__
    seed = "random_state\n    Seed of the randomised SVD."
    assert all(seed in f.__doc__ for f in (co.pp.fit_pca, co.pp.fit_lsi, co.pp.lsi))
