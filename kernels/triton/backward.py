"""Triton backward kernels of one stage: gradients of the image and of every Plan tensor (see :mod:`fastaug.autograd`).

Same contract as ``kernels/numba/backward.py`` (``supports`` / ``stage_backward``), same semantics (ground
truth: torch autograd through ``kernels/reference.py``). One program per (tile of output pixels, sample),
like the forward kernels, all channels (C <= 4) together:

1. the gradient of the stage output tile goes back through the epilogue (rects, out_scale, normalize);
2. the ops run backward in reverse; each op's input values are recomputed with the forward kernels' own
   ``_chain`` stopped before that op (bit-identical values, so AUTOCONTRAST's min / max ties are exact;
   ``O(K^2)`` op evaluations per pixel instead of a ``[K+1, C, tile]`` stack that registers cannot index);
3. the resampling backward: bilinear scatters to the 4 taps with ``tl.atomic_add`` (a working-dtype buffer) and,
   through the sampling coordinates (perspective divide included), to the 3x3 matrix; nearest to the tap
   and the fill only; SHARPNESS at k = 0 scatters its 3x3 stencil.

Per-sample gradients (params, matrix, fill, mean / std, rect values) are tile sums folded in with atomics.
CONTRAST (gray mean) and AUTOCONTRAST (per-channel min / max, shared evenly among tied pixels) need a
global per-sample sum before any pixel can go further back: as in the numba design, one extra pass per
statistics slot (last first) runs the backward from the output down to that op and accumulates the sum
(and the tie counts); later passes add ``sum / pixels`` or ``sum / ties`` to every pixel's gradient.
Kinks follow torch exactly: the reference's clip (``torch.clamp``) passes the gradient where ``0 <= y <= 1``,
bounds included, and HUE's max / min chains split ties evenly, as ``torch.minimum`` / ``maximum`` do.
Everything runs and accumulates in float32 (float16 / bfloat16 inputs are read as float32), or in float64 in a stage
whose input is float64 (Plan tensors read in float64, float64 maths and gradient buffers, as the reference): only the
first stage of a Plan on float64 input, since ``engine.run_stage`` keeps intermediate stage outputs in float32 (a later
stage's backward runs in float32); the statistics tables it reads are in the same working dtype (``engine.table_dtype``),
so a float64 pixel at its channel's minimum / maximum equals the table's entry.
C > 4, quantized geometry and SHARPNESS in a stage with geometry are declined (torch autograd fallback).
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
import triton
import triton.language as tl
from triton import knobs

from fastaug.autograd import StageGrads, StageNeeds
from fastaug.constants import constant
from fastaug.ops.catalogue import LIVE_OPS, NEIGHBOURHOOD_OPS, RANDOM_OPS, ST_OPS
from fastaug.plan import NUM_PARAMS, RGB_OPS, Epilogue, Op, Stage, reference_backward

from . import fused as _fused_any

_INTERPRETED = bool(knobs.runtime.interpret)  # the mode this module copy's kernels were built for
_fz = _fused_any.kernel_module(_INTERPRETED)  # the forward helpers built for the same mode
_chain = _fz._chain
_setup = _fz._setup
_tile = _fz._tile
_load_op = _fz._load_op
_read = _fz._read
_rint = _fz._rint
_pow = _fz._pow
_div = _fz._div
_gray = _fz._gray
_add2 = _fz._add2
_bilinear_cell = _fz._bilinear_cell

ST_CODES = tuple(int(op) for op in ST_OPS)
LIVE_CODES = tuple(int(op) for op in LIVE_OPS)
# op codes: the forward's constexpr globals (from the catalogue)
IDENTITY, BRIGHTNESS, CONTRAST = _fz.IDENTITY, _fz.BRIGHTNESS, _fz.CONTRAST
SATURATION, HUE, GAMMA, SHARPNESS = _fz.SATURATION, _fz.HUE, _fz.GAMMA, _fz.SHARPNESS
GRAYSCALE, INVERT, POSTERIZE, SOLARIZE = _fz.GRAYSCALE, _fz.INVERT, _fz.POSTERIZE, _fz.SOLARIZE
AUTOCONTRAST, EQUALIZE = _fz.AUTOCONTRAST, _fz.EQUALIZE
TO_FLOAT, TO_UINT8 = _fz.TO_FLOAT, _fz.TO_UINT8
RGB_SHIFT, RGB_GAIN = _fz.RGB_SHIFT, _fz.RGB_GAIN
GAUSSIAN_NOISE, PIXEL_DROPOUT, SALT_AND_PEPPER = _fz.GAUSSIAN_NOISE, _fz.PIXEL_DROPOUT, _fz.SALT_AND_PEPPER
MULTIPLICATIVE_NOISE, FOG = _fz.MULTIPLICATIVE_NOISE, _fz.FOG
RANDOM_MASK = _fz._code(sum(1 << int(op) for op in RANDOM_OPS))  # CODES & RANDOM_MASK: a random op may occur
NUM_WARPS = 4
TILE_PIXELS = 128  # one pixel per thread: the backward keeps ~4x the forward's values live per pixel
# runtime ints ``backward_kernel`` does not specialise (``do_not_specialize``): KT (each statistics pass's op: KT == 1
# and KT == 0, 16-divisible, would each compile a variant), the sizes and the batch / channel / row strides, which
# change with the resolution. One pixel per thread: no vector loads or stores for their divisibility to enable (the
# same PTX for sm_90 under Triton 3.6). Kept: the pixel strides ssw / gsw (== 1: contiguous rows).
BACKWARD_PLAIN = ("KT", "H", "W", "Ho", "Wo", "ssb", "ssc", "ssh", "gsb", "gsc", "gsh")

# ----------------------------------------------------------------------------------------------
# device helpers
# ----------------------------------------------------------------------------------------------


@triton.jit
def _tsum(x, pmask):
    """Sum of ``x`` over the tile's valid pixels (a scalar)."""
    return tl.reduce(tl.where(pmask, x, 0.0), None, _add2)  # own combine fn: built for this module's mode


@triton.jit
def _band(y, g):
    """``g`` where ``0 <= y <= 1`` (the clamp's gradient, inclusive like ``torch.clamp``), else 0."""
    return tl.where((y >= 0.0) & (y <= 1.0), g, 0.0)


@triton.jit
def _ch_back(code, g, v, c, a, bb, stk, CODES: tl.constexpr, WORK: tl.constexpr):
    """Per-channel differentiable op (float domain) backward on one channel.

    Returns (input gradient, d a, d b, d gray-mean, d min, d max) per pixel."""
    zero = tl.full(g.shape, 0.0, WORK)
    da = zero
    db = zero
    dm = zero
    dlo = zero
    dhi = zero
    if (CODES >> BRIGHTNESS) & 1:
        if code == BRIGHTNESS:
            gy = _band(v * a, g)
            da = gy * v
            g = gy * a
    if (CODES >> CONTRAST) & 1:
        if code == CONTRAST:
            mu = tl.load(stk).to(WORK)
            gy = _band(v * a + mu * (1.0 - a), g)
            da = gy * (v - mu)
            dm = gy * (1.0 - a)
            g = gy * a
    if (CODES >> GAMMA) & 1:
        if code == GAMMA:
            # float32 libdevice.pow, within an ulp of the forward's value (a float64 power, ``_fz._gamma_pow``: that made
            # bwd_sharpness spill 8 bytes under Triton 3.9); the band below can differ from it only where y * bb is an ulp from 1
            y = _pow(v, a)
            gy = g
            if bb != 1.0:
                inz = (y * bb >= 0.0) & (y * bb <= 1.0)
                db = tl.where(inz, g * y, 0.0)
                gy = tl.where(inz, g * bb, 0.0)
            da = tl.where(v != 0.0, gy * y * tl.log(tl.where(v != 0.0, v, 1.0)), 0.0)
            g = gy * a * y / tl.where(v != 0.0, v, 1.0)  # a v^(a-1) = a y / v; a black pixel: 0 (see the reference)
    if (CODES >> AUTOCONTRAST) & 1:
        if code == AUTOCONTRAST:
            lo = tl.load(stk + c * 2).to(WORK)
            hi = tl.load(stk + c * 2 + 1).to(WORK)
            same = hi == lo
            s = tl.where(same, 1.0, hi - lo).to(WORK)
            lo0 = tl.where(same, 0.0, lo)
            # the clamp's band on the forward's own correctly rounded quotient: Triton's float32 ``/`` is div.full.f32
            # (approximate), whose (hi - lo) / (hi - lo) can be 1 + ulp and drop the gradient at the tied max pixels
            gy = _band(_div(v - lo0, s), g)
            inv = _div(tl.full([], 1.0, WORK), s)  # one (exact) division per channel, products per pixel
            inv2 = inv * inv
            dlo = tl.where(same, 0.0, gy * (v - hi) * inv2)
            dhi = tl.where(same, 0.0, -gy * (v - lo) * inv2)
            g = gy * inv
    return g, da, db, dm, dlo, dhi


