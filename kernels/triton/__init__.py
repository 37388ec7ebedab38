"""Triton backend: fused GPU kernels for Plan stages (``reduce`` and ``apply``, see ``fastaug.plan``)."""

from .fused import apply, fold_buffers, fold_fill, reduce
from .tables import reduce_into_tables, round_setup

# folded SHARPNESS ops (``fastaug.plan.Fold``) run in the stage: the samples that sharpen resume from a fold buffer
FOLDS_SHARPNESS = True

__all__ = ["apply", "fold_buffers", "fold_fill", "reduce", "reduce_into_tables", "round_setup", "FOLDS_SHARPNESS"]
