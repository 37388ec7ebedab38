"""Numba kernels of the CPU backend: one fused pass per stage, row by row.

The work of a stage is a range of tasks ``t`` = (row block, sample), sample index fastest;
:func:`run_tasks` runs a contiguous range of them (serial, ``nogil``) and the host runs one range per
thread (``torch.get_num_threads()`` Python threads), so thread j gets row block j of every sample.
Not ``prange``: numba's parfor lowering re-links and re-optimises the whole kernel, which measured
~2x the cold compile time (30 s vs 17 s CPU) for the same static split. Kernels are compiled without
NRT (``_nrt=False``): no atomic reference counting on arrays shared by all threads, no allocation
(per-thread scratch comes from the host, :func:`scratch`).

Each output row is produced in a row buffer ``buf`` ([C, Wo] working values):

1. fill: the stage input, plain, with a neighbourhood op at k = 0 (3x3 SHARPNESS, separable
   GAUSSIAN_BLUR from a ring of x-blurred rows), or resampled in three steps: the
   geometry of the row (coordinates, tap offsets, masked weights: one vectorisable loop,
   :func:`_coords_row`), the gather of all channels' taps of each pixel in one place (uint8 taps
   packed four to a uint32), and the blend (vectorisable);
2. ops: the sample's program, one tight loop over the row per op, so the op-code dispatch costs
   one branch per (row, op) instead of one per pixel, and the loops vectorise;
3. epilogue and store through the output strides (apply), or statistics (reduce).

Tensors are passed as 1-D views of their memory plus element strides, so contiguous, channels-last
and strided tensors share one compiled signature; uint8 and float sources and outputs come in
separate typed slots (the unused one empty) so that apply and reduce, for every input / output
dtype, are one compilation per working dtype ``F`` (float32, or float64 for a float64 stage input, as the
reference computes: see ``fastaug/plan.py`` for which stages that is). Every float constant comes from the
``cst`` table (:func:`constants`) so that no arithmetic silently widens to float64, and the reference's float32
operation order is kept
(no FMA contraction, no reassociation): results are bit-exact (GAMMA's power too: in float64, rounded to the working
dtype, as ``reference.gamma_pow``).

Indexing: loops index ``buf`` with range variables (provably non-negative) and computed offsets into
the flat tensors are cast to uint64, so numba emits no negative-index wraparound code and LLVM can
vectorise the row loops.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from fastaug.ops import counter
from fastaug.ops.catalogue import Op

U = np.uint64  # offsets into the flat tensors (non-negative: no wraparound code)

# No NRT: no reference counting (atomic increments shared by all threads) on array arguments and
# views; the kernels allocate nothing (scratch comes from the host).
jit = njit(cache=True, error_model="numpy", _nrt=False)

# Op codes from the catalogue (module-level ints are compile-time constants for numba). Codes are
# append-only, so a kernel cached on disk (``cache=True`` keys on this file, not on the catalogue) stays valid.
IDENTITY = int(Op.IDENTITY)
BRIGHTNESS = int(Op.BRIGHTNESS)
CONTRAST = int(Op.CONTRAST)
SATURATION = int(Op.SATURATION)
HUE = int(Op.HUE)
GAMMA = int(Op.GAMMA)
SHARPNESS = int(Op.SHARPNESS)
GRAYSCALE = int(Op.GRAYSCALE)
INVERT = int(Op.INVERT)
POSTERIZE = int(Op.POSTERIZE)
SOLARIZE = int(Op.SOLARIZE)
AUTOCONTRAST = int(Op.AUTOCONTRAST)
EQUALIZE = int(Op.EQUALIZE)
TO_FLOAT = int(Op.TO_FLOAT)
TO_UINT8 = int(Op.TO_UINT8)
GAUSSIAN_BLUR = int(Op.GAUSSIAN_BLUR)
GAUSSIAN_NOISE = int(Op.GAUSSIAN_NOISE)
CONVOLVE = int(Op.CONVOLVE)
PIXEL_DROPOUT = int(Op.PIXEL_DROPOUT)
SALT_AND_PEPPER = int(Op.SALT_AND_PEPPER)
MULTIPLICATIVE_NOISE = int(Op.MULTIPLICATIVE_NOISE)
RGB_SHIFT = int(Op.RGB_SHIFT)
RGB_GAIN = int(Op.RGB_GAIN)
FOG = int(Op.FOG)
DOWNSCALE = int(Op.DOWNSCALE)

# the counter-based hash (fastaug.ops.counter) on uint64 values < 2**32
_MASK = np.uint64(counter.MASK)
_M1, _M2 = np.uint64(counter.M1), np.uint64(counter.M2)
_S15, _S16 = np.uint64(15), np.uint64(16)

# Indices into the constants table.
ZERO, ONE, HALF, B255, INV255, EPS, GW0, GW1, GW2, TWO, FOUR, SIX, EIGHT, W1, W5, INF, THREE, FIVE = range(18)
INV24, TWO_PI, MINUS_TWO, C256 = range(18, 22)
SQRT2, LN2, QUARTER, C24 = range(22, 26)
LOG0, COS0, SIN0 = 26, 31, 36  # the series' Horner coefficients (5 each, innermost first)
FOG_NORM, FOG_CONTRAST, TINY = 41, 42, 43

# Indices of the float scalars (F array ``fs``) and of the int flags (int64 array ``iv``).
S_IN, S_OUT, S_WM1, S_HM1 = range(4)  # in_scale, out_scale, W - 1, H - 1
I_GEO, I_CLAMP, I_FILL, I_QUANT = range(4)  # geometry: mode (0 none, 1 nearest, 2 bilinear) and flags
I_CO, I_INT, I_NORM, I_RECTS = range(4, 8)  # epilogue: out_channels, uint8 output, normalize, rects
I_REDUCE, I_SRC8, I_ROWS = range(8, 11)  # statistics pass (per-sample kinds in ``whats``), uint8 source, rows per task
I_PACK = 11  # bilinear from a uint8 source (C <= 4, whole-sample tasks): resample from a packed copy of the sample
I_STREAM = 12  # float output rows written with non-temporal stores (a large final output, see _store_row)
NUM_FLAGS = 13


def scratch(
    C: int, Wo: int, dtype: type, bilinear: bool, from_u8: bool, pixels: int = 0, radius: int = 0
) -> tuple[np.ndarray, ...]:
    """Per-thread scratch arrays of :func:`run_tasks`: buf, wt, ms, ofs, packed, tapsf, image, line, ring.

    ``pixels`` > 0 (H * W): ``image`` holds one packed sample (see :func:`_pack_u8`) and ``packed``
    the four taps of a row [4, Wo]; else ``packed`` holds [C, Wo] taps packed four to a uint32.
    ``radius`` > 0 (a blur at k = 0): ``line`` [C, Wo + 2 radius] an input row with reflected ends,
    ``ring`` [2 radius + 1, C, Wo] the x-blurred rows around the output row."""
    if pixels:
        packed = np.empty((4, Wo), dtype=np.uint32)
    else:
        packed = np.empty((C if bilinear and from_u8 else 0, Wo), dtype=np.uint32)
    tapsf = np.empty((C if bilinear and not from_u8 else 0, 4 * Wo), dtype=dtype)
    return (
        np.empty((C, Wo), dtype=dtype), np.empty((4, Wo + 2), dtype=dtype), np.empty(Wo, dtype=dtype),
        np.empty((4, Wo), dtype=np.int32), packed, tapsf, np.empty(pixels, dtype=np.uint32),
        np.empty((C, Wo + 2 * radius) if radius else (0, 0), dtype=dtype),
        np.empty((2 * radius + 1, C, Wo) if radius else (0, 0, 0), dtype=dtype),
    )  # fmt: skip


def constants(dtype: type) -> np.ndarray:
    """The float constants of the kernels in the working dtype (as torch casts python scalars)."""
    vals = [0.0, 1.0, 0.5, 255.0, 1.0 / 255.0, 255.999, 0.2989, 0.587, 0.114, 2.0, 4.0, 6.0, 8.0, 1.0 / 13.0, 5.0 / 13.0]
    vals += [np.inf, 3.0, 5.0]
    vals += [counter.INV24, counter.TWO_PI, -2.0, 256.0, counter.SQRT2, counter.LN2, 0.25, 24.0]
    vals += [*counter.LOG_SERIES, *counter.COS_SERIES, *counter.SIN_SERIES]
    vals += [counter.FOG_NORM, counter.FOG_CONTRAST, 2.0**-20]
    return np.array(vals, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# non-temporal stores (LLVM IR: numba has no spelling for them)

_STREAM_BYTES = 32  # one store of 32 bytes: 8 float32 / 4 float64 values


@intrinsic
def _stream_store(typingctx, out, oidx, src, sidx):
    """``out[oidx : oidx + n] = src[sidx : sidx + n]`` (n = 32 bytes of values) as one non-temporal vector store: the
    line goes to memory without being read first (a plain store reads it for ownership: twice the traffic). The
    destination must be 32-byte aligned."""
    sig = types.void(out, oidx, src, sidx)

    def codegen(context, builder, sig, args):
        oty, _, sty, _ = sig.args
        dst = builder.gep(context.make_array(oty)(context, builder, args[0]).data, [args[1]])
        from_ = builder.gep(context.make_array(sty)(context, builder, args[2]).data, [args[3]])
        elem = context.get_data_type(oty.dtype)
        vec = ir.VectorType(elem, _STREAM_BYTES // context.get_abi_sizeof(elem))
        value = builder.load(builder.bitcast(from_, vec.as_pointer()), align=context.get_abi_sizeof(elem))
        store = builder.store(value, builder.bitcast(dst, vec.as_pointer()), align=_STREAM_BYTES)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _stream_fence(typingctx):
    """Orders the non-temporal stores before everything after (x86 ``sfence``; elsewhere a full fence)."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        if "x86_64" in builder.module.triple or "i686" in builder.module.triple:
            fn = builder.module.declare_intrinsic("llvm.x86.sse.sfence", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


# ----------------------------------------------------------------------------------------------
# fill: stage input (and geometry) into the row buffer


@jit
def _read_row(src, base, sc, sx, C, W, scale, buf):
    """Plain read of one input row (``base`` = offset of (b, 0, i, 0))."""
    if sc == 1 and C > 1:  # channels-last: a pixel's channels are adjacent
        for x in range(W):
            o = base + x * sx
            for c in range(C):
                buf[c, x] = src[U(o + c)] * scale
    elif sx == 1:  # unit stride: vectorisable
        for c in range(C):
            o = base + c * sc
            for x in range(W):
                buf[c, x] = src[U(o + x)] * scale
    else:
        for c in range(C):
            o = base + c * sc
            for x in range(W):
                buf[c, x] = src[U(o + x * sx)] * scale


@jit
def _sharpen_row(src, base, sy, sc, sx, C, W, scale, a, q, cst, buf):
    """SHARPNESS of an interior row (0 < i < H-1, H, W > 2) from the 3x3 neighbourhood of the input.

    The blur mimics the reference's conv2d on CPU (oneDNN: an FMA chain over the taps in raster order):
    each step is computed in float64 and rounded to ``F`` through ``buf``. uint8-domain results do
    not depend on it (``rint`` of n/13 is never a tie); float-domain results may differ by an ulp
    where torch sums differently.
    """
    zero = cst[ZERO]
    w1 = np.float64(cst[W1])
    w5 = np.float64(cst[W5])
    oma = cst[ONE] - a
    bound = cst[B255] if q else cst[ONE]
    for c in range(C):
        o = base + c * sc
        buf[c, 0] = src[U(o)] * scale
        buf[c, W - 1] = src[U(o + (W - 1) * sx)] * scale
        for x in range(1, W - 1):
            p = o + x * sx
            acc = 0.0
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    wt = w5 if (dy == 0 and dx == 0) else w1
                    buf[c, x] = wt * np.float64(src[U(p + dy * sy + dx * sx)] * scale) + acc
                    acc = np.float64(buf[c, x])
            blur = buf[c, x]
            v = src[U(p)] * scale
            if q:
                blur = np.rint(blur)
            v = min(max(v + oma * (blur - v), zero), bound)
            buf[c, x] = np.floor(v) if q else v


@jit
def _reflect(j, n):
    """``j`` mirrored into [0, n) without repeating the edge pixel (any j; n == 1: 0)."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    j = j % period  # Python semantics: non-negative
    return period - j if j > n - 1 else j


@jit
def _read_line(src, base, sc, sx, C, W, scale, R, line):
    """Input row ``base`` (offset of (b, 0, y, 0)) into ``line[:, R:R+W]``, its ends reflected into the pads."""
    for c in range(C):
        o = base + c * sc
        if sx == 1:  # unit stride: vectorisable (a strided read is a gather)
            for x in range(W):
                line[c, R + x] = src[U(o + x)] * scale
        else:
            for x in range(W):
                line[c, R + x] = src[U(o + x * sx)] * scale
        for t in range(R):  # the pads: mirrored interior pixels
            line[c, t] = line[c, R + _reflect(t - R, W)]
            line[c, R + W + t] = line[c, R + _reflect(W + t, W)]


@jit
def _fir3(r0, r1, r2, s, w, zero, W, out):
    """``out[x] = ((zero + w0 r0[x]) + w1 r1[x + s]) + w2 r2[x + 2s]``: three taps of :func:`_fir_x` / :func:`_fir_y`."""
    w0, w1, w2 = w[0], w[1], w[2]
    for x in range(W):
        out[x] = ((zero + w0 * r0[x]) + w1 * r1[x + s]) + w2 * r2[x + 2 * s]


@jit
def _fir5(r0, r1, r2, r3, r4, s, w, zero, W, out):
    """Five taps, as :func:`_fir3`."""
    w0, w1, w2, w3, w4 = w[0], w[1], w[2], w[3], w[4]
    for x in range(W):
        v = ((zero + w0 * r0[x]) + w1 * r1[x + s]) + w2 * r2[x + 2 * s]
        out[x] = (v + w3 * r3[x + 3 * s]) + w4 * r4[x + 4 * s]


@jit
def _fir_x(line, T, W, w, zero, out):
    """``out[x] = sum_t w[t] * line[x + t]`` (t ascending, from ``zero``: the reference's order). T = 3, 5 unrolled (the
    sum stays in a register of the vectorised x loop); else one pass over ``out`` per tap."""
    if T == 3:
        _fir3(line, line, line, 1, w, zero, W, out)
    elif T == 5:
        _fir5(line, line, line, line, line, 1, w, zero, W, out)
    else:
        for x in range(W):
            out[x] = zero
        for t in range(T):
            wt = w[t]
            for x in range(W):
                out[x] = out[x] + wt * line[x + t]


@jit
def _fir_y(ring, i, c, T, W, w, zero, out):
    """``out[x] = sum_t w[t] * ring[(i + t) % T, c, x]`` (t ascending, from ``zero``), unrolled as :func:`_fir_x`."""
    if T == 3:
        _fir3(ring[i % 3, c], ring[(i + 1) % 3, c], ring[(i + 2) % 3, c], 0, w, zero, W, out)
    elif T == 5:
        _fir5(ring[i % 5, c], ring[(i + 1) % 5, c], ring[(i + 2) % 5, c], ring[(i + 3) % 5, c], ring[(i + 4) % 5, c], 0, w, zero, W,
              out)
    else:
        for x in range(W):
            out[x] = zero
        for t in range(T):
            wt = w[t]
            row = ring[(i + t) % T, c]
            for x in range(W):
                out[x] = out[x] + wt * row[x]


@jit
def _blur_x_row(src, base, sc, sx, C, W, scale, wx, R, zero, line, out):
    """``out[c, x] = sum_t wx[t] * line[c, x + t]`` of input row ``base`` (t ascending, from 0: the reference's order)."""
    _read_line(src, base, sc, sx, C, W, scale, R, line)
    for c in range(C):
        _fir_x(line[c], 2 * R + 1, W, wx, zero, out[c])


@jit
def _correlate_row(src, sbase, sy, sc, sx, C, H, W, scale, i, kern, line, buf):
    """``buf[c, x] = sum_dy sum_dx kern[dy, dx] * v[reflect(i+dy-R), reflect(x+dx-R)]`` (dy, then dx ascending, from 0)."""
    T = kern.shape[0]
    R = (T - 1) // 2
    for c in range(C):
        for x in range(W):
            buf[c, x] = 0.0
    for dy in range(T):
        _read_line(src, sbase + _reflect(i + dy - R, H) * sy, sc, sx, C, W, scale, R, line)
        for dx in range(T):
            kv = kern[dy, dx]
            for c in range(C):
                for x in range(W):
                    buf[c, x] = buf[c, x] + kv * line[c, x + dx]


@jit
def _convolve_row(src, sbase, sy, sc, sx, C, H, W, scale, i, kern, q, cst, line, buf):
    """CONVOLVE of output row ``i``: ``sum_dy sum_dx kern[dy, dx] * v[reflect(i+dy-R), reflect(x+dx-R)]`` (dy, then
    dx ascending, from 0), clamped into [0, bound], ``rint`` in the uint8 domain."""
    zero = cst[ZERO]
    bound = cst[B255] if q else cst[ONE]
    _correlate_row(src, sbase, sy, sc, sx, C, H, W, scale, i, kern, line, buf)
    for c in range(C):
        for x in range(W):
            v = min(max(buf[c, x], zero), bound)
            buf[c, x] = np.rint(v) if q else v


@jit
def _blur_row(src, sbase, sy, sc, sx, C, H, W, scale, i, first, taps, q, zero, line, ring, buf):
    """GAUSSIAN_BLUR of output row ``i``: the x-blurred rows ``reflect(i - R .. i + R)`` live in ``ring``
    (slot ``(y + R) % T``; all filled at a task's ``first`` row, then one new row per output row), then
    ``buf[c, x] = sum_t wy[t] * ring[row i - R + t]`` (t ascending, from 0), ``rint`` in the uint8 domain."""
    T = taps.shape[1]
    R = (T - 1) // 2
    wx = taps[0]
    wy = taps[1]
    lo = i - R if first else i + R
    for y in range(lo, i + R + 1):
        _blur_x_row(src, sbase + _reflect(y, H) * sy, sc, sx, C, W, scale, wx, R, zero, line, ring[(y + R) % T])
    for c in range(C):
        _fir_y(ring, i, c, T, W, wy, zero, buf[c])
    if q:
        for c in range(C):
            for x in range(W):
                buf[c, x] = np.rint(buf[c, x])


@jit
def _resize_tap(posf, ratio, n_in, bilinear, half, zero):
    """(i0, i1, lam) of output position ``posf`` (a float) along an axis of ``n_in`` values read with ``ratio`` input
    pixels per output pixel (DOWNSCALE in the catalogue): nearest ``min(floor(pos * r), n_in - 1)``; bilinear half-pixel
    centres, clamped."""
    if not bilinear:
        i = min(np.int64(np.floor(posf * ratio)), n_in - 1)
        return i, i, zero
    src = (posf + half) * ratio - half
    src = src if src > zero else zero
    f = np.floor(src)
    i0 = min(np.int64(f), n_in - 1)
    return i0, min(i0 + 1, n_in - 1), src - f


@jit
def _down_value(src, base, sy, sx, r0, r1, ly, c0, c1, lx, scale, q, one):
    """The small image at the down-sampling taps (rows r0 / r1, weight ly; columns c0 / c1, weight lx) of one channel."""
    top = (one - lx) * (src[U(base + r0 * sy + c0 * sx)] * scale) + lx * (src[U(base + r0 * sy + c1 * sx)] * scale)
    bot = (one - lx) * (src[U(base + r1 * sy + c0 * sx)] * scale) + lx * (src[U(base + r1 * sy + c1 * sx)] * scale)
    d = (one - ly) * top + ly * bot
    return np.rint(d) if q else d


@jit
def _downscale_setup(H, W, a, mode, xs, ys, cst):
    """DOWNSCALE's per-sample constants (see the catalogue): the small size (hd, wd), the up-sampling ratios hd / H and
    wd / W, the down-sampling ratio 1 / a and the two interpolation flags."""
    one = cst[ONE]
    tiny = cst[TINY]
    a = a if a > tiny else tiny  # the catalogue's floor (NaN too): indices stay finite
    hf = ys[H - 1] + one
    wf = xs[W - 1] + one
    hdf = max(np.rint(a * hf), one)
    wdf = max(np.rint(a * wf), one)
    m = np.int64(np.rint(mode))
    return np.int64(hdf), np.int64(wdf), hdf / hf, wdf / wf, one / a, (m & 1) != 0, (m & 2) != 0


@jit
def _downscale_row(src, sbase, sy, sc, sx, C, H, W, scale, i, a, mode, q, xs, ys, cst, buf):
    """DOWNSCALE of output row ``i``: the stage input resized to (hd, wd) and back (see the catalogue), read
    directly from the input (1, 4 or 16 taps per value). ``xs`` / ``ys``: column / row indices in the working dtype."""
    zero, one, half = cst[ZERO], cst[ONE], cst[HALF]
    hd, wd, rh, rw, inv, down_bil, up_bil = _downscale_setup(H, W, a, mode, xs, ys, cst)
    u0, u1, uy = _resize_tap(ys[i], rh, hd, up_bil, half, zero)
    ra0, ra1, lya = _resize_tap(ys[u0], inv, H, down_bil, half, zero)  # the rows of the small image's rows u0, u1
    rb0, rb1, lyb = _resize_tap(ys[u1], inv, H, down_bil, half, zero)
    for x in range(W):  # taps once per pixel, then every channel
        v0, v1, ux = _resize_tap(xs[x], rw, wd, up_bil, half, zero)
        ca0, ca1, lxa = _resize_tap(xs[v0], inv, W, down_bil, half, zero)
        cb0, cb1, lxb = _resize_tap(xs[v1], inv, W, down_bil, half, zero)
        for c in range(C):
            base = sbase + c * sc
            d00 = _down_value(src, base, sy, sx, ra0, ra1, lya, ca0, ca1, lxa, scale, q, one)
            d01 = _down_value(src, base, sy, sx, ra0, ra1, lya, cb0, cb1, lxb, scale, q, one)
            d10 = _down_value(src, base, sy, sx, rb0, rb1, lyb, ca0, ca1, lxa, scale, q, one)
            d11 = _down_value(src, base, sy, sx, rb0, rb1, lyb, cb0, cb1, lxb, scale, q, one)
            d = (one - uy) * ((one - ux) * d00 + ux * d01) + uy * ((one - ux) * d10 + ux * d11)
            buf[c, x] = np.rint(d) if q else d


@jit
def _bounds(fs, iv, win, cst):
    """The coordinates' clamp interval (cx_lo, cy_lo, cx_hi, cy_hi) and the taps' validity interval (frame and
    window: vx_lo, vy_lo, vx_hi, vy_hi); unused bounds are +-inf."""
    inf = cst[INF]
    if iv[I_CLAMP] != 0:  # clamp the coordinates; validity = the frame only
        cxl, cyl, cxh, cyh = win[0], win[1], win[2], win[3]
        vxl, vyl, vxh, vyh = -inf, -inf, inf, inf
    else:  # validity = the frame and the window
        cxl, cyl, cxh, cyh = -inf, -inf, inf, inf
        vxl, vyl, vxh, vyh = win[0], win[1], win[2], win[3]
    zero = cst[ZERO]
    return cxl, cyl, cxh, cyh, max(vxl, zero), max(vyl, zero), min(vxh, fs[S_WM1]), min(vyh, fs[S_HM1])


@jit
def _cell(X, Y, vxl, vyl, vxh, vyh, one):
    """The bilinear cell of (X, Y): corners u0, v0, u1, v1, fractions fx, fy and the validity of each
    corner coordinate (ku0, ku1, kv0, kv1) against the validity interval."""
    u0 = np.floor(X)
    v0 = np.floor(Y)
    u1 = u0 + one
    v1 = v0 + one
    ku0, ku1 = (u0 >= vxl) & (u0 <= vxh), (u1 >= vxl) & (u1 <= vxh)
    kv0, kv1 = (v0 >= vyl) & (v0 <= vyh), (v1 >= vyl) & (v1 <= vyh)
    return u0, v0, u1, v1, X - u0, Y - v0, ku0, ku1, kv0, kv1


@jit
def _project(m, xj, yi, dsp, j):
    """``m @ (xj + dx, yi + dy, 1)`` of column j, (dx, dy) = ``dsp[j]``, in the reference's order of operations."""
    xj = xj + dsp[j, 0]
    yj = yi + dsp[j, 1]
    return (m[0] * xj + m[1] * yj) + m[2], (m[3] * xj + m[4] * yj) + m[5], (m[6] * xj + m[7] * yj) + m[8]


@jit
def _bilinear_tap(j, X, Y, vxl, vyl, vxh, vyh, wm1, hm1, sx, sy, zero, one, wt, ms, ofs):
    """Column j's bilinear taps of the (clamped) source coordinate (X, Y): see :func:`_coords_row`."""
    u0, v0, u1, v1, fx, fy, ku0, ku1, kv0, kv1 = _cell(X, Y, vxl, vyl, vxh, vyh, one)
    gx = one - fx
    gy = one - fy
    w00 = gx * gy if ku0 & kv0 else zero
    w10 = fx * gy if ku1 & kv0 else zero
    w01 = gx * fy if ku0 & kv1 else zero
    w11 = fx * fy if ku1 & kv1 else zero
    wt[0, j] = w00
    wt[1, j] = w10
    wt[2, j] = w01
    wt[3, j] = w11
    ms[j] = ((w00 + w10) + w01) + w11
    u0 = u0 if u0 >= zero else zero
    u1 = u1 if u1 >= zero else zero
    v0 = v0 if v0 >= zero else zero
    v1 = v1 if v1 >= zero else zero
    x0 = np.int32(u0 if u0 <= wm1 else wm1) * sx
    x1 = np.int32(u1 if u1 <= wm1 else wm1) * sx
    y0 = np.int32(v0 if v0 <= hm1 else hm1) * sy
    y1 = np.int32(v1 if v1 <= hm1 else hm1) * sy
    ofs[0, j] = np.int32(y0 + x0)
    ofs[1, j] = np.int32(y0 + x1)
    ofs[2, j] = np.int32(y1 + x0)
    ofs[3, j] = np.int32(y1 + x1)


@jit
def _nearest_tap(j, u, v, vxl, vyl, vxh, vyh, wm1, hm1, sx, sy, zero, one, ms, ofs):
    """Column j's nearest tap of the (clamped, rounded) source coordinate (u, v): see :func:`_coords_row`."""
    ok = (u >= vxl) & (u <= vxh) & (v >= vyl) & (v <= vyh)
    ms[j] = one if ok else zero
    u = u if u >= zero else zero
    v = v if v >= zero else zero
    ofs[0, j] = np.int32(np.int32(v if v <= hm1 else hm1) * sy + np.int32(u if u <= wm1 else wm1) * sx)


@jit
def _coords_row(fs, iv, m, win, xs, yi, Wo, sy, sx, cst, wt, ms, ofs, dsp):
    """Geometry of one output row: the input-independent half of resampling, branch-free loops.

    Offsets are int32 within the sample (the host checks that a sample spans < 2**31 elements).
    Nearest: ``ofs[0]`` = offset (within the sample) of tap (u, v) clamped into the frame, ``ms`` =
    1 if the tap is valid else 0. Bilinear: ``ofs[0..3]`` = offsets of taps (u0,v0), (u1,v0),
    (u0,v1), (u1,v1) clamped into the frame, ``wt[0..3]`` = their weights, zero where the tap is
    invalid, ``ms`` = the weights' sum in the reference's order. Gathering clamped taps times zero
    weights is what the reference does; NaN coordinates give offset 0 and weight 0, so reads stay in
    bounds. Unused clamp / window bounds are +-inf, and X / W' is exact for affine rows (W' == 1),
    so the flags cost no branches. ``dsp`` [Wo, 2]: the row's displacement (elastic; its own loops, the
    plain ones keep their vector code), or empty.
    """
    zero = cst[ZERO]
    one = cst[ONE]
    wm1 = fs[S_WM1]
    hm1 = fs[S_HM1]
    cxl, cyl, cxh, cyh, vxl, vyl, vxh, vyh = _bounds(fs, iv, win, cst)
    t0, t1, t2 = m[1] * yi, m[4] * yi, m[7] * yi
    moved = dsp.shape[0] > 0
    # an affine row: W' = (0 * x + 0) + 1 == 1 exactly and X / 1 == X, so its loops skip the divisions (1.5x faster)
    affine = m[6] == zero and m[7] == zero and m[8] == one
    m0, m2, m3, m5 = m[0], m[2], m[3], m[5]
    if iv[I_GEO] == 2 and affine and not moved:
        for j in range(Wo):
            xj = xs[j]
            X, Y = min(max((m0 * xj + t0) + m2, cxl), cxh), min(max((m3 * xj + t1) + m5, cyl), cyh)
            _bilinear_tap(j, X, Y, vxl, vyl, vxh, vyh, wm1, hm1, sx, sy, zero, one, wt, ms, ofs)
    elif iv[I_GEO] != 2 and affine and not moved:
        for j in range(Wo):
            xj = xs[j]
            u, v = np.rint(min(max((m0 * xj + t0) + m2, cxl), cxh)), np.rint(min(max((m3 * xj + t1) + m5, cyl), cyh))
            _nearest_tap(j, u, v, vxl, vyl, vxh, vyh, wm1, hm1, sx, sy, zero, one, ms, ofs)
    elif iv[I_GEO] == 2 and moved:
        for j in range(Wo):
            px, py, wh = _project(m, xs[j], yi, dsp, j)
            X, Y = min(max(px / wh, cxl), cxh), min(max(py / wh, cyl), cyh)
            _bilinear_tap(j, X, Y, vxl, vyl, vxh, vyh, wm1, hm1, sx, sy, zero, one, wt, ms, ofs)
    elif iv[I_GEO] == 2:
        for j in range(Wo):
            xj = xs[j]
            wh = (m[6] * xj + t2) + m[8]
            X, Y = min(max(((m[0] * xj + t0) + m[2]) / wh, cxl), cxh), min(max(((m[3] * xj + t1) + m[5]) / wh, cyl), cyh)
            _bilinear_tap(j, X, Y, vxl, vyl, vxh, vyh, wm1, hm1, sx, sy, zero, one, wt, ms, ofs)
    elif moved:
        for j in range(Wo):
            px, py, wh = _project(m, xs[j], yi, dsp, j)
            u, v = np.rint(min(max(px / wh, cxl), cxh)), np.rint(min(max(py / wh, cyl), cyh))
            _nearest_tap(j, u, v, vxl, vyl, vxh, vyh, wm1, hm1, sx, sy, zero, one, ms, ofs)
    else:
        for j in range(Wo):
            xj = xs[j]
            wh = (m[6] * xj + t2) + m[8]
            u, v = np.rint(min(max(((m[0] * xj + t0) + m[2]) / wh, cxl), cxh)), np.rint(min(max(((m[3] * xj + t1) + m[5]) / wh, cyl), cyh))
            _nearest_tap(j, u, v, vxl, vyl, vxh, vyh, wm1, hm1, sx, sy, zero, one, ms, ofs)


@jit
def _gather_nearest(src, sbase, sc, C, Wo, scale, ofs, buf):
    """Nearest tap values ``src * scale`` of one output row into ``buf``."""
    for j in range(Wo):
        o = sbase + ofs[0, j]
        for c in range(C):
            buf[c, j] = src[U(o + c * sc)] * scale


@jit
def _gather_bilinear(src, sbase, sc, C, Wo, ofs, taps):
    """Raw bilinear taps of one output row: ``taps[c, 4 * j + t]`` = tap t of pixel j."""
    for j in range(Wo):
        o0 = sbase + ofs[0, j]
        o1 = sbase + ofs[1, j]
        o2 = sbase + ofs[2, j]
        o3 = sbase + ofs[3, j]
        for c in range(C):
            cc = c * sc
            taps[c, 4 * j] = src[U(o0 + cc)]
            taps[c, 4 * j + 1] = src[U(o1 + cc)]
            taps[c, 4 * j + 2] = src[U(o2 + cc)]
            taps[c, 4 * j + 3] = src[U(o3 + cc)]


@jit
def _gather_bilinear_u8(src, sbase, sc, C, Wo, ofs, packed):
    """uint8 bilinear taps packed 4 to a uint32 (one store per channel and pixel), tap t in bits
    ``8t..8t+7`` (see :func:`_blend_bilinear_u8`)."""
    for j in range(Wo):
        o0 = sbase + ofs[0, j]
        o1 = sbase + ofs[1, j]
        o2 = sbase + ofs[2, j]
        o3 = sbase + ofs[3, j]
        for c in range(C):
            cc = c * sc
            packed[c, j] = (
                np.uint32(src[U(o0 + cc)])
                | (np.uint32(src[U(o1 + cc)]) << np.uint32(8))
                | (np.uint32(src[U(o2 + cc)]) << np.uint32(16))
                | (np.uint32(src[U(o3 + cc)]) << np.uint32(24))
            )


@jit
def _pack_u8(src, sbase, sc, sy, sx, C, H, W, image):
    """One uint8 sample packed to one uint32 per pixel: ``image[y * W + x]``, channel c in bits 8c..8c+7
    (C <= 4). Bilinear taps then cost one load each for all channels, from one cache line."""
    if C == 3 and sx == 1:  # planar RGB rows: vectorisable
        for y in range(H):
            o = sbase + y * sy
            r = y * W
            for x in range(W):
                image[r + x] = (
                    np.uint32(src[U(o + x)])
                    | (np.uint32(src[U(o + sc + x)]) << np.uint32(8))
                    | (np.uint32(src[U(o + 2 * sc + x)]) << np.uint32(16))
                )
        return
    for y in range(H):
        o = sbase + y * sy
        r = y * W
        for x in range(W):
            p = np.uint32(0)
            for c in range(C):
                p |= np.uint32(src[U(o + c * sc + x * sx)]) << np.uint32(8 * c)
            image[r + x] = p


@jit
def _gather_packed(image, Wo, ofs, taps):
    """The four taps (all channels) of each pixel of a row from a packed sample: ``taps[t, j]``."""
    for j in range(Wo):
        taps[0, j] = image[U(ofs[0, j])]
        taps[1, j] = image[U(ofs[1, j])]
        taps[2, j] = image[U(ofs[2, j])]
        taps[3, j] = image[U(ofs[3, j])]


@jit
def _blend_packed(iv, fill, C, Wo, scale, wt, ms, taps, buf):
    """:func:`_blend_bilinear_u8` on packed pixels (channel c = bits 8c..8c+7 of each tap): same values."""
    has_fill = iv[I_FILL] != 0
    quant = iv[I_QUANT] != 0
    m8 = np.uint32(255)
    for c in range(C):
        f = fill[c]
        sh = np.uint32(8 * c)
        for j in range(Wo):
            s = wt[0, j] * (np.float32((taps[0, j] >> sh) & m8) * scale) + wt[1, j] * (np.float32((taps[1, j] >> sh) & m8) * scale)
            s = s + wt[2, j] * (np.float32((taps[2, j] >> sh) & m8) * scale)
            s = s + wt[3, j] * (np.float32((taps[3, j] >> sh) & m8) * scale)
            s = (s - f) * ms[j] + f if has_fill else s
            buf[c, j] = np.rint(s) if quant else s


@jit
def _blend_bilinear_u8(iv, fill, C, Wo, scale, wt, ms, packed, buf):
    """Bilinear values from packed uint8 taps (one vectorisable pass): ``S`` = weighted taps summed
    in the reference's order (a tap's value is ``tap * scale``), fill ``(S - f) * m + f``, then
    ``rint`` if quantize."""
    has_fill = iv[I_FILL] != 0
    quant = iv[I_QUANT] != 0
    m8 = np.int32(255)
    for c in range(C):
        f = fill[c]
        for j in range(Wo):
            p = np.int32(packed[c, j])
            s = wt[0, j] * (np.float32(p & m8) * scale) + wt[1, j] * (np.float32((p >> np.int32(8)) & m8) * scale)
            s = s + wt[2, j] * (np.float32((p >> np.int32(16)) & m8) * scale)
            s = s + wt[3, j] * (np.float32((p >> np.int32(24)) & m8) * scale)
            s = (s - f) * ms[j] + f if has_fill else s
            buf[c, j] = np.rint(s) if quant else s


@jit
def _blend_row(iv, fill, C, Wo, scale, wt, ms, taps, cst, buf):
    """Resampled values (vectorisable). Bilinear from float taps [C, 4 * Wo] (a tap's value is
    ``tap * scale``): ``S`` = weighted taps summed in the reference's order, fill
    ``(S - f) * m + f``. Nearest, on the gathered values in ``buf``: ``S = v * m``, fill
    ``f if m < 0.5``. Then ``rint`` if quantize."""
    has_fill = iv[I_FILL] != 0
    half = cst[HALF]
    if iv[I_GEO] == 2:
        for c in range(C):
            for j in range(Wo):
                s = wt[0, j] * (taps[c, 4 * j] * scale) + wt[1, j] * (taps[c, 4 * j + 1] * scale)
                s = s + wt[2, j] * (taps[c, 4 * j + 2] * scale)
                buf[c, j] = s + wt[3, j] * (taps[c, 4 * j + 3] * scale)
            if has_fill:
                f = fill[c]
                for j in range(Wo):
                    buf[c, j] = (buf[c, j] - f) * ms[j] + f
    else:
        for c in range(C):
            f = fill[c]
            for j in range(Wo):
                s = buf[c, j] * ms[j]
                buf[c, j] = f if has_fill and ms[j] < half else s
    if iv[I_QUANT] != 0:
        for c in range(C):
            for j in range(Wo):
                buf[c, j] = np.rint(buf[c, j])


# ----------------------------------------------------------------------------------------------
# ops: the per-sample program on the row buffer


@jit
def _extremes(r, g, b, one):
    """max, min, max == min, max - min of a pixel and the divisor of torchvision's rc / gc / bc (1 where max == min)."""
    maxc = r if r > g else g
    maxc = maxc if maxc > b else b
    minc = r if r < g else g
    minc = minc if minc < b else b
    eqc = maxc == minc
    span = maxc - minc
    return maxc, minc, eqc, span, one if eqc else span


@jit
def _shifted_sector(h, a, one, six):
    """torchvision's hue (h = its sector value before / 6) shifted by ``a``: sector i of the shifted hue x 6, and
    its fraction f."""
    h = h / six + one
    h = h - np.floor(h)  # == fmod(h, 1) for h >= 0
    h = h + a
    h = h - np.floor(h)  # == remainder(h, 1)
    h6 = h * six
    i = np.floor(h6)
    f = h6 - i
    return i - six if i >= six else i, f


@jit
def _hue_sector(r, g, b, a, one, two, four, six):
    """torchvision's rgb->hsv of one pixel in the reference's op order, the hue shifted by ``a``: (v = max, min,
    max == min, s, the divisor of rc / gc / bc, rc, gc, bc, sector i of the shifted hue x 6, its fraction f).
    The constants come as scalars, loaded before the caller's loop: a load from ``cst`` inside the loop may alias
    the row buffer's stores, and LLVM then leaves the loop scalar on AVX2 (measured: 13x slower hue)."""
    maxc, minc, eqc, span, div = _extremes(r, g, b, one)
    s = span / (one if eqc else maxc)
    rc = (maxc - r) / div
    gc = (maxc - g) / div
    bc = (maxc - b) / div
    hr = bc - gc
    hg = (two + rc) - bc
    hb = (four + gc) - rc
    i, f = _shifted_sector(hr if maxc == r else (hg if maxc == g else hb), a, one, six)
    return maxc, minc, eqc, s, div, rc, gc, bc, i, f


@jit
def _hue_row(buf, W, a, q, cst, tmp):
    """HUE on an RGB row: torchvision's rgb->hsv, hue shift, hsv->rgb, in the reference's op order.

    Two loops through ``tmp`` [4, >= W] (v, s, sector, fraction): one loop holding both halves keeps more values
    live than AVX2's 16 vector registers, and its spills cost more than the scratch round trip (measured: 1.3x).
    Hue needs two divisions, not three: of rc, gc, bc the one of the max channel is 0 and unused, so
    h = (base + n1 / div) - n2 / div with the other two numerators, in the reference's order (base 0, 2 or 4)."""
    zero = cst[ZERO]
    one = cst[ONE]
    two = cst[TWO]
    four = cst[FOUR]
    three = cst[THREE]
    five = cst[FIVE]
    six = cst[SIX]
    inv = cst[INV255]
    eps = cst[EPS]
    for x in range(W):
        r = buf[0, x]
        g = buf[1, x]
        b = buf[2, x]
        if q:
            r = r * inv
            g = g * inv
            b = b * inv
        maxc, _, eqc, span, div = _extremes(r, g, b, one)
        isr = maxc == r
        isg = (maxc == g) & ~isr
        n1 = (maxc - b) if isr else ((maxc - r) if isg else (maxc - g))
        n2 = (maxc - g) if isr else ((maxc - b) if isg else (maxc - r))
        base = zero if isr else (two if isg else four)
        i, f = _shifted_sector((base + n1 / div) - n2 / div, a, one, six)
        tmp[0, x] = maxc
        tmp[1, x] = span / (one if eqc else maxc)
        tmp[2, x] = i
        tmp[3, x] = f
    for x in range(W):
        val = tmp[0, x]
        s = tmp[1, x]
        i = tmp[2, x]
        f = tmp[3, x]
        p = min(max(val * (one - s), zero), one)
        qq = min(max(val * (one - s * f), zero), one)
        t = min(max(val * (s * f + (one - s)), zero), one)
        # sector i: (r, g, b) = (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q), as selects
        r = val if (i == zero) | (i == five) else (qq if i == one else (t if i == four else p))
        g = t if i == zero else (val if (i == one) | (i == two) else (qq if i == three else p))
        b = p if i <= one else (t if i == two else (qq if i == five else val))
        if q:
            r = np.floor(r * eps)
            g = np.floor(g * eps)
            b = np.floor(b * eps)
        buf[0, x] = r
        buf[1, x] = g
        buf[2, x] = b


@jit
def _mix(h):
    """``fastaug.ops.counter.mix`` on a uint64 holding 32 bits."""
    h = h ^ (h >> _S16)
    h = (h * _M1) & _MASK
    h = h ^ (h >> _S15)
    h = (h * _M2) & _MASK
    return h ^ (h >> _S16)


def _mix_ir(builder, h):
    """``fastaug.ops.counter.mix`` as LLVM IR on an i32 (the multiplications wrap mod 2**32 like ``& MASK``)."""
    i32 = ir.IntType(32)
    h = builder.xor(h, builder.lshr(h, ir.Constant(i32, 16)))
    h = builder.mul(h, ir.Constant(i32, counter.M1))
    h = builder.xor(h, builder.lshr(h, ir.Constant(i32, 15)))
    h = builder.mul(h, ir.Constant(i32, counter.M2))
    return builder.xor(h, builder.lshr(h, ir.Constant(i32, 16)))


def _key_ir(builder, row, x):
    """``row ^ x`` as an i32 (``row`` < 2**32 from ``_mix``, ``x`` a column index < 2**32)."""
    i32 = ir.IntType(32)
    return builder.xor(builder.trunc(row, i32), builder.trunc(x, i32))


@intrinsic
def _hash24(typingctx, row, x):
    """``_mix(row ^ x) >> 8`` (the 24-bit uniform of column ``x``) computed in 32-bit lanes: numba widens integer
    arithmetic to 64 bits, and a 64-bit multiply has no AVX2 instruction (measured: the noise hashes 2x slower)."""
    sig = types.int32(types.uint64, types.int64)

    def codegen(context, builder, sig, args):
        return builder.lshr(_mix_ir(builder, _key_ir(builder, *args)), ir.Constant(ir.IntType(32), 8))

    return sig, codegen


@intrinsic
def _normal_bits(typingctx, row, p):
    """The integer parts of the pair ``p``'s two standard normals (``fastaug.ops.counter.normal_from_hashes``), in
    32-bit lanes: h1 = mix(row ^ p), n = (h1 >> 8) + 1, e = bit_length(n) - 1, h2 = mix(h1 ^ STREAM2); returns
    (n << (24 - e), e, (h2 >> 8) & QUARTER_MASK, h2 >> 30)."""
    sig = types.UniTuple(types.int32, 4)(types.uint64, types.int64)

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        h1 = _mix_ir(builder, _key_ir(builder, *args))
        n = builder.add(builder.lshr(h1, ir.Constant(i32, 8)), ir.Constant(i32, 1))
        # e = bit_length(n) - 1 read off the exponent of float(n) (exact: n <= 2**24): AVX2 has no vector lzcnt
        fn = builder.bitcast(builder.sitofp(n, ir.FloatType()), i32)
        e = builder.sub(builder.lshr(fn, ir.Constant(i32, 23)), ir.Constant(i32, 127))
        m = builder.shl(n, builder.sub(ir.Constant(i32, 24), e))
        h2 = _mix_ir(builder, builder.xor(h1, ir.Constant(i32, counter.STREAM2 - (1 << 32))))  # as a signed i32
        q = builder.and_(builder.lshr(h2, ir.Constant(i32, 8)), ir.Constant(i32, counter.QUARTER_MASK))
        return context.make_tuple(builder, sig.return_type, [m, e, q, builder.lshr(h2, ir.Constant(i32, 30))])

    return sig, codegen


@jit
def _noise_apply(v, z, a, bb, a255, s255, clip, q, zero, bound, c256):
    """One value plus its GAUSSIAN_NOISE (``z`` standard normal), as the catalogue says."""
    v = v + np.trunc(a255 + z * s255) if q else v + (a + z * bb)
    if clip:
        v = min(max(v, zero), bound)
    elif q:
        v = v - c256 * np.floor(v / c256)
    return v


@jit
def _noise_row(buf, C, W, i, key, a, bb, clip, q, cst, tmp):
    """GAUSSIAN_NOISE on row ``i``: the standard normals of (key, c, i, x >> 1) (``fastaug.ops.counter``: Box-Muller
    in arithmetic, a cosine and a sine per pair of columns), added as the catalogue says (uint8: truncated toward
    zero; clip: clamp, else uint8 wraps mod 256). ``tmp`` [4, >= W/2] (working dtype) holds integer parts (an int32
    store converts exactly): loop 1 hashes (integer ops), loops 2a / 2b are float arithmetic only (every constant a local;
    split in two: one loop with both series spills AVX2's 16 vector registers) and leave the pair's two normals in
    ``tmp[0]`` / ``tmp[1]``, loop 3 adds them."""
    zero, one, half, two, three = cst[ZERO], cst[ONE], cst[HALF], cst[TWO], cst[THREE]
    bound = cst[B255] if q else cst[ONE]
    inv24, c24, c256, eighth = cst[INV24], cst[C24], cst[C256], cst[QUARTER] * cst[HALF]
    sqrt2, ln2, two_pi, m2 = cst[SQRT2], cst[LN2], cst[TWO_PI], cst[MINUS_TWO]
    l0, l1, l2, l3, l4 = cst[LOG0], cst[LOG0 + 1], cst[LOG0 + 2], cst[LOG0 + 3], cst[LOG0 + 4]
    c0, c1, c2, c3, c4 = cst[COS0], cst[COS0 + 1], cst[COS0 + 2], cst[COS0 + 3], cst[COS0 + 4]
    s0, s1, s2, s3, s4 = cst[SIN0], cst[SIN0 + 1], cst[SIN0 + 2], cst[SIN0 + 3], cst[SIN0 + 4]
    a255 = a * cst[B255]
    s255 = bb * cst[B255]
    k = np.uint64(key) & _MASK
    pairs = (W + 1) // 2
    for c in range(C):
        row = _mix(_mix(k ^ np.uint64(c)) ^ np.uint64(i))
        for p in range(pairs):
            m, e, qb, kq = _normal_bits(row, p)
            tmp[0, p] = m
            tmp[1, p] = e
            tmp[2, p] = qb
            tmp[3, p] = kq
        for p in range(pairs):  # loop 2a: the radius sqrt(-2 ln u1) into tmp[0]
            m = tmp[0, p] * inv24
            e = tmp[1, p]
            big = m > sqrt2
            m = m * half if big else m
            e = e + one if big else e
            t = (m - one) / (m + one)
            t2 = t * t
            ln_u1 = (e - c24) * ln2 + (two * t) * (l4 + t2 * (l3 + t2 * (l2 + t2 * (l1 + t2 * l0))))
            tmp[0, p] = np.sqrt(m2 * ln_u1)
        for p in range(pairs):  # loop 2b: the angle's cosine and sine, the pair's normals into tmp[0] / tmp[1]
            ang = two_pi * (tmp[2, p] * inv24 - eighth)
            a2 = ang * ang
            cos_a = c4 + a2 * (c3 + a2 * (c2 + a2 * (c1 + a2 * c0)))
            sin_a = ang * (s4 + a2 * (s3 + a2 * (s2 + a2 * (s1 + a2 * s0))))
            # quadrant kq: (cos, sin) of ang + kq pi/2 = (cos, sin) (-sin, cos) (-cos, -sin) (sin, -cos)
            kq = tmp[3, p]
            odd = (kq == one) | (kq == three)
            r = tmp[0, p]
            rc = -r if (kq == one) | (kq == two) else r
            rs = -r if kq >= two else r
            tmp[0, p] = rc * (sin_a if odd else cos_a)
            tmp[1, p] = rs * (cos_a if odd else sin_a)
        # loop 3: the normals of columns 2p / 2p + 1 added (interleaved stores without a tail test: they vectorise)
        for p in range(W // 2):
            buf[c, 2 * p] = _noise_apply(buf[c, 2 * p], tmp[0, p], a, bb, a255, s255, clip, q, zero, bound, c256)
            buf[c, 2 * p + 1] = _noise_apply(buf[c, 2 * p + 1], tmp[1, p], a, bb, a255, s255, clip, q, zero, bound, c256)
        if W % 2:
            buf[c, W - 1] = _noise_apply(buf[c, W - 1], tmp[0, W // 2], a, bb, a255, s255, clip, q, zero, bound, c256)


@jit
def _dropout_mode(mode, half):
    """(per channel, the one channel a PIXEL_DROPOUT slot drops or -1) of ``params[2]`` (``catalogue.dropout_mode``)."""
    t = np.floor(mode * half)
    return mode - (t + t) > half, np.int64(t) - 1


@jit
def _uniform_row(buf, C, W, i, code, key, a, bb, per_channel, target, q, cst, tmp):
    """PIXEL_DROPOUT, SALT_AND_PEPPER or MULTIPLICATIVE_NOISE on row ``i``: a uniform per pixel from (key, c', i, x)
    (c' = c per channel, else 0; ``fastaug.ops.counter``), applied as the catalogue says; ``target`` >= 0: only that
    channel (a PIXEL_DROPOUT slot of one value per channel). ``tmp`` [>= 1, W] holds the uniforms' integer parts (a
    store converts them exactly to the working dtype)."""
    zero = cst[ZERO]
    bound = cst[B255] if q else cst[ONE]
    inv24 = cst[INV24]
    k = np.uint64(key) & _MASK
    own = per_channel and code != SALT_AND_PEPPER
    ab = a * bb
    span = bb - a
    hashed = False
    for c in range(C):
        if target >= 0 and c != target:
            continue
        if own or not hashed:
            row = _mix(_mix(k ^ np.uint64(c if own else 0)) ^ np.uint64(i))
            for x in range(W):
                tmp[0, x] = _hash24(row, x)
            hashed = True
        if code == PIXEL_DROPOUT:
            for x in range(W):
                buf[c, x] = bb if tmp[0, x] * inv24 < a else buf[c, x] + zero
        elif code == SALT_AND_PEPPER:
            for x in range(W):
                u = tmp[0, x] * inv24
                buf[c, x] = bound if u < ab else (zero if u < a else buf[c, x] + zero)
        else:
            for x in range(W):
                v = min(max(buf[c, x] * (a + span * (tmp[0, x] * inv24)), zero), bound)
                buf[c, x] = np.floor(v) if q else v


@jit
def _fog_row(buf, C, W, yi, mx, xs, key, a, scale, t, q, cst, tmp):
    """FOG on row ``yi`` (the row index as a float): the value noise of ``fastaug.ops.counter`` (per octave the lattice
    values of the row's two cell rows hashed once per cell into ``tmp[1]`` / ``tmp[2]``, the octaves summed into
    ``tmp[0]``), blended towards white as the catalogue says. ``mx`` = max(H, W) as a float; ``tmp`` [4, >= W + 2]."""
    zero, one, half, two, three = cst[ZERO], cst[ONE], cst[HALF], cst[TWO], cst[THREE]
    bound = cst[B255] if q else one
    inv24, norm, contrast = cst[INV24], cst[FOG_NORM], cst[FOG_CONTRAST]
    k = np.uint64(key) & _MASK
    s0 = scale * mx
    gy = yi + half
    weight = one
    for o in range(counter.FOG_OCTAVES):
        s = s0 * weight
        inv = one / (s if s > one else one)
        py = gy * inv
        j = np.floor(py)
        fy = py - j
        sy = (fy * fy) * (three - two * fy)
        base = _mix(k ^ np.uint64(o))
        r0 = _mix(base ^ np.uint64(j))
        r1 = _mix(base ^ np.uint64(j + one))
        cells = np.int64(np.floor((xs[W - 1] + half) * inv)) + 2
        for ci in range(cells):
            tmp[1, ci] = _hash24(r0, ci)  # exact in the working dtype (24 bits)
            tmp[2, ci] = _hash24(r1, ci)
        for ci in range(cells):
            tmp[1, ci] = tmp[1, ci] * inv24
            tmp[2, ci] = tmp[2, ci] * inv24
        for x in range(W):
            px = (xs[x] + half) * inv
            i = np.floor(px)
            fx = px - i
            sx = (fx * fx) * (three - two * fx)
            ii = np.int64(i)
            l00 = tmp[1, ii]
            l10 = tmp[2, ii]
            top = l00 + (tmp[1, ii + 1] - l00) * sx
            bot = l10 + (tmp[2, ii + 1] - l10) * sx
            n = top + (bot - top) * sy
            tmp[0, x] = n if o == 0 else tmp[0, x] + n * weight
        weight = weight * half
    span = one - t
    for x in range(W):
        m = tmp[0, x] * norm
        n = min(max((m - half) * contrast + half, zero), one)
        alpha = a * min(max((n - t) / span, zero), one)
        for c in range(C):
            v = buf[c, x]
            y = v + alpha * (bound - v)
            buf[c, x] = np.floor(y) if q else y


@jit
def _op_row(buf, C, W, code, a, bb, cc, q, st, lut, cst, tmp):
    """One op on a row (``a, bb, cc`` = params[b, k, :3], ``st`` = stats[b, k] [C, 2], ``lut`` = luts[b, k] [C, 256];
    ``tmp`` [4, >= W] scratch in the working dtype)."""
    zero = cst[ZERO]
    one = cst[ONE]
    eps = cst[EPS]
    inv = cst[INV255]
    top = cst[B255]
    bound = top if q else one
    if code == BRIGHTNESS:
        for c in range(C):
            for x in range(W):
                v = min(max(buf[c, x] * a, zero), bound)
                buf[c, x] = np.floor(v) if q else v
    elif code == CONTRAST:
        t = st[0, 0] * (one - a)
        for c in range(C):
            for x in range(W):
                v = min(max(buf[c, x] * a + t, zero), bound)
                buf[c, x] = np.floor(v) if q else v
    elif code == SATURATION or code == GRAYSCALE:
        gw0, gw1, gw2 = cst[GW0], cst[GW1], cst[GW2]
        oma = one - a
        gray_only = code == GRAYSCALE
        for x in range(W):
            r = buf[0, x]
            g = buf[1, x]
            b = buf[2, x]
            y = (r * gw0 + g * gw1) + b * gw2
            if q:
                y = np.floor(y)
            if gray_only:
                r = y
                g = y
                b = y
            else:
                yt = y * oma
                r = min(max(r * a + yt, zero), bound)
                g = min(max(g * a + yt, zero), bound)
                b = min(max(b * a + yt, zero), bound)
                if q:
                    r = np.floor(r)
                    g = np.floor(g)
                    b = np.floor(b)
            buf[0, x] = r
            buf[1, x] = g
            buf[2, x] = b
    elif code == HUE:
        _hue_row(buf, W, a, q, cst, tmp)
    elif code == GAMMA:
        ad = np.float64(a)
        for c in range(C):
            for x in range(W):  # the power in float64, rounded to the working dtype by the store (reference.gamma_pow)
                y = buf[c, x] * inv if q else buf[c, x]
                tmp[0, x] = np.float64(y) ** ad
            for x in range(W):
                y = tmp[0, x]
                if bb != one:
                    y = min(max(y * bb, zero), one)
                buf[c, x] = np.floor(y * eps) if q else y
    elif code == RGB_SHIFT or code == RGB_GAIN:
        gain = code == RGB_GAIN
        for c in range(3):
            p = a if c == 0 else (bb if c == 1 else cc)
            for x in range(W):
                v = buf[c, x] * p if gain else buf[c, x] + p
                v = min(max(v, zero), bound)
                buf[c, x] = np.floor(v) if q else v
    elif code == INVERT:
        for c in range(C):
            for x in range(W):
                buf[c, x] = bound - buf[c, x]
    elif code == POSTERIZE:
        step = cst[TWO] ** (cst[EIGHT] - a)
        levels = cst[TWO] ** a
        last = levels - one
        for c in range(C):
            for x in range(W):
                v = buf[c, x]
                if q:
                    buf[c, x] = np.floor(v / step) * step
                else:
                    buf[c, x] = min(max(np.floor(v * levels), zero), last) / levels
    elif code == SOLARIZE:
        for c in range(C):
            for x in range(W):
                v = buf[c, x]
                # "+ zero": storing v unchanged would become a (slow, microcoded on AMD) masked store
                buf[c, x] = bound - v if v >= a else v + zero
    elif code == AUTOCONTRAST:
        for c in range(C):
            lo = st[c, 0]
            hi = st[c, 1]
            if hi == lo:
                scale = one
                lo = zero
            else:
                scale = (hi - lo) * (inv if q else one)
            for x in range(W):
                v = min(max((buf[c, x] - lo) / scale, zero), bound)
                buf[c, x] = np.floor(v) if q else v
    elif code == EQUALIZE:
        for c in range(C):
            for x in range(W):
                v = buf[c, x] if q else np.floor(buf[c, x] * eps)
                v = v if v > zero else zero  # NaN-safe clamp: the index stays in [0, 255]
                m = lut[c, U(v if v < top else top)]
                buf[c, x] = m if q else m * inv
    elif code == TO_FLOAT:
        for c in range(C):
            for x in range(W):
                buf[c, x] = buf[c, x] * inv
    elif code == TO_UINT8:
        for c in range(C):
            for x in range(W):
                buf[c, x] = np.floor(buf[c, x] * eps)
    # IDENTITY, neighbourhood ops (applied while filling) and unknown codes: nothing


# ----------------------------------------------------------------------------------------------
# epilogue, store, statistics


@jit
def _epilogue_row(buf, W, i, iv, fs, mean, std, rects, rphase, rvals, cst):
    """Rects (phase 1), out_scale, normalize, rects (phase 2) on channels ``0..Co-1`` of row ``i``."""
    co = iv[I_CO]
    for phase in range(1, 3):
        if phase == 2:
            osc = fs[S_OUT]
            if osc != cst[ONE]:
                for c in range(co):
                    for x in range(W):
                        buf[c, x] = buf[c, x] * osc
            if iv[I_NORM] != 0:
                for c in range(co):
                    mu = mean[c]
                    sd = std[c]
                    for x in range(W):
                        buf[c, x] = (buf[c, x] - mu) / sd
        for r in range(iv[I_RECTS]):
            if rphase[r] == phase and rects[r, 1] <= i and i < rects[r, 3]:
                x0 = max(rects[r, 0], 0)
                x1 = min(rects[r, 2], W)
                for c in range(co):
                    val = rvals[r, c]
                    for x in range(x0, x1):
                        buf[c, U(x)] = val


@jit
def _store_row(out, base, oc, ox, Co, W, buf, stream):
    """Write channels ``0..Co-1`` of the row through the output strides; ``stream``: unit-stride rows with
    non-temporal stores from the first 32-byte boundary on (the values are the same)."""
    if stream and ox == 1 and oc != 1:
        size = out.itemsize
        lanes = _STREAM_BYTES // size
        for c in range(Co):
            o = base + c * oc
            mis = (out.ctypes.data + o * size) % _STREAM_BYTES
            head = min((_STREAM_BYTES - mis) % _STREAM_BYTES // size, W) if mis % size == 0 else W
            for x in range(head):
                out[U(o + x)] = buf[c, x]
            row = buf[c]
            x = head
            while x + lanes <= W:
                _stream_store(out, U(o + x), row, U(x))
                x += lanes
            for t in range(x, W):
                out[U(o + t)] = buf[c, t]
        return
    if oc == 1 and Co > 1:  # channels-last
        for x in range(W):
            o = base + x * ox
            for c in range(Co):
                out[U(o + c)] = buf[c, x]
    elif ox == 1:  # unit stride: vectorisable
        for c in range(Co):
            o = base + c * oc
            for x in range(W):
                out[U(o + x)] = buf[c, x]
    else:
        for c in range(Co):
            o = base + c * oc
            for x in range(W):
                out[U(o + x * ox)] = buf[c, x]


@jit
def _stats_row(buf, C, W, q, what, cst, acc, mn, mx, hist):
    """Accumulate a row: ``what & 1``: returns acc + the row's gray sum (float64); ``what & 2``:
    min/max [C] and hist [C, 256]."""
    zero = cst[ZERO]
    top = cst[B255]
    eps = cst[EPS]
    gw0, gw1, gw2 = cst[GW0], cst[GW1], cst[GW2]
    if what & 1 and C == 3 and q:  # integer grays: an exact integer row sum (vectorisable), any order
        isum = 0
        for x in range(W):  # float -> int32 (not int64: AVX2 has no vector conversion to int64), summed in int64
            isum += np.int32(np.floor((buf[0, x] * gw0 + buf[1, x] * gw1) + buf[2, x] * gw2))
        acc += np.float64(isum)
    elif what & 1 and C == 3:
        for x in range(W):
            acc += np.float64((buf[0, x] * gw0 + buf[1, x] * gw1) + buf[2, x] * gw2)
    elif what & 1:
        for x in range(W):
            acc += np.float64(buf[0, x])
    if what & 2 == 0:
        return acc
    for c in range(C):
        lo = mn[c]
        hi = mx[c]
        for x in range(W):
            v = buf[c, x]
            lo = v if v < lo else lo
            hi = v if v > hi else hi
            u = v if q else np.floor(v * eps)
            u = u if u > zero else zero  # NaN-safe clamp: the bin stays in [0, 255]
            hist[c, U(u if u < top else top)] += 1
        mn[c] = lo
        mx[c] = hi
    return acc


# ----------------------------------------------------------------------------------------------
# the task loop


@njit(cache=True, error_model="numpy", nogil=True, _nrt=False)
def run_tasks(t0, t1, src8, srcf, ss, C, H, W, fs, iv, mat, win, fill, xs, ys, codes, prm, stats, luts, cst,
              Ho, Wo, stops, whats, out8, outf, os_, mean, std, rects, rphase, rvals, gray, mn, mx, hist, taps, keys, kern,
              disp, buf, wt, ms, ofs, packed, tapsf, image, line, ring):  # fmt: skip
    """Tasks ``t0..t1-1`` (task t: sample ``t % B``, rows ``[r0, r0 + iv[I_ROWS])``, r0 = (t // B) * rows).

    Runs geometry and ops ``0..stops[b]-1``, then either the epilogue and the store into ``out8`` (uint8:
    rint, clamp) or ``outf``, or (``iv[I_REDUCE]`` != 0) partial statistics per (row block, sample):
    gray [nblk, B] (``whats[b] & 1``), mn / mx [nblk, B, C] (pre-filled with +-inf) and hist
    [nblk, B, C, 256] (zeros) (``whats[b] & 2``); samples with ``whats[b] == 0`` are skipped.
    Exactly one of ``src8`` / ``srcf`` and (apply) of ``out8`` / ``outf`` is non-empty. Scratch of
    the calling thread (see :func:`scratch`): ``buf`` [C, Wo], ``wt`` [4, Wo + 2], ``ms`` [Wo], ``ofs``
    [4, Wo], bilinear taps ``packed`` [C, Wo] (uint8 source, four to a uint32) or ``tapsf`` [C, 4 * Wo]
    (float source); with ``iv[I_PACK]`` (tasks of whole samples) the sample packed in ``image`` [H * W]
    and its taps in ``packed`` [4, Wo].
    """
    B = codes.shape[0]
    rows = iv[I_ROWS]
    from_u8 = iv[I_SRC8] != 0
    reducing = iv[I_REDUCE] != 0
    to_u8 = iv[I_INT] != 0
    co = iv[I_CO]
    geo = iv[I_GEO]
    half = cst[HALF]
    zero = cst[ZERO]
    top = cst[B255]
    mxf = (xs[Wo - 1] if Wo >= Ho else ys[Ho - 1]) + cst[ONE]  # max(Ho, Wo) in the working dtype (FOG)
    stream = iv[I_STREAM] != 0 and not reducing and not to_u8
    for t in range(t0, t1):
        b = t % B
        what = whats[b] if reducing else 0
        if reducing and what == 0:
            continue
        stop = stops[b]
        sharp_at = geo == 0 and stop > 0 and H > 2 and W > 2
        blur_at = geo == 0 and stop > 0 and codes[b, 0] == GAUSSIAN_BLUR and ring.shape[0] > 0
        conv_at = geo == 0 and stop > 0 and codes[b, 0] == CONVOLVE and kern.shape[1] > 0
        down_at = geo == 0 and stop > 0 and codes[b, 0] == DOWNSCALE
        blk = t // B
        r0 = blk * rows
        r1 = min(r0 + rows, Ho)
        acc = 0.0
        q = reducing and prm[b, stop, 3] > half
        pack = iv[I_PACK] != 0
        if pack:
            _pack_u8(src8, b * ss[0], ss[1], ss[2], ss[3], C, H, W, image)
        for i in range(r0, r1):
            # 1. fill
            if geo == 0:
                base = b * ss[0] + i * ss[2]
                if blur_at:
                    qb = prm[b, 0, 3] > half
                    if from_u8:
                        _blur_row(src8, b * ss[0], ss[2], ss[1], ss[3], C, H, W, fs[S_IN], i, i == r0, taps[b], qb, zero, line, ring, buf)
                    else:
                        _blur_row(srcf, b * ss[0], ss[2], ss[1], ss[3], C, H, W, fs[S_IN], i, i == r0, taps[b], qb, zero, line, ring, buf)
                elif conv_at:
                    qc = prm[b, 0, 3] > half
                    if from_u8:
                        _convolve_row(src8, b * ss[0], ss[2], ss[1], ss[3], C, H, W, fs[S_IN], i, kern[b], qc, cst, line, buf)
                    else:
                        _convolve_row(srcf, b * ss[0], ss[2], ss[1], ss[3], C, H, W, fs[S_IN], i, kern[b], qc, cst, line, buf)
                elif down_at:
                    qd = prm[b, 0, 3] > half
                    if from_u8:
                        _downscale_row(src8, b * ss[0], ss[2], ss[1], ss[3], C, H, W, fs[S_IN], i, prm[b, 0, 0], prm[b, 0, 1], qd, xs, ys,
                                       cst, buf)
                    else:
                        _downscale_row(srcf, b * ss[0], ss[2], ss[1], ss[3], C, H, W, fs[S_IN], i, prm[b, 0, 0], prm[b, 0, 1], qd, xs, ys,
                                       cst, buf)
                elif sharp_at and codes[b, 0] == SHARPNESS and i > 0 and i < H - 1:
                    a = prm[b, 0, 0]
                    qs = prm[b, 0, 3] > half
                    if from_u8:
                        _sharpen_row(src8, base, ss[2], ss[1], ss[3], C, W, fs[S_IN], a, qs, cst, buf)
                    else:
                        _sharpen_row(srcf, base, ss[2], ss[1], ss[3], C, W, fs[S_IN], a, qs, cst, buf)
                elif from_u8:
                    _read_row(src8, base, ss[1], ss[3], C, W, fs[S_IN], buf)
                else:
                    _read_row(srcf, base, ss[1], ss[3], C, W, fs[S_IN], buf)
            else:
                sb = b * ss[0]
                dsp = disp[min(b, disp.shape[0] - 1), min(i, disp.shape[1] - 1)]  # [Wo, 2], or [0, 2] without one
                if pack:
                    _coords_row(fs, iv, mat[b], win[b], xs, ys[i], Wo, W, 1, cst, wt, ms, ofs, dsp)
                    _gather_packed(image, Wo, ofs, packed)
                    _blend_packed(iv, fill[b], C, Wo, fs[S_IN], wt, ms, packed, buf)
                else:
                    _coords_row(fs, iv, mat[b], win[b], xs, ys[i], Wo, ss[2], ss[3], cst, wt, ms, ofs, dsp)
                    if geo == 1 and from_u8:
                        _gather_nearest(src8, sb, ss[1], C, Wo, fs[S_IN], ofs, buf)
                    elif geo == 1:
                        _gather_nearest(srcf, sb, ss[1], C, Wo, fs[S_IN], ofs, buf)
                    elif from_u8:
                        _gather_bilinear_u8(src8, sb, ss[1], C, Wo, ofs, packed)
                    else:
                        _gather_bilinear(srcf, sb, ss[1], C, Wo, ofs, tapsf)
                    if geo == 2 and from_u8:
                        _blend_bilinear_u8(iv, fill[b], C, Wo, fs[S_IN], wt, ms, packed, buf)
                    else:
                        _blend_row(iv, fill[b], C, Wo, fs[S_IN], wt, ms, tapsf, cst, buf)
            # 2. ops
            for k in range(stop):
                code = codes[b, k]
                if code == PIXEL_DROPOUT or code == SALT_AND_PEPPER or code == MULTIPLICATIVE_NOISE:
                    own, target = _dropout_mode(prm[b, k, 2], half)
                    _uniform_row(buf, C, Wo, i, code, keys[b, k], prm[b, k, 0], prm[b, k, 1], own, target, prm[b, k, 3] > half,
                                 cst, wt)
                elif code == GAUSSIAN_NOISE:
                    _noise_row(buf, C, Wo, i, keys[b, k], prm[b, k, 0], prm[b, k, 1], prm[b, k, 2] > half, prm[b, k, 3] > half, cst, wt)
                elif code == FOG:
                    _fog_row(buf, C, Wo, ys[i], mxf, xs, keys[b, k], prm[b, k, 0], prm[b, k, 1], prm[b, k, 2], prm[b, k, 3] > half,
                             cst, wt)
                elif code != IDENTITY and code != SHARPNESS and code != GAUSSIAN_BLUR and code != CONVOLVE and code != DOWNSCALE:
                    _op_row(buf, C, Wo, code, prm[b, k, 0], prm[b, k, 1], prm[b, k, 2], prm[b, k, 3] > half, stats[b, k], luts[b, k], cst,
                            wt)
            # 3. statistics, or epilogue and store
            if reducing:
                acc = _stats_row(buf, C, Wo, q, what, cst, acc, mn[blk, b], mx[blk, b], hist[blk, b])
                continue
            _epilogue_row(buf, Wo, i, iv, fs, mean[b], std[b], rects[b], rphase[b], rvals[b], cst)
            base = b * os_[0] + i * os_[2]
            if to_u8:
                for c in range(co):
                    for x in range(Wo):
                        buf[c, x] = min(max(np.rint(buf[c, x]), zero), top)
                _store_row(out8, base, os_[1], os_[3], co, Wo, buf, False)
            else:
                _store_row(outf, base, os_[1], os_[3], co, Wo, buf, stream)
        if reducing:
            gray[blk, b] = acc
    if stream:
        _stream_fence()
