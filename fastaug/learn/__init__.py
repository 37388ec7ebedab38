"""Augmentation learned while the model trains: differentiable op probabilities and magnitudes, bi-level updates."""

from fastaug.learn.augment import DIFFERENTIABLE, DifferentiableAugment, op_names
from fastaug.learn.meta import MetaTrainer

__all__ = ["DIFFERENTIABLE", "DifferentiableAugment", "MetaTrainer", "op_names"]
