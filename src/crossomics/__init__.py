"""crossomics: scCross and MinNet single-cell multi-omics models for the scverse."""

from importlib.metadata import version

from . import datasets, metrics, pl, pp, tl
from .model import MINNET, SCCROSS

__version__ = version("crossomics")

__all__ = ["MINNET", "SCCROSS", "datasets", "metrics", "pl", "pp", "tl"]
