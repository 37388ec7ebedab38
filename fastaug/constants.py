"""Small constant tensors (op codes, normalize's mean and std, ...) built once per (values, dtype, device).

On a GPU, ``torch.tensor(values, device=...)`` is a host -> device copy at every call, and a CUDA graph cannot
capture it. A cached constant is copied once, at its first use, and then shared: callers must not modify it. Entries
are never evicted (a captured CUDA graph may read them at every replay); they are small and as many as the distinct
(values, dtype, device) a program uses (op-code lists, mean / std pairs, per-image-size corners)."""

from __future__ import annotations

import torch

_CACHE: dict[tuple, torch.Tensor] = {}


def constant(values, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """The tensor of ``values`` (numbers or nested sequences of numbers) with ``dtype`` on ``device``, cached."""
    key = (repr(values), dtype, torch.device(device))
    t = _CACHE.get(key)
    if t is None:
        t = cached(key, lambda: torch.tensor(values, dtype=dtype, device=device))
    return t


def cached(key: tuple, build) -> torch.Tensor:
    """The tensor ``build()`` returns, built once per ``key`` (hashable; it must name the values, dtype and device) and
    shared like :func:`constant`. Built outside ``inference_mode`` (an inference tensor could never be saved for a
    backward later)."""
    t = _CACHE.get(key)
    if t is None:
        with torch.inference_mode(False):
            t = _CACHE[key] = build()
    return t


def clear() -> None:
    """Drop every cached constant (tests that build tensors under a fake device mode; never while a captured CUDA graph
    that read them may replay)."""
    _CACHE.clear()
