"""The counter-based hash: parameter draws (``fastaug.rng``) and per-pixel noise inside the kernels.

Part of the Plan contract: every backend computes per-pixel draws with these constants and formulas, so
all of them produce the same bits. Values are unsigned 32-bit integers held in int64 tensors (products of
a 32-bit value and a constant below 2**31 stay inside int64).

Per-pixel standard normal of a random op with per-sample key ``key`` (32 bits, from the draw of its call)
at channel c, row y, column x of the stage's output: Box-Muller on two uniforms per pair of columns (x = 2p and
2p + 1 take the cosine and the sine of one draw), its log and cosine written as arithmetic (so every backend
computes the same bits: IEEE +, -, *, /, sqrt in the working dtype, no FMA)::

    row = mix(mix(key ^ c) ^ y);  h1 = mix(row ^ (x >> 1));  h2 = mix(h1 ^ STREAM2)
    n = (h1 >> 8) + 1 in [1, 2**24];  e = bit_length(n) - 1;  m = float(n << (24 - e)) * 2**-24 in [1, 2)
    if m > SQRT2: m = m * 0.5, e = e + 1
    t = (m - 1) / (m + 1);  s = t * t
    ln_u1 = (e - 24) * LN2 + (2 * t) * (1 + s * (1/3 + s * (1/5 + s * (1/7 + s * (1/9)))))     # ln(n * 2**-24)
    k = h2 >> 30;  a = TWO_PI * (((h2 >> 8) & (2**22 - 1)) * 2**-24 - 0.125);  a2 = a * a   # angle 2 pi k / 4 + pi / 4 + a
    cos_a = 1 + a2 * (-1/2 + a2 * (1/24 + a2 * (-1/720 + a2 * (1/40320))))
    sin_a = a * (1 + a2 * (-1/6 + a2 * (1/120 + a2 * (-1/5040 + a2 * (1/362880)))))
    cos = (cos_a, -sin_a, -cos_a, sin_a)[k];  sin = (sin_a, cos_a, -sin_a, -cos_a)[k]
    z = sqrt(-2 * ln_u1) * (cos if x is even else sin)

(Horner's order as written, constants rounded to the working dtype; the series are accurate to a few ulps on
|a| <= pi / 4 and t <= 0.172.)

Per-pixel uniform of the other random ops (pixel dropout, salt and pepper, multiplicative noise): ``u = (h1 >> 8) *
2**-24`` in [0, 1), with c = 0 for every channel when the draw is shared by the channels of a pixel.

Value noise of FOG (a fog / cloud layer, one value per pixel shared by the channels), at row y, column x of an
H x W stage output, with per-sample ``scale`` (the coarsest cell as a fraction of max(H, W)); octaves o = 0..3::

    s = max((scale * max(H, W)) * 2**-o, 1);  inv = 1 / s
    gx = (x + 0.5) * inv;  i = floor(gx);  fx = gx - i;  sx = (fx * fx) * (3 - 2 * fx)      (same for y: j, fy, sy)
    L(j, i) = the uniform above with c = o, y = j, x = i (lattice values of the octave)
    top = L(j, i) + (L(j, i+1) - L(j, i)) * sx;  bot = L(j+1, i) + (L(j+1, i+1) - L(j+1, i)) * sx
    n_o = top + (bot - top) * sy
    m = (((n_0 + n_1 * 0.5) + n_2 * 0.25) + n_3 * 0.125) * FOG_NORM      (FOG_NORM = 1 / 1.875: m in [0, 1))
    n = clamp((m - 0.5) * FOG_CONTRAST + 0.5, 0, 1)      (FOG_CONTRAST = 2.5: m's spread, ~0.12, widened to ~0.3)
"""

from __future__ import annotations

import math

import numpy as np
import torch

MASK = 0xFFFFFFFF
M1, M2 = 0x7FEB352D, 0x5F356495  # < 2**31
STREAM2 = 0x9E3779B9  # the second uniform of a pixel
INV24 = 1.0 / (1 << 24)
TWO_PI = 2.0 * math.pi
SQRT2 = math.sqrt(2.0)
QUARTER_MASK = (1 << 22) - 1  # the angle within a quadrant
LN2 = math.log(2.0)
FOG_OCTAVES = 4
FOG_NORM = 1.0 / 1.875  # 1 / (1 + 1/2 + 1/4 + 1/8)
FOG_CONTRAST = 2.5
LOG_SERIES = (1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0)  # Horner, innermost first
COS_SERIES = (1.0 / 40320.0, -1.0 / 720.0, 1.0 / 24.0, -0.5, 1.0)
SIN_SERIES = (1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0, 1.0)


def mix_int(h: int) -> int:
    """:func:`mix` on a python int < 2**32."""
    h ^= h >> 16
    h = (h * M1) & MASK
    h ^= h >> 15
    h = (h * M2) & MASK
    return h ^ (h >> 16)


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


