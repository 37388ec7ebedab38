"""Triton backend: fused GPU kernels for Plan stages (``reduce`` and ``apply``, see ``fastaug.plan``)."""

from .fused import apply, reduce
from .tables import reduce_into_tables, round_setup

__all__ = ["apply", "reduce", "reduce_into_tables", "round_setup"]
