"""Counter-based random draws: a pure function of (seed, epoch, sample index, slot).

Integer tensor ops on the data's device (no generator state), so draws are identical on CPU and GPU,
whatever the batch composition, worker count or rank.
"""

from __future__ import annotations

import torch

from fastaug.ops.counter import MASK as _MASK
from fastaug.ops.counter import mix as _mix
from fastaug.ops.counter import mix_int as _mix_int

_SEED0 = 0x3C6EF372  # xor'ed into the seed's low half before the first mix


def hash32(seed: int, epoch: int, indices: torch.Tensor, slot: int, n: int = 1) -> torch.Tensor:
    """32-bit hashes [B, n] (int64 tensor) of (seed, epoch, index, slot, j) for j < n."""
    idx = indices.to(torch.int64)
    if isinstance(epoch, torch.Tensor) and epoch.device.type == "cpu":
        epoch = int(epoch)  # a host value: no device involved
    if isinstance(seed, torch.Tensor):
        return hash32_torch(seed, epoch, idx, slot, n)
    device_epoch = isinstance(epoch, torch.Tensor)
    if idx.device.type == "cpu" and not device_epoch:
        from fastaug.kernels.numba import draws  # the same formula compiled: one call instead of ~60 small torch ops

        return torch.from_numpy(draws.hash32(seed, epoch, idx.numpy(), slot, n))
    if idx.device.type == "cuda" and (fused := _triton()) is not None:  # one launch instead of ~60 small torch kernels
        if not device_epoch:
            return fused.hash32(prefix(seed, epoch), idx, slot, n)
        if epoch.device == idx.device and epoch.numel() == 1:  # read on the device: a CUDA graph replays with fresh draws
            return fused.hash32(seed_prefix(seed), idx, slot, n, epoch=epoch)
    return hash32_torch(seed, epoch, idx, slot, n)


def _triton():
    """The Triton kernels' module, or None where Triton is not installed (the torch formula then draws)."""
    try:
        from fastaug.kernels.triton import fused
    except ImportError:
        return None
    return fused


def seed_prefix(seed: int) -> int:
    """The hash of the seed that :func:`prefix` continues with the epoch (python ints; as :func:`hash32_torch`)."""
    return _mix_int(_mix_int((seed & _MASK) ^ _SEED0) ^ ((seed >> 32) & _MASK))


def prefix(seed: int, epoch: int) -> int:
    """The hash of (seed, epoch) that every draw of a call starts from (python ints; as :func:`hash32_torch`)."""
    return _mix_int(seed_prefix(seed) ^ (epoch & _MASK))


def hash32_torch(seed, epoch, idx: torch.Tensor, slot: int, n: int = 1) -> torch.Tensor:
    """:func:`hash32` as torch ops on ``idx``'s device (seed and epoch may be device tensors)."""
    j = torch.arange(n, dtype=torch.int64, device=idx.device)
    h = _mix(torch.zeros_like(idx) + ((seed & _MASK) ^ _SEED0))  # a device seed tensor: no host read
    h = _mix(h ^ ((seed >> 32) & _MASK))
    h = _mix(h ^ (epoch & _MASK))
    h = _mix(h ^ (idx & _MASK))
    h = _mix(h ^ ((idx >> 32) & _MASK))
    h = _mix(h ^ (slot & _MASK))
    return _mix(h.unsqueeze(1) ^ (j.unsqueeze(0) * 0x2545F491 & _MASK))


def uniform(seed: int, epoch: int, indices: torch.Tensor, slot: int, n: int = 1) -> torch.Tensor:
    """Uniform draws in [0, 1) as float64 [B, n] (24-bit resolution, exact in float32)."""
    return (hash32(seed, epoch, indices, slot, n) >> 8).to(torch.float64) * (1.0 / (1 << 24))


def randint(seed: int, epoch: int, indices: torch.Tensor, slot: int, low, high, n: int = 1) -> torch.Tensor:
    """Integers in [low, high) (``low``/``high`` numbers or [B] tensors) as int64 [B, n]."""
    u = uniform(seed, epoch, indices, slot, n)
    if not isinstance(low, torch.Tensor) and not isinstance(high, torch.Tensor):  # numbers: no tensor built from host values
        return torch.clamp(torch.floor(float(low) + u * (float(high) - float(low))), max=float(high) - 1).to(torch.int64)
    lo = torch.as_tensor(low, dtype=torch.float64, device=u.device)
    hi = torch.as_tensor(high, dtype=torch.float64, device=u.device)
    if lo.dim() == 1:
        lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
    return torch.minimum(torch.floor(lo + u * (hi - lo)), hi - 1).to(torch.int64)


def key(seed: int, epoch: int, indices: torch.Tensor, slot: int) -> torch.Tensor:
    """Per-sample 32-bit keys [B] (int64) of a random op's per-pixel draws (see ``fastaug.ops.counter``)."""
    return hash32(seed, epoch, indices, slot, 1)[:, 0]