def bit_length(n: torch.Tensor) -> torch.Tensor:
    """``floor(log2(n)) + 1`` of positive int64 values below 2**32 (shifts and compares only)."""
    e = torch.zeros_like(n)
    t = n
    for step in (16, 8, 4, 2, 1):
        big = (t >> step) > 0
        e = e + step * big
        t = torch.where(big, t >> step, t)
    return e + 1


def _horner(x: torch.Tensor, coefficients: tuple[float, ...]) -> torch.Tensor:
    p = torch.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        p = c + x * p
    return p


def normal_from_hashes(h1: torch.Tensor, h2: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair of standard normals (even column, odd column) of the module doc from the hashes h1, h2 (int64)."""
    n = (h1 >> 8) + 1
    e_int = bit_length(n) - 1
    m = (n << (24 - e_int)).to(dtype) * INV24
    e = e_int.to(dtype)
    big = m > SQRT2
    m = torch.where(big, m * 0.5, m)
    e = torch.where(big, e + 1.0, e)
    t = (m - 1.0) / (m + 1.0)
    ln_u1 = (e - 24.0) * LN2 + (2.0 * t) * _horner(t * t, LOG_SERIES)
    k = h2 >> 30
    a = TWO_PI * (((h2 >> 8) & QUARTER_MASK).to(dtype) * INV24 - 0.125)
    a2 = a * a
    cos_a = _horner(a2, COS_SERIES)
    sin_a = a * _horner(a2, SIN_SERIES)
    cosine = torch.where(k == 0, cos_a, torch.where(k == 1, -sin_a, torch.where(k == 2, -cos_a, sin_a)))
    sine = torch.where(k == 0, sin_a, torch.where(k == 1, cos_a, torch.where(k == 2, -sin_a, -cos_a)))
    r = sqrt_rn(-2.0 * ln_u1)
    return r * cosine, r * sine


def sqrt_rn(y: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root in ``y``'s dtype, as numba's and triton's ``sqrt_rn`` (float32 through the
    float64 root: rounding twice is innocuous for a square root, 53 >= 2 * 24 + 2). torch's CPU sqrt is not correctly
    rounded (torch 2.13, every ATen capability: 0.8 % of float64 values one ulp off, measured against Python's
    math.sqrt), so on the CPU the root is numpy's (IEEE); CUDA's sqrt is correctly rounded."""
    d = y.double()
    r = torch.from_numpy(np.sqrt(d.numpy())) if d.device.type == "cpu" else torch.sqrt(d)
    return r.to(y.dtype)


def pixel_normal(key: torch.Tensor, c: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal draws [B,C,H,W] of per-sample keys [B] (int64), as the module doc defines them."""
    h1 = _row_hash(key, c, h, (w + 1) // 2)
    even, odd = normal_from_hashes(h1, mix(h1 ^ STREAM2), dtype)
    return torch.stack([even, odd], -1).flatten(-2)[..., :w]


def _smooth(f: torch.Tensor) -> torch.Tensor:
    return (f * f) * (3.0 - 2.0 * f)


def fog_noise(key: torch.Tensor, scale: torch.Tensor, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """FOG's value noise [B,1,H,W] in [0, 1] of per-sample keys [B] (int64) and scales [B], as the module doc defines it."""
    b = key.shape[0]
    dev = key.device
    k = key.to(torch.int64).view(b, 1, 1)
    s0 = scale.to(dtype).view(b, 1) * float(max(h, w))
    xs = torch.arange(w, device=dev, dtype=dtype).view(1, w) + 0.5
    ys = torch.arange(h, device=dev, dtype=dtype).view(1, h) + 0.5
    total = None
    for o in range(FOG_OCTAVES):
        inv = 1.0 / torch.clamp(s0 * (2.0**-o), min=1.0)
        gx, gy = xs * inv, ys * inv  # [B,W], [B,H]
        i, j = torch.floor(gx), torch.floor(gy)
        sx, sy = _smooth(gx - i).view(b, 1, w), _smooth(gy - j).view(b, h, 1)
        i, j = i.to(torch.int64).view(b, 1, w), j.to(torch.int64).view(b, h, 1)
        base = mix(k ^ o)
        r0, r1 = mix(base ^ j), mix(base ^ (j + 1))

        def lat(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
            return (mix(row ^ col) >> 8).to(dtype) * INV24

        l00, l01, l10, l11 = lat(r0, i), lat(r0, i + 1), lat(r1, i), lat(r1, i + 1)
        top = l00 + (l01 - l00) * sx
        bot = l10 + (l11 - l10) * sx
        n = top + (bot - top) * sy
        total = n if total is None else total + n * (0.5**o)
    m = total * FOG_NORM
    return torch.clamp((m - 0.5) * FOG_CONTRAST + 0.5, 0.0, 1.0).view(b, 1, h, w)
