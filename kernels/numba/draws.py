"""Parameter draws on CPU: ``fastaug.rng.hash32`` in one compiled call (the torch form costs ~60 small ops per draw).

The same integer formula as ``fastaug.rng``, built on the kernels' own ``fused._mix`` (uint64 values below 2**32),
so the bits are the same on every backend."""

from __future__ import annotations

import numpy as np
from numba import njit

from fastaug.ops import counter

from .fused import _MASK, _mix

_SEED0, _STEP = np.uint64(0x3C6EF372), np.uint64(0x2545F491)


@njit(cache=True, inline="always")
def _index_hash(seed_lo, seed_hi, epoch, index):
    """The hash of (seed, epoch, index) that every slot of the sample continues."""
    v = np.uint64(index)  # two's complement bits, as torch's int64 ``& MASK`` and ``>> 32`` read them
    h = _mix(seed_lo ^ _SEED0)
    h = _mix(h ^ seed_hi)
    h = _mix(h ^ epoch)
    h = _mix(h ^ (v & _MASK))
    return _mix(h ^ ((v >> np.uint64(32)) & _MASK))


@njit(cache=True, inline="always")
def _column(h, slot, j):
    return np.int64(_mix(_mix(h ^ slot) ^ ((np.uint64(j) * _STEP) & _MASK)))


@njit(cache=True)
def _hash32(seed_lo, seed_hi, epoch, idx, slot, n, out):
    for b in range(idx.shape[0]):
        h = _index_hash(seed_lo, seed_hi, epoch, idx[b])
        for j in range(n):
            out[b, j] = _column(h, slot, j)


@njit(cache=True)
def _hash32_table(seed_lo, seed_hi, epoch, idx, table, out):
    for b in range(idx.shape[0]):
        h = _index_hash(seed_lo, seed_hi, epoch, idx[b])
        for t in range(table.shape[1]):
            out[table[2, t] + b * table[3, t]] = _column(h, np.uint64(table[0, t]), table[1, t])


def _key(seed: int, epoch: int) -> tuple[np.uint64, np.uint64, np.uint64]:
    m = counter.MASK
    return np.uint64(seed & m), np.uint64((seed >> 32) & m), np.uint64(epoch & m)


def hash32(seed: int, epoch: int, idx: np.ndarray, slot: int, n: int) -> np.ndarray:
    """``fastaug.rng.hash32`` of int64 indices ``idx`` [B] (python int seed, epoch, slot): int64 [B, n]."""
    out = np.empty((idx.shape[0], n), dtype=np.int64)
    _hash32(*_key(seed, epoch), np.ascontiguousarray(idx, dtype=np.int64), np.uint64(slot & counter.MASK), n, out)
    return out


def hash32_table(seed: int, epoch: int, idx: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``fastaug.rng.hash32_table``: the flat int64 [B * columns] of the columns of ``table`` (``rng.Layout.table``)."""
    out = np.empty(idx.shape[0] * table.shape[1], dtype=np.int64)
    _hash32_table(*_key(seed, epoch), np.ascontiguousarray(idx, dtype=np.int64), np.ascontiguousarray(table, dtype=np.int64), out)
    return out
