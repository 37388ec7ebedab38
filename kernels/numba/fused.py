"""Numba kernels of the CPU backend: one fused pass per stage, row by row.

Work is split into tasks of (sample, block of output rows), sample index fastest, so that a static
split of the task range gives every thread rows of every sample. A task owns a row buffer ``buf``
([C * Wo], planar) of working values; each output row is produced in three steps:

1. fill: read the stage input (plain, SHARPNESS-at-k=0 3x3, nearest or bilinear resampling); the
   geometry of a pixel is computed once and all its channels are read in one place;
2. ops: the sample's program, one tight (vectorisable) loop over the row per op, so dispatching on
   the op code costs one branch per row and op, not per pixel;
3. epilogue and store through the output strides (``apply``), or statistics (``reduce``).

Arrays are passed as 1-D views of the tensors' memory plus element strides, so contiguous,
channels-last and strided tensors share one compiled signature. Working values have the dtype ``F``
of the tables (float32, or float64 for float64 input like the reference); every float constant comes
from the ``cst`` table (see :func:`constants`) so that no arithmetic silently widens to float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

jit = njit(cache=True, error_model="numpy")

# Op codes (mirror fastaug.plan.Op; module-level ints are compile-time constants for numba).
IDENTITY = 0
BRIGHTNESS = 1
CONTRAST = 2
SATURATION = 3
HUE = 4
GAMMA = 5
SHARPNESS = 6
GRAYSCALE = 7
INVERT = 8
POSTERIZE = 9
SOLARIZE = 10
AUTOCONTRAST = 11
EQUALIZE = 12
TO_FLOAT = 13
TO_UINT8 = 14

# Indices into the constants table.
ZERO, ONE, HALF, B255, INV255, EPS, GW0, GW1, GW2, TWO, FOUR, SIX, EIGHT, W1, W5 = range(15)

# Indices of the float scalars (F array) and of the int flags (int64 array ``iv``).
S_IN, S_OUT, S_WM1, S_HM1 = range(4)  # in_scale, out_scale, W - 1, H - 1
I_GEO, I_CLAMP, I_FILL, I_QUANT = range(4)  # geometry: mode (0 none, 1 nearest, 2 bilinear) and flags
I_CO, I_INT, I_NORM, I_RECTS = range(4, 8)  # epilogue: out_channels, uint8 output, normalize, rects
I_REDUCE, I_SRC8, I_KIND = range(8, 11)  # statistics pass, uint8 source, out array (0 u8, 1 f32, 2 f64)
NUM_FLAGS = 11


def constants(dtype: type) -> np.ndarray:
    """The float constants of the kernels in the working dtype (as torch casts python scalars)."""
    vals = [0.0, 1.0, 0.5, 255.0, 1.0 / 255.0, 255.999, 0.2989, 0.587, 0.114, 2.0, 4.0, 6.0, 8.0, 1.0 / 13.0, 5.0 / 13.0]
    return np.array(vals, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# fill: stage input (and geometry) into the row buffer


@jit
def _read_row(src, base, sc, sx, C, W, scale, buf):
    """Plain read of one input row (``base`` = offset of (b, 0, i, 0))."""
    if sc == 1 and C > 1:  # channels-last: a pixel's channels are adjacent
        for x in range(W):
            o = base + x * sx
            for c in range(C):
                buf[c * W + x] = src[o + c] * scale
    else:
        for c in range(C):
            o = base + c * sc
            r = c * W
            for x in range(W):
                buf[r + x] = src[o + x * sx] * scale


@jit
def _sharpen_row(src, base, sy, sc, sx, C, W, scale, a, q, cst, buf):
    """SHARPNESS of an interior row (0 < i < H-1, H, W > 2) from the 3x3 neighbourhood of the input.

    The blur is torch's conv2d: an FMA chain over the taps in raster order, emulated exactly for
    float32 by accumulating each step in float64 and rounding it to ``F`` through ``buf``.
    """
    zero = cst[ZERO]
    w1 = np.float64(cst[W1])
    w5 = np.float64(cst[W5])
    oma = cst[ONE] - a
    bound = cst[B255] if q else cst[ONE]
    for c in range(C):
        o = base + c * sc
        r = c * W
        buf[r] = src[o] * scale
        buf[r + W - 1] = src[o + (W - 1) * sx] * scale
        for x in range(1, W - 1):
            p = o + x * sx
            acc = 0.0
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    wt = w5 if (dy == 0 and dx == 0) else w1
                    buf[r + x] = wt * np.float64(src[p + dy * sy + dx * sx] * scale) + acc
                    acc = np.float64(buf[r + x])
            buf[r + x] = acc
            blur = buf[r + x]
            v = src[p] * scale
            if q:
                blur = np.rint(blur)
            v = min(max(v + oma * (blur - v), zero), bound)
            buf[r + x] = np.floor(v) if q else v


@jit
def _nearest_row(src, sbase, sy, sc, sx, C, fs, iv, m, win, fill, xs, yi, Wo, cst, buf):
    """Nearest resampling of one output row (round half to even)."""
    zero = cst[ZERO]
    scale = fs[S_IN]
    wm1 = fs[S_WM1]
    hm1 = fs[S_HM1]
    clamp = iv[I_CLAMP] != 0
    has_fill = iv[I_FILL] != 0
    quant = iv[I_QUANT] != 0
    xlo, ylo, xhi, yhi = win[0], win[1], win[2], win[3]
    t0, t1, t2 = m[1] * yi, m[4] * yi, m[7] * yi
    for j in range(Wo):
        xj = xs[j]
        wh = (m[6] * xj + t2) + m[8]
        X = ((m[0] * xj + t0) + m[2]) / wh
        Y = ((m[3] * xj + t1) + m[5]) / wh
        if clamp:
            X = min(max(X, xlo), xhi)
            Y = min(max(Y, ylo), yhi)
        u = np.rint(X)
        t = np.rint(Y)
        ok = u >= zero and u <= wm1 and t >= zero and t <= hm1
        if not clamp:
            ok = ok and u >= xlo and u <= xhi and t >= ylo and t <= yhi
        if ok:
            o = sbase + int(t) * sy + int(u) * sx
            for c in range(C):
                val = src[o + c * sc] * scale
                buf[c * Wo + j] = np.rint(val) if quant else val
        else:
            for c in range(C):
                val = fill[c] if has_fill else zero
                buf[c * Wo + j] = np.rint(val) if quant else val


@jit
def _bilinear_row(src, sbase, sy, sc, sx, C, fs, iv, m, win, fill, xs, yi, Wo, cst, buf):
    """Bilinear resampling of one output row: taps summed in the reference's order."""
    zero = cst[ZERO]
    one = cst[ONE]
    scale = fs[S_IN]
    wm1 = fs[S_WM1]
    hm1 = fs[S_HM1]
    clamp = iv[I_CLAMP] != 0
    has_fill = iv[I_FILL] != 0
    quant = iv[I_QUANT] != 0
    xlo, ylo, xhi, yhi = win[0], win[1], win[2], win[3]
    t0, t1, t2 = m[1] * yi, m[4] * yi, m[7] * yi
    for j in range(Wo):
        xj = xs[j]
        wh = (m[6] * xj + t2) + m[8]
        X = ((m[0] * xj + t0) + m[2]) / wh
        Y = ((m[3] * xj + t1) + m[5]) / wh
        if clamp:
            X = min(max(X, xlo), xhi)
            Y = min(max(Y, ylo), yhi)
        u0 = np.floor(X)
        v0 = np.floor(Y)
        fx = X - u0
        fy = Y - v0
        gx = one - fx
        gy = one - fy
        w00 = gx * gy
        w10 = fx * gy
        w01 = gx * fy
        w11 = fx * fy
        u1 = u0 + one
        v1 = v0 + one
        ok_u0 = u0 >= zero and u0 <= wm1
        ok_u1 = u1 >= zero and u1 <= wm1
        ok_v0 = v0 >= zero and v0 <= hm1
        ok_v1 = v1 >= zero and v1 <= hm1
        if not clamp:
            ok_u0 = ok_u0 and u0 >= xlo and u0 <= xhi
            ok_u1 = ok_u1 and u1 >= xlo and u1 <= xhi
            ok_v0 = ok_v0 and v0 >= ylo and v0 <= yhi
            ok_v1 = ok_v1 and v1 >= ylo and v1 <= yhi
        if ok_u0 and ok_u1 and ok_v0 and ok_v1:  # interior: all four taps
            o00 = sbase + int(v0) * sy + int(u0) * sx
            o10 = o00 + sx
            o01 = o00 + sy
            o11 = o01 + sx
            msum = ((w00 + w10) + w01) + w11
            for c in range(C):
                cc = c * sc
                s = w00 * (src[o00 + cc] * scale)
                s = s + w10 * (src[o10 + cc] * scale)
                s = s + w01 * (src[o01 + cc] * scale)
                s = s + w11 * (src[o11 + cc] * scale)
                if has_fill:
                    s = (s - fill[c]) * msum + fill[c]
                buf[c * Wo + j] = np.rint(s) if quant else s
        else:
            e00 = ok_u0 and ok_v0
            e10 = ok_u1 and ok_v0
            e01 = ok_u0 and ok_v1
            e11 = ok_u1 and ok_v1
            msum = zero
            if e00:
                msum = msum + w00
            if e10:
                msum = msum + w10
            if e01:
                msum = msum + w01
            if e11:
                msum = msum + w11
            iu0 = int(u0) if (e00 or e01) else 0
            iu1 = int(u1) if (e10 or e11) else 0
            iv0 = int(v0) if (e00 or e10) else 0
            iv1 = int(v1) if (e01 or e11) else 0
            for c in range(C):
                o = sbase + c * sc
                s = zero
                if e00:
                    s = s + w00 * (src[o + iv0 * sy + iu0 * sx] * scale)
                if e10:
                    s = s + w10 * (src[o + iv0 * sy + iu1 * sx] * scale)
                if e01:
                    s = s + w01 * (src[o + iv1 * sy + iu0 * sx] * scale)
                if e11:
                    s = s + w11 * (src[o + iv1 * sy + iu1 * sx] * scale)
                if has_fill:
                    s = (s - fill[c]) * msum + fill[c]
                buf[c * Wo + j] = np.rint(s) if quant else s


