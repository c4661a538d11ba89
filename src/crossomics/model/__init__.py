from ._minnet import MINNET
from ._sccross import SCCROSS

__all__ = ["MINNET", "SCCROSS"]
