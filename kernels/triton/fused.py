"""Fused Triton kernels for one Stage, and their host wrappers.

One program instance covers one sample and one ``BH x BW`` tile of output pixels (rows contiguous
along W), all channels of them. The channels are sampled first (geometry taps are shared), then one
runtime loop over the program applies each op to every channel under a single scalar branch on the
sample's op code (uniform within an instance). Static facts are ``tl.constexpr`` specialisations: the
geometry (present, bilinear, clamp, fill, quantize), K, the op codes that ``stage.codes_at(k)`` allows
(their union over k), SHARPNESS at k=0, the channel count (C <= 4: channels unrolled; more: a runtime
channel loop), in/out scales, normalize, rects and the output cast. Reductions combine per-tile sums,
minima/maxima and 256-bin histograms with atomics. The host side never synchronises with the device,
so ``apply``/``reduce`` can be captured in a CUDA graph.

Numerics follow ``kernels/reference.py``: float32 math, or float64 math in a stage whose input is float64 (every
Plan tensor then read in float64: ``plan_dtype``). Only the first stage of a Plan on float64 input is such a stage
(``engine.run_stage`` keeps intermediate stage outputs in float32), and the statistics tables and the reduction's
minima / maxima are in that working dtype too (``engine.table_dtype``): see ``fastaug/plan.py``. IEEE divisions, no FMA contraction
(launched with ``enable_fp_fusion=False``),
``rint`` = round half to even. One
deliberate difference: normalize multiplies by ``1/std`` (within the 1e-4 tolerance) instead of
dividing per element. SHARPNESS, defined for stages without geometry only, is an identity in a stage
with geometry. Under ``TRITON_INTERPRET=1`` the kernels run in Triton's CPU interpreter, which lacks
libdevice: ``rint`` then uses an exact floor-based emulation and ``pow`` a float64 exp2/log2 one. Kernels call
only triton.language builtins (``tl.full``, not ``tl.zeros``): the library's own ``@jit`` helpers are built for
the interpreter when triton is first imported under ``TRITON_INTERPRET=1``, and would then run interpreted (and
leave the language patched) inside a later ahead-of-time compile.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from types import ModuleType

import torch
import triton
import triton.language as tl
from triton import knobs
from triton.language.extra import libdevice

from fastaug.ops import counter
from fastaug.ops.catalogue import NEIGHBOURHOOD_OPS, RANDOM_OPS
from fastaug.plan import RGB_OPS, Epilogue, Op, Reduction, Stage

# Op codes from the catalogue: constexpr globals (compiled; the interpreter takes plain ints)
_code = int if knobs.runtime.interpret else tl.constexpr
IDENTITY = _code(int(Op.IDENTITY))
BRIGHTNESS = _code(int(Op.BRIGHTNESS))
CONTRAST = _code(int(Op.CONTRAST))
SATURATION = _code(int(Op.SATURATION))
HUE = _code(int(Op.HUE))
GAMMA = _code(int(Op.GAMMA))
SHARPNESS = _code(int(Op.SHARPNESS))
GRAYSCALE = _code(int(Op.GRAYSCALE))
INVERT = _code(int(Op.INVERT))
POSTERIZE = _code(int(Op.POSTERIZE))
SOLARIZE = _code(int(Op.SOLARIZE))
AUTOCONTRAST = _code(int(Op.AUTOCONTRAST))
EQUALIZE = _code(int(Op.EQUALIZE))
TO_FLOAT = _code(int(Op.TO_FLOAT))
TO_UINT8 = _code(int(Op.TO_UINT8))
GAUSSIAN_BLUR = _code(int(Op.GAUSSIAN_BLUR))
GAUSSIAN_NOISE = _code(int(Op.GAUSSIAN_NOISE))
CONVOLVE = _code(int(Op.CONVOLVE))
PIXEL_DROPOUT = _code(int(Op.PIXEL_DROPOUT))
SALT_AND_PEPPER = _code(int(Op.SALT_AND_PEPPER))
MULTIPLICATIVE_NOISE = _code(int(Op.MULTIPLICATIVE_NOISE))
RGB_SHIFT = _code(int(Op.RGB_SHIFT))
RGB_GAIN = _code(int(Op.RGB_GAIN))
FOG = _code(int(Op.FOG))
DOWNSCALE = _code(int(Op.DOWNSCALE))
_const = float if knobs.runtime.interpret else tl.constexpr
FOG_NORM = _const(counter.FOG_NORM)
FOG_CONTRAST = _const(counter.FOG_CONTRAST)

# Runtime ints that Triton's JIT does not specialise (``do_not_specialize``: no ``== 1`` constant, no 16-divisibility
# hint), so that a batch of another resolution, seed or epoch reuses the compiled kernel. Chosen where it costs nothing
# (the same PTX, compared ahead of time for sm_90 under Triton 3.6; tests/test_triton_specialize.py): the input size
# H, W (clamps, reflections, float compares) and in apply Ho (row masks, constant along W anyway); the hashes' h0 (a
# hash of seed and epoch: 1 epoch in 16 would compile a variant for h0 % 16 == 0; passed as an int32, ``_int32``) and
# slot. Kept: Wo (its divisibility makes the row masks constant over 16 pixels: ld/st.v4 need it), Ho in reduce (8-11
# more registers without), every stride (the row / plane / batch strides' divisibility aligns the 16-byte loads and
# stores, 40 -> 96 registers and no v4 without; the pixel stride == 1 makes rows contiguous), the rect count R (not a
# size), the draw counts total / N / T (a batch size; total's divisibility vectorises the hash stores).
APPLY_PLAIN = ("H", "W", "Ho")
REDUCE_PLAIN = ("H", "W")
HASH32_PLAIN = ("h0", "slot")
HASH32_TABLE_PLAIN = ("h0",)

_INTERP = tl.constexpr(bool(knobs.runtime.interpret))
_INTERPRETED = bool(knobs.runtime.interpret)  # the mode the kernels of this module copy were built for

# ----------------------------------------------------------------------------------------------
# device helpers
# ----------------------------------------------------------------------------------------------


@triton.jit
def _rint(x):
    """Round half to even (libdevice, or an exact floor-based emulation in the interpreter)."""
    if _INTERP:
        f = tl.floor(x)
        d = x - f
        odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
        r = tl.where(d > 0.5, f + 1.0, tl.where(d < 0.5, f, tl.where(odd, f + 1.0, f)))
    else:
        r = libdevice.rint(x)
    return r


@triton.jit
def _pow(x, y):
    """``x ** y`` (libdevice, or a float64 exp2/log2 emulation in the interpreter)."""
    if _INTERP:
        xd = x.to(tl.float64)
        yd = y.to(tl.float64)
        ax = tl.where(xd < 0.0, -xd, xd)
        r = tl.exp2(yd * tl.log2(tl.where(ax > 0.0, ax, 1.0)))
        r = tl.where(ax == 0.0, tl.where(yd > 0.0, 0.0, tl.where(yd == 0.0, 1.0, float("inf"))), r)
        whole = tl.floor(yd) == yd
        odd = whole & ((yd - 2.0 * tl.floor(yd * 0.5)) != 0.0)
        r = tl.where(xd < 0.0, tl.where(whole, tl.where(odd, -r, r), float("nan")), r)
        r = r.to(x.dtype)
    else:
        r = libdevice.pow(x, y)
    return r


@triton.jit
def _div(x, y):
    """IEEE round-to-nearest division (Triton's ``/`` on float32 is approximate)."""
    if x.dtype == tl.float64:
        r = x / y
    else:
        r = tl.math.div_rn(x, y)
    return r


@triton.jit
def _trunc(x, q):
    return tl.where(q, tl.floor(x), x)


@triton.jit
def _clip(x, bound):
    """``torch.clamp(x, 0, bound)``: NaN stays NaN (as torch and numba; Triton's default min / max return the other
    operand, min.f32 / max.f32, in the interpreter too: np.fmin / np.fmax)."""
    return tl.minimum(tl.maximum(x, 0.0, propagate_nan=tl.PropagateNan.ALL), bound, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _fmod1(x):
    """``torch.fmod(x, 1)``."""
    return x - tl.where(x >= 0.0, tl.floor(x), -tl.floor(-x))


@triton.jit
def _gray(r, g, b):
    return r * 0.2989 + g * 0.587 + b * 0.114


@triton.jit
def _read(ptrs, mask, IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """Working values ``src * in_scale`` (0 where masked)."""
    v = tl.load(ptrs, mask=mask, other=0).to(WORK)
    if IN_SCALE != 1.0:
        v = v * IN_SCALE
    return v


@triton.jit
def _bilinear_cell(x, y, H, W, x_lo, y_lo, x_hi, y_hi, CLAMP: tl.constexpr):
    """The bilinear cell of sampling point (x, y): corners (u0, t0), (u1, t1), fractions (fx, fy) and
    which tap columns / rows are valid (in the frame; and in the window unless ``CLAMP``)."""
    u0 = tl.floor(x)
    t0 = tl.floor(y)
    fx = x - u0
    fy = y - t0
    u1 = u0 + 1.0
    t1 = t0 + 1.0
    ok_u0 = (u0 >= 0.0) & (u0 <= W - 1)
    ok_u1 = (u1 >= 0.0) & (u1 <= W - 1)
    ok_t0 = (t0 >= 0.0) & (t0 <= H - 1)
    ok_t1 = (t1 >= 0.0) & (t1 <= H - 1)
    if not CLAMP:
        ok_u0 = ok_u0 & (u0 >= x_lo) & (u0 <= x_hi)
        ok_u1 = ok_u1 & (u1 >= x_lo) & (u1 <= x_hi)
        ok_t0 = ok_t0 & (t0 >= y_lo) & (t0 <= y_hi)
        ok_t1 = ok_t1 & (t1 >= y_lo) & (t1 <= y_hi)
    return u0, t0, u1, t1, fx, fy, ok_u0, ok_u1, ok_t0, ok_t1


@triton.jit
def _setup(mat_b, win_b, ys, xs, pmask, H, W, ssh, ssw, disp_b, Wo, HASD: tl.constexpr,
           GEO: tl.constexpr, BILINEAR: tl.constexpr, CLAMP: tl.constexpr, WORK: tl.constexpr):
    """Per-pixel source taps: offsets, load masks, weights (times validity) and coverage ``m``; with ``HASD`` the
    sample's displacement [Ho, Wo, 2] at ``disp_b`` moves each output pixel before the matrix (elastic).

    Without geometry the first offset/mask is the pixel itself and the rest is unused."""
    if GEO:
        xf = xs.to(WORK)
        yf = ys.to(WORK)
        if HASD:
            dofs = (ys * Wo + xs) * 2
            xf = xf + tl.load(disp_b + dofs, mask=pmask, other=0.0).to(WORK)
            yf = yf + tl.load(disp_b + dofs + 1, mask=pmask, other=0.0).to(WORK)
        m00 = tl.load(mat_b + 0).to(WORK)
        m01 = tl.load(mat_b + 1).to(WORK)
        m02 = tl.load(mat_b + 2).to(WORK)
        m10 = tl.load(mat_b + 3).to(WORK)
        m11 = tl.load(mat_b + 4).to(WORK)
        m12 = tl.load(mat_b + 5).to(WORK)
        m20 = tl.load(mat_b + 6).to(WORK)
        m21 = tl.load(mat_b + 7).to(WORK)
        m22 = tl.load(mat_b + 8).to(WORK)
        x = m00 * xf + m01 * yf + m02
        y = m10 * xf + m11 * yf + m12
        if (m20 != 0.0) | (m21 != 0.0) | (m22 != 1.0):  # perspective (else the divisor is exactly 1)
            wh = m20 * xf + m21 * yf + m22
            x = _div(x, wh)
            y = _div(y, wh)
        x_lo = tl.load(win_b + 0).to(WORK)
        y_lo = tl.load(win_b + 1).to(WORK)
        x_hi = tl.load(win_b + 2).to(WORK)
        y_hi = tl.load(win_b + 3).to(WORK)
        if CLAMP:
            x = tl.minimum(tl.maximum(x, x_lo), x_hi)
            y = tl.minimum(tl.maximum(y, y_lo), y_hi)
        if BILINEAR:
            u0, t0, u1, t1, fx, fy, ok_u0, ok_u1, ok_t0, ok_t1 = _bilinear_cell(x, y, H, W, x_lo, y_lo, x_hi, y_hi, CLAMP)
            iu0 = tl.minimum(tl.maximum(u0, 0.0), W - 1).to(tl.int32) * ssw
            iu1 = tl.minimum(tl.maximum(u1, 0.0), W - 1).to(tl.int32) * ssw
            it0 = tl.minimum(tl.maximum(t0, 0.0), H - 1).to(tl.int32) * ssh
            it1 = tl.minimum(tl.maximum(t1, 0.0), H - 1).to(tl.int32) * ssh
            k00 = ok_u0 & ok_t0
            k10 = ok_u1 & ok_t0
            k01 = ok_u0 & ok_t1
            k11 = ok_u1 & ok_t1
            w00 = ((1.0 - fx) * (1.0 - fy)) * k00.to(WORK)
            w10 = (fx * (1.0 - fy)) * k10.to(WORK)
            w01 = ((1.0 - fx) * fy) * k01.to(WORK)
            w11 = (fx * fy) * k11.to(WORK)
            m = w00 + w10 + w01 + w11
            o00 = it0 + iu0
            o10 = it0 + iu1
            o01 = it1 + iu0
            o11 = it1 + iu1
            k00 = k00 & pmask
            k10 = k10 & pmask
            k01 = k01 & pmask
            k11 = k11 & pmask
        else:
            u = _rint(x)
            t = _rint(y)
            ok = (u >= 0.0) & (u <= W - 1) & (t >= 0.0) & (t <= H - 1)
            if not CLAMP:
                ok = ok & (u >= x_lo) & (u <= x_hi) & (t >= y_lo) & (t <= y_hi)
            o00 = (tl.minimum(tl.maximum(t, 0.0), H - 1).to(tl.int32) * ssh
                   + tl.minimum(tl.maximum(u, 0.0), W - 1).to(tl.int32) * ssw)
            m = ok.to(WORK)
            k00 = ok & pmask
            o10, o01, o11 = o00, o00, o00
            k10, k01, k11 = k00, k00, k00
            w00, w10, w01, w11 = m, m, m, m
    else:
        o00 = ys * ssh + xs * ssw
        k00 = pmask
        o10, o01, o11 = o00, o00, o00
        k10, k01, k11 = k00, k00, k00
        m = tl.full(o00.shape, 0.0, WORK)
        w00, w10, w01, w11 = m, m, m, m
    return o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m


@triton.jit
def _fill_value(fill_c, QUANT: tl.constexpr, WORK: tl.constexpr):
    """The fill of one channel; in a uint8 image's geometry (QUANT) clamped into [0, 255] (the Plan contract)."""
    f = tl.load(fill_c).to(WORK)
    if QUANT:
        f = tl.minimum(tl.maximum(f, 0.0), 255.0)
    return f


@triton.jit
def _sample(src_c, fill_c, o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
            GEO: tl.constexpr, BILINEAR: tl.constexpr, FILL: tl.constexpr, QUANT: tl.constexpr,
            IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """One channel of the stage input at every pixel of the tile (resampled if GEO)."""
    if GEO:
        if BILINEAR:
            s = w00 * _read(src_c + o00, k00, IN_SCALE, WORK)
            s = s + w10 * _read(src_c + o10, k10, IN_SCALE, WORK)
            s = s + w01 * _read(src_c + o01, k01, IN_SCALE, WORK)
            s = s + w11 * _read(src_c + o11, k11, IN_SCALE, WORK)
            if FILL:
                f = _fill_value(fill_c, QUANT, WORK)
                s = (s - f) * m + f
        else:
            s = _read(src_c + o00, k00, IN_SCALE, WORK)
            if FILL:
                f = _fill_value(fill_c, QUANT, WORK)
                s = tl.where(m < 0.5, f, s)
        if QUANT:
            s = _rint(s)
    else:
        s = _read(src_c + o00, k00, IN_SCALE, WORK)
    return s


@triton.jit
def _sharpen(v, src_c, o00, ys, xs, pmask, H, W, ssh, ssw, a, q, bound,
             IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """SHARPNESS (k == 0, no geometry): 3x3 [1 1 1; 1 5 1; 1 1 1]/13 blur of the stage input."""
    inner = pmask & (ys >= 1) & (ys < H - 1) & (xs >= 1) & (xs < W - 1)
    n = tl.full(v.shape, 0.0, WORK)
    for dy in tl.static_range(3):
        for dx in tl.static_range(3):
            if dy * 3 + dx != 4:
                n = n + _read(src_c + o00 + (dy - 1) * ssh + (dx - 1) * ssw, inner, IN_SCALE, WORK)
    return _sharp_mix(v, n, inner, a, q, bound)


@triton.jit
def _sharp_mix(v, n, inner, a, q, bound):
    """SHARPNESS from the centre value ``v`` and the sum ``n`` of its 8 neighbours (``inner``: else ``v`` unchanged)."""
    blur = n * (1.0 / 13.0) + v * (5.0 / 13.0)
    blur = tl.where(q, _rint(blur), blur)
    res = _trunc(_clip(v + (1.0 - a) * (blur - v), bound), q)
    return tl.where(inner, res, v)


@triton.jit
def _reflect(j, n):
    """``j`` mirrored into [0, n) without repeating the edge pixel (n == 1: 0)."""
    period = tl.maximum(2 * (n - 1), 1)
    j = ((j % period) + period) % period
    return tl.where(j > n - 1, period - j, j)


@triton.jit
def _blur(src_c, ys, xs, H, W, ssh, ssw, taps_b, q, R: tl.constexpr, IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """GAUSSIAN_BLUR (k == 0, no geometry) of one channel: x kernel ``taps_b[0, :]`` then y kernel
    ``taps_b[1, :]`` (T = 2R+1 taps each, summed in ascending order as the reference), reflected borders."""
    T: tl.constexpr = 2 * R + 1
    out = tl.full(ys.shape, 0.0, WORK) + tl.full(xs.shape, 0.0, WORK)  # tl.full: a builtin (tl.zeros is a jit function)
    for ty in range(T):
        row = _reflect(ys + (ty - R), H) * ssh
        h = tl.full(out.shape, 0.0, WORK)
        for tx in range(T):
            col = _reflect(xs + (tx - R), W) * ssw
            h = h + tl.load(taps_b + tx).to(WORK) * _read(src_c + row + col, (row >= 0) & (col >= 0), IN_SCALE, WORK)
        out = out + tl.load(taps_b + T + ty).to(WORK) * h
    return tl.where(q, _rint(out), out)


@triton.jit
def _convolve(src_c, ys, xs, H, W, ssh, ssw, kern_b, q, bound, R: tl.constexpr, IN_SCALE: tl.constexpr,
              WORK: tl.constexpr):
    """CONVOLVE (k == 0, no geometry) of one channel: per-sample T x T correlation (dy, then dx ascending, as the
    reference), reflected borders, clamped into [0, bound], rint in the uint8 domain."""
    T: tl.constexpr = 2 * R + 1
    acc = tl.full(ys.shape, 0.0, WORK) + tl.full(xs.shape, 0.0, WORK)
    for dy in range(T):
        row = _reflect(ys + (dy - R), H) * ssh
        for dx in range(T):
            col = _reflect(xs + (dx - R), W) * ssw
            acc = acc + tl.load(kern_b + dy * T + dx).to(WORK) * _read(src_c + row + col, (row >= 0) & (col >= 0), IN_SCALE, WORK)
    acc = _clip(acc, bound)
    return tl.where(q, _rint(acc), acc)


@triton.jit
def _resize_tap(pos, ratio, n_in, bil):
    """(i0, i1, lam) along an axis of ``n_in`` values read with ``ratio`` input pixels per output pixel (DOWNSCALE in
    the catalogue): nearest ``min(floor(pos * ratio), n_in - 1)``; bilinear (``bil``) half-pixel centres, clamped."""
    last = n_in - 1.0
    near = tl.minimum(tl.floor(pos * ratio), last)
    s = tl.maximum((pos + 0.5) * ratio - 0.5, 0.0)
    f = tl.floor(s)
    i0 = tl.minimum(f, last)
    i1 = tl.minimum(i0 + 1.0, last)
    return tl.where(bil, i0, near).to(tl.int32), tl.where(bil, i1, near).to(tl.int32), tl.where(bil, s - f, 0.0)


@triton.jit
def _down_value(src_c, yd, xd, hf, wf, inv, bil, ssh, ssw, pmask, q, IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """DOWNSCALE's small image at (yd, xd) (float indices) from the stage input of one channel."""
    r0, r1, ly = _resize_tap(yd, inv, hf, bil)
    c0, c1, lx = _resize_tap(xd, inv, wf, bil)
    top = (1.0 - lx) * _read(src_c + r0 * ssh + c0 * ssw, pmask, IN_SCALE, WORK) + lx * _read(
        src_c + r0 * ssh + c1 * ssw, pmask, IN_SCALE, WORK)
    bot = (1.0 - lx) * _read(src_c + r1 * ssh + c0 * ssw, pmask, IN_SCALE, WORK) + lx * _read(
        src_c + r1 * ssh + c1 * ssw, pmask, IN_SCALE, WORK)
    d = (1.0 - ly) * top + ly * bot
    return tl.where(q, _rint(d), d)


@triton.jit
def _downscale(src_c, ys, xs, pmask, H, W, ssh, ssw, a, mode, q, IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """DOWNSCALE (k == 0, no geometry) of one channel: the stage input resized to (hd, wd) and back (see the catalogue)."""
    one = tl.full(ys.shape, 1.0, WORK)
    a = tl.where(a > 2.0**-20, a, 2.0**-20)  # the catalogue's floor (NaN too): indices stay finite
    hf = one * H
    wf = one * W
    hd = tl.maximum(_rint(a * hf), 1.0)
    wd = tl.maximum(_rint(a * wf), 1.0)
    m = (mode + 0.5).to(tl.int32)
    down_bil = (m & 1) != 0
    up_bil = (m & 2) != 0
    inv = _div(one, one * a)
    u0, u1, uy = _resize_tap(ys.to(WORK), _div(hd, hf), hd, up_bil)
    v0, v1, ux = _resize_tap(xs.to(WORK), _div(wd, wf), wd, up_bil)
    u0 = u0.to(WORK)
    u1 = u1.to(WORK)
    v0 = v0.to(WORK)
    v1 = v1.to(WORK)
    d00 = _down_value(src_c, u0, v0, hf, wf, inv, down_bil, ssh, ssw, pmask, q, IN_SCALE, WORK)
    d01 = _down_value(src_c, u0, v1, hf, wf, inv, down_bil, ssh, ssw, pmask, q, IN_SCALE, WORK)
    d10 = _down_value(src_c, u1, v0, hf, wf, inv, down_bil, ssh, ssw, pmask, q, IN_SCALE, WORK)
    d11 = _down_value(src_c, u1, v1, hf, wf, inv, down_bil, ssh, ssw, pmask, q, IN_SCALE, WORK)
    d = (1.0 - uy) * ((1.0 - ux) * d00 + ux * d01) + uy * ((1.0 - ux) * d10 + ux * d11)
    return tl.where(q, _rint(d), d)


@triton.jit
def _mix(h):
    """``fastaug.ops.counter.mix`` on uint32 (products wrap mod 2**32)."""
    h = h ^ (h >> 16)
    h = h * 0x7FEB352D
    h = h ^ (h >> 15)
    h = h * 0x5F356495
    return h ^ (h >> 16)


@triton.jit(do_not_specialize=HASH32_PLAIN)
def hash32_kernel(out, idx, epoch, total, N, h0, slot, EPOCH_PTR: tl.constexpr, BLOCK: tl.constexpr):
    """``fastaug.rng.hash32`` [B, N] (flat ``out``, int64) of the int64 indices ``idx`` [B]: ``h0`` is the hash of
    (seed, epoch) (``fastaug.rng.prefix``, a uint32 value), so one launch draws the whole [B, N] block. With
    ``EPOCH_PTR`` the epoch is read from the device (an int64 [1]: a CUDA graph replays with the value it holds) and
    ``h0`` is the seed's part (``fastaug.rng.seed_prefix``)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < total
    b = offs // N
    j = (offs - b * N).to(tl.uint32)
    h = _index_hash(idx, b, m, epoch, h0, EPOCH_PTR)
    h = _mix(h ^ slot.to(tl.uint32))
    h = _mix(h ^ (j * 0x2545F491))
    tl.store(out + offs, h.to(tl.int64), mask=m)


@triton.jit
def _index_hash(idx, b, m, epoch, h0, EPOCH_PTR: tl.constexpr):
    """The hash of (seed, epoch, ``idx[b]``) (uint32) that every slot of a sample continues (``h0``: as in
    :func:`hash32_kernel`)."""
    if EPOCH_PTR:
        h0 = _mix(h0.to(tl.uint32) ^ (tl.load(epoch) & 0xFFFFFFFF).to(tl.uint32))
    v = tl.load(idx + b, mask=m, other=0)
    lo = (v & 0xFFFFFFFF).to(tl.uint32)
    hi = ((v >> 32) & 0xFFFFFFFF).to(tl.uint32)
    h = _mix(lo ^ h0.to(tl.uint32))
    return _mix(h ^ hi)


@triton.jit(do_not_specialize=HASH32_TABLE_PLAIN)
def hash32_table_kernel(out, uni, idx, epoch, table, total, T, h0, EPOCH_PTR: tl.constexpr, BLOCK: tl.constexpr):
    """``fastaug.rng.hash32_table``: the draws of every column of ``table`` (int64 [4, T]: slot, j, flat position at
    b = 0, row stride; ``fastaug.rng.Layout.table``) for the int64 indices ``idx`` [B], into the flat ``out``, and their
    uniforms (``fastaug.rng.uniform``'s: the top 24 bits times 2**-24, exact in float64) into the flat float64 ``uni``;
    one launch for all the draws of a call. ``h0``, ``EPOCH_PTR``: as :func:`hash32_kernel`."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < total
    b = offs // T
    t = offs - b * T
    h = _index_hash(idx, b, m, epoch, h0, EPOCH_PTR)
    slot = tl.load(table + t, mask=m, other=0)
    j = tl.load(table + T + t, mask=m, other=0).to(tl.uint32)
    dest = tl.load(table + 2 * T + t, mask=m, other=0) + b * tl.load(table + 3 * T + t, mask=m, other=0)
    h = _mix(h ^ slot.to(tl.uint32))
    h = _mix(h ^ (j * 0x2545F491))
    tl.store(out + dest, h.to(tl.int64), mask=m)
    tl.store(uni + dest, (h >> 8).to(tl.float64) * (1.0 / 16777216.0), mask=m)


@triton.jit
def _dropout_mode(mode):
    """(per channel, the one channel a PIXEL_DROPOUT slot drops or -1) of ``params[2]`` (``catalogue.dropout_mode``)."""
    t = tl.floor(mode * 0.5)
    return mode - (t + t) > 0.5, t.to(tl.int32) - 1


@triton.jit
def _uniform_op(v, code, key, c, own, target, ys, xs, a, bb, q, bound, WORK: tl.constexpr):
    """PIXEL_DROPOUT, SALT_AND_PEPPER or MULTIPLICATIVE_NOISE of channel ``c`` from the uniform of (key, c', y, x) (c' = c
    when ``own``, else 0); a PIXEL_DROPOUT slot with ``target`` >= 0 drops only channel ``target``."""
    h = _mix(_mix(_mix(key ^ tl.where(own, c, 0).to(tl.uint32)) ^ ys.to(tl.uint32)) ^ xs.to(tl.uint32))
    u = (h >> 8).to(WORK) * (1.0 / 16777216.0)
    dropped = tl.where((u < a) & ((target < 0) | (target == c)), bb, v)
    salted = tl.where(u < a * bb, bound, tl.where(u < a, 0.0, v))
    scaled = _trunc(_clip(v * (a + (bb - a) * u), bound), q)
    return tl.where(code == PIXEL_DROPOUT, dropped, tl.where(code == SALT_AND_PEPPER, salted, scaled))


@triton.jit
def _fog_octave(base, gy, gx, s, WORK: tl.constexpr):
    """One octave of FOG's value noise (``fastaug.ops.counter``): ``base`` = mix(key ^ o), ``s`` its cell size."""
    inv = _div(tl.full(s.shape, 1.0, WORK), tl.maximum(s, 1.0))
    py = gy * inv
    j = tl.floor(py)
    fy = py - j
    sy = (fy * fy) * (3.0 - 2.0 * fy)
    px = gx * inv
    i = tl.floor(px)
    fx = px - i
    sx = (fx * fx) * (3.0 - 2.0 * fx)
    ju = j.to(tl.uint32)
    iu = i.to(tl.uint32)
    r0 = _mix(base ^ ju)
    r1 = _mix(base ^ (ju + 1))
    l00 = (_mix(r0 ^ iu) >> 8).to(WORK) * (1.0 / 16777216.0)
    l01 = (_mix(r0 ^ (iu + 1)) >> 8).to(WORK) * (1.0 / 16777216.0)
    l10 = (_mix(r1 ^ iu) >> 8).to(WORK) * (1.0 / 16777216.0)
    l11 = (_mix(r1 ^ (iu + 1)) >> 8).to(WORK) * (1.0 / 16777216.0)
    top = l00 + (l01 - l00) * sx
    bot = l10 + (l11 - l10) * sx
    return top + (bot - top) * sy


@triton.jit
def _fog_alpha(key, ys, xs, a, scale, t, mx, WORK: tl.constexpr):
    """FOG's blend weight per pixel: ``a * clamp((n - t) / (1 - t), 0, 1)`` of the value noise ``n`` (four octaves,
    lattice values hashed per pixel)."""
    gy = ys.to(WORK) + 0.5
    gx = xs.to(WORK) + 0.5
    s0 = tl.full(gy.shape, 0.0, WORK) + scale * mx
    n = _fog_octave(_mix(key ^ 0), gy, gx, s0, WORK)
    n = n + _fog_octave(_mix(key ^ 1), gy, gx, s0 * 0.5, WORK) * 0.5
    n = n + _fog_octave(_mix(key ^ 2), gy, gx, s0 * 0.25, WORK) * 0.25
    n = n + _fog_octave(_mix(key ^ 3), gy, gx, s0 * 0.125, WORK) * 0.125
    m = n * FOG_NORM
    n = tl.minimum(tl.maximum((m - 0.5) * FOG_CONTRAST + 0.5, 0.0), 1.0)
    return a * tl.minimum(tl.maximum(_div(n - t, tl.full(n.shape, 1.0, WORK) - t), 0.0), 1.0)


@triton.jit
def _bit_length(n):
    """``floor(log2(n)) + 1`` of uint32 values >= 1 (shifts and compares)."""
    e = tl.where((n >> 16) > 0, 16, 0).to(tl.uint32)
    e = e + tl.where((n >> (e + 8)) > 0, 8, 0).to(tl.uint32)
    e = e + tl.where((n >> (e + 4)) > 0, 4, 0).to(tl.uint32)
    e = e + tl.where((n >> (e + 2)) > 0, 2, 0).to(tl.uint32)
    e = e + tl.where((n >> (e + 1)) > 0, 1, 0).to(tl.uint32)
    return e + 1


@triton.jit
def _horner5(x, c0: tl.constexpr, c1: tl.constexpr, c2: tl.constexpr, c3: tl.constexpr, c4: tl.constexpr):
    p = c1 + x * c0
    p = c2 + x * p
    p = c3 + x * p
    return c4 + x * p


@triton.jit
def _std_normal(h1, h2, odd, WORK: tl.constexpr):
    """The standard normal of ``fastaug.ops.counter`` from the hashes h1, h2 (uint32) of a pair of columns: the
    cosine for an even column, the sine for an odd one (``odd``): Box-Muller in arithmetic."""
    n = (h1 >> 8) + 1
    e = _bit_length(n) - 1
    m = (n << (24 - e)).to(WORK) * (1.0 / 16777216.0)
    ef = e.to(WORK)
    big = m > 1.4142135623730951
    m = tl.where(big, m * 0.5, m)
    ef = tl.where(big, ef + 1.0, ef)
    t = _div(m - 1.0, m + 1.0)
    ln_u1 = (ef - 24.0) * 0.6931471805599453 + (2.0 * t) * _horner5(
        t * t, 0.1111111111111111, 0.14285714285714285, 0.2, 0.3333333333333333, 1.0)
    k = h2 >> 30
    a = 6.283185307179586 * (((h2 >> 8) & 4194303).to(WORK) * (1.0 / 16777216.0) - 0.125)
    a2 = a * a
    cos_a = _horner5(a2, 2.48015873015873e-05, -0.001388888888888889, 0.041666666666666664, -0.5, 1.0)
    sin_a = a * _horner5(a2, 2.7557319223985893e-06, -0.0001984126984126984, 0.008333333333333333, -0.16666666666666666, 1.0)
    cosine = tl.where(k == 0, cos_a, tl.where(k == 1, -sin_a, tl.where(k == 2, -cos_a, sin_a)))
    sine = tl.where(k == 0, sin_a, tl.where(k == 1, cos_a, tl.where(k == 2, -sin_a, -cos_a)))
    if WORK == tl.float64:
        r = tl.sqrt(-2.0 * ln_u1)  # float64: sqrt.rn
    else:
        r = tl.sqrt_rn(-2.0 * ln_u1)
    return r * tl.where(odd, sine, cosine)


@triton.jit
def _noise(v, key, c, ys, xs, a, bb, clip, q, bound, WORK: tl.constexpr):
    """GAUSSIAN_NOISE of channel ``c``: the standard normal of (key, c, y, x), see ``fastaug.ops.counter``."""
    row = _mix(_mix(key ^ tl.full([], c, tl.uint32)) ^ ys.to(tl.uint32))
    h1 = _mix(row ^ (xs >> 1).to(tl.uint32))
    z = _std_normal(h1, _mix(h1 ^ 0x9E3779B9), (xs & 1) == 1, WORK)
    n = a * 255.0 + z * (bb * 255.0)
    n = tl.where(n < 0.0, -tl.floor(-n), tl.floor(n))
    x = v + tl.where(q, n, a + z * bb)
    wrapped = x - 256.0 * tl.floor(_div(x, tl.full([], 256.0, WORK)))
    return tl.where(clip, _clip(x, bound), tl.where(q, wrapped, x))


# Per-channel ops; one signature for all: (v, channel, a, b, uint8-domain flag, bound, stats[b,k], luts[b,k]).


@triton.jit
def _brightness(v, c, a, bb, q, bound, stats_k, luts_k, WORK: tl.constexpr):
    return _trunc(_clip(v * a, bound), q)


@triton.jit
def _contrast(v, c, a, bb, q, bound, stats_k, luts_k, WORK: tl.constexpr):
    mean = tl.load(stats_k).to(WORK)
    return _trunc(_clip(v * a + mean * (1.0 - a), bound), q)


@triton.jit
def _gamma_pow(x, a, WORK: tl.constexpr):
    """GAMMA's ``x ** a``: in float64, rounded to WORK (``reference.gamma_pow``: float32 libdevice.pow is within an ulp
    only, and floor(x * 255.999) made that a step of 1 against the CPU backends)."""
    return _pow(x.to(tl.float64), a.to(tl.float64)).to(WORK)


@triton.jit
def _gamma(v, c, a, bb, q, bound, stats_k, luts_k, WORK: tl.constexpr):
    x = tl.where(q, v * (1.0 / 255.0), v)
    x = _gamma_pow(x, a, WORK)
    if bb != 1.0:
        x = _clip(x * bb, 1.0)
    return tl.where(q, tl.floor(x * 255.999), x)


@triton.jit
def _invert(v, c, a, bb, q, bound, stats_k, luts_k, WORK: tl.constexpr):
    return bound - v


@triton.jit
def _posterize(v, c, a, bb, q, bound, stats_k, luts_k, WORK: tl.constexpr):
    two = tl.full([], 2.0, WORK)
    if q:
        step = _pow(two, 8.0 - a)
        v = tl.floor(_div(v, step)) * step
    else:
        levels = _pow(two, a)
        v = _div(tl.minimum(tl.maximum(tl.floor(v * levels), 0.0), levels - 1.0), levels)
    return v


@triton.jit
def _solarize(v, c, a, bb, q, bound, stats_k, luts_k, WORK: tl.constexpr):
    return tl.where(v >= a, bound - v, v)


@triton.jit
def _autocontrast(v, c, a, bb, q, bound, stats_k, luts_k, WORK: tl.constexpr):
    lo = tl.load(stats_k + c * 2).to(WORK)
    hi = tl.load(stats_k + c * 2 + 1).to(WORK)
    same = hi == lo
    scale = tl.where(same, 1.0, (hi - lo) * _div(tl.full([], 1.0, WORK), bound)).to(WORK)
    lo = tl.where(same, 0.0, lo).to(WORK)
    return _trunc(_clip(_div(v - lo, scale), bound), q)


@triton.jit
def _equalize(v, c, a, bb, q, bound, stats_k, luts_k, WORK: tl.constexpr):
    x = tl.where(q, v, tl.floor(v * 255.999))
    x = tl.where(x > 0.0, x, 0.0)  # NaN-safe clamp into [0, 255]
    x = tl.where(x < 255.0, x, 255.0)
    mapped = tl.load(luts_k + c * 256 + x.to(tl.int32)).to(WORK)
    return tl.where(q, mapped, mapped * (1.0 / 255.0))


@triton.jit
def _to_float(v, c, a, bb, q, bound, stats_k, luts_k, WORK: tl.constexpr):
    return v * (1.0 / 255.0)


@triton.jit
def _to_uint8(v, c, a, bb, q, bound, stats_k, luts_k, WORK: tl.constexpr):
    return tl.floor(v * 255.999)


@triton.jit
def _each(fn: tl.constexpr, v0, v1, v2, v3, C0, NCH: tl.constexpr, a, bb, q, bound, stats_k, luts_k,
          WORK: tl.constexpr):
    """Apply the per-channel op ``fn`` to the NCH channel values (channels C0, C0+1, ...)."""
    v0 = fn(v0, C0, a, bb, q, bound, stats_k, luts_k, WORK)
    if NCH > 1:
        v1 = fn(v1, C0 + 1, a, bb, q, bound, stats_k, luts_k, WORK)
    if NCH > 2:
        v2 = fn(v2, C0 + 2, a, bb, q, bound, stats_k, luts_k, WORK)
    if NCH > 3:
        v3 = fn(v3, C0 + 3, a, bb, q, bound, stats_k, luts_k, WORK)
    return v0, v1, v2, v3


@triton.jit
def _hue(r, g, b, a, q):
    """HUE: rgb -> hsv, h = (h + a) mod 1, hsv -> rgb (torchvision's formulas)."""
    r = tl.where(q, r * (1.0 / 255.0), r)
    g = tl.where(q, g * (1.0 / 255.0), g)
    b = tl.where(q, b * (1.0 / 255.0), b)
    maxc = tl.maximum(tl.maximum(r, g), b)
    minc = tl.minimum(tl.minimum(r, g), b)
    eqc = maxc == minc
    span = maxc - minc
    s = _div(span, tl.where(eqc, 1.0, maxc))
    dv = tl.where(eqc, 1.0, span)
    rc = _div(maxc - r, dv)
    gc = _div(maxc - g, dv)
    bc = _div(maxc - b, dv)
    is_r = maxc == r
    is_g = maxc == g
    h = tl.where(is_r, bc - gc, tl.where(is_g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = _fmod1(_div(h, 6.0) + 1.0)
    h = _fmod1(h + a)
    h = tl.where(h < 0.0, h + 1.0, h)  # torch.remainder
    h6 = h * 6.0
    i = tl.floor(h6)
    f = h6 - i
    i = i - 6.0 * tl.floor(_div(i, 6.0))
    p = tl.minimum(tl.maximum(maxc * (1.0 - s), 0.0), 1.0)
    qq = tl.minimum(tl.maximum(maxc * (1.0 - s * f), 0.0), 1.0)
    t = tl.minimum(tl.maximum(maxc * (s * f + (1.0 - s)), 0.0), 1.0)
    r = tl.where(i == 0.0, maxc, tl.where(i == 1.0, qq, tl.where(i == 2.0, p, tl.where(i == 3.0, p, tl.where(i == 4.0, t, maxc)))))
    g = tl.where(i == 0.0, t, tl.where(i == 1.0, maxc, tl.where(i == 2.0, maxc, tl.where(i == 3.0, qq, p))))
    b = tl.where(i == 0.0, p, tl.where(i == 1.0, p, tl.where(i == 2.0, t, tl.where(i == 3.0, maxc, tl.where(i == 4.0, maxc, qq)))))
    r = tl.where(q, tl.floor(r * 255.999), r)
    g = tl.where(q, tl.floor(g * 255.999), g)
    b = tl.where(q, tl.floor(b * 255.999), b)
    return r, g, b


@triton.jit
def _load_op(prog_b, par_b, k, WORK: tl.constexpr):
    code = tl.load(prog_b + k)
    a = tl.load(par_b + k * 4).to(WORK)
    bb = tl.load(par_b + k * 4 + 1).to(WORK)
    q = tl.load(par_b + k * 4 + 3) > 0.5
    bound = tl.where(q, 255.0, 1.0).to(WORK)
    return code, a, bb, q, bound


@triton.jit
def _op(v0, v1, v2, v3, k, code, a, bb, q, bound, st, lu, par_b, keys_b, C0, ys, xs, MX,
        NCH: tl.constexpr, CODES: tl.constexpr, RGB: tl.constexpr, WORK: tl.constexpr):
    """Op ``code`` (position ``k``, its values a, bb, q, bound; statistics ``st`` / ``lu``) on channels C0..C0+NCH-1 of
    the pixels (ys, xs): one branch on the sample's op code; ops outside ``CODES`` and the neighbourhood ops are
    identities here."""
    if (CODES >> BRIGHTNESS) & 1:
        if code == BRIGHTNESS:
            v0, v1, v2, v3 = _each(_brightness, v0, v1, v2, v3, C0, NCH, a, bb, q, bound, st, lu, WORK)
    if (CODES >> CONTRAST) & 1:
        if code == CONTRAST:
            v0, v1, v2, v3 = _each(_contrast, v0, v1, v2, v3, C0, NCH, a, bb, q, bound, st, lu, WORK)
    if (CODES >> GAMMA) & 1:
        if code == GAMMA:
            v0, v1, v2, v3 = _each(_gamma, v0, v1, v2, v3, C0, NCH, a, bb, q, bound, st, lu, WORK)
    if (CODES >> INVERT) & 1:
        if code == INVERT:
            v0, v1, v2, v3 = _each(_invert, v0, v1, v2, v3, C0, NCH, a, bb, q, bound, st, lu, WORK)
    if (CODES >> POSTERIZE) & 1:
        if code == POSTERIZE:
            v0, v1, v2, v3 = _each(_posterize, v0, v1, v2, v3, C0, NCH, a, bb, q, bound, st, lu, WORK)
    if (CODES >> SOLARIZE) & 1:
        if code == SOLARIZE:
            v0, v1, v2, v3 = _each(_solarize, v0, v1, v2, v3, C0, NCH, a, bb, q, bound, st, lu, WORK)
    if (CODES >> AUTOCONTRAST) & 1:
        if code == AUTOCONTRAST:
            v0, v1, v2, v3 = _each(_autocontrast, v0, v1, v2, v3, C0, NCH, a, bb, q, bound, st, lu, WORK)
    if (CODES >> EQUALIZE) & 1:
        if code == EQUALIZE:
            v0, v1, v2, v3 = _each(_equalize, v0, v1, v2, v3, C0, NCH, a, bb, q, bound, st, lu, WORK)
    if (CODES >> TO_FLOAT) & 1:
        if code == TO_FLOAT:
            v0, v1, v2, v3 = _each(_to_float, v0, v1, v2, v3, C0, NCH, a, bb, q, bound, st, lu, WORK)
    if (CODES >> TO_UINT8) & 1:
        if code == TO_UINT8:
            v0, v1, v2, v3 = _each(_to_uint8, v0, v1, v2, v3, C0, NCH, a, bb, q, bound, st, lu, WORK)
    if ((CODES >> PIXEL_DROPOUT) & 1) | ((CODES >> SALT_AND_PEPPER) & 1) | ((CODES >> MULTIPLICATIVE_NOISE) & 1):
        if (code == PIXEL_DROPOUT) | (code == SALT_AND_PEPPER) | (code == MULTIPLICATIVE_NOISE):
            key = tl.load(keys_b + k).to(tl.uint32)
            own, target = _dropout_mode(tl.load(par_b + k * 4 + 2))
            own = own & (code != SALT_AND_PEPPER)
            # a slot of one drop value per channel (target >= 0) hashes and changes its channel only, as numba
            if (target < 0) | (target == C0):
                v0 = _uniform_op(v0, code, key, C0, own, target, ys, xs, a, bb, q, bound, WORK)
            if NCH > 1:
                if (target < 0) | (target == C0 + 1):
                    v1 = _uniform_op(v1, code, key, C0 + 1, own, target, ys, xs, a, bb, q, bound, WORK)
            if NCH > 2:
                if (target < 0) | (target == C0 + 2):
                    v2 = _uniform_op(v2, code, key, C0 + 2, own, target, ys, xs, a, bb, q, bound, WORK)
            if NCH > 3:
                if (target < 0) | (target == C0 + 3):
                    v3 = _uniform_op(v3, code, key, C0 + 3, own, target, ys, xs, a, bb, q, bound, WORK)
    if (CODES >> FOG) & 1:
        if code == FOG:
            key = tl.load(keys_b + k).to(tl.uint32)
            alpha = _fog_alpha(key, ys, xs, a, bb, tl.load(par_b + k * 4 + 2).to(WORK), MX, WORK)
            v0 = _trunc(v0 + alpha * (bound - v0), q)
            if NCH > 1:
                v1 = _trunc(v1 + alpha * (bound - v1), q)
            if NCH > 2:
                v2 = _trunc(v2 + alpha * (bound - v2), q)
            if NCH > 3:
                v3 = _trunc(v3 + alpha * (bound - v3), q)
    if (CODES >> GAUSSIAN_NOISE) & 1:
        if code == GAUSSIAN_NOISE:
            key = tl.load(keys_b + k).to(tl.uint32)
            clip = tl.load(par_b + k * 4 + 2) > 0.5
            v0 = _noise(v0, key, C0, ys, xs, a, bb, clip, q, bound, WORK)
            if NCH > 1:
                v1 = _noise(v1, key, C0 + 1, ys, xs, a, bb, clip, q, bound, WORK)
            if NCH > 2:
                v2 = _noise(v2, key, C0 + 2, ys, xs, a, bb, clip, q, bound, WORK)
            if NCH > 3:
                v3 = _noise(v3, key, C0 + 3, ys, xs, a, bb, clip, q, bound, WORK)
    if RGB:
        if (CODES >> SATURATION) & 1:
            if code == SATURATION:
                gray = _trunc(_gray(v0, v1, v2), q)
                v0 = _trunc(_clip(v0 * a + gray * (1.0 - a), bound), q)
                v1 = _trunc(_clip(v1 * a + gray * (1.0 - a), bound), q)
                v2 = _trunc(_clip(v2 * a + gray * (1.0 - a), bound), q)
        if (CODES >> GRAYSCALE) & 1:
            if code == GRAYSCALE:
                gray = _trunc(_gray(v0, v1, v2), q)
                v0 = gray
                v1 = gray
                v2 = gray
        if (CODES >> HUE) & 1:
            if code == HUE:
                v0, v1, v2 = _hue(v0, v1, v2, a, q)
        if ((CODES >> RGB_SHIFT) & 1) | ((CODES >> RGB_GAIN) & 1):
            if (code == RGB_SHIFT) | (code == RGB_GAIN):
                cc = tl.load(par_b + k * 4 + 2).to(WORK)
                gain = code == RGB_GAIN
                v0 = _trunc(_clip(tl.where(gain, v0 * a, v0 + a), bound), q)
                v1 = _trunc(_clip(tl.where(gain, v1 * bb, v1 + bb), bound), q)
                v2 = _trunc(_clip(tl.where(gain, v2 * cc, v2 + cc), bound), q)
    return v0, v1, v2, v3


@triton.jit
def _sample_all(src0, fill_c, o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m, ssc, NCH: tl.constexpr,
                GEO: tl.constexpr, BILINEAR: tl.constexpr, FILL: tl.constexpr, QUANT: tl.constexpr,
                IN_SCALE: tl.constexpr, WORK: tl.constexpr):
    """Channels 0..NCH-1 from ``src0`` (resampled if GEO)."""
    v0 = _sample(src0, fill_c, o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                 GEO, BILINEAR, FILL, QUANT, IN_SCALE, WORK)
    v1 = v0
    v2 = v0
    v3 = v0
    if NCH > 1:
        v1 = _sample(src0 + ssc, fill_c + 1, o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                     GEO, BILINEAR, FILL, QUANT, IN_SCALE, WORK)
    if NCH > 2:
        v2 = _sample(src0 + 2 * ssc, fill_c + 2, o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11,
                     m, GEO, BILINEAR, FILL, QUANT, IN_SCALE, WORK)
    if NCH > 3:
        v3 = _sample(src0 + 3 * ssc, fill_c + 3, o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11,
                     m, GEO, BILINEAR, FILL, QUANT, IN_SCALE, WORK)
    return v0, v1, v2, v3


@triton.jit
def _resume_all(buf_c, a, q, bound, ys, xs, pmask, Ho, Wo, bsc, bsh, NCH: tl.constexpr, WORK: tl.constexpr):
    """A folded SHARPNESS (``plan.Fold``) on channels 0..NCH-1 of the chain before it, read from its buffer
    ``buf_c`` (the sample's rows of the fold's slot, channel 0): the values its chain resumes with."""
    o = ys * bsh + xs
    v0 = _sharpen(_read(buf_c + o, pmask, 1.0, WORK), buf_c, o, ys, xs, pmask, Ho, Wo, bsh, 1, a, q, bound, 1.0, WORK)
    v1 = v0
    v2 = v0
    v3 = v0
    if NCH > 1:
        v1 = _sharpen(_read(buf_c + bsc + o, pmask, 1.0, WORK), buf_c + bsc, o, ys, xs, pmask, Ho, Wo, bsh, 1, a, q, bound,
                      1.0, WORK)
    if NCH > 2:
        v2 = _sharpen(_read(buf_c + 2 * bsc + o, pmask, 1.0, WORK), buf_c + 2 * bsc, o, ys, xs, pmask, Ho, Wo, bsh, 1, a, q,
                      bound, 1.0, WORK)
    if NCH > 3:
        v3 = _sharpen(_read(buf_c + 3 * bsc + o, pmask, 1.0, WORK), buf_c + 3 * bsc, o, ys, xs, pmask, Ho, Wo, bsh, 1, a, q,
                      bound, 1.0, WORK)
    return v0, v1, v2, v3


@triton.jit
def _resume_point(prog_b, stop_b, STOP: tl.constexpr, FOLDS: tl.constexpr):
    """(position, buffer slot) of the sample's last folded SHARPNESS before its stop; position -1: none."""
    start = stop_b * 0 - 1
    at = start * 0
    slot = start * 0
    for f in tl.static_range(STOP):  # unrolled: the fold test is a compile-time one (FOLDS may exceed 32 bits)
        if ((FOLDS >> f) & 1) != 0:
            if (tl.load(prog_b + f) == SHARPNESS) & (f < stop_b):
                start = start * 0 + f
                at = slot
            slot += 1
    return start, at


@triton.jit
def _chain(src_b, C0, fill_b, prog_b, par_b, stats_b, luts_b, stop_b,
           o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
           ys, xs, pmask, H, W, ssc, ssh, ssw,
           C: tl.constexpr, NCH: tl.constexpr, STOP: tl.constexpr, CODES: tl.constexpr, RGB: tl.constexpr,
           GEO: tl.constexpr, BILINEAR: tl.constexpr, FILL: tl.constexpr, QUANT: tl.constexpr,
           SHARP: tl.constexpr, IN_SCALE: tl.constexpr, WORK: tl.constexpr,
           taps_b, BLUR: tl.constexpr, RAD: tl.constexpr, keys_b,
           kern_b, CONV: tl.constexpr, KRAD: tl.constexpr, MX,
           buf_b, bss, bsc, bsh, Ho, Wo, FOLDS: tl.constexpr):
    """Channels C0..C0+NCH-1 (NCH <= 4) after the geometry and ops ``0..min(STOP, stop_b)-1`` (``MX`` = max(Ho, Wo)).

    All channels are sampled first (the taps die there), then one loop over the program applies each
    op to every channel under a single branch on the sample's op code. ``CODES`` has bit ``i`` set iff
    op code ``i`` may occur; RGB-mixing ops need ``RGB`` (C == NCH == 3). ``FOLDS``: bit k set iff a SHARPNESS is
    folded in at k (``plan.Fold``); a sample that runs one before its stop resumes after the last from its buffer slot
    (``buf_b`` + slot * ``bss``: the chain before it, written by ``fold_fill_kernel``), skipping the ops before."""
    src0 = src_b + C0 * ssc
    start = -1
    if FOLDS != 0:
        start, at = _resume_point(prog_b, stop_b, STOP, FOLDS)
        if start >= 0:
            code, a, bb, q, bound = _load_op(prog_b, par_b, start, WORK)
            v0, v1, v2, v3 = _resume_all(buf_b + at.to(tl.int64) * bss + C0 * bsc, a, q, bound, ys, xs, pmask, Ho, Wo, bsc,
                                         bsh, NCH, WORK)
        else:
            v0, v1, v2, v3 = _sample_all(src0, fill_b + C0, o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                                         ssc, NCH, GEO, BILINEAR, FILL, QUANT, IN_SCALE, WORK)
    else:
        v0, v1, v2, v3 = _sample_all(src0, fill_b + C0, o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                                     ssc, NCH, GEO, BILINEAR, FILL, QUANT, IN_SCALE, WORK)
    if SHARP:  # SHARPNESS at k == 0 of a stage without geometry
        code, a, bb, q, bound = _load_op(prog_b, par_b, 0, WORK)
        if (code == SHARPNESS) & (stop_b > 0):
            v0 = _sharpen(v0, src0, o00, ys, xs, pmask, H, W, ssh, ssw, a, q, bound, IN_SCALE, WORK)
            if NCH > 1:
                v1 = _sharpen(v1, src0 + ssc, o00, ys, xs, pmask, H, W, ssh, ssw, a, q, bound, IN_SCALE, WORK)
            if NCH > 2:
                v2 = _sharpen(v2, src0 + 2 * ssc, o00, ys, xs, pmask, H, W, ssh, ssw, a, q, bound, IN_SCALE, WORK)
            if NCH > 3:
                v3 = _sharpen(v3, src0 + 3 * ssc, o00, ys, xs, pmask, H, W, ssh, ssw, a, q, bound, IN_SCALE, WORK)
    if BLUR:  # GAUSSIAN_BLUR at k == 0 of a stage without geometry
        code, a, bb, q, bound = _load_op(prog_b, par_b, 0, WORK)
        if (code == GAUSSIAN_BLUR) & (stop_b > 0):
            v0 = _blur(src0, ys, xs, H, W, ssh, ssw, taps_b, q, RAD, IN_SCALE, WORK)
            if NCH > 1:
                v1 = _blur(src0 + ssc, ys, xs, H, W, ssh, ssw, taps_b, q, RAD, IN_SCALE, WORK)
            if NCH > 2:
                v2 = _blur(src0 + 2 * ssc, ys, xs, H, W, ssh, ssw, taps_b, q, RAD, IN_SCALE, WORK)
            if NCH > 3:
                v3 = _blur(src0 + 3 * ssc, ys, xs, H, W, ssh, ssw, taps_b, q, RAD, IN_SCALE, WORK)
    if CONV:  # CONVOLVE at k == 0 of a stage without geometry
        code, a, bb, q, bound = _load_op(prog_b, par_b, 0, WORK)
        if (code == CONVOLVE) & (stop_b > 0):
            v0 = _convolve(src0, ys, xs, H, W, ssh, ssw, kern_b, q, bound, KRAD, IN_SCALE, WORK)
            if NCH > 1:
                v1 = _convolve(src0 + ssc, ys, xs, H, W, ssh, ssw, kern_b, q, bound, KRAD, IN_SCALE, WORK)
            if NCH > 2:
                v2 = _convolve(src0 + 2 * ssc, ys, xs, H, W, ssh, ssw, kern_b, q, bound, KRAD, IN_SCALE, WORK)
            if NCH > 3:
                v3 = _convolve(src0 + 3 * ssc, ys, xs, H, W, ssh, ssw, kern_b, q, bound, KRAD, IN_SCALE, WORK)
    if ((CODES >> DOWNSCALE) & 1) & (GEO == 0):  # DOWNSCALE at k == 0 of a stage without geometry
        code, a, bb, q, bound = _load_op(prog_b, par_b, 0, WORK)
        if (code == DOWNSCALE) & (stop_b > 0):
            v0 = _downscale(src0, ys, xs, pmask, H, W, ssh, ssw, a, bb, q, IN_SCALE, WORK)
            if NCH > 1:
                v1 = _downscale(src0 + ssc, ys, xs, pmask, H, W, ssh, ssw, a, bb, q, IN_SCALE, WORK)
            if NCH > 2:
                v2 = _downscale(src0 + 2 * ssc, ys, xs, pmask, H, W, ssh, ssw, a, bb, q, IN_SCALE, WORK)
            if NCH > 3:
                v3 = _downscale(src0 + 3 * ssc, ys, xs, pmask, H, W, ssh, ssw, a, bb, q, IN_SCALE, WORK)
    for k in range(STOP):
        code, a, bb, q, bound = _load_op(prog_b, par_b, k, WORK)
        code = tl.where((k < stop_b) & (k > start), code, 0)  # past its stop, or before it resumed: IDENTITY
        v0, v1, v2, v3 = _op(v0, v1, v2, v3, k, code, a, bb, q, bound, stats_b + k * (C * 2), luts_b + k * (C * 256),
                             par_b, keys_b, C0, ys, xs, MX, NCH, CODES, RGB, WORK)
    return v0, v1, v2, v3


@triton.jit
def _rects(v, PHASE: tl.constexpr, b, c, ys, xs, rects, rvals, rphase, R, C: tl.constexpr, WORK: tl.constexpr):
    for r in range(R):
        i = b * R + r
        on = tl.load(rphase + i) == PHASE
        x0 = tl.load(rects + i * 4)
        y0 = tl.load(rects + i * 4 + 1)
        x1 = tl.load(rects + i * 4 + 2)
        y1 = tl.load(rects + i * 4 + 3)
        val = tl.load(rvals + i * C + c).to(WORK)
        v = tl.where(on & (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1), val, v)
    return v


@triton.jit
def _finish_store(v, c, b, out_b, ys, xs, pmask, osc, osh, osw, mean, std, rects, rvals, rphase, R,
                  C: tl.constexpr, EPI: tl.constexpr, OUT_SCALE: tl.constexpr, NORM: tl.constexpr,
                  RECTS: tl.constexpr, OUT_U8: tl.constexpr, WORK: tl.constexpr):
    """Epilogue of channel ``c`` (rects, out_scale, normalize, rects, cast) and the store."""
    if EPI:
        if RECTS:
            v = _rects(v, 1, b, c, ys, xs, rects, rvals, rphase, R, C, WORK)
        if OUT_SCALE != 1.0:
            v = v * OUT_SCALE
        if NORM:
            mu = tl.load(mean + b * C + c).to(WORK)
            inv = _div(tl.full([], 1.0, WORK), tl.load(std + b * C + c).to(WORK))
            v = (v - mu) * inv
        if RECTS:
            v = _rects(v, 2, b, c, ys, xs, rects, rvals, rphase, R, C, WORK)
    ptrs = out_b + c * osc + ys * osh + xs * osw
    if OUT_U8:
        v = tl.minimum(tl.maximum(_rint(v), 0.0), 255.0)
    tl.store(ptrs, v.to(ptrs.dtype.element_ty), mask=pmask)


@triton.jit
def _tile(Ho, Wo, BH: tl.constexpr, BW: tl.constexpr):
    tile = tl.program_id(0)
    tiles_w = (Wo + BW - 1) // BW
    ty = tile // tiles_w
    tx = tile - ty * tiles_w
    ys = ty * BH + tl.arange(0, BH)[:, None]
    xs = tx * BW + tl.arange(0, BW)[None, :]
    pmask = (ys < Ho) & (xs < Wo)
    return ys, xs, pmask


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=APPLY_PLAIN)
def apply_kernel(src, out, prog, par, stats, luts, mat, win, fill, mean, std, rects, rvals, rphase, taps, keys, kern, disp,
                 buf, H, W, Ho, Wo, R,
                 ssb, ssc, ssh, ssw, osb, osc, osh, osw, bss, bsb, bsc, bsh,
                 C: tl.constexpr, OC: tl.constexpr, NCH: tl.constexpr, K: tl.constexpr, CODES: tl.constexpr,
                 RGB: tl.constexpr, GEO: tl.constexpr, BILINEAR: tl.constexpr, CLAMP: tl.constexpr,
                 FILL: tl.constexpr, QUANT: tl.constexpr, SHARP: tl.constexpr, IN_SCALE: tl.constexpr,
                 EPI: tl.constexpr, OUT_SCALE: tl.constexpr, NORM: tl.constexpr, RECTS: tl.constexpr,
                 OUT_U8: tl.constexpr, WORK: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
                 BLUR: tl.constexpr, RAD: tl.constexpr,
                 CONV: tl.constexpr, KRAD: tl.constexpr, HASD: tl.constexpr, FOLDS: tl.constexpr = 0):
    """Run one Stage (and the epilogue when EPI) on a tile of one sample; write ``out``.

    C <= 4: channels 0..NCH-1 go through the program together; otherwise a runtime loop over channels."""
    b = tl.program_id(1)
    ys, xs, pmask = _tile(Ho, Wo, BH, BW)
    src_b = src + b.to(tl.int64) * ssb
    out_b = out + b.to(tl.int64) * osb
    prog_b = prog + b * K
    par_b = par + b * (K * 4)
    stats_b = stats + b * (K * C * 2)
    luts_b = luts + b * (K * C * 256)
    fill_b = fill + b * C
    o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m = _setup(
        mat + b * 9, win + b * 4, ys, xs, pmask, H, W, ssh, ssw, disp + b.to(tl.int64) * (Ho * Wo * 2), Wo, HASD,
            GEO, BILINEAR, CLAMP, WORK)
    if C <= 4:
        v0, v1, v2, v3 = _chain(src_b, 0, fill_b, prog_b, par_b, stats_b, luts_b, K,
                                o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                                ys, xs, pmask, H, W, ssc, ssh, ssw,
                                C, NCH, K, CODES, RGB, GEO, BILINEAR, FILL, QUANT, SHARP, IN_SCALE, WORK,
                                taps + b * (2 * (2 * RAD + 1)), BLUR, RAD, keys + b * K,
                                kern + b * ((2 * KRAD + 1) * (2 * KRAD + 1)), CONV, KRAD, tl.maximum(Ho, Wo),
                                buf + b.to(tl.int64) * bsb, bss, bsc, bsh, Ho, Wo, FOLDS)
        _finish_store(v0, 0, b, out_b, ys, xs, pmask, osc, osh, osw, mean, std, rects, rvals, rphase, R,
                      C, EPI, OUT_SCALE, NORM, RECTS, OUT_U8, WORK)
        if OC > 1:
            _finish_store(v1, 1, b, out_b, ys, xs, pmask, osc, osh, osw, mean, std, rects, rvals, rphase, R,
                          C, EPI, OUT_SCALE, NORM, RECTS, OUT_U8, WORK)
        if OC > 2:
            _finish_store(v2, 2, b, out_b, ys, xs, pmask, osc, osh, osw, mean, std, rects, rvals, rphase, R,
                          C, EPI, OUT_SCALE, NORM, RECTS, OUT_U8, WORK)
        if OC > 3:
            _finish_store(v3, 3, b, out_b, ys, xs, pmask, osc, osh, osw, mean, std, rects, rvals, rphase, R,
                          C, EPI, OUT_SCALE, NORM, RECTS, OUT_U8, WORK)
    else:
        for c in range(OC):
            v, _v1, _v2, _v3 = _chain(src_b, c, fill_b, prog_b, par_b, stats_b, luts_b, K,
                                      o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                                      ys, xs, pmask, H, W, ssc, ssh, ssw,
                                      C, 1, K, CODES, False, GEO, BILINEAR, FILL, QUANT, SHARP, IN_SCALE, WORK,
                                      taps + b * (2 * (2 * RAD + 1)), BLUR, RAD, keys + b * K,
                                kern + b * ((2 * KRAD + 1) * (2 * KRAD + 1)), CONV, KRAD, tl.maximum(Ho, Wo),
                                buf + b.to(tl.int64) * bsb, bss, bsc, bsh, Ho, Wo, FOLDS)
            _finish_store(v, c, b, out_b, ys, xs, pmask, osc, osh, osw, mean, std, rects, rvals, rphase, R,
                          C, EPI, OUT_SCALE, NORM, RECTS, OUT_U8, WORK)


@triton.jit
def _min2(a, b):
    return tl.minimum(a, b)


@triton.jit
def _max2(a, b):
    return tl.maximum(a, b)


@triton.jit
def _add2(a, b):
    return a + b


@triton.jit
def _stats1(v, c, b, qk, pmask, vmin, vmax, hist, C: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
            MINMAX: tl.constexpr, HIST: tl.constexpr):
    """Tile minimum and maximum (MINMAX) and 256-bin histogram (HIST) of channel ``c``, folded in with relaxed atomics
    (their order does not matter: min, max and sums; the buffers are read by the next launch); empty bins add nothing."""
    if MINMAX:
        ok = pmask & (v == v)  # a NaN pixel is left out of the minimum / maximum (every backend, see the reference)
        lo = tl.reduce(tl.where(ok, v, float("inf")), None, _min2)
        hi = tl.reduce(tl.where(ok, v, -float("inf")), None, _max2)
        # the tables' dtype: float32, float64 in a float64 stage
        tl.atomic_min(vmin + b * C + c, lo.to(vmin.dtype.element_ty), sem="relaxed")
        tl.atomic_max(vmax + b * C + c, hi.to(vmax.dtype.element_ty), sem="relaxed")
    if HIST:
        x = tl.where(qk, v, tl.floor(v * 255.999))
        x = tl.where(x > 0.0, x, 0.0)
        x = tl.where(x < 255.0, x, 255.0)
        counts = tl.histogram(tl.reshape(x.to(tl.int32), [BH * BW]), 256, mask=tl.reshape(pmask, [BH * BW]))
        tl.atomic_add(hist + (b * C + c) * 256 + tl.arange(0, 256), counts, mask=counts != 0, sem="relaxed")


@triton.jit(do_not_specialize=REDUCE_PLAIN)
def reduce_kernel(src, gsum, vmin, vmax, hist, stops, prog, par, stats, luts, mat, win, fill, taps, keys, kern, disp, buf,
                  H, W, Ho, Wo,
                  ssb, ssc, ssh, ssw, bss, bsb, bsc, bsh,
                  C: tl.constexpr, NCH: tl.constexpr, K: tl.constexpr, STOP: tl.constexpr, CODES: tl.constexpr,
                  RGB: tl.constexpr, GEO: tl.constexpr, BILINEAR: tl.constexpr, CLAMP: tl.constexpr,
                  FILL: tl.constexpr, QUANT: tl.constexpr, SHARP: tl.constexpr, IN_SCALE: tl.constexpr,
                  WORK: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr, BLUR: tl.constexpr, RAD: tl.constexpr,
                 CONV: tl.constexpr, KRAD: tl.constexpr, HASD: tl.constexpr,
                  MINMAX: tl.constexpr = True, HIST: tl.constexpr = True, GRAY: tl.constexpr = True, FOLDS: tl.constexpr = 0):
    """Statistics of the chain before op ``stops[b]`` on a tile of one sample (see ``Reduction``); STOP
    bounds the op loop (>= every stop). A sample whose stop lies outside [0, K) is skipped."""
    b = tl.program_id(1)
    stop_b = tl.load(stops + b)
    if (stop_b >= 0) & (stop_b < K):
        ys, xs, pmask = _tile(Ho, Wo, BH, BW)
        src_b = src + b.to(tl.int64) * ssb
        prog_b = prog + b * K
        par_b = par + b * (K * 4)
        stats_b = stats + b * (K * C * 2)
        luts_b = luts + b * (K * C * 256)
        fill_b = fill + b * C
        qk = tl.load(par_b + stop_b * 4 + 3) > 0.5
        o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m = _setup(
            mat + b * 9, win + b * 4, ys, xs, pmask, H, W, ssh, ssw, disp + b.to(tl.int64) * (Ho * Wo * 2), Wo, HASD,
            GEO, BILINEAR, CLAMP, WORK)
        v0, v1, v2, v3 = _chain(src_b, 0, fill_b, prog_b, par_b, stats_b, luts_b, stop_b,
                                o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                                ys, xs, pmask, H, W, ssc, ssh, ssw,
                                C, NCH, STOP, CODES, RGB, GEO, BILINEAR, FILL, QUANT, SHARP, IN_SCALE, WORK,
                                taps + b * (2 * (2 * RAD + 1)), BLUR, RAD, keys + b * K,
                                kern + b * ((2 * KRAD + 1) * (2 * KRAD + 1)), CONV, KRAD, tl.maximum(Ho, Wo),
                                buf + b.to(tl.int64) * bsb, bss, bsc, bsh, Ho, Wo, FOLDS)
        _stats1(v0, 0, b, qk, pmask, vmin, vmax, hist, C, BH, BW, MINMAX, HIST)
        if NCH > 1:
            _stats1(v1, 1, b, qk, pmask, vmin, vmax, hist, C, BH, BW, MINMAX, HIST)
        if NCH > 2:
            _stats1(v2, 2, b, qk, pmask, vmin, vmax, hist, C, BH, BW, MINMAX, HIST)
        if NCH > 3:
            _stats1(v3, 3, b, qk, pmask, vmin, vmax, hist, C, BH, BW, MINMAX, HIST)
        if GRAY:
            if C == 3:
                gray = _trunc(_gray(v0, v1, v2), qk)
            else:
                gray = v0
            tl.atomic_add(gsum + b, tl.reduce(tl.where(pmask, gray.to(tl.float64), 0.0), None, _add2), sem="relaxed")
        if C > 4 and (MINMAX or HIST):
            for c in range(1, C):
                v, _v1, _v2, _v3 = _chain(src_b, c, fill_b, prog_b, par_b, stats_b, luts_b, stop_b,
                                          o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                                          ys, xs, pmask, H, W, ssc, ssh, ssw,
                                          C, 1, STOP, CODES, False, GEO, BILINEAR, FILL, QUANT, SHARP, IN_SCALE, WORK,
                                          taps + b * (2 * (2 * RAD + 1)), BLUR, RAD, keys + b * K,
                                kern + b * ((2 * KRAD + 1) * (2 * KRAD + 1)), CONV, KRAD, tl.maximum(Ho, Wo),
                                buf + b.to(tl.int64) * bsb, bss, bsc, bsh, Ho, Wo, FOLDS)
                _stats1(v, c, b, qk, pmask, vmin, vmax, hist, C, BH, BW, MINMAX, HIST)


@triton.jit(do_not_specialize=REDUCE_PLAIN)
def fold_fill_kernel(src, buf, prog, par, stats, luts, mat, win, fill, taps, keys, kern, disp,
                     H, W, Ho, Wo,
                     ssb, ssc, ssh, ssw, bss, bsb, bsc, bsh,
                     AT: tl.constexpr, SLOT: tl.constexpr, C: tl.constexpr, NCH: tl.constexpr, K: tl.constexpr,
                     CODES: tl.constexpr, RGB: tl.constexpr, GEO: tl.constexpr, BILINEAR: tl.constexpr,
                     CLAMP: tl.constexpr, FILL: tl.constexpr, QUANT: tl.constexpr, IN_SCALE: tl.constexpr,
                     WORK: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr, HASD: tl.constexpr, FOLDS: tl.constexpr,
                     BUF_U8: tl.constexpr):
    """A folded SHARPNESS at position ``AT`` (``plan.Fold``, buffer slot ``SLOT``) on a tile of one sample: a sample whose
    op there is SHARPNESS writes the chain before it (resuming from its earlier folds: ``FOLDS``, the positions below
    ``AT``) into its rows of the slot; the others exit at once."""
    b = tl.program_id(1)
    prog_b = prog + b * K
    if tl.load(prog_b + AT) == SHARPNESS:
        ys, xs, pmask = _tile(Ho, Wo, BH, BW)
        src_b = src + b.to(tl.int64) * ssb
        par_b = par + b * (K * 4)
        stats_b = stats + b * (K * C * 2)
        luts_b = luts + b * (K * C * 256)
        fill_b = fill + b * C
        buf_b = buf + b.to(tl.int64) * bsb
        out_b = buf_b + tl.full([], SLOT, tl.int64) * bss  # 64-bit: SLOT * bss may exceed 2**31
        o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m = _setup(
            mat + b * 9, win + b * 4, ys, xs, pmask, H, W, ssh, ssw, disp + b.to(tl.int64) * (Ho * Wo * 2), Wo, HASD,
            GEO, BILINEAR, CLAMP, WORK)
        if C <= 4:
            v0, v1, v2, v3 = _chain(src_b, 0, fill_b, prog_b, par_b, stats_b, luts_b, AT,
                                    o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                                    ys, xs, pmask, H, W, ssc, ssh, ssw,
                                    C, NCH, AT, CODES, RGB, GEO, BILINEAR, FILL, QUANT, False, IN_SCALE, WORK,
                                    par_b, False, 0, keys + b * K, par_b, False, 0, tl.maximum(Ho, Wo),
                                    buf_b, bss, bsc, bsh, Ho, Wo, FOLDS)
            _finish_store(v0, 0, b, out_b, ys, xs, pmask, bsc, bsh, 1, par, par, prog, par, prog, 0,
                          C, False, 1.0, False, False, BUF_U8, WORK)
            if NCH > 1:
                _finish_store(v1, 1, b, out_b, ys, xs, pmask, bsc, bsh, 1, par, par, prog, par, prog, 0,
                              C, False, 1.0, False, False, BUF_U8, WORK)
            if NCH > 2:
                _finish_store(v2, 2, b, out_b, ys, xs, pmask, bsc, bsh, 1, par, par, prog, par, prog, 0,
                              C, False, 1.0, False, False, BUF_U8, WORK)
            if NCH > 3:
                _finish_store(v3, 3, b, out_b, ys, xs, pmask, bsc, bsh, 1, par, par, prog, par, prog, 0,
                              C, False, 1.0, False, False, BUF_U8, WORK)
        else:
            for c in range(C):
                v, _v1, _v2, _v3 = _chain(src_b, c, fill_b, prog_b, par_b, stats_b, luts_b, AT,
                                          o00, o10, o01, o11, k00, k10, k01, k11, w00, w10, w01, w11, m,
                                          ys, xs, pmask, H, W, ssc, ssh, ssw,
                                          C, 1, AT, CODES, False, GEO, BILINEAR, FILL, QUANT, False, IN_SCALE, WORK,
                                          par_b, False, 0, keys + b * K, par_b, False, 0, tl.maximum(Ho, Wo),
                                          buf_b, bss, bsc, bsh, Ho, Wo, FOLDS)
                _finish_store(v, c, b, out_b, ys, xs, pmask, bsc, bsh, 1, par, par, prog, par, prog, 0,
                              C, False, 1.0, False, False, BUF_U8, WORK)


# ----------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------

SUPPORTED_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)
NUM_WARPS = 4


@dataclass
class Launch:
    """A kernel launch: the kernel's name, its grid, runtime arguments and constexprs (in order)."""

    kernel: str
    grid: tuple[int, int]
    args: dict
    constexprs: dict
    num_warps: int = NUM_WARPS


def module_copy(module_name: str, path: str, built_interpreted: bool, interpret: bool | None) -> ModuleType:
    """The module ``module_name`` (file ``path``, its kernels built for ``built_interpreted``) with its
    kernels built for the interpreter or the compiler (``interpret``; ``None``: the current mode)."""
    if interpret is None:
        interpret = bool(knobs.runtime.interpret)
    if interpret == built_interpreted:
        return sys.modules[module_name]
    name = f"{module_name}_{'interpreted' if interpret else 'compiled'}"
    mod = sys.modules.get(name)
    if mod is None:
        with knobs.runtime.scope():
            knobs.runtime.interpret = interpret
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
    return mod


def kernel_module(interpret: bool | None = None) -> ModuleType:
    """This module with its kernels built for the interpreter or the compiler (``None``: current mode)."""
    return module_copy(__name__, __file__, _INTERPRETED, interpret)


def _codes_mask(stage: Stage, stop: int) -> int:
    """Bit ``code`` set iff ``code`` may occur at some position ``k < stop``."""
    mask = 0
    for k in range(stop):
        for code in stage.codes_at(k):
            mask |= 1 << int(code)
    return mask


def _blocks(ho: int, wo: int, pixels: int) -> tuple[int, int]:
    """Tile (BH, BW) of ``pixels`` output pixels; BW (16..128, contiguous along W) wastes little of a row."""
    bw = 16
    for cand in (128, 64, 32):
        if triton.cdiv(wo, cand) * cand - wo <= wo // 16:
            bw = cand
            break
    bw = min(bw, max(16, triton.next_power_of_2(max(wo, 1))))
    bh = min(max(1, pixels // bw), max(1, triton.next_power_of_2(max(ho, 1))))
    return bh, bw


def _tile_pixels(stage: Stage, stop: int) -> int:
    """Pixels per program instance: 16 per thread for plain passes (16-byte uint8 loads), 4 with a program,
    2 with a geometry or a neighbourhood op (taps keep many values live per pixel); chosen so that nothing spills."""
    if stage.geometry is not None or stage.folds or (stop > 0 and any(int(op) in stage.codes_at(0) for op in NEIGHBOURHOOD_OPS)):
        per_thread = 2
    else:
        per_thread = 16 if stop == 0 else 4
    return per_thread * 32 * NUM_WARPS


def plan_dtype(src: torch.Tensor) -> torch.dtype:
    """The dtype of the Plan tensors a kernel reads for stage input ``src``, and of its maths: float64 for float64
    input (as the reference), else float32 (a later stage's input is float32: ``engine.run_stage``). The statistics
    tables come in this dtype too (``engine.table_dtype``: no conversion); others are converted to it."""
    return torch.float64 if src.dtype == torch.float64 else torch.float32


def _work(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return t.to(device=device, dtype=dtype).contiguous()


def fold_buffers(src: torch.Tensor, stage: Stage) -> torch.Tensor | None:
    """The buffers of a stage's folded SHARPNESS ops (``plan.Fold``): [folds, B, C, Ho, Wo], uint8 where every fold's
    chain before it ends in the uint8 domain (exact), else float32; None without folds. One allocation, no device work."""
    if not stage.folds:
        return None
    bsz, c, h, w = src.shape
    ho, wo = stage.out_size or (h, w)
    dtype = torch.uint8 if all(f.integral for f in stage.folds) else torch.float32
    return torch.empty(len(stage.folds), bsz, c, ho, wo, dtype=dtype, device=src.device)


def _fold_args(stage: Stage, folds: torch.Tensor | None, stop: int, dummy: torch.Tensor) -> dict:
    """The fold buffer and its strides (slot, sample, channel, row) for a launch reading folds before ``stop``."""
    if not any(f.position < stop for f in stage.folds):
        return dict(buf=dummy, bss=0, bsb=0, bsc=0, bsh=0)
    if folds is None or folds.dim() != 5 or folds.shape[0] != len(stage.folds) or folds.stride(-1) != 1:
        raise ValueError("a stage with folded SHARPNESS ops needs its fold buffers (fused.fold_buffers), filled in order")
    return dict(buf=folds, bss=folds.stride(0), bsb=folds.stride(1), bsc=folds.stride(2), bsh=folds.stride(3))


def _common(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, stop: int,
            folds: torch.Tensor | None = None):
    """Runtime arguments and constexprs shared by both kernels (``folds``: :func:`fold_buffers`)."""
    if src.dim() != 4:
        raise ValueError(f"expected a [B,C,H,W] batch, got shape {tuple(src.shape)}")
    if src.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"unsupported input dtype {src.dtype}")
    dev = src.device
    bsz, c, h, w = src.shape
    ho, wo = stage.out_size or (h, w)
    geo = stage.geometry
    if geo is None and (ho, wo) != (h, w):
        raise ValueError("a stage without geometry keeps the input size")
    prog = stage.program.to(device=dev, dtype=torch.int32).contiguous()
    fdt = plan_dtype(src)
    par = _work(stage.params, dev, fdt)
    k_total = prog.shape[1]
    codes = _codes_mask(stage, stop)
    rgb = c == 3 and stage.may_run(*RGB_OPS, positions=range(stop))
    fold_bits = sum(1 << f.position for f in stage.folds if f.position < stop)  # folded SHARPNESS ops before the stop
    if stage.folds and stop > 0 and geo is None and any(int(op) in stage.codes_at(0) for op in NEIGHBOURHOOD_OPS):
        raise ValueError("a stage with folded SHARPNESS ops cannot also read its input's neighbours at k = 0")
    sharp = geo is None and stop > 0 and int(Op.SHARPNESS) in stage.codes_at(0) and not stage.folds
    blur = geo is None and stop > 0 and int(Op.GAUSSIAN_BLUR) in stage.codes_at(0) and stage.taps is not None
    conv = geo is None and stop > 0 and int(Op.CONVOLVE) in stage.codes_at(0) and stage.kernel is not None
    random = sum(1 << int(op) for op in RANDOM_OPS)
    noise = stage.keys is not None and bool(codes & random)
    if not noise:
        codes &= ~random  # no keys: identities
    args = dict(
        prog=prog,
        par=par,
        stats=_work(stats, dev, fdt),
        luts=_work(luts, dev, fdt) if codes >> int(Op.EQUALIZE) & 1 else par,  # read by EQUALIZE only (else a zero view)
        mat=_work(geo.matrix, dev, fdt) if geo is not None else par,
        win=_work(geo.window, dev, fdt) if geo is not None else par,
        fill=_work(geo.fill, dev, fdt) if geo is not None and geo.fill is not None else par,
        taps=_work(stage.taps, dev, fdt) if blur else par,
        keys=stage.keys.to(device=dev, dtype=torch.int64).contiguous() if noise else prog,
        kern=_work(stage.kernel, dev, fdt) if conv else par,
        disp=_work(geo.displacement, dev, fdt) if geo is not None and geo.displacement is not None else par,
        H=h,
        W=w,
        Ho=ho,
        Wo=wo,
        **_fold_args(stage, folds, stop, par),
    )
    bh, bw = _blocks(ho, wo, _tile_pixels(stage, stop))
    constexprs = dict(
        C=c,
        K=k_total,
        CODES=codes,
        RGB=rgb,
        GEO=geo is not None,
        BILINEAR=bool(geo is not None and geo.bilinear),
        CLAMP=bool(geo is not None and geo.clamp),
        FILL=bool(geo is not None and geo.fill is not None),
        QUANT=bool(geo is not None and geo.quantize),
        SHARP=sharp,
        BLUR=blur,
        RAD=(int(stage.taps.shape[-1]) - 1) // 2 if blur else 0,
        CONV=conv,
        KRAD=(int(stage.kernel.shape[-1]) - 1) // 2 if conv else 0,
        HASD=bool(geo is not None and geo.displacement is not None),
        FOLDS=fold_bits,
        IN_SCALE=float(stage.in_scale),
        WORK=tl.float64 if fdt == torch.float64 else tl.float32,
        BH=bh,
        BW=bw,
    )
    grid = (triton.cdiv(ho, bh) * triton.cdiv(wo, bw), bsz)
    return args, constexprs, grid


def _strides(t: torch.Tensor, prefix: str) -> dict:
    return {f"{prefix}{n}": s for n, s in zip("bchw", t.stride(), strict=True)}


def prepare_apply(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor,
                  epilogue: Epilogue | None, out: torch.Tensor, folds: torch.Tensor | None = None) -> Launch:
    """The launch of ``apply_kernel`` for this stage (no device work; ``folds``: its filled :func:`fold_buffers`)."""
    common, cx, grid = _common(src, stage, stats, luts, stage.program.shape[1], folds)
    dev = src.device
    bsz, c = src.shape[:2]
    ho, wo = common["Ho"], common["Wo"]
    oc = epilogue.out_channels if epilogue is not None else c
    if tuple(out.shape) != (bsz, oc, ho, wo):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {(bsz, oc, ho, wo)}")
    if out.device != dev:
        raise ValueError("out must be on the input's device")
    ep = epilogue
    norm = ep is not None and ep.mean is not None
    n_rects = 0 if ep is None or ep.rects is None else int(ep.rects.shape[1])
    dummy_i = common["prog"]
    fdt = common["par"].dtype
    args = dict(
        src=src,
        out=out,
        prog=common["prog"],
        par=common["par"],
        stats=common["stats"],
        luts=common["luts"],
        mat=common["mat"],
        win=common["win"],
        fill=common["fill"],
        mean=_work(ep.mean, dev, fdt) if norm else common["par"],
        std=_work(ep.std, dev, fdt) if norm else common["par"],
        rects=ep.rects.to(device=dev, dtype=torch.int32).contiguous() if n_rects else dummy_i,
        rvals=_work(ep.rect_values, dev, fdt) if n_rects else common["par"],
        rphase=ep.rect_phase.to(device=dev, dtype=torch.int32).contiguous() if n_rects else dummy_i,
        taps=common["taps"],
        keys=common["keys"],
        kern=common["kern"],
        disp=common["disp"],
        **{n: common[n] for n in ("buf", "bss", "bsb", "bsc", "bsh")},
        H=common["H"],
        W=common["W"],
        Ho=ho,
        Wo=wo,
        R=n_rects,
        **_strides(src, "ss"),
        **_strides(out, "os"),
    )
    out_u8 = out.dtype == torch.uint8
    if out.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"unsupported output dtype {out.dtype}")
    constexprs = dict(
        C=cx["C"],
        OC=oc,
        NCH=(c if cx["RGB"] else oc) if c <= 4 else 1,
        K=cx["K"],
        CODES=cx["CODES"],
        RGB=cx["RGB"],
        GEO=cx["GEO"],
        BILINEAR=cx["BILINEAR"],
        CLAMP=cx["CLAMP"],
        FILL=cx["FILL"],
        QUANT=cx["QUANT"],
        SHARP=cx["SHARP"],
        IN_SCALE=cx["IN_SCALE"],
        EPI=ep is not None,
        OUT_SCALE=float(ep.out_scale) if ep is not None else 1.0,
        NORM=norm,
        RECTS=n_rects > 0,
        OUT_U8=out_u8,
        WORK=cx["WORK"],
        BH=cx["BH"],
        BW=cx["BW"],
        BLUR=cx["BLUR"],
        RAD=cx["RAD"],
        CONV=cx["CONV"],
        KRAD=cx["KRAD"],
        HASD=cx["HASD"],
        FOLDS=cx["FOLDS"],
    )
    return Launch("apply_kernel", grid, args, constexprs)


def prepare_reduce(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, k: int | torch.Tensor,
                   outputs: tuple[torch.Tensor, ...] | None = None, needs: tuple[bool, bool, bool] = (True, True, True),
                   folds: torch.Tensor | None = None) -> Launch:
    """The launch of ``reduce_kernel`` for the chain before op ``k`` (an int, or per-sample stops [B]:
    samples with a stop outside [0, K) are skipped); ``outputs`` = (gray_sum, min, max, hist int32)
    buffers, freshly initialised when ``None``; ``needs``: which of (min / max, histograms, gray sum) to compute (the
    others keep their initial values). No device work, no synchronisation."""
    k_total = stage.program.shape[1]
    dev = src.device
    bsz, c = src.shape[:2]
    if isinstance(k, torch.Tensor):
        stops = k.to(device=dev, dtype=torch.int32).reshape(bsz).contiguous()
        bound = k_total
    else:
        if not 0 <= k < k_total:
            raise ValueError(f"k={k} outside the program (K={k_total})")
        stops = torch.full((bsz,), k, dtype=torch.int32, device=dev)
        bound = k
    common, cx, grid = _common(src, stage, stats, luts, bound, folds)
    if outputs is None:
        outputs = (
            torch.zeros(bsz, dtype=torch.float64, device=dev),
            torch.full((bsz, c), float("inf"), dtype=common["par"].dtype, device=dev),  # min / max in the working dtype
            torch.full((bsz, c), -float("inf"), dtype=common["par"].dtype, device=dev),
            torch.zeros(bsz, c, 256, dtype=torch.int32, device=dev),
        )
    gsum, vmin, vmax, hist = outputs
    args = dict(
        src=src,
        gsum=gsum,
        vmin=vmin,
        vmax=vmax,
        hist=hist,
        stops=stops,
        prog=common["prog"],
        par=common["par"],
        stats=common["stats"],
        luts=common["luts"],
        mat=common["mat"],
        win=common["win"],
        fill=common["fill"],
        taps=common["taps"],
        keys=common["keys"],
        kern=common["kern"],
        disp=common["disp"],
        **{n: common[n] for n in ("buf", "bss", "bsb", "bsc", "bsh")},
        H=common["H"],
        W=common["W"],
        Ho=common["Ho"],
        Wo=common["Wo"],
        **_strides(src, "ss"),
    )
    constexprs = dict(
        C=cx["C"],
        NCH=c if c <= 4 else 1,
        K=cx["K"],
        STOP=bound,
        **{n: cx[n] for n in ("CODES", "RGB", "GEO", "BILINEAR", "CLAMP", "FILL", "QUANT", "SHARP", "IN_SCALE")},
        WORK=cx["WORK"],
        BH=cx["BH"],
        BW=cx["BW"],
        BLUR=cx["BLUR"],
        RAD=cx["RAD"],
        CONV=cx["CONV"],
        KRAD=cx["KRAD"],
        HASD=cx["HASD"],
        MINMAX=bool(needs[0]),
        HIST=bool(needs[1]),
        GRAY=bool(needs[2]),
        FOLDS=cx["FOLDS"],
    )
    return Launch("reduce_kernel", grid, args, constexprs)


def run_launch(module: ModuleType, spec: Launch) -> None:
    """Run ``spec`` with ``module``'s kernel of that name (one of the modules' copies for the current mode). No
    floating-point contraction, as the kernels are compiled ahead of time (``aot``) and as the CPU backends compute."""
    getattr(module, spec.kernel)[spec.grid](**spec.args, **spec.constexprs, num_warps=spec.num_warps, enable_fp_fusion=False)


def aligned16(n_bytes: int) -> int:
    """``n_bytes`` rounded up to 16 (Triton specialises a pointer on 16-byte alignment: views of one allocation placed
    at such offsets compile one kernel variant whatever the sizes)."""
    return -(-n_bytes // 16) * 16


def launch(spec: Launch) -> None:
    """Run a prepared launch with the kernels of the current mode (compiled or interpreted)."""
    run_launch(kernel_module(), spec)


def apply(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor,
          epilogue: Epilogue | None, out: torch.Tensor, folds: torch.Tensor | None = None) -> None:
    """Run the stage (and the epilogue if given) and write ``out`` through its strides (``folds``: the stage's filled
    :func:`fold_buffers`)."""
    spec = prepare_apply(src, stage, stats, luts, epilogue, out, folds)
    if out.numel():
        launch(spec)


def prepare_fold_fill(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, folds: torch.Tensor,
                      slot: int) -> Launch:
    """The launch of ``fold_fill_kernel`` for the stage's fold ``slot`` (no device work)."""
    at = stage.folds[slot].position
    common, cx, grid = _common(src, stage, stats, luts, at, folds)
    args = {n: common[n] for n in ("prog", "par", "stats", "luts", "mat", "win", "fill", "taps", "keys", "kern", "disp",
                                   "H", "W", "Ho", "Wo")}  # fmt: skip
    # the buffers (checked) with the fold's own slot among them: their arguments as a launch reading every fold's
    args.update(src=src, **_fold_args(stage, folds, stage.program.shape[1], common["par"]), **_strides(src, "ss"))
    c = src.shape[1]
    constexprs = dict(AT=at, SLOT=slot, C=c, NCH=c if c <= 4 else 1, K=cx["K"],
                      **{n: cx[n] for n in ("CODES", "RGB", "GEO", "BILINEAR", "CLAMP", "FILL", "QUANT", "IN_SCALE", "WORK",
                                            "BH", "BW", "HASD", "FOLDS")},
                      BUF_U8=folds.dtype == torch.uint8)  # fmt: skip
    return Launch("fold_fill_kernel", grid, args, constexprs)


def fold_fill(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, folds: torch.Tensor, slot: int) -> None:
    """Write fold ``slot``'s buffer: the chain before its SHARPNESS, for the samples that run it there (``plan.Fold``)."""
    spec = prepare_fold_fill(src, stage, stats, luts, folds, slot)
    if spec.grid[0] * spec.grid[1]:
        launch(spec)


HASH_BLOCK = 1024


def _int32(value: int) -> int:
    """The uint32 ``value`` as the int32 of the same bits: Triton types a Python int by its range (>= 2**31: i64), so
    half of all seeds / epochs would otherwise compile an i64 variant; the kernels read it back with ``.to(tl.uint32)``."""
    value &= counter.MASK
    return value - (1 << 32) if value >= 1 << 31 else value


def prepare_hash32(h0: int, idx: torch.Tensor, slot: int, n: int, epoch: torch.Tensor | None = None) -> tuple[torch.Tensor, Launch]:
    """The output [B, n] (int64) and the launch of :func:`hash32`."""
    b = idx.shape[0]
    out = torch.empty(b, n, dtype=torch.int64, device=idx.device)
    total = b * n
    ep = idx if epoch is None else epoch.reshape(1).to(torch.int64)  # idx: an unused pointer
    args = {"out": out, "idx": idx.contiguous(), "epoch": ep, "total": total, "N": n, "h0": _int32(h0), "slot": _int32(slot)}
    cx = {"EPOCH_PTR": epoch is not None, "BLOCK": HASH_BLOCK}
    return out, Launch("hash32_kernel", (max(triton.cdiv(total, HASH_BLOCK), 1), 1), args, cx, num_warps=4)


def hash32(h0: int, idx: torch.Tensor, slot: int, n: int, epoch: torch.Tensor | None = None) -> torch.Tensor:
    """``fastaug.rng.hash32`` [B, n] (int64) of the int64 indices ``idx`` [B] on their device, in one launch;
    ``h0`` = ``fastaug.rng.prefix(seed, epoch)``, or with a device tensor ``epoch`` ``fastaug.rng.seed_prefix(seed)``."""
    out, spec = prepare_hash32(h0, idx, slot, n, epoch)
    if out.numel():
        launch(spec)
    return out


def prepare_hash32_table(h0: int, idx: torch.Tensor, table: torch.Tensor,
                         epoch: torch.Tensor | None = None) -> tuple[torch.Tensor, Launch]:
    """The flat output (int64) and the launch of :func:`hash32_table`; the uniforms are the launch's ``uni`` (float64, the
    second half of the same allocation)."""
    b, t = idx.shape[0], table.shape[1]
    total = b * t
    both = torch.empty(2 * total, dtype=torch.int64, device=idx.device)
    out, uni = both[:total], both[total:].view(torch.float64)
    ep = idx if epoch is None else epoch.reshape(1).to(torch.int64)  # idx: an unused pointer
    args = {"out": out, "uni": uni, "idx": idx.contiguous(), "epoch": ep, "table": table, "total": total, "T": t,
            "h0": _int32(h0)}
    cx = {"EPOCH_PTR": epoch is not None, "BLOCK": HASH_BLOCK}
    return out, Launch("hash32_table_kernel", (max(triton.cdiv(total, HASH_BLOCK), 1), 1), args, cx, num_warps=4)


def hash32_table(h0: int, idx: torch.Tensor, table: torch.Tensor, epoch: torch.Tensor | None = None) -> torch.Tensor:
    """``fastaug.rng.hash32_table`` (flat int64 [B * T]) of the int64 indices ``idx`` [B] and the columns of ``table``
    [4, T] on their device, in one launch; ``h0``, ``epoch``: as :func:`hash32`."""
    return hash32_table_uniforms(h0, idx, table, epoch)[0]


def hash32_table_uniforms(h0: int, idx: torch.Tensor, table: torch.Tensor,
                          epoch: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`hash32_table` and the uniforms of the same draws (flat float64 [B * T]), from the same launch."""
    out, spec = prepare_hash32_table(h0, idx, table, epoch)
    if out.numel():
        launch(spec)
    return out, spec.args["uni"]


def reduce(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, k: int | torch.Tensor) -> Reduction:
    """Statistics of the chain before op ``k`` (an int, or per-sample stops [B]; stops outside [0, K):
    skipped, entries left at their initial values): gray sum, per-channel min/max, 256-bin histograms."""
    spec = prepare_reduce(src, stage, stats, luts, k)
    if spec.grid[0] * spec.grid[1]:
        launch(spec)
    gsum, vmin, vmax, hist = (spec.args[n] for n in ("gsum", "vmin", "vmax", "hist"))
    return Reduction(gray_sum=gsum, minimum=vmin, maximum=vmax, hist=hist.to(torch.int64))
