"""Run the tutorials in ``tutorials/`` top to bottom, as a reader would.

Each tutorial is a MyST markdown notebook (the format the docs render with myst-nb). jupytext reads
it into a notebook and nbclient executes it in a fresh ``python3`` kernel, with a temporary
directory as the working directory. Every tutorial ends with a cell asserting a sanity number, so
a run that completes also checks the results.

The short tutorials run in the default ``make test``; the long ones are marked ``slow`` too
(``pytest -m tutorial`` runs all of them). Run times (wall clock, 2 CPU cores shared with other
jobs, so upper bounds) are in the comments.
"""

from __future__ import annotations

import time
from pathlib import Path

import jupytext
import nbclient
import pytest

pytestmark = pytest.mark.tutorial

TUTORIALS = Path(__file__).parents[1] / "tutorials"
DOCS = Path(__file__).parents[1] / "docs"
CELL_TIMEOUT_S = 900

# name -> extra marks; no mark = part of the default run (together about 2.5 minutes)
CASES = {
    "minnet": [],  # ~50 s
    "simulation": [],  # ~90 s
    "perturbation": [pytest.mark.slow],  # ~5 min
    "generation": [pytest.mark.slow],  # ~6-9 min
    "integration_sccross": [pytest.mark.slow],  # ~4 min
    "reference_mapping": [],  # ~2 min
}


def read_tutorial(name: str):
    return jupytext.read(TUTORIALS / f"{name}.md", fmt="md:myst")


def test_every_tutorial_is_tested_and_listed_in_the_docs():
    on_disk = {path.stem for path in TUTORIALS.glob("*.md")}
    assert on_disk == set(CASES)
    toctree = (DOCS / "tutorials.md").read_text()
    for name in CASES:
        assert f"tutorials/{name}" in toctree, f"{name} is missing from docs/tutorials.md"


@pytest.mark.parametrize("name", sorted(CASES))
def test_tutorial_is_a_myst_notebook_ending_in_a_check(name):
    notebook = read_tutorial(name)
    assert notebook.metadata["file_format"] == "mystnb"
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert code and "assert " in code[-1], "the last code cell must assert a sanity number"


@pytest.mark.parametrize("name", [pytest.param(name, marks=marks) for name, marks in CASES.items()])
def test_tutorial_runs(name, tmp_path):
    notebook = read_tutorial(name)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=notebook.metadata["kernelspec"]["name"],
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    print(f"{name}: executed in {time.perf_counter() - start:.0f} s")
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
