"""Parameter draws on CPU: ``fastaug.rng.hash32`` in one compiled call (the torch form costs ~60 small ops per draw).

The same integer formula as ``fastaug.rng`` (int64 values below 2**32, products below 2**63), so the bits are the
same on every backend."""

from __future__ import annotations

import numpy as np
from numba import njit

from fastaug.ops import counter

_MASK, _M1, _M2 = counter.MASK, counter.M1, counter.M2


@njit(cache=True, inline="always")
def _mix(h):
    h = h ^ (h >> 16)
    h = (h * _M1) & _MASK
    h = h ^ (h >> 15)
    h = (h * _M2) & _MASK
    return h ^ (h >> 16)


@njit(cache=True)
def _hash32(seed_lo, seed_hi, epoch, idx, slot, n, out):
    for b in range(idx.shape[0]):
        v = idx[b]
        h = _mix(seed_lo ^ 0x3C6EF372)
        h = _mix(h ^ seed_hi)
        h = _mix(h ^ epoch)
        h = _mix(h ^ (v & _MASK))
        h = _mix(h ^ ((v >> 32) & _MASK))
        h = _mix(h ^ slot)
        for j in range(n):
            out[b, j] = _mix(h ^ ((j * 0x2545F491) & _MASK))


def hash32(seed: int, epoch: int, idx: np.ndarray, slot: int, n: int) -> np.ndarray:
    """``fastaug.rng.hash32`` of int64 indices ``idx`` [B] (python int seed, epoch, slot): int64 [B, n]."""
    out = np.empty((idx.shape[0], n), dtype=np.int64)
    _hash32(seed & _MASK, (seed >> 32) & _MASK, epoch & _MASK, np.ascontiguousarray(idx, dtype=np.int64), slot & _MASK, n, out)
    return out
