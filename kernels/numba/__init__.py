"""Numba (CPU) backend: ``reduce`` and ``apply`` over one Stage (see ``fastaug/plan.py``)."""

from .backend import apply, reduce

# Ask the engine to resample a stage with statistics once, into an exact uint8 buffer, instead of in
# both the reduction and the apply pass (see ``fastaug.engine.presample``): on CPU the bilinear gather
# costs ~10 ns/pixel, the uint8 round trip ~1.
PRESAMPLE = True

__all__ = ["apply", "reduce", "PRESAMPLE"]