# ----------------------------------------------------------------------------------------------
# ops: the per-sample program on the row buffer


@jit
def _hue_row(buf, W, a, q, cst):
    """HUE on an RGB row: torchvision's rgb->hsv, hue shift, hsv->rgb, in the reference's op order."""
    zero = cst[ZERO]
    one = cst[ONE]
    two = cst[TWO]
    four = cst[FOUR]
    six = cst[SIX]
    inv = cst[INV255]
    eps = cst[EPS]
    for x in range(W):
        r = buf[x]
        g = buf[W + x]
        b = buf[2 * W + x]
        if q:
            r = r * inv
            g = g * inv
            b = b * inv
        maxc = r if r > g else g
        maxc = maxc if maxc > b else b
        minc = r if r < g else g
        minc = minc if minc < b else b
        eqc = maxc == minc
        span = maxc - minc
        s = span / (one if eqc else maxc)
        div = one if eqc else span
        rc = (maxc - r) / div
        gc = (maxc - g) / div
        bc = (maxc - b) / div
        if maxc == r:
            h = bc - gc
        elif maxc == g:
            h = (two + rc) - bc
        else:
            h = (four + gc) - rc
        h = h / six + one
        h = h - np.floor(h)  # == fmod(h, 1) for h >= 0
        h = h + a
        h = h - np.floor(h)  # == remainder(h, 1)
        h6 = h * six
        i = np.floor(h6)
        f = h6 - i
        if i >= six:
            i = i - six
        val = maxc
        p = min(max(val * (one - s), zero), one)
        qq = min(max(val * (one - s * f), zero), one)
        t = min(max(val * (s * f + (one - s)), zero), one)
        k = int(i)
        if k == 0:
            r, g, b = val, t, p
        elif k == 1:
            r, g, b = qq, val, p
        elif k == 2:
            r, g, b = p, val, t
        elif k == 3:
            r, g, b = p, qq, val
        elif k == 4:
            r, g, b = t, p, val
        else:
            r, g, b = val, p, qq
        if q:
            r = np.floor(r * eps)
            g = np.floor(g * eps)
            b = np.floor(b * eps)
        buf[x] = r
        buf[W + x] = g
        buf[2 * W + x] = b


