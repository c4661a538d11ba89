# scvi-tools' view_anndata_setup calls rich.pretty without importing it (scvi-tools 1.4.2 with
# rich 15), so the method failed on our models unless something else had imported it
import rich.pretty  # noqa: F401

from ._minnet import MINNET
from ._sccross import SCCROSS

__all__ = ["MINNET", "SCCROSS"]
