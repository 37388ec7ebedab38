"""The counter-based hash: parameter draws (``fastaug.rng``) and per-pixel noise inside the kernels.

Part of the Plan contract: every backend computes per-pixel draws with these constants and formulas, so
all of them produce the same bits. Values are unsigned 32-bit integers held in int64 tensors (products of
a 32-bit value and a constant below 2**31 stay inside int64).

Per-pixel standard normal of a random op with per-sample key ``key`` (32 bits, from the draw of its call)
at channel c, row y, column x of the stage's output::

    row = mix(mix(key ^ c) ^ y);  h1 = mix(row ^ x);  h2 = mix(h1 ^ STREAM2)
    u1 = ((h1 >> 8) + 1) * 2**-24   in (0, 1]
    u2 = (h2 >> 8) * 2**-24          in [0, 1)
    z  = sqrt(-2 ln u1) * cos(2 pi u2)          (float32: the transcendentals may differ by an ulp)

Per-pixel uniform of the other random ops (pixel dropout, salt and pepper, multiplicative noise): ``u = (h1 >> 8) *
2**-24`` in [0, 1), with c = 0 for every channel when the draw is shared by the channels of a pixel.
"""

from __future__ import annotations

import math

import torch

MASK = 0xFFFFFFFF
M1, M2 = 0x7FEB352D, 0x5F356495  # < 2**31
STREAM2 = 0x9E3779B9  # the second uniform of a pixel
INV24 = 1.0 / (1 << 24)
TWO_PI = 2.0 * math.pi


def mix(h: torch.Tensor) -> torch.Tensor:
    """The 32-bit finaliser (int64 tensor of values < 2**32 in and out)."""
    h = h ^ (h >> 16)
    h = (h * M1) & MASK
    h = h ^ (h >> 15)
    h = (h * M2) & MASK
    return h ^ (h >> 16)


def _row_hash(key: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """``h1 = mix(mix(mix(key ^ c) ^ y) ^ x)`` [B,C,H,W] of per-sample keys [B] (int64)."""
    k = key.to(torch.int64).view(-1, 1, 1, 1)
    dev = k.device
    cs = torch.arange(c, device=dev, dtype=torch.int64).view(1, c, 1, 1)
    ys = torch.arange(h, device=dev, dtype=torch.int64).view(1, 1, h, 1)
    xs = torch.arange(w, device=dev, dtype=torch.int64).view(1, 1, 1, w)
    return mix(mix(mix(k ^ cs) ^ ys) ^ xs)


def pixel_uniform(key: torch.Tensor, c: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """Uniform draws [B,C,H,W] in [0, 1) of per-sample keys [B] (int64), as the module doc defines them."""
    return (_row_hash(key, c, h, w) >> 8).to(dtype) * INV24


def pixel_normal(key: torch.Tensor, c: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal draws [B,C,H,W] of per-sample keys [B] (int64), as the module doc defines them."""
    h1 = _row_hash(key, c, h, w)
    h2 = mix(h1 ^ STREAM2)
    u1 = ((h1 >> 8) + 1).to(dtype) * INV24
    u2 = (h2 >> 8).to(dtype) * INV24
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(TWO_PI * u2)
