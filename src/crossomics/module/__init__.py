from ._minnet import MINNETModule

__all__: list[str] = ["MINNETModule"]
