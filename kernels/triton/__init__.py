"""Triton backend: fused GPU kernels for Plan stages (``reduce`` and ``apply``, see ``fastaug.plan``)."""

from .fused import apply, reduce
from .tables import reduce_into_tables, round_setup

# a folded SHARPNESS (``fastaug.plan.Fold``) runs in the stage: the kernels recompute the chain at its neighbours
FOLDS_SHARPNESS = True

__all__ = ["apply", "reduce", "reduce_into_tables", "round_setup", "FOLDS_SHARPNESS"]