@jit
def _op_row(buf, C, W, code, a, bb, q, st, lut, cst):
    """One op on a row (``st`` = stats[b, k] [C, 2], ``lut`` = luts[b, k] [C, 256])."""
    zero = cst[ZERO]
    one = cst[ONE]
    eps = cst[EPS]
    inv = cst[INV255]
    gw0, gw1, gw2 = cst[GW0], cst[GW1], cst[GW2]
    bound = cst[B255] if q else one
    n = C * W
    if code == BRIGHTNESS:
        for p in range(n):
            v = min(max(buf[p] * a, zero), bound)
            buf[p] = np.floor(v) if q else v
    elif code == CONTRAST:
        t = st[0, 0] * (one - a)
        for p in range(n):
            v = min(max(buf[p] * a + t, zero), bound)
            buf[p] = np.floor(v) if q else v
    elif code == SATURATION or code == GRAYSCALE:
        oma = one - a
        for x in range(W):
            g = (buf[x] * gw0 + buf[W + x] * gw1) + buf[2 * W + x] * gw2
            if q:
                g = np.floor(g)
            if code == GRAYSCALE:
                buf[x] = g
                buf[W + x] = g
                buf[2 * W + x] = g
            else:
                gt = g * oma
                for c in range(3):
                    v = min(max(buf[c * W + x] * a + gt, zero), bound)
                    buf[c * W + x] = np.floor(v) if q else v
    elif code == HUE:
        _hue_row(buf, W, a, q, cst)
    elif code == GAMMA:
        for p in range(n):
            x = buf[p] * inv if q else buf[p]
            x = x**a
            if bb != one:
                x = min(max(x * bb, zero), one)
            buf[p] = np.floor(x * eps) if q else x
    elif code == INVERT:
        for p in range(n):
            buf[p] = bound - buf[p]
    elif code == POSTERIZE:
        step = cst[TWO] ** (cst[EIGHT] - a)
        levels = cst[TWO] ** a
        if q:
            for p in range(n):
                buf[p] = np.floor(buf[p] / step) * step
        else:
            top = levels - one
            for p in range(n):
                buf[p] = min(max(np.floor(buf[p] * levels), zero), top) / levels
    elif code == SOLARIZE:
        for p in range(n):
            v = buf[p]
            buf[p] = bound - v if v >= a else v
    elif code == AUTOCONTRAST:
        for c in range(C):
            lo = st[c, 0]
            hi = st[c, 1]
            if hi == lo:
                scale = one
                lo = zero
            else:
                scale = (hi - lo) * (inv if q else one)
            for x in range(c * W, (c + 1) * W):
                v = min(max((buf[x] - lo) / scale, zero), bound)
                buf[x] = np.floor(v) if q else v
    elif code == EQUALIZE:
        top = cst[B255]
        for c in range(C):
            for x in range(c * W, (c + 1) * W):
                v = buf[x] if q else np.floor(buf[x] * eps)
                idx = int(min(max(v, zero), top))
                buf[x] = lut[c, idx] if q else lut[c, idx] * inv
    elif code == TO_FLOAT:
        for p in range(n):
            buf[p] = buf[p] * inv
    elif code == TO_UINT8:
        for p in range(n):
            buf[p] = np.floor(buf[p] * eps)
    # IDENTITY, SHARPNESS (applied while filling) and unknown codes: nothing


