"""Augmentation learned while the model trains: differentiable op probabilities and magnitudes, bi-level updates."""

from fastaug.learn.augment import DIFFERENTIABLE, DifferentiableAugment, op_names
from fastaug.learn.meta import MetaTrainer
from fastaug.learn.plot import plot_history

__all__ = ["DIFFERENTIABLE", "DifferentiableAugment", "MetaTrainer", "op_names", "plot_history"]
