"""Sphinx configuration for the crossomics documentation."""

import os
import warnings
from datetime import date
from importlib.metadata import version as package_version
from pathlib import Path

# sphinx-autodoc-typehints 3.6 calls a Sphinx API deprecated for Sphinx 10, once per docstring
warnings.filterwarnings("ignore", message=r".*set_application' is deprecated")

ROOT = Path(__file__).parent.parent

project = "crossomics"
author = "crossomics developers"
copyright = f"{date.today().year}, {author}"
release = package_version("crossomics")
version = ".".join(release.split(".")[:2])

# no sphinx.ext.intersphinx: the build machines have no network access to fetch inventories
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]
templates_path = ["_templates"]

# MyST and notebooks
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# The tutorials (docs/tutorials is a symlink to ../tutorials) are MyST notebooks that train models
# for minutes each. The build executes them once and caches the outputs in
# docs/_build/.jupyter_cache (jupyter-cache): later builds re-run a notebook only when its code
# changed, so the pages show figures and numbers and `make docs` stays fast. Set
# CROSSOMICS_DOCS_EXECUTE=off to build the pages without outputs (no execution at all).
nb_execution_mode = "off" if os.environ.get("CROSSOMICS_DOCS_EXECUTE") == "off" else "cache"
# The kernels inherit this process's environment; a non-interactive MPLBACKEND (Agg, as CI and
# headless shells set it) would make plt.show() put no figure into the pages.
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
nb_execution_cache_path = str(ROOT / "docs" / "_build" / ".jupyter_cache")
nb_execution_timeout = 900
nb_execution_in_temp = True  # run in a temporary directory: nothing lands in the source tree
nb_execution_raise_on_error = True

# API reference: one generated page per public object, driven by each module's __all__
autosummary_generate = True
autosummary_ignore_module_all = False
autosummary_imported_members = False
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
typehints_defaults = "comma"
# show array aliases by name instead of expanding numpy's long ArrayLike union
autodoc_type_aliases = {
    "ArrayLike": "numpy.typing.ArrayLike",
    "Matrix": "numpy.typing.ArrayLike | scipy.sparse.spmatrix",
}
always_document_param_types = False

try:
    import sphinx_book_theme  # noqa: F401

    html_theme = "sphinx_book_theme"
    html_theme_options = {"show_toc_level": 2, "home_page_in_toc": True}
except ImportError:
    html_theme = "alabaster"
html_title = f"crossomics {release}"
html_static_path: list[str] = []


# Pages that include files from outside docs/ which may not exist yet; a missing file must not
# break the warning-free build, so the includes are added while the page is read.
CHANGELOG = ROOT / "CHANGELOG.md"
BENCHMARK_RESULTS = ROOT / "benchmarks" / "results"


def _changelog() -> str:
    if CHANGELOG.exists():
        return "```{include} ../CHANGELOG.md\n```\n"
    return "# Changelog\n\nNo changes recorded yet.\n"


def _benchmark_figures(table: Path) -> str:
    """Image directives for the figure(s) a results table names after itself (``<stem>[_umap].png``)."""
    figures = [table.with_suffix(".png"), table.with_name(table.stem + "_umap.png")]
    return "".join(
        f"\n```{{image}} ../benchmarks/results/{figure.name}\n:alt: {figure.stem}\n:width: 100%\n```\n"
        for figure in figures
        if figure.exists()
    )


def _benchmark_tables() -> str:
    return "".join(
        f"\n## {table.stem.replace('_', ' ')}\n\n"
        f"```{{include}} ../benchmarks/results/{table.name}\n:heading-offset: 2\n```\n"
        + _benchmark_figures(table)
        for table in sorted(BENCHMARK_RESULTS.glob("*.md"))
    )


def _add_optional_includes(app, docname: str, source: list[str]) -> None:
    if docname == "changelog":
        source[0] += _changelog()
    elif docname == "benchmarks":
        source[0] += _benchmark_tables()


def setup(app):
    app.connect("source-read", _add_optional_includes)
