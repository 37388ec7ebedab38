"""Triton backend: fused GPU kernels for Plan stages (``reduce`` and ``apply``, see ``fastaug.plan``)."""

from .fused import apply, reduce

__all__ = ["apply", "reduce"]
