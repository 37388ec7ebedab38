"""Small constant tensors (op codes, normalize's mean and std, ...) built once per (values, dtype, device).

On a GPU, ``torch.tensor(values, device=...)`` is a host -> device copy at every call, and a CUDA graph cannot
capture it. A cached constant is copied once, at its first use, and then shared: callers must not modify it."""

from __future__ import annotations

import torch

_CACHE: dict[tuple, torch.Tensor] = {}
_MAX = 4096  # distinct constants kept (a policy's op codes, a few mean / std pairs per device): far more than used


def constant(values, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """The tensor of ``values`` (numbers or nested sequences of numbers) with ``dtype`` on ``device``, cached."""
    key = (repr(values), dtype, torch.device(device))
    t = _CACHE.get(key)
    if t is None:
        if len(_CACHE) >= _MAX:
            _CACHE.clear()
        t = _CACHE[key] = torch.tensor(values, dtype=dtype, device=device)
    return t


def clear() -> None:
    """Drop every cached constant (tests that build tensors under a fake device mode)."""
    _CACHE.clear()