# ----------------------------------------------------------------------------------------------
# epilogue, store, statistics


@jit
def _rects_row(buf, Co, W, i, phase, rects, rphase, rvals):
    for r in range(rects.shape[0]):
        if rphase[r] == phase and rects[r, 1] <= i and i < rects[r, 3]:
            x0 = max(rects[r, 0], 0)
            x1 = min(rects[r, 2], W)
            for c in range(Co):
                val = rvals[r, c]
                for x in range(c * W + x0, c * W + x1):
                    buf[x] = val


@jit
def _epilogue_row(buf, W, i, iv, fs, mean, std, rects, rphase, rvals, cst):
    """Rects (phase 1), out_scale, normalize, rects (phase 2) on channels ``0..Co-1``."""
    co = iv[I_CO]
    if iv[I_RECTS] > 0:
        _rects_row(buf, co, W, i, 1, rects, rphase, rvals)
    osc = fs[S_OUT]
    if osc != cst[ONE]:
        for p in range(co * W):
            buf[p] = buf[p] * osc
    if iv[I_NORM] != 0:
        for c in range(co):
            mu = mean[c]
            sd = std[c]
            for p in range(c * W, (c + 1) * W):
                buf[p] = (buf[p] - mu) / sd
    if iv[I_RECTS] > 0:
        _rects_row(buf, co, W, i, 2, rects, rphase, rvals)


@jit
def _store_row(out, base, oc, ox, Co, W, to_int, buf, cst):
    """Write channels ``0..Co-1`` of the row (uint8: rint, clamp, cast) through the output strides."""
    zero = cst[ZERO]
    top = cst[B255]
    if to_int:
        for p in range(Co * W):
            buf[p] = min(max(np.rint(buf[p]), zero), top)
    if oc == 1 and Co > 1:  # channels-last
        for x in range(W):
            o = base + x * ox
            for c in range(Co):
                out[o + c] = buf[c * W + x]
    else:
        for c in range(Co):
            o = base + c * oc
            r = c * W
            for x in range(W):
                out[o + x * ox] = buf[r + x]


