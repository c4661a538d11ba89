from ._minnet import MINNETTrainingPlan

__all__: list[str] = ["MINNETTrainingPlan"]
