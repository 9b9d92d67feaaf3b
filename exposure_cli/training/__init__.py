"""Training of the EAT-IEA model: the loop (:mod:`.loop`) and where its data comes from (:mod:`.sources`).

Use ``exposure train`` (or ``python -m exposure_cli.training``, the same options) rather than calling
these directly; the library API is :func:`train` with a :class:`TrainConfig`.
"""

from .loop import TrainConfig, TrainResult, exposure_loss, explore_strength, learning_rate, train

__all__ = ["TrainConfig", "TrainResult", "exposure_loss", "explore_strength", "learning_rate", "train"]
