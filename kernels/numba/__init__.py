"""Numba (CPU) backend: ``reduce`` and ``apply`` over one Stage (see ``fastaug/plan.py``)."""

from .backend import apply, reduce

__all__ = ["apply", "reduce"]