@triton.jit
def _hue_back(r, g, b, a, gr, gg, gb):
    """HUE backward of RGB pixels (float domain): (grad r, grad g, grad b, grad hue factor)."""
    maxc = tl.maximum(tl.maximum(r, g), b)
    minc = tl.minimum(tl.minimum(r, g), b)
    # maximum(maximum(r, g), b) / minimum(...): torch splits the gradient of a tie evenly
    m1 = tl.maximum(r, g)
    p_m = tl.where(m1 > b, 1.0, tl.where(m1 == b, 0.5, 0.0))
    xr = tl.where(r > g, p_m, tl.where(r == g, 0.5 * p_m, 0.0))
    xg = p_m - xr
    xb = 1.0 - p_m
    n1 = tl.minimum(r, g)
    p_n = tl.where(n1 < b, 1.0, tl.where(n1 == b, 0.5, 0.0))
    nr = tl.where(r < g, p_n, tl.where(r == g, 0.5 * p_n, 0.0))
    ng = p_n - nr
    nb = 1.0 - p_n
    eqc = maxc == minc
    span = maxc - minc
    s = _div(span, tl.where(eqc, 1.0, maxc))
    dv = tl.where(eqc, 1.0, span)
    rc = _div(maxc - r, dv)
    gc = _div(maxc - g, dv)
    bc = _div(maxc - b, dv)
    is_r = maxc == r
    is_g = (maxc == g) & (~is_r)
    h = tl.where(is_r, bc - gc, tl.where(is_g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = _div(h, 6.0) + 1.0
    h = h - tl.floor(h)
    h = h + a
    h = h - tl.floor(h)
    h6 = h * 6.0
    sec = tl.floor(h6)
    f = h6 - sec
    sec = tl.where(sec >= 6.0, sec - 6.0, sec)
    val = maxc
    pp = val * (1.0 - s)
    qp = val * (1.0 - s * f)
    tp = val * (s * f + (1.0 - s))
    e0 = sec == 0.0
    e1 = sec == 1.0
    e2 = sec == 2.0
    e3 = sec == 3.0
    e4 = sec == 4.0
    e5 = ~(e0 | e1 | e2 | e3 | e4)
    # sector: (r, g, b) = 0: (v, t, p) 1: (q, v, p) 2: (p, v, t) 3: (p, q, v) 4: (t, p, v) 5: (v, p, q)
    gval = tl.where(e0 | e5, gr, 0.0) + tl.where(e1 | e2, gg, 0.0) + tl.where(e3 | e4, gb, 0.0)
    g_p = tl.where(e0 | e1, gb, 0.0) + tl.where(e2 | e3, gr, 0.0) + tl.where(e4 | e5, gg, 0.0)
    g_q = tl.where(e1, gr, 0.0) + tl.where(e3, gg, 0.0) + tl.where(e5, gb, 0.0)
    g_t = tl.where(e0, gg, 0.0) + tl.where(e2, gb, 0.0) + tl.where(e4, gr, 0.0)
    g_p = _band(pp, g_p)
    g_q = _band(qp, g_q)
    g_t = _band(tp, g_t)
    gval += g_p * (1.0 - s) + g_q * (1.0 - s * f) + g_t * (s * f + (1.0 - s))
    gs = -g_p * val - g_q * val * f + g_t * val * (f - 1.0)
    ghr = -g_q * val * s + g_t * val * s  # d h, over 6
    ga = 6.0 * ghr
    grc = tl.where(is_g, ghr, tl.where(is_r, 0.0, -ghr))
    ggc = tl.where(is_r, -ghr, tl.where(is_g, 0.0, ghr))
    gbc = tl.where(is_r, ghr, tl.where(is_g, -ghr, 0.0))
    gmax = (grc + ggc + gbc) / dv
    o_r = -grc / dv
    o_g = -ggc / dv
    o_b = -gbc / dv
    mx = tl.where(eqc, 1.0, maxc)
    gspan = tl.where(eqc, gs, -(grc * rc + ggc * gc + gbc * bc) / dv + gs / mx)
    gmax = gmax - tl.where(eqc, 0.0, gs * span / (mx * mx))
    gmax = gmax + gspan + gval
    gmin = -gspan
    o_r += xr * gmax + nr * gmin
    o_g += xg * gmax + ng * gmin
    o_b += xb * gmax + nb * gmin
    return o_r, o_g, o_b, ga


@triton.jit
def _is_random(code):
    return ((code == GAUSSIAN_NOISE) | (code == PIXEL_DROPOUT) | (code == SALT_AND_PEPPER) | (code == MULTIPLICATIVE_NOISE)
            | (code == FOG))  # fmt: skip


@triton.jit
def _random_back(g, v, code, key, c, ys, xs, a, bb, cc, q, mx, WORK: tl.constexpr):
    """Backward of a random op on channel ``c`` (the reference's formulas): its draws recomputed by the forward's
    helpers on constant values (noise: 0 + (0 + z * 1); uniforms: 1 * (0 + 1 * u); fog: its clamp term with a = 1),
    so they are the forward's bits. Returns (input gradient, d a, d b) per pixel."""
    zero = tl.full(g.shape, 0.0, WORK)
    bound = tl.where(q, 255.0, 1.0)
    gi = g
    da = zero
    db = zero
    if code == GAUSSIAN_NOISE:
        z = _fz._noise(zero, key, c, ys, xs, 0.0, 1.0, False, False, 1.0, WORK)
        n = a * 255.0 + z * (bb * 255.0)
        n = tl.where(n < 0.0, -tl.floor(-n), tl.floor(n))
        y = v + tl.where(q, n, a + z * bb)
        gi = tl.where(cc > 0.5, tl.where(y < 0.0, 0.0, tl.where(y > bound, 0.0, g)), g)  # clip: inside [0, bound]
        da = tl.where(q, 0.0, gi)
        db = tl.where(q, 0.0, gi * z)
    elif code == FOG:
        t = _fz._fog_alpha(key, ys, xs, 1.0, bb, cc, mx, WORK)
        gi = tl.where(q, 0.0, g * (1.0 - a * t))
        da = tl.where(q, 0.0, g * (t * (1.0 - v)))
    else:
        own, target = _fz._dropout_mode(cc)
        own = own & (code != SALT_AND_PEPPER)
        if (code != PIXEL_DROPOUT) | (target < 0) | (target == c):  # a one-channel slot: an identity elsewhere, no hash
            u = _fz._uniform_op(zero + 1.0, MULTIPLICATIVE_NOISE, key, c, own, -1, ys, xs, 0.0, 1.0, False, 1.0, WORK)
            hit = u < a
            if code == PIXEL_DROPOUT:
                gi = tl.where(hit, 0.0, g)
                db = tl.where(hit, g, zero)
            elif code == SALT_AND_PEPPER:
                gi = tl.where(hit, 0.0, g)
            else:  # MULTIPLICATIVE_NOISE
                m = a + (bb - a) * u
                y = v * m
                gz = _band(tl.where(q, -1.0, y * (1.0 / bound)), g)
                gi = gz * m
                da = gz * v * (1.0 - u)
                db = gz * v * u
    return gi, da, db


@triton.jit
def _op_back(g0, g1, g2, g3, v0, v1, v2, v3, code, a, bb, cc, q, st, stk, pmask, gp, gmk, glok, ghik, do_stat,
             PRM: tl.constexpr, NCH: tl.constexpr, CODES: tl.constexpr, RGB: tl.constexpr, WORK: tl.constexpr):
    """Backward of op ``code`` (input values ``v*``, ``a, bb, cc`` = params[:3]) on the gradients ``g*``; parameter
    gradients into ``gp[0:3]`` (PRM); with ``do_stat`` the gray-mean / min / max gradients into ``gmk`` / ``glok`` / ``ghik``."""
    if st == 0:  # straight-through ops pass the gradient unchanged
        if (CODES >> INVERT) & 1:
            neg = code == INVERT
            g0 = tl.where(neg, -g0, g0)
            g1 = tl.where(neg, -g1, g1)
            g2 = tl.where(neg, -g2, g2)
            g3 = tl.where(neg, -g3, g3)
        if (CODES >> SOLARIZE) & 1:
            sol = code == SOLARIZE
            g0 = tl.where(sol & (v0 >= a), -g0, g0)
            g1 = tl.where(sol & (v1 >= a), -g1, g1)
            g2 = tl.where(sol & (v2 >= a), -g2, g2)
            g3 = tl.where(sol & (v3 >= a), -g3, g3)
        if (CODES >> TO_FLOAT) & 1:
            sc = tl.where(code == TO_FLOAT, 1.0 / 255.0, 1.0)
            g0 = g0 * sc
            g1 = g1 * sc
            g2 = g2 * sc
            g3 = g3 * sc
        exact = (code == IDENTITY) | (code == SHARPNESS) | (code == INVERT) | (code == SOLARIZE) | (code == TO_FLOAT)
        dead = (q | (code == POSTERIZE) | (code == EQUALIZE) | (code == TO_UINT8)) & (~exact)  # truncating: zero gradient
        if dead:
            zero = tl.full(g0.shape, 0.0, WORK)
            g0 = zero
            g1 = zero
            g2 = zero
            g3 = zero
        elif ~exact:
            g0, da, db, dm, dlo0, dhi0 = _ch_back(code, g0, v0, 0, a, bb, stk, CODES, WORK)
            dlo1 = dlo0
            dhi1 = dhi0
            dlo2 = dlo0
            dhi2 = dhi0
            dlo3 = dlo0
            dhi3 = dhi0
            if NCH > 1:
                g1, da1, db1, dm1, dlo1, dhi1 = _ch_back(code, g1, v1, 1, a, bb, stk, CODES, WORK)
                da += da1
                db += db1
                dm += dm1
            if NCH > 2:
                g2, da2, db2, dm2, dlo2, dhi2 = _ch_back(code, g2, v2, 2, a, bb, stk, CODES, WORK)
                da += da2
                db += db2
                dm += dm2
            if NCH > 3:
                g3, da3, db3, dm3, dlo3, dhi3 = _ch_back(code, g3, v3, 3, a, bb, stk, CODES, WORK)
                da += da3
                db += db3
                dm += dm3
            if RGB:
                if (CODES >> SATURATION) & 1:
                    if code == SATURATION:
                        y = _gray(v0, v1, v2)
                        z0 = _band(v0 * a + y * (1.0 - a), g0)
                        z1 = _band(v1 * a + y * (1.0 - a), g1)
                        z2 = _band(v2 * a + y * (1.0 - a), g2)
                        da = z0 * (v0 - y) + z1 * (v1 - y) + z2 * (v2 - y)
                        t = (z0 + z1 + z2) * (1.0 - a)
                        g0 = z0 * a + 0.2989 * t
                        g1 = z1 * a + 0.587 * t
                        g2 = z2 * a + 0.114 * t
                if (CODES >> GRAYSCALE) & 1:
                    if code == GRAYSCALE:
                        t = g0 + g1 + g2
                        g0 = 0.2989 * t
                        g1 = 0.587 * t
                        g2 = 0.114 * t
                if (CODES >> HUE) & 1:
                    if code == HUE:
                        g0, g1, g2, da = _hue_back(v0, v1, v2, a, g0, g1, g2)
                if ((CODES >> RGB_SHIFT) & 1) | ((CODES >> RGB_GAIN) & 1):
                    if (code == RGB_SHIFT) | (code == RGB_GAIN):
                        gain = code == RGB_GAIN
                        z0 = _band(tl.where(gain, v0 * a, v0 + a), g0)
                        z1 = _band(tl.where(gain, v1 * bb, v1 + bb), g1)
                        z2 = _band(tl.where(gain, v2 * cc, v2 + cc), g2)
                        da = tl.where(gain, z0 * v0, z0)
                        db = tl.where(gain, z1 * v1, z1)
                        dc = tl.where(gain, z2 * v2, z2)
                        if PRM:
                            tl.atomic_add(gp + 2, _tsum(dc, pmask))
                        g0 = tl.where(gain, z0 * a, z0)
                        g1 = tl.where(gain, z1 * bb, z1)
                        g2 = tl.where(gain, z2 * cc, z2)
            if PRM:
                tl.atomic_add(gp, _tsum(da, pmask))
                tl.atomic_add(gp + 1, _tsum(db, pmask))
            if do_stat:
                tl.atomic_add(gmk, _tsum(dm, pmask))
                tl.atomic_add(glok, _tsum(dlo0, pmask))
                tl.atomic_add(ghik, _tsum(dhi0, pmask))
                if NCH > 1:
                    tl.atomic_add(glok + 1, _tsum(dlo1, pmask))
                    tl.atomic_add(ghik + 1, _tsum(dhi1, pmask))
                if NCH > 2:
                    tl.atomic_add(glok + 2, _tsum(dlo2, pmask))
                    tl.atomic_add(ghik + 2, _tsum(dhi2, pmask))
                if NCH > 3:
                    tl.atomic_add(glok + 3, _tsum(dlo3, pmask))
                    tl.atomic_add(ghik + 3, _tsum(dhi3, pmask))
    return g0, g1, g2, g3


@triton.jit
def _ties(v, c, stk, pmask, nlok, nhik, WORK: tl.constexpr):
    """Count channel ``c``'s pixels equal to its min / max (AUTOCONTRAST)."""
    lo = tl.load(stk + c * 2).to(WORK)
    hi = tl.load(stk + c * 2 + 1).to(WORK)
    tl.atomic_add(nlok + c, _tsum(tl.where(v == lo, 1.0, 0.0), pmask))
    tl.atomic_add(nhik + c, _tsum(tl.where(v == hi, 1.0, 0.0), pmask))


@triton.jit
def _minmax_share(g, v, c, stk, glok, ghik, nlok, nhik, WORK: tl.constexpr):
    """AUTOCONTRAST's min / max gradients shared evenly among the tied pixels of channel ``c``."""
    lo = tl.load(stk + c * 2).to(WORK)
    hi = tl.load(stk + c * 2 + 1).to(WORK)
    nl = tl.load(nlok + c)
    nh = tl.load(nhik + c)
    tlo = tl.where((nl > 0.0) & (hi != lo), _div(tl.load(glok + c), tl.maximum(nl, 1.0)), 0.0)  # scalars
    thi = tl.where((nh > 0.0) & (hi != lo), _div(tl.load(ghik + c), tl.maximum(nh, 1.0)), 0.0)
    return g + tl.where(v == lo, tlo, 0.0) + tl.where(v == hi, thi, 0.0)


@triton.jit
def _epi_back(g, vpre, c, b, ys, xs, pmask, mean, std, rects, rvals, rphase, R, gmean, gstd, grv,
              C: tl.constexpr, OUT_SCALE: tl.constexpr, NORM: tl.constexpr, RECTS: tl.constexpr, EPG: tl.constexpr,
              WORK: tl.constexpr):
    """Channel ``c``'s gradient through rects (later ones win), out_scale and normalize; their gradients (EPG)."""
    who1 = tl.full(g.shape, -1, tl.int32)
    who2 = tl.full(g.shape, -1, tl.int32)
    if RECTS:
        for r in range(R):
            i = b * R + r
            ph = tl.load(rphase + i)
            x0 = tl.load(rects + i * 4)
            y0 = tl.load(rects + i * 4 + 1)
            x1 = tl.load(rects + i * 4 + 2)
            y1 = tl.load(rects + i * 4 + 3)
            inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
            who1 = tl.where(inside & (ph == 1), r, who1)
            who2 = tl.where(inside & (ph == 2), r, who2)
        if EPG:
            for r in range(R):
                tl.atomic_add(grv + (b * R + r) * C + c, _tsum(tl.where(who2 == r, g, 0.0), pmask))
        g = tl.where(who2 >= 0, 0.0, g)
    if NORM:
        mu = tl.load(mean + b * C + c).to(WORK)
        sd = tl.load(std + b * C + c).to(WORK)
        if EPG:
            v = vpre
            if RECTS:
                v = tl.where(who1 >= 0, tl.load(rvals + (b * R + who1) * C + c, mask=pmask & (who1 >= 0), other=0.0), v)
            if OUT_SCALE != 1.0:
                v = v * OUT_SCALE
            tl.atomic_add(gmean + b * C + c, _tsum(-g / sd, pmask))
            tl.atomic_add(gstd + b * C + c, _tsum(-g * (v - mu) / (sd * sd), pmask))
        g = g / sd
    if OUT_SCALE != 1.0:
        g = g * OUT_SCALE
    if RECTS:
        if EPG:
            for r in range(R):
                tl.atomic_add(grv + (b * R + r) * C + c, _tsum(tl.where(who1 == r, g, 0.0), pmask))
        g = tl.where(who1 >= 0, 0.0, g)
    return g


@triton.jit
def _coords(mat_b, win_b, ys, xs, CLAMP: tl.constexpr, WORK: tl.constexpr):
    """Sampling coordinates as the forward computes them, plus what their backward needs."""
    xf = xs.to(WORK)
    yf = ys.to(WORK)
    xh = tl.load(mat_b + 0) * xf + tl.load(mat_b + 1) * yf + tl.load(mat_b + 2)
    yh = tl.load(mat_b + 3) * xf + tl.load(mat_b + 4) * yf + tl.load(mat_b + 5)
    wh = tl.load(mat_b + 6) * xf + tl.load(mat_b + 7) * yf + tl.load(mat_b + 8)
    x0 = _div(xh, wh)
    y0 = _div(yh, wh)
    x_lo = tl.load(win_b + 0)
    y_lo = tl.load(win_b + 1)
    x_hi = tl.load(win_b + 2)
    y_hi = tl.load(win_b + 3)
    x = x0
    y = y0
    kx = tl.full(xf.shape, 1.0, WORK)
    ky = kx
    if CLAMP:
        ax, bx = _clamp_shares(x0, x_lo, x_hi)
        ay, by = _clamp_shares(y0, y_lo, y_hi)
        kx = ax * bx
        ky = ay * by
        x = tl.minimum(tl.maximum(x, x_lo), x_hi)
        y = tl.minimum(tl.maximum(y, y_lo), y_hi)
    return xf, yf, wh, x0, y0, x, y, kx, ky, x_lo, y_lo, x_hi, y_hi


@triton.jit
def _clamp_shares(v, lo, hi):
    """``d maximum(v, lo) / d v`` and ``d minimum(maximum(v, lo), hi) / d maximum(v, lo)``, torch's rule (half at a
    tie): the clamped coordinate's gradient goes ``a * b`` to v, ``(1 - a) * b`` to lo and ``1 - b`` to hi."""
    a = tl.where(v > lo, 1.0, tl.where(v == lo, 0.5, 0.0))
    m = tl.maximum(v, lo)
    b = tl.where(m < hi, 1.0, tl.where(m == hi, 0.5, 0.0))
    return a, b


@triton.jit
def _bil_ch(gc, c, src_b, fill_b, gsrc_b, gfill_b, o00, o10, o01, o11, q00, q10, q01, q11,
            k00, k10, k01, k11, w00, w10, w01, w11, msum, fx, fy, pmask, ssc, HW,
            FILL: tl.constexpr, SRCG: tl.constexpr, FILLG: tl.constexpr, IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """Bilinear backward of channel ``c``: taps and fill; returns (d X, d Y, d coverage) per pixel."""
    src_c = src_b + c * ssc
    v00 = _read(src_c + o00, k00, IN_SCALE, WORK)
    v10 = _read(src_c + o10, k10, IN_SCALE, WORK)
    v01 = _read(src_c + o01, k01, IN_SCALE, WORK)
    v11 = _read(src_c + o11, k11, IN_SCALE, WORK)
    dsx = (1.0 - fy) * (v10 - v00) + fy * (v11 - v01)
    dsy = (1.0 - fx) * (v01 - v00) + fx * (v11 - v10)
    gms = tl.full(gc.shape, 0.0, WORK)
    if FILL:
        fl = tl.load(fill_b + c).to(WORK)
        s = w00 * v00 + w10 * v10 + w01 * v01 + w11 * v11
        gms = gc * (s - fl)
        if FILLG:
            tl.atomic_add(gfill_b + c, _tsum(gc * (1.0 - msum), pmask))
        gc = gc * msum
    if SRCG:
        gs_c = gsrc_b + c * HW
        tl.atomic_add(gs_c + q00, gc * w00 * IN_SCALE, mask=k00)
        tl.atomic_add(gs_c + q10, gc * w10 * IN_SCALE, mask=k10)
        tl.atomic_add(gs_c + q01, gc * w01 * IN_SCALE, mask=k01)
        tl.atomic_add(gs_c + q11, gc * w11 * IN_SCALE, mask=k11)
    return gc * dsx, gc * dsy, gms


@triton.jit
def _bilinear_back(g0, g1, g2, g3, src_b, fill_b, gsrc_b, gfill_b, gmat_b, mat_b, win_b, ys, xs, pmask,
                   H, W, ssc, ssh, ssw, NCH: tl.constexpr, CLAMP: tl.constexpr, FILL: tl.constexpr,
                   SRCG: tl.constexpr, FILLG: tl.constexpr, MATG: tl.constexpr, IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """Bilinear resampling backward: taps, fill and (through X, Y and the perspective divide) the matrix ``gmat_b``
    [0:9]; with CLAMP, the window [9:13]."""
    xf, yf, wh, x0, y0, x, y, kx, ky, x_lo, y_lo, x_hi, y_hi = _coords(mat_b, win_b, ys, xs, CLAMP, WORK)
    u0, t0, u1, t1, fx, fy, ok_u0, ok_u1, ok_t0, ok_t1 = _bilinear_cell(x, y, H, W, x_lo, y_lo, x_hi, y_hi, CLAMP)
    k00 = ok_u0 & ok_t0 & pmask
    k10 = ok_u1 & ok_t0 & pmask
    k01 = ok_u0 & ok_t1 & pmask
    k11 = ok_u1 & ok_t1 & pmask
    w00 = tl.where(k00, (1.0 - fx) * (1.0 - fy), 0.0)
    w10 = tl.where(k10, fx * (1.0 - fy), 0.0)
    w01 = tl.where(k01, (1.0 - fx) * fy, 0.0)
    w11 = tl.where(k11, fx * fy, 0.0)
    msum = w00 + w10 + w01 + w11
    dmx = tl.where(k00, fy - 1.0, 0.0) + tl.where(k10, 1.0 - fy, 0.0) + tl.where(k01, -fy, 0.0) + tl.where(k11, fy, 0.0)
    dmy = tl.where(k00, fx - 1.0, 0.0) + tl.where(k10, -fx, 0.0) + tl.where(k01, 1.0 - fx, 0.0) + tl.where(k11, fx, 0.0)
    iu0 = tl.minimum(tl.maximum(u0, 0.0), W - 1).to(tl.int32)
    iu1 = tl.minimum(tl.maximum(u1, 0.0), W - 1).to(tl.int32)
    it0 = tl.minimum(tl.maximum(t0, 0.0), H - 1).to(tl.int32)
    it1 = tl.minimum(tl.maximum(t1, 0.0), H - 1).to(tl.int32)
    o00 = it0 * ssh + iu0 * ssw
    o10 = it0 * ssh + iu1 * ssw
    o01 = it1 * ssh + iu0 * ssw
    o11 = it1 * ssh + iu1 * ssw
    q00 = it0 * W + iu0
    q10 = it0 * W + iu1
    q01 = it1 * W + iu0
    q11 = it1 * W + iu1
    HW = H * W
    gfx, gfy, gms = _bil_ch(g0, 0, src_b, fill_b, gsrc_b, gfill_b, o00, o10, o01, o11, q00, q10, q01, q11,
                            k00, k10, k01, k11, w00, w10, w01, w11, msum, fx, fy, pmask, ssc, HW,
                            FILL, SRCG, FILLG, IN_SCALE, WORK)
    if NCH > 1:
        ax, ay, am = _bil_ch(g1, 1, src_b, fill_b, gsrc_b, gfill_b, o00, o10, o01, o11, q00, q10, q01, q11,
                             k00, k10, k01, k11, w00, w10, w01, w11, msum, fx, fy, pmask, ssc, HW,
                             FILL, SRCG, FILLG, IN_SCALE, WORK)
        gfx += ax
        gfy += ay
        gms += am
    if NCH > 2:
        ax, ay, am = _bil_ch(g2, 2, src_b, fill_b, gsrc_b, gfill_b, o00, o10, o01, o11, q00, q10, q01, q11,
                             k00, k10, k01, k11, w00, w10, w01, w11, msum, fx, fy, pmask, ssc, HW,
                             FILL, SRCG, FILLG, IN_SCALE, WORK)
        gfx += ax
        gfy += ay
        gms += am
    if NCH > 3:
        ax, ay, am = _bil_ch(g3, 3, src_b, fill_b, gsrc_b, gfill_b, o00, o10, o01, o11, q00, q10, q01, q11,
                             k00, k10, k01, k11, w00, w10, w01, w11, msum, fx, fy, pmask, ssc, HW,
                             FILL, SRCG, FILLG, IN_SCALE, WORK)
        gfx += ax
        gfy += ay
        gms += am
    if MATG:
        gcx = gfx + gms * dmx  # d L / d X (clamped)
        gcy = gfy + gms * dmy
        if CLAMP:  # the window's share (resize: the crop box)
            ax, bx = _clamp_shares(x0, x_lo, x_hi)
            ay, by = _clamp_shares(y0, y_lo, y_hi)
            tl.atomic_add(gmat_b + 9, _tsum(gcx * (1.0 - ax) * bx, pmask))
            tl.atomic_add(gmat_b + 10, _tsum(gcy * (1.0 - ay) * by, pmask))
            tl.atomic_add(gmat_b + 11, _tsum(gcx * (1.0 - bx), pmask))
            tl.atomic_add(gmat_b + 12, _tsum(gcy * (1.0 - by), pmask))
        gx = gcx * kx
        gy = gcy * ky
        gxh = gx / wh
        gyh = gy / wh
        gwh = -(gx * x0 + gy * y0) / wh
        tl.atomic_add(gmat_b + 0, _tsum(gxh * xf, pmask))
        tl.atomic_add(gmat_b + 1, _tsum(gxh * yf, pmask))
        tl.atomic_add(gmat_b + 2, _tsum(gxh, pmask))
        tl.atomic_add(gmat_b + 3, _tsum(gyh * xf, pmask))
        tl.atomic_add(gmat_b + 4, _tsum(gyh * yf, pmask))
        tl.atomic_add(gmat_b + 5, _tsum(gyh, pmask))
        tl.atomic_add(gmat_b + 6, _tsum(gwh * xf, pmask))
        tl.atomic_add(gmat_b + 7, _tsum(gwh * yf, pmask))
        tl.atomic_add(gmat_b + 8, _tsum(gwh, pmask))


@triton.jit
def _near_ch(gc, c, ok, q, gsrc_b, gfill_b, pmask, HW,
             FILL: tl.constexpr, SRCG: tl.constexpr, FILLG: tl.constexpr, IN_SCALE: tl.constexpr):
    if FILL:
        if FILLG:
            tl.atomic_add(gfill_b + c, _tsum(tl.where(ok, 0.0, gc), pmask))
    if SRCG:
        tl.atomic_add(gsrc_b + c * HW + q, gc * IN_SCALE, mask=ok & pmask)


@triton.jit
def _nearest_back(g0, g1, g2, g3, gsrc_b, gfill_b, mat_b, win_b, ys, xs, pmask, H, W,
                  NCH: tl.constexpr, CLAMP: tl.constexpr, FILL: tl.constexpr,
                  SRCG: tl.constexpr, FILLG: tl.constexpr, IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """Nearest resampling backward: the tap and the fill (no coordinate gradient)."""
    xf, yf, wh, x0, y0, x, y, kx, ky, x_lo, y_lo, x_hi, y_hi = _coords(mat_b, win_b, ys, xs, CLAMP, WORK)
    u = _rint(x)
    t = _rint(y)
    ok = (u >= 0.0) & (u <= W - 1) & (t >= 0.0) & (t <= H - 1)
    if not CLAMP:
        ok = ok & (u >= x_lo) & (u <= x_hi) & (t >= y_lo) & (t <= y_hi)
    q = tl.minimum(tl.maximum(t, 0.0), H - 1).to(tl.int32) * W + tl.minimum(tl.maximum(u, 0.0), W - 1).to(tl.int32)
    HW = H * W
    _near_ch(g0, 0, ok, q, gsrc_b, gfill_b, pmask, HW, FILL, SRCG, FILLG, IN_SCALE)
    if NCH > 1:
        _near_ch(g1, 1, ok, q, gsrc_b, gfill_b, pmask, HW, FILL, SRCG, FILLG, IN_SCALE)
    if NCH > 2:
        _near_ch(g2, 2, ok, q, gsrc_b, gfill_b, pmask, HW, FILL, SRCG, FILLG, IN_SCALE)
    if NCH > 3:
        _near_ch(g3, 3, ok, q, gsrc_b, gfill_b, pmask, HW, FILL, SRCG, FILLG, IN_SCALE)


@triton.jit
def _read_ch(gc, c, sharp, a, q, src_b, gsrc_b, gp, ys, xs, pmask, H, W, ssc, ssh, ssw,
             SHARP: tl.constexpr, SRCG: tl.constexpr, PRM: tl.constexpr, IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """Backward of the plain read, or of SHARPNESS's 3x3 stencil (``sharp``; factor gradient into ``gp``)."""
    gs_c = gsrc_b + c * (H * W)
    q0 = ys * W + xs
    if SHARP:
        if sharp:
            src_c = src_b + c * ssc
            o = ys * ssh + xs * ssw
            inner = pmask & (ys >= 1) & (ys < H - 1) & (xs >= 1) & (xs < W - 1)
            v = _read(src_c + o, pmask, IN_SCALE, WORK)
            n = tl.full(gc.shape, 0.0, WORK)
            for dy in tl.static_range(3):
                for dx in tl.static_range(3):
                    if dy * 3 + dx != 4:
                        n = n + _read(src_c + o + (dy - 1) * ssh + (dx - 1) * ssw, inner, IN_SCALE, WORK)
            blur = n * (1.0 / 13.0) + v * (5.0 / 13.0)
            gy = tl.where(q, 0.0, tl.where(inner, _band(v + (1.0 - a) * (blur - v), gc), 0.0))  # uint8 domain: floor
            if PRM:  # folded in per channel: keeps the live ranges short (no spill)
                tl.atomic_add(gp, _tsum(gy * (v - blur), pmask))
            t = gy * (1.0 - a) * (1.0 / 13.0) * IN_SCALE
            if SRCG:
                centre = tl.where(inner, gy * a * IN_SCALE + 5.0 * t, gc * IN_SCALE)
                tl.atomic_add(gs_c + q0, centre, mask=pmask)
                for dy in tl.static_range(3):
                    for dx in tl.static_range(3):
                        if dy * 3 + dx != 4:
                            tl.atomic_add(gs_c + q0 + (dy - 1) * W + (dx - 1), t, mask=inner)
        else:
            if SRCG:
                tl.store(gs_c + q0, gc * IN_SCALE, mask=pmask)
    else:
        if SRCG:
            tl.store(gs_c + q0, gc * IN_SCALE, mask=pmask)


# ----------------------------------------------------------------------------------------------
# the kernel
# ----------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=BACKWARD_PLAIN)
def backward_kernel(src, gout, prog, par, stf, stats, luts, mat, win, fill, mean, std, rects, rvals, rphase, keys,
                    gsrc, gprm, gmat, gfill, gmean, gstd, grv, gm, glo, ghi, nlo, nhi,
                    KT, H, W, Ho, Wo, R, NPIX,
                    ssb, ssc, ssh, ssw, gsb, gsc, gsh, gsw,
                    C: tl.constexpr, OC: tl.constexpr, K: tl.constexpr, CODES: tl.constexpr, RGB: tl.constexpr,
                    GEO: tl.constexpr, BILINEAR: tl.constexpr, CLAMP: tl.constexpr, FILL: tl.constexpr,
                    SHARP: tl.constexpr, IN_SCALE: tl.constexpr, EPI: tl.constexpr, OUT_SCALE: tl.constexpr,
                    NORM: tl.constexpr, RECTS: tl.constexpr, FINAL: tl.constexpr, SRCG: tl.constexpr,
                    PRM: tl.constexpr, MATG: tl.constexpr, FILLG: tl.constexpr, EPG: tl.constexpr,
                    BH: tl.constexpr, BW: tl.constexpr, WORK: tl.constexpr):
    """Backward of one Stage on a tile of one sample (see the module doc).

    FINAL: the gradient pass (image and every Plan tensor); else the statistics pass of op ``KT``: samples
    whose op at KT reads a live statistic (CONTRAST, AUTOCONTRAST not straight-through, float domain)
    accumulate its gradient into ``gm`` / ``glo`` / ``ghi`` and their min / max ties into ``nlo`` / ``nhi``."""
    b = tl.program_id(1)
    prog_b = prog + b * K
    par_b = par + b * (K * 4)
    stf_b = stf + b * K
    keys_b = keys + b * K
    MX = tl.maximum(Ho, Wo)
    run = True
    if not FINAL:
        code_t, a_t, bb_t, q_t, bound_t = _load_op(prog_b, par_b, KT, WORK)
        run = ((code_t == 2) | ((code_t == 11) & (tl.load(stf_b + KT) == 0))) & (~q_t)
    if run:
        ys, xs, pmask = _tile(Ho, Wo, BH, BW)
        src_b = src + b.to(tl.int64) * ssb
        stats_b = stats + b * (K * C * 2)
        luts_b = luts + b * (K * C * 256)
        fill_b = fill + b * C
        o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m = _setup(
            mat + b * 9, win + b * 4, ys, xs, pmask, H, W, ssh, ssw, mat, Wo, 0, GEO, BILINEAR, CLAMP, WORK)
        go_b = gout + b.to(tl.int64) * gsb + ys * gsh + xs * gsw
        g0 = tl.load(go_b, mask=pmask, other=0.0).to(WORK)
        zero = tl.full(g0.shape, 0.0, WORK)
        g1 = zero
        g2 = zero
        g3 = zero
        if OC > 1:
            g1 = tl.load(go_b + gsc, mask=pmask, other=0.0).to(WORK)
        if OC > 2:
            g2 = tl.load(go_b + 2 * gsc, mask=pmask, other=0.0).to(WORK)
        if OC > 3:
            g3 = tl.load(go_b + 3 * gsc, mask=pmask, other=0.0).to(WORK)
        if EPI:
            p0 = g0
            p1 = g1
            p2 = g2
            p3 = g3
            if NORM & EPG:  # normalize's std gradient reads the values before the epilogue
                p0, p1, p2, p3 = _chain(src_b, 0, fill_b, prog_b, par_b, stats_b, luts_b, K,
                                        o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                                        ys, xs, pmask, H, W, ssc, ssh, ssw,
                                        C, C, K, CODES, RGB, GEO, BILINEAR, FILL, False, SHARP, IN_SCALE, WORK,
                                        par_b, False, 0, keys_b, par_b, False, 0, MX,
                                        par_b, 0, 0, 0, Ho, Wo, 0)
            g0 = _epi_back(g0, p0, 0, b, ys, xs, pmask, mean, std, rects, rvals, rphase, R, gmean, gstd, grv,
                           C, OUT_SCALE, NORM, RECTS, EPG, WORK)
            if OC > 1:
                g1 = _epi_back(g1, p1, 1, b, ys, xs, pmask, mean, std, rects, rvals, rphase, R, gmean, gstd, grv,
                               C, OUT_SCALE, NORM, RECTS, EPG, WORK)
            if OC > 2:
                g2 = _epi_back(g2, p2, 2, b, ys, xs, pmask, mean, std, rects, rvals, rphase, R, gmean, gstd, grv,
                               C, OUT_SCALE, NORM, RECTS, EPG, WORK)
            if OC > 3:
                g3 = _epi_back(g3, p3, 3, b, ys, xs, pmask, mean, std, rects, rvals, rphase, R, gmean, gstd, grv,
                               C, OUT_SCALE, NORM, RECTS, EPG, WORK)
        for kk in range(K):
            k = K - 1 - kk
            if k >= KT:
                v0, v1, v2, v3 = _chain(src_b, 0, fill_b, prog_b, par_b, stats_b, luts_b, k,
                                        o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                                        ys, xs, pmask, H, W, ssc, ssh, ssw,
                                        C, C, K, CODES, RGB, GEO, BILINEAR, FILL, False, SHARP, IN_SCALE, WORK,
                                        par_b, False, 0, keys_b, par_b, False, 0, MX,
                                        par_b, 0, 0, 0, Ho, Wo, 0)
                code, a, bb, q, bound = _load_op(prog_b, par_b, k, WORK)
                cc = tl.load(par_b + k * 4 + 2).to(WORK)
                st = tl.load(stf_b + k)
                stk = stats_b + k * (C * 2)
                bk = b * K + k
                if CODES & RANDOM_MASK:  # a random op: its own backward below, an identity for _op_back
                    rnd = _is_random(code)
                    if rnd:
                        key = tl.load(keys_b + k).to(tl.uint32)
                        g0, da, db = _random_back(g0, v0, code, key, 0, ys, xs, a, bb, cc, q, MX, WORK)
                        if C > 1:
                            g1, da1, db1 = _random_back(g1, v1, code, key, 1, ys, xs, a, bb, cc, q, MX, WORK)
                            da += da1
                            db += db1
                        if C > 2:
                            g2, da2, db2 = _random_back(g2, v2, code, key, 2, ys, xs, a, bb, cc, q, MX, WORK)
                            da += da2
                            db += db2
                        if C > 3:
                            g3, da3, db3 = _random_back(g3, v3, code, key, 3, ys, xs, a, bb, cc, q, MX, WORK)
                            da += da3
                            db += db3
                        if PRM:
                            tl.atomic_add(gprm + bk * 4, _tsum(da, pmask))
                            tl.atomic_add(gprm + bk * 4 + 1, _tsum(db, pmask))
                    code = tl.where(rnd, 0, code)
                g0, g1, g2, g3 = _op_back(g0, g1, g2, g3, v0, v1, v2, v3, code, a, bb, cc, q, st, stk, pmask,
                                          gprm + bk * 4, gm + bk, glo + bk * C, ghi + bk * C, k == KT,
                                          PRM, C, CODES, RGB, WORK)
                if k == KT:
                    if code == AUTOCONTRAST:
                        _ties(v0, 0, stk, pmask, nlo + bk * C, nhi + bk * C, WORK)
                        if C > 1:
                            _ties(v1, 1, stk, pmask, nlo + bk * C, nhi + bk * C, WORK)
                        if C > 2:
                            _ties(v2, 2, stk, pmask, nlo + bk * C, nhi + bk * C, WORK)
                        if C > 3:
                            _ties(v3, 3, stk, pmask, nlo + bk * C, nhi + bk * C, WORK)
                else:
                    if (CODES >> CONTRAST) & 1:  # CONTRAST's gray mean: every pixel
                        if (code == CONTRAST) & (~q):
                            share = tl.load(gm + bk) / NPIX
                            if C == 3:
                                g0 += share * 0.2989
                                g1 += share * 0.587
                                g2 += share * 0.114
                            else:
                                g0 += share
                    if (CODES >> AUTOCONTRAST) & 1:  # AUTOCONTRAST's min / max: the tied pixels
                        if (code == AUTOCONTRAST) & (~q) & (st == 0):
                            g0 = _minmax_share(g0, v0, 0, stk, glo + bk * C, ghi + bk * C, nlo + bk * C, nhi + bk * C, WORK)
                            if C > 1:
                                g1 = _minmax_share(g1, v1, 1, stk, glo + bk * C, ghi + bk * C, nlo + bk * C, nhi + bk * C, WORK)
                            if C > 2:
                                g2 = _minmax_share(g2, v2, 2, stk, glo + bk * C, ghi + bk * C, nlo + bk * C, nhi + bk * C, WORK)
                            if C > 3:
                                g3 = _minmax_share(g3, v3, 3, stk, glo + bk * C, ghi + bk * C, nlo + bk * C, nhi + bk * C, WORK)
        if FINAL:
            gsrc_b = gsrc + b.to(tl.int64) * (C * H * W)
            if GEO:
                if BILINEAR:
                    _bilinear_back(g0, g1, g2, g3, src_b, fill_b, gsrc_b, gfill + b * C, gmat + b * 13, mat + b * 9,
                                   win + b * 4, ys, xs, pmask, H, W, ssc, ssh, ssw,
                                   C, CLAMP, FILL, SRCG, FILLG, MATG, IN_SCALE, WORK)
                else:
                    _nearest_back(g0, g1, g2, g3, gsrc_b, gfill + b * C, mat + b * 9, win + b * 4, ys, xs, pmask, H, W,
                                  C, CLAMP, FILL, SRCG, FILLG, IN_SCALE, WORK)
            else:
                sharp = False
                a0 = 0.0
                q0 = False
                if SHARP:
                    code0, a0, bb0, q0, bound0 = _load_op(prog_b, par_b, 0, WORK)
                    sharp = code0 == 6
                gp0 = gprm + b * (K * 4)
                _read_ch(g0, 0, sharp, a0, q0, src_b, gsrc_b, gp0, ys, xs, pmask, H, W, ssc, ssh, ssw, SHARP, SRCG, PRM, IN_SCALE, WORK)
                if C > 1:
                    _read_ch(g1, 1, sharp, a0, q0, src_b, gsrc_b, gp0, ys, xs, pmask, H, W, ssc, ssh, ssw, SHARP, SRCG, PRM, IN_SCALE, WORK)
                if C > 2:
                    _read_ch(g2, 2, sharp, a0, q0, src_b, gsrc_b, gp0, ys, xs, pmask, H, W, ssc, ssh, ssw, SHARP, SRCG, PRM, IN_SCALE, WORK)
                if C > 3:
                    _read_ch(g3, 3, sharp, a0, q0, src_b, gsrc_b, gp0, ys, xs, pmask, H, W, ssc, ssh, ssw, SHARP, SRCG, PRM, IN_SCALE, WORK)


# ----------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------


def kernel_module(interpret: bool | None = None) -> ModuleType:
    """This module with its kernels built for the interpreter or the compiler (``None``: current mode)."""
    return _fused_any.module_copy(__name__, __file__, _INTERPRETED, interpret)


def _allowed(stage: Stage, k: int, channels: int) -> set[int]:
    """Op codes the reference runs at position k (neighbourhood ops only at k = 0 without geometry, RGB ops
    only for C == 3)."""
    present = set(stage.codes_at(k))
    if k > 0 or stage.geometry is not None:
        present.difference_update(int(o) for o in NEIGHBOURHOOD_OPS)
    if channels != 3:
        present.difference_update(int(o) for o in RGB_OPS)
    if stage.keys is None:
        present.difference_update(int(o) for o in RANDOM_OPS)
    return present


def supports(src: torch.Tensor, stage: Stage, epilogue: Epilogue | None) -> bool:
    """CUDA tensors (CPU ones under ``TRITON_INTERPRET=1``) of float16 / bfloat16 / float32 / float64 with C <= 4;
    no quantized geometry; no folded SHARPNESS (``fastaug.plan.unfold`` first); not a stage of
    ``fastaug.plan.reference_backward`` (random ops: covered)."""
    if src.dim() != 4 or src.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64) or stage.folds:
        return False
    if src.device.type != "cuda" and not knobs.runtime.interpret:
        return False
    if not 1 <= src.shape[1] <= 4 or stage.params.shape[-1] != NUM_PARAMS:
        return False
    geo = stage.geometry
    if geo is not None and (geo.quantize or (stage.program.shape[1] > 0 and int(Op.SHARPNESS) in stage.codes_at(0))):
        return False
    if reference_backward(stage, fused_random=True):
        return False
    return epilogue is None or epilogue.out_channels <= src.shape[1]


def launch(spec) -> None:
    """Run a prepared launch with this module's kernels of the current mode (compiled or interpreted)."""
    _fused_any.run_launch(kernel_module(), spec)


def prepare_backward(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, epilogue: Epilogue | None,
                     grad: torch.Tensor, needs: StageNeeds, straight_through: bool = False):
    """The launches of ``backward_kernel`` (statistics passes, last first, then the final pass) and the
    zero-initialised gradient buffers they write. No device work beyond small table preparation."""
    dev = src.device
    b, c, h, w = src.shape
    geo = stage.geometry
    ho, wo = (tuple(stage.out_size or (h, w)) if geo is not None else (h, w))
    k = stage.program.shape[1]
    work = _fused_any.plan_dtype(src)  # a float64 stage input: Plan tensors, maths and gradient buffers in float64
    fw = dict(device=dev, dtype=work)
    prog = stage.program.to(device=dev, dtype=torch.int32)
    bits = [sum(1 << code for code in _allowed(stage, i, c)) for i in range(k)]  # per position: the codes that run
    codes = 0
    for mask in bits:
        codes |= mask
    # the codes that do not run at their position become IDENTITY; cached per-position bitmasks: no host -> device copy
    eff = torch.where((constant(bits, torch.int64, dev) >> prog) & 1 != 0, prog, constant(0, torch.int32, dev))
    par = stage.params.detach().to(**fw).reshape(b, k, NUM_PARAMS).contiguous()
    st_flag = (constant(sum(1 << code for code in ST_CODES), torch.int64, dev) >> eff) & 1 != 0
    if not straight_through:
        st_flag = st_flag & (par[..., 2] > 0.5)
    ep = epilogue
    norm = ep is not None and ep.mean is not None
    nr = 0 if ep is None or ep.rects is None else int(ep.rects.shape[1])
    oc = ep.out_channels if ep is not None else c

    def tw(t: torch.Tensor | None, shape) -> torch.Tensor:
        return par if t is None else t.detach().to(**fw).reshape(shape).contiguous()

    ints = dict(device=dev, dtype=torch.int32)
    zeros = {
        "gsrc": (b, c, h, w) if needs.src else (1,), "gprm": (b, k, NUM_PARAMS), "gmat": (b, 13), "gfill": (b, c),
        "gmean": (b, c), "gstd": (b, c), "grv": (b, max(nr, 1), c), "gm": (b, max(k, 1)), "glo": (b, max(k, 1), c),
        "ghi": (b, max(k, 1), c), "nlo": (b, max(k, 1), c), "nhi": (b, max(k, 1), c),
    }  # fmt: skip
    flat = torch.zeros(sum(math.prod(s) for s in zeros.values()), **fw)  # one allocation, views per buffer
    bufs, at = {}, 0
    for n, shape in zeros.items():
        bufs[n] = flat[at : at + math.prod(shape)].view(shape)
        at += math.prod(shape)
    args = dict(
        src=src, gout=grad, prog=eff.contiguous(), par=par, stf=st_flag.to(torch.int32).contiguous(),
        stats=stats.detach().to(**fw).reshape(b, k, c, 2).contiguous() if k else par,
        luts=luts.detach().to(**fw).reshape(b, k, c, 256).contiguous() if k and stage.may_run(Op.EQUALIZE) else par,
        mat=tw(None if geo is None else geo.matrix, (b, 9)), win=tw(None if geo is None else geo.window, (b, 4)),
        fill=tw(None if geo is None else geo.fill, (b, c)),
        mean=tw(ep.mean if norm else None, (b, c)), std=tw(ep.std if norm else None, (b, c)),
        rects=ep.rects.to(**ints).contiguous() if nr else eff, rvals=tw(ep.rect_values if nr else None, (b, nr, c)),
        rphase=ep.rect_phase.to(**ints).contiguous() if nr else eff,
        keys=stage.keys.to(device=dev, dtype=torch.int64).contiguous() if stage.keys is not None else eff,
        **bufs,
        KT=-1, H=h, W=w, Ho=ho, Wo=wo, R=nr, NPIX=float(ho * wo),
        **{f"ss{n}": s for n, s in zip("bchw", src.stride())},
        **{f"gs{n}": s for n, s in zip("bchw", grad.stride())},
    )  # fmt: skip
    bh, bw = _fz._blocks(ho, wo, TILE_PIXELS)
    cx = dict(
        C=c, OC=oc, K=k, CODES=codes,
        RGB=c == 3 and any(op in _allowed(stage, i, c) for i in range(k) for op in (int(o) for o in RGB_OPS)),
        GEO=geo is not None, BILINEAR=bool(geo is not None and geo.bilinear), CLAMP=bool(geo is not None and geo.clamp),
        FILL=bool(geo is not None and geo.fill is not None),
        SHARP=geo is None and k > 0 and int(Op.SHARPNESS) in stage.codes_at(0),
        IN_SCALE=float(stage.in_scale), EPI=ep is not None, OUT_SCALE=float(ep.out_scale) if ep is not None else 1.0,
        NORM=norm, RECTS=nr > 0, BH=bh, BW=bw, WORK=tl.float64 if work == torch.float64 else tl.float32,
    )  # fmt: skip
    grid = (triton.cdiv(ho, bh) * triton.cdiv(wo, bw), b)
    launches = []
    stat_pass = dict(FINAL=False, SRCG=False, PRM=False, MATG=False, FILLG=False, EPG=False)
    for kt in range(k - 1, -1, -1):
        allowed = _allowed(stage, kt, c)
        if any(code in allowed for code in LIVE_CODES):
            launches.append(_fz.Launch("backward_kernel", grid, {**args, "KT": kt}, {**cx, **stat_pass}, NUM_WARPS))
    final = dict(
        FINAL=True, SRCG=bool(needs.src), PRM=bool(needs.params),
        MATG=bool((needs.matrix or (needs.window and cx["CLAMP"])) and cx["BILINEAR"]),
        FILLG=bool(needs.fill and cx["FILL"]), EPG=bool(needs.mean or needs.std or needs.rect_values),
    )  # fmt: skip
    cx_final = {**cx, **final}
    # gradients of the epilogue: only when asked (they are the only reason to recompute the chain at K)
    launches.append(_fz.Launch("backward_kernel", grid, args, cx_final, NUM_WARPS))
    return launches, bufs


def stage_backward(
    src: torch.Tensor,
    stage: Stage,
    stats: torch.Tensor,
    luts: torch.Tensor,
    epilogue: Epilogue | None,
    grad: torch.Tensor,
    needs: StageNeeds,
    straight_through: bool = False,
) -> StageGrads:
    """Gradients of one stage's inputs (``needs`` says which) from ``grad``, the gradient of its output."""
    src = src.detach()
    b, c = src.shape[:2]
    geo, ep = stage.geometry, epilogue
    launches, bufs = prepare_backward(src, stage, stats, luts, epilogue, grad.detach(), needs, straight_through)
    if grad.numel():
        for spec in launches:
            launch(spec)

    def back(name: str, ref: torch.Tensor | None, want: bool, cols: slice = slice(None)) -> torch.Tensor | None:
        if not want or ref is None:
            return None
        buf = bufs[name] if cols == slice(None) else bufs[name][:, cols]  # gmat: the matrix [0:9], the window [9:13]
        return buf.reshape(-1)[: ref.numel()].reshape(ref.shape).to(ref.dtype)

    nr = 0 if ep is None or ep.rects is None else int(ep.rects.shape[1])
    return StageGrads(
        src=bufs["gsrc"] if needs.src else None,
        params=back("gprm", stage.params, needs.params),
        matrix=back("gmat", None if geo is None else geo.matrix, needs.matrix, slice(0, 9)),
        window=back("gmat", None if geo is None or not geo.clamp else geo.window, needs.window, slice(9, 13)),
        fill=back("gfill", None if geo is None else geo.fill, needs.fill),
        mean=back("gmean", None if ep is None else ep.mean, needs.mean),
        std=back("gstd", None if ep is None else ep.std, needs.std),
        rect_values=back("grv", None if ep is None or nr == 0 else ep.rect_values, needs.rect_values),
    )


# ----------------------------------------------------------------------------------------------
# ahead-of-time compilation (no GPU needed; see ``kernels/triton/aot.py``)
# ----------------------------------------------------------------------------------------------

#: variants on the path of typical training pipelines: they must not spill
HOT = ("bwd_jitter_norm_erase", "bwd_affine_bilinear_fill", "bwd_resize_clamp", "bwd_nearest_fill", "bwd_sharpness",
       "bwd_jitter_noise_fog")


def representative_launches() -> dict:
    """Launch specs of ``backward_kernel`` for representative stages (224x224, batch 4, C = 3)."""
    from . import aot

    b, c, hw = 4, 3, 224
    x = torch.zeros(b, c, hw, hw)
    big = torch.zeros(b, c, 256, 320)
    grad = torch.zeros(b, c, hw, hw)
    every = StageNeeds(src=True, params=True, matrix=True, fill=True, window=True, taps=True, kernel=True, mean=True, std=True,
                       rect_values=True)
    specs = {}

    def add(name: str, src, stage: Stage, ep: Epilogue | None, which: int = -1) -> None:
        k = stage.program.shape[1]
        gout = grad.double() if src.dtype == torch.float64 else grad  # a float64 output's gradient is float64
        launches, _ = prepare_backward(src, stage, *aot._tables(b, k, c), ep, gout, every)
        specs[name] = launches[which]

    jitter = aot._stage(b, [(0, 1), (0, 2), (0, 3), (0, 4)], 4)
    add("bwd_jitter_norm_erase", x, jitter, aot._epilogue(b, c, torch.float32, True, 2))
    add("bwd_jitter_contrast_pass", x, jitter, aot._epilogue(b, c, torch.float32, True, 2), 0)
    geo = aot._geometry(b, c, True, False, True)
    geo.quantize = False
    add("bwd_affine_bilinear_fill", big, aot._stage(b, [], 0, geometry=geo, out_size=(hw, hw)), None)
    geo = aot._geometry(b, c, True, True, False)
    geo.quantize = False
    add("bwd_resize_clamp", big, aot._stage(b, [], 0, geometry=geo, out_size=(hw, hw)),
        aot._epilogue(b, c, torch.float16, True, 0))
    geo = aot._geometry(b, c, False, False, True)
    geo.quantize = False
    add("bwd_nearest_fill", big, aot._stage(b, [(0, 1, 8, 10)], 1, geometry=geo, out_size=(hw, hw)), None)
    add("bwd_sharpness", x, aot._stage(b, [(0, 1, 6, 8), (0, 1, 5, 13)], 2), None)
    geo = aot._geometry(b, c, True, False, True)
    geo.quantize = False
    add("bwd_randaug_all_codes", big.half(), aot._stage(b, None, 3, geometry=geo, out_size=(hw, hw)),
        aot._epilogue(b, c, torch.float16, True, 1))
    geo = aot._geometry(b, c, True, False, True)
    geo.quantize = False
    add("bwd_f64_affine_jitter", x.double(), aot._stage(b, [(0, 1, 2), (0, 3, 4)], 2, geometry=geo, out_size=(hw, hw)),
        aot._epilogue(b, c, torch.float64, True, 1))  # float64 input: float64 maths, Plan tensors and gradient buffers
    noisy = aot._stage(b, [(0, 1, 2), (0, int(Op.GAUSSIAN_NOISE), int(Op.PIXEL_DROPOUT), int(Op.FOG))], 2)
    noisy.keys = torch.zeros(b, 2, dtype=torch.int64)
    add("bwd_jitter_noise_fog", x, noisy, aot._epilogue(b, c, torch.float32, True, 0))
    auto = aot._stage(b, [(0, int(Op.AUTOCONTRAST))], 1)  # its tie decisions: exact divisions only (no div.full)
    add("bwd_autocontrast", x, auto, None)
    add("bwd_autocontrast_pass", x, auto, None, 0)
    return specs


def compile_all(target, names: tuple[str, ...] | None = None) -> dict:
    """Compile the representative variants for ``target`` (a ``GPUTarget``): ``{name: aot.Compiled}``."""
    from . import aot

    mod = kernel_module(interpret=False)
    out = {}
    for name, spec in representative_launches().items():
        if names is not None and name not in names:
            continue
        fn = getattr(mod, spec.kernel)
        opts = {"num_warps": spec.num_warps, "enable_fp_fusion": False}
        out[name] = aot.Compiled(name, spec, triton.compile(aot.ast_source(spec, fn), target=target, options=opts))
    return out