@jit
def _stats_row(buf, C, W, q, cst, acc, mn, mx, hist):
    """Accumulate a row into min/max [C], hist [C, 256]; returns acc + the row's gray sum (float64)."""
    zero = cst[ZERO]
    top = cst[B255]
    eps = cst[EPS]
    gw0, gw1, gw2 = cst[GW0], cst[GW1], cst[GW2]
    if C == 3:
        for x in range(W):
            g = (buf[x] * gw0 + buf[W + x] * gw1) + buf[2 * W + x] * gw2
            if q:
                g = np.floor(g)
            acc += np.float64(g)
    else:
        for x in range(W):
            acc += np.float64(buf[x])
    for c in range(C):
        lo = mn[c]
        hi = mx[c]
        for x in range(c * W, (c + 1) * W):
            v = buf[x]
            lo = v if v < lo else lo
            hi = v if v > hi else hi
            u = v if q else np.floor(v * eps)
            hist[c, int(min(max(u, zero), top))] += 1
        mn[c] = lo
        mx[c] = hi
    return acc


@njit(parallel=True, cache=True, error_model="numpy")
def stage_kernel(src8, srcf, ss, C, H, W, fs, iv, mat, win, fill, xs, ys, codes, prm, stats, luts, cst,
                 Ho, Wo, rows, stop, out8, out32, out64, os_, mean, std, rects, rphase, rvals,
                 gray, mn, mx, hist):  # fmt: skip
    """One pass over all (sample, row block) tasks: the chain up to op ``stop``, then either the
    epilogue and the store into ``out8`` / ``out32`` / ``out64`` (``iv[I_KIND]``), or (``iv[I_REDUCE]``)
    partial statistics per (row block, sample): gray [nblk, B], mn / mx [nblk, B, C] (pre-filled
    with +-inf), hist [nblk, B, C, 256] (zeros). The unused src / out arrays are empty."""
    B = codes.shape[0]
    nblk = (Ho + rows - 1) // rows
    from_u8 = iv[I_SRC8] != 0
    reducing = iv[I_REDUCE] != 0
    kind = iv[I_KIND]
    co = iv[I_CO]
    geo = iv[I_GEO]
    half = cst[HALF]
    sharp_at = geo == 0 and stop > 0 and H > 2 and W > 2
    for t in prange(B * nblk):
        b = t % B
        blk = t // B
        r0 = blk * rows
        r1 = min(r0 + rows, Ho)
        buf = np.empty(C * Wo, dtype=cst.dtype)
        acc = 0.0
        q = reducing and prm[b, stop, 3] > half
        for i in range(r0, r1):
            # 1. fill
            if geo == 0:
                base = b * ss[0] + i * ss[2]
                if sharp_at and codes[b, 0] == SHARPNESS and i > 0 and i < H - 1:
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
            elif geo == 1:
                if from_u8:
                    _nearest_row(src8, b * ss[0], ss[2], ss[1], ss[3], C, fs, iv, mat[b], win[b], fill[b], xs, ys[i], Wo, cst, buf)
                else:
                    _nearest_row(srcf, b * ss[0], ss[2], ss[1], ss[3], C, fs, iv, mat[b], win[b], fill[b], xs, ys[i], Wo, cst, buf)
            elif from_u8:
                _bilinear_row(src8, b * ss[0], ss[2], ss[1], ss[3], C, fs, iv, mat[b], win[b], fill[b], xs, ys[i], Wo, cst, buf)
            else:
                _bilinear_row(srcf, b * ss[0], ss[2], ss[1], ss[3], C, fs, iv, mat[b], win[b], fill[b], xs, ys[i], Wo, cst, buf)
            # 2. ops
            for k in range(stop):
                code = codes[b, k]
                if code != IDENTITY and code != SHARPNESS:
                    _op_row(buf, C, Wo, code, prm[b, k, 0], prm[b, k, 1], prm[b, k, 3] > half, stats[b, k], luts[b, k], cst)
            # 3. statistics, or epilogue and store
            if reducing:
                acc = _stats_row(buf, C, Wo, q, cst, acc, mn[blk, b], mx[blk, b], hist[blk, b])
                continue
            _epilogue_row(buf, Wo, i, iv, fs, mean[b], std[b], rects[b], rphase[b], rvals[b], cst)
            base = b * os_[0] + i * os_[2]
            if kind == 0:
                _store_row(out8, base, os_[1], os_[3], co, Wo, iv[I_INT] != 0, buf, cst)
            elif kind == 1:
                _store_row(out32, base, os_[1], os_[3], co, Wo, False, buf, cst)
            else:
                _store_row(out64, base, os_[1], os_[3], co, Wo, False, buf, cst)
        if reducing:
            gray[blk, b] = acc
