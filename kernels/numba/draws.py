"""Parameter draws on CPU: ``fastaug.rng.hash32`` in one compiled call (the torch form costs ~60 small ops per draw).

The same integer formula as ``fastaug.rng``, built on the kernels' own ``fused._mix`` (uint64 values below 2**32),
so the bits are the same on every backend."""

from __future__ import annotations

import numpy as np
from numba import njit

from fastaug.ops import counter

from .fused import _MASK, _mix

_SEED0, _STEP = np.uint64(0x3C6EF372), np.uint64(0x2545F491)


@njit(cache=True)
def _hash32(seed_lo, seed_hi, epoch, idx, slot, n, out):
    s32 = np.uint64(32)
    for b in range(idx.shape[0]):
        v = np.uint64(idx[b])  # two's complement bits, as torch's int64 ``& MASK`` and ``>> 32`` read them
        h = _mix(seed_lo ^ _SEED0)
        h = _mix(h ^ seed_hi)
        h = _mix(h ^ epoch)
        h = _mix(h ^ (v & _MASK))
        h = _mix(h ^ ((v >> s32) & _MASK))
        h = _mix(h ^ slot)
        for j in range(n):
            out[b, j] = np.int64(_mix(h ^ ((np.uint64(j) * _STEP) & _MASK)))


def hash32(seed: int, epoch: int, idx: np.ndarray, slot: int, n: int) -> np.ndarray:
    """``fastaug.rng.hash32`` of int64 indices ``idx`` [B] (python int seed, epoch, slot): int64 [B, n]."""
    out = np.empty((idx.shape[0], n), dtype=np.int64)
    m = counter.MASK
    _hash32(np.uint64(seed & m), np.uint64((seed >> 32) & m), np.uint64(epoch & m), np.ascontiguousarray(idx, dtype=np.int64),
            np.uint64(slot & m), n, out)  # fmt: skip
    return out
