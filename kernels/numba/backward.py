"""Numba backward kernels of one stage (CPU): gradients of the image and of every Plan tensor.

One task per sample (threads over samples, so every gradient a task writes belongs to its sample: no
atomics). Each output row is recomputed forward with the forward kernels' own helpers
(``kernels/numba/fused.py``: bit-identical values, so min / max ties are found exactly) into a stack
``vs`` [K+1, C, Wo] (the row after geometry and after each op), then the gradient row runs back
through the epilogue, the ops in reverse and the resampling (bilinear: to the taps, the fill and,
through the sampling coordinates, the 3x3 matrix; nearest: taps and fill) or SHARPNESS's 3x3 stencil.

Ops whose statistics carry a gradient (CONTRAST: gray mean; AUTOCONTRAST: min / max) need a global
sum before any pixel can go further back: for each such op (last first) one pass accumulates it
(backward from the output down to that op, plus the min / max tie counts), then the final pass adds
``sum / pixels`` (mean) or ``sum / ties`` (min / max) to every pixel's gradient. A sample whose only
live statistic is one CONTRAST's mean (at op k) has no extra pass, as the backward is linear in the
gradient: the final pass also carries a second stream, the mean's own gradient (``gray weights /
pixels`` at op k's input, back through the ops below k and the resampling into separate buffers), sums
dL/dmean at op k, and at the end adds dL/dmean x that stream to the sample's gradients. Semantics: see
:mod:`fastaug.autograd`; the ground truth is torch autograd through ``kernels/reference.py``.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from numba import njit

from fastaug.autograd import StageGrads, StageNeeds
from fastaug.plan import NUM_PARAMS, Epilogue, Op, Stage

from . import fused
from .backend import _effective_codes, _out_size, num_threads

bjit = njit(cache=True, error_model="numpy", nogil=True)

IDENTITY, BRIGHTNESS, CONTRAST, SATURATION, HUE, GAMMA, SHARPNESS = 0, 1, 2, 3, 4, 5, 6
GRAYSCALE, INVERT, POSTERIZE, SOLARIZE, AUTOCONTRAST, EQUALIZE, TO_FLOAT, TO_UINT8 = 7, 8, 9, 10, 11, 12, 13, 14
GW = (0.2989, 0.587, 0.114)
ST_CODES = (int(Op.POSTERIZE), int(Op.SOLARIZE), int(Op.AUTOCONTRAST), int(Op.EQUALIZE))


# ----------------------------------------------------------------------------------------------
# per-op backward on a row: g (gradient of the op's output) becomes the gradient of its input


@bjit
def _hue_back(r, g, b, a, gr, gg, gb):
    """HUE backward of one RGB pixel (float domain): (grad r, grad g, grad b, grad hue factor)."""
    # forward, as the reference (torch.maximum / minimum chains pick the first of ties)
    imax = 0 if r >= g else 1
    maxc = r if r >= g else g
    if b > maxc:
        imax = 2
        maxc = b
    imin = 0 if r <= g else 1
    minc = r if r <= g else g
    if b < minc:
        imin = 2
        minc = b
    eqc = maxc == minc
    span = maxc - minc
    s = span / (1.0 if eqc else maxc)
    div = 1.0 if eqc else span
    rc = (maxc - r) / div
    gc = (maxc - g) / div
    bc = (maxc - b) / div
    is_r = maxc == r
    is_g = (maxc == g) and not is_r
    if is_r:
        h = bc - gc
    elif is_g:
        h = 2.0 + rc - bc
    else:
        h = 4.0 + gc - rc
    h = h / 6.0 + 1.0
    h = h - np.floor(h)
    h = h + a
    h = h - np.floor(h)
    h6 = h * 6.0
    sec = np.floor(h6)
    f = h6 - sec
    if sec >= 6.0:
        sec -= 6.0
    val = maxc
    pp = val * (1.0 - s)
    qp = val * (1.0 - s * f)
    tp = val * (s * f + (1.0 - s))
    # backward
    gval = 0.0
    g_p = 0.0
    g_q = 0.0
    g_t = 0.0
    if sec == 0.0:
        gval += gr
        g_t += gg
        g_p += gb
    elif sec == 1.0:
        g_q += gr
        gval += gg
        g_p += gb
    elif sec == 2.0:
        g_p += gr
        gval += gg
        g_t += gb
    elif sec == 3.0:
        g_p += gr
        g_q += gg
        gval += gb
    elif sec == 4.0:
        g_t += gr
        g_p += gg
        gval += gb
    else:
        gval += gr
        g_p += gg
        g_q += gb
    g_p = g_p if (pp >= 0.0 and pp <= 1.0) else 0.0
    g_q = g_q if (qp >= 0.0 and qp <= 1.0) else 0.0
    g_t = g_t if (tp >= 0.0 and tp <= 1.0) else 0.0
    gval += g_p * (1.0 - s) + g_q * (1.0 - s * f) + g_t * (s * f + (1.0 - s))
    gs = -g_p * val - g_q * val * f + g_t * val * (f - 1.0)
    gh = 6.0 * (-g_q * val * s + g_t * val * s)
    ga = gh
    ghr = gh / 6.0
    grc = 0.0
    ggc = 0.0
    gbc = 0.0
    if is_r:
        gbc += ghr
        ggc -= ghr
    elif is_g:
        grc += ghr
        gbc -= ghr
    else:
        ggc += ghr
        grc -= ghr
    gmax = (grc + ggc + gbc) / div
    o_r = -grc / div
    o_g = -ggc / div
    o_b = -gbc / div
    gspan = 0.0
    if not eqc:
        gspan = -(grc * rc + ggc * gc + gbc * bc) / div
        gspan += gs / maxc
        gmax -= gs * span / (maxc * maxc)
    else:
        gspan += gs
    gmax += gspan + gval
    gmin = -gspan
    if imax == 0:
        o_r += gmax
    elif imax == 1:
        o_g += gmax
    else:
        o_b += gmax
    if imin == 0:
        o_r += gmin
    elif imin == 1:
        o_g += gmin
    else:
        o_b += gmin
    return o_r, o_g, o_b, ga


@bjit
def _op_back(code, C, Wo, a, bb, q, st, stk, vin, g, acc, glo, ghi):
    """Backward of one op on a row, in place on ``g``; parameter gradients into ``acc`` [4];
    AUTOCONTRAST's min / max gradients into ``glo`` / ``ghi`` [C]. Returns CONTRAST's mean gradient."""
    gmean = 0.0
    if st:  # straight-through
        return gmean
    if code == INVERT:
        for c in range(C):
            for x in range(Wo):
                g[c, x] = -g[c, x]
        return gmean
    if code == SOLARIZE:
        for c in range(C):
            for x in range(Wo):
                if vin[c, x] >= a:
                    g[c, x] = -g[c, x]
        return gmean
    if code == TO_FLOAT:
        for c in range(C):
            for x in range(Wo):
                g[c, x] = g[c, x] * (1.0 / 255.0)
        return gmean
    if code == IDENTITY or code == SHARPNESS:
        return gmean
    if q or code == POSTERIZE or code == EQUALIZE or code == TO_UINT8:  # truncating: zero gradient
        for c in range(C):
            for x in range(Wo):
                g[c, x] = 0.0
        return gmean
    if code == BRIGHTNESS:
        s0 = 0.0
        for c in range(C):
            for x in range(Wo):
                v = vin[c, x]
                y = v * a
                gy = g[c, x] if (y >= 0.0 and y <= 1.0) else 0.0
                s0 += gy * v
                g[c, x] = gy * a
        acc[0] += s0
    elif code == CONTRAST:
        m = stk[0, 0]
        s0 = 0.0
        for c in range(C):
            for x in range(Wo):
                v = vin[c, x]
                y = v * a + m * (1.0 - a)
                gy = g[c, x] if (y >= 0.0 and y <= 1.0) else 0.0
                s0 += gy * (v - m)
                gmean += gy
                g[c, x] = gy * a
        acc[0] += s0
        gmean *= 1.0 - a
    elif code == SATURATION:
        for x in range(Wo):
            r, gg, b = vin[0, x], vin[1, x], vin[2, x]
            y = r * GW[0] + gg * GW[1] + b * GW[2]
            t = 0.0
            for c in range(3):
                z = vin[c, x] * a + y * (1.0 - a)
                gz = g[c, x] if (z >= 0.0 and z <= 1.0) else 0.0
                acc[0] += gz * (vin[c, x] - y)
                t += gz
                g[c, x] = gz * a
            t *= 1.0 - a
            for c in range(3):
                g[c, x] += GW[c] * t
    elif code == GRAYSCALE:
        for x in range(Wo):
            t = g[0, x] + g[1, x] + g[2, x]
            for c in range(3):
                g[c, x] = GW[c] * t
    elif code == HUE:
        for x in range(Wo):
            o_r, o_g, o_b, ga = _hue_back(vin[0, x], vin[1, x], vin[2, x], a, g[0, x], g[1, x], g[2, x])
            g[0, x] = o_r
            g[1, x] = o_g
            g[2, x] = o_b
            acc[0] += ga
    elif code == GAMMA:
        for c in range(C):
            for x in range(Wo):
                v = vin[c, x]
                y = v**a
                gy = g[c, x]
                if bb != 1.0:
                    z = y * bb
                    gy = gy * bb if (z >= 0.0 and z <= 1.0) else 0.0
                    acc[1] += (g[c, x] if (z >= 0.0 and z <= 1.0) else 0.0) * y
                if v != 0.0:
                    acc[0] += gy * y * np.log(v)
                g[c, x] = 0.0 if a == 0.0 else gy * a * v ** (a - 1.0)
    elif code == AUTOCONTRAST:
        for c in range(C):
            lo = stk[c, 0]
            hi = stk[c, 1]
            if hi == lo:
                for x in range(Wo):
                    v = vin[c, x]
                    g[c, x] = g[c, x] if (v >= 0.0 and v <= 1.0) else 0.0
                continue
            s = hi - lo
            s2 = s * s
            for x in range(Wo):
                v = vin[c, x]
                y = (v - lo) / s
                gy = g[c, x] if (y >= 0.0 and y <= 1.0) else 0.0
                glo[c] += gy * (v - hi) / s2
                ghi[c] -= gy * (v - lo) / s2
                g[c, x] = gy / s
    return gmean


@bjit
def _live(code, q, st):
    """Does the op's statistic carry a gradient (a global pass is needed)?"""
    return (not q) and (code == CONTRAST or (code == AUTOCONTRAST and not st))


@bjit
def _add_global(code, C, Wo, stk, vin, g, gm, glo, ghi, nlo, nhi, npix):
    """The statistic's share of the gradient: mean -> every pixel, min / max -> their tied pixels."""
    if code == CONTRAST:
        if C == 3:
            for c in range(3):
                t = gm * GW[c] / npix
                for x in range(Wo):
                    g[c, x] += t
        else:
            t = gm / npix
            for x in range(Wo):
                g[0, x] += t
    else:
        for c in range(C):
            lo = stk[c, 0]
            hi = stk[c, 1]
            if hi == lo:
                continue
            tl = glo[c] / nlo[c] if nlo[c] > 0 else 0.0
            th = ghi[c] / nhi[c] if nhi[c] > 0 else 0.0
            for x in range(Wo):
                v = vin[c, x]
                if v == lo:
                    g[c, x] += tl
                if v == hi:
                    g[c, x] += th


# ----------------------------------------------------------------------------------------------
# epilogue and resampling backward


@bjit
def _epilogue_back(vpre, g, i, C, Co, Wo, osc, norm, mean, std, rects, rphase, rvals, who1, who2, gmean, gstd, grv):
    """Gradient through rects / out_scale / normalize of row ``i`` (channels >= Co carry none)."""
    for x in range(Wo):
        who1[x] = -1
        who2[x] = -1
    for r in range(rects.shape[0]):
        if rphase[r] != 0 and rects[r, 1] <= i and i < rects[r, 3]:
            x0 = max(rects[r, 0], 0)
            x1 = min(rects[r, 2], Wo)
            for x in range(x0, x1):
                if rphase[r] == 1:
                    who1[x] = r
                else:
                    who2[x] = r
    for c in range(C):
        for x in range(Wo):
            if c >= Co:
                g[c, x] = 0.0
                continue
            gg = g[c, x]
            r2 = who2[x]
            if r2 >= 0:
                grv[r2, c] += gg
                g[c, x] = 0.0
                continue
            r1 = who1[x]
            if norm:
                v = rvals[r1, c] if r1 >= 0 else vpre[c, x]
                v2 = v * osc
                gmean[c] -= gg / std[c]
                gstd[c] -= gg * (v2 - mean[c]) / (std[c] * std[c])
                gg = gg / std[c]
            gg = gg * osc
            if r1 >= 0:
                grv[r1, c] += gg
                gg = 0.0
            g[c, x] = gg


@bjit
def _mat_back(gfx, gfy, gms, dmx, dmy, kx, ky, X0, Y0, wh, xj, yi, gmat):
    """Gradient of one bilinear sample's coordinates (and of its in-image weight sum) into the 3x3 matrix."""
    gfx += gms * dmx
    gfy += gms * dmy
    gX = gfx * kx
    gY = gfy * ky
    gxh = gX / wh
    gyh = gY / wh
    gwh = -(gX * X0 + gY * Y0) / wh
    gmat[0] += gxh * xj
    gmat[1] += gxh * yi
    gmat[2] += gxh
    gmat[3] += gyh * xj
    gmat[4] += gyh * yi
    gmat[5] += gyh
    gmat[6] += gwh * xj
    gmat[7] += gwh * yi
    gmat[8] += gwh


@bjit
def _resample_back(src, b, g, i, C, H, W, Wo, scale, mode, clamp, has_fill, mat, win, fill, need_src, gsrc, gmat, gfill, okb,
                   two, u, gsrc_u, gmat_u, gfill_u):  # fmt: skip
    """Bilinear / nearest resampling backward of output row ``i`` (see the Plan contract). ``two``: also the
    row ``u`` (a folded mean's stream: same taps and coordinates) into ``gsrc_u[0]``, ``gmat_u``, ``gfill_u``."""
    m = mat
    xlo, ylo, xhi, yhi = win[0], win[1], win[2], win[3]
    yi = float(i)
    for j in range(Wo):
        xj = float(j)
        xh = m[0] * xj + m[1] * yi + m[2]
        yh = m[3] * xj + m[4] * yi + m[5]
        wh = m[6] * xj + m[7] * yi + m[8]
        X0 = xh / wh
        Y0 = yh / wh
        X, Y = X0, Y0
        kx = 1.0
        ky = 1.0
        if clamp:
            if X < xlo or X > xhi:
                kx = 0.0
            if Y < ylo or Y > yhi:
                ky = 0.0
            X = min(max(X, xlo), xhi)
            Y = min(max(Y, ylo), yhi)
        if mode == 1:  # nearest: image and fill only
            uu = np.rint(X)
            t = np.rint(Y)
            ok = uu >= 0 and uu <= W - 1 and t >= 0 and t <= H - 1
            if not clamp:
                ok = ok and uu >= xlo and uu <= xhi and t >= ylo and t <= yhi
            for c in range(C):
                gc = g[c, j]
                if has_fill and not ok:
                    gfill[c] += gc
                    if two:
                        gfill_u[c] += u[c, j]
                elif ok and need_src:
                    gsrc[b, c, int(t), int(uu)] += gc * scale
                    if two:
                        gsrc_u[0, c, int(t), int(uu)] += u[c, j] * scale
            continue
        u0 = np.floor(X)
        t0 = np.floor(Y)
        fx = X - u0
        fy = Y - t0
        ws = ((1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy)
        dwx = (-(1.0 - fy), 1.0 - fy, -fy, fy)
        dwy = (-(1.0 - fx), -fx, 1.0 - fx, fx)
        us = (u0, u0 + 1.0, u0, u0 + 1.0)
        ts = (t0, t0, t0 + 1.0, t0 + 1.0)
        msum = 0.0
        dmx = 0.0
        dmy = 0.0
        for n in range(4):
            o = us[n] >= 0 and us[n] <= W - 1 and ts[n] >= 0 and ts[n] <= H - 1
            if not clamp:
                o = o and us[n] >= xlo and us[n] <= xhi and ts[n] >= ylo and ts[n] <= yhi
            okb[n] = o
            if o:
                msum += ws[n]
                dmx += dwx[n]
                dmy += dwy[n]
        gfx = 0.0
        gfy = 0.0
        gms = 0.0
        hfx = 0.0
        hfy = 0.0
        hms = 0.0
        for c in range(C):
            gc = g[c, j]
            hc = u[c, j] if two else 0.0
            s = 0.0
            dsx = 0.0
            dsy = 0.0
            for n in range(4):
                if okb[n]:
                    val = src[b, c, int(ts[n]), int(us[n])] * scale
                    s += ws[n] * val
                    dsx += dwx[n] * val
                    dsy += dwy[n] * val
            if has_fill:
                gms += gc * (s - fill[c])
                gfill[c] += gc * (1.0 - msum)
                gc = gc * msum
                if two:
                    hms += hc * (s - fill[c])
                    gfill_u[c] += hc * (1.0 - msum)
                    hc = hc * msum
            gfx += gc * dsx
            gfy += gc * dsy
            hfx += hc * dsx
            hfy += hc * dsy
            if need_src:
                for n in range(4):
                    if okb[n]:
                        gsrc[b, c, int(ts[n]), int(us[n])] += gc * ws[n] * scale
                if two:
                    for n in range(4):
                        if okb[n]:
                            gsrc_u[0, c, int(ts[n]), int(us[n])] += hc * ws[n] * scale
        _mat_back(gfx, gfy, gms, dmx, dmy, kx, ky, X0, Y0, wh, xj, yi, gmat)
        if two:
            _mat_back(hfx, hfy, hms, dmx, dmy, kx, ky, X0, Y0, wh, xj, yi, gmat_u)


@bjit
def _read_back(src, b, g, i, C, H, W, scale, sharp, a, need_src, gsrc, gb, acc):
    """Plain read, or SHARPNESS at k = 0 (3x3 stencil; ``acc[0]``: factor gradient), backward of row ``i``; image
    gradient into ``gsrc[gb]``."""
    interior_row = sharp and i > 0 and i < H - 1
    if not interior_row:
        if need_src:
            for c in range(C):
                for x in range(W):
                    gsrc[gb, c, i, x] += g[c, x] * scale
        return
    for c in range(C):
        for x in range(W):
            gc = g[c, x]
            if not interior_row or x == 0 or x == W - 1:
                if need_src:
                    gsrc[gb, c, i, x] += gc * scale
                continue
            blur = 0.0
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    wt = 5.0 if (dy == 0 and dx == 0) else 1.0
                    blur += wt * src[b, c, i + dy, x + dx]
            blur = blur * scale / 13.0
            v = src[b, c, i, x] * scale
            y = v + (1.0 - a) * (blur - v)
            gy = gc if (y >= 0.0 and y <= 1.0) else 0.0
            acc[0] += gy * (v - blur)
            if need_src:
                gsrc[gb, c, i, x] += gy * a * scale
                t = gy * (1.0 - a) * scale / 13.0
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        wt = 5.0 if (dy == 0 and dx == 0) else 1.0
                        gsrc[gb, c, i + dy, x + dx] += wt * t


@bjit
def _fold_in(b, C, H, W, kc, t, need_src, gsrc, gprm, gmat, gfill, gsrc_u, gprm_u, gmat_u, gfill_u):
    """Sample ``b``'s gradients += ``t`` (the folded mean's gradient) x the mean stream's; the stream is zeroed."""
    if need_src:
        for c in range(C):
            for y in range(H):
                for x in range(W):
                    gsrc[b, c, y, x] += t * gsrc_u[0, c, y, x]
                    gsrc_u[0, c, y, x] = 0.0
    for k in range(kc):
        for j in range(gprm_u.shape[1]):
            gprm[b, k, j] += t * gprm_u[k, j]
            gprm_u[k, j] = 0.0
    for j in range(9):
        gmat[b, j] += t * gmat_u[j]
        gmat_u[j] = 0.0
    for c in range(C):
        gfill[b, c] += t * gfill_u[c]
        gfill_u[c] = 0.0


# ----------------------------------------------------------------------------------------------
# the task loop


@bjit
def run_backward(b0, b1, srcf, src, ss, C, H, W, fs, iv, mat, win, fill, xs, ys, codes, prm, stflag, stats, luts, cst,
                 Ho, Wo, gout, has_ep, mean, std, rects, rphase, rvals, need_src, gsrc, gprm, gmat, gfill, gmean, gstd,
                 grv):  # fmt: skip
    """Samples ``b0..b1-1``: recompute each row forward (fused helpers), then backward (see the module doc).

    ``srcf``: the input's flat view (forward helpers), ``src`` [B,C,H,W] the same memory; ``gout``
    [B,Co,Ho,Wo]; gradients: ``gsrc`` [B,C,H,W] (if ``need_src``), ``gprm`` [B,K,4], ``gmat`` [B,9],
    ``gfill`` / ``gmean`` / ``gstd`` [B,C], ``grv`` [B,R,C] (float64, zero-initialised).
    """
    K = codes.shape[1]
    geo = iv[fused.I_GEO]
    co = iv[fused.I_CO]
    norm = iv[fused.I_NORM] != 0
    scale = fs[fused.S_IN]
    osc = fs[fused.S_OUT]
    ftype = srcf.dtype
    vs = np.empty((K + 1, C, Wo), ftype)
    g = np.empty((C, Wo), np.float64)
    wt = np.empty((4, Wo), ftype)
    ms = np.empty(Wo, ftype)
    ofs = np.empty((4, Wo), np.int32)
    taps = np.empty((C, 4 * Wo), ftype)
    who1 = np.empty(Wo, np.int64)
    who2 = np.empty(Wo, np.int64)
    junk = np.zeros(NUM_PARAMS, np.float64)  # parameter gradients of the statistics passes (discarded)
    dlo = np.zeros(C, np.float64)  # min / max gradients of ops already summed (discarded)
    dhi = np.zeros(C, np.float64)
    okb = np.zeros(4, np.bool_)
    jmean = np.zeros(C, np.float64)  # epilogue gradients of the statistics passes (discarded: the final pass adds them)
    jstd = np.zeros(C, np.float64)
    jrv = np.zeros(grv.shape[1:], np.float64)
    npix = float(Ho * Wo)
    sharp_ok = geo == 0 and K > 0 and H > 2 and W > 2
    # the mean's stream of a folded CONTRAST (see the module doc): its gradients, scaled at the end
    u = np.empty((C, Wo), np.float64)
    gsrc_u = np.zeros((1, C, H, W) if need_src else (1, 1, 1, 1), gsrc.dtype)
    gprm_u = np.zeros((K, NUM_PARAMS), np.float64)
    gmat_u = np.zeros(9, np.float64)
    gfill_u = np.zeros(C, np.float64)
    useed = np.zeros(C, np.float64)
    if C == 3:
        for c in range(3):
            useed[c] = GW[c] / npix
    else:
        useed[0] = 1.0 / npix
    for b in range(b0, b1):
        gm = np.zeros(K, np.float64)
        glo = np.zeros((K, C), np.float64)
        ghi = np.zeros((K, C), np.float64)
        nlo = np.zeros((K, C), np.float64)
        nhi = np.zeros((K, C), np.float64)
        sharp = sharp_ok and codes[b, 0] == SHARPNESS
        nlive = 0
        kc = -1
        for k in range(K):
            if _live(codes[b, k], prm[b, k, 3] > 0.5, stflag[b, k]):
                nlive += 1
                kc = k
        fold = nlive == 1 and codes[b, kc] == CONTRAST  # one CONTRAST: no statistics pass
        gmf = 0.0  # its mean's gradient (folded)
        for kt in range(K - 1, -2, -1):
            final = kt < 0
            if not final and (fold or not _live(codes[b, kt], prm[b, kt, 3] > 0.5, stflag[b, kt])):
                continue
            for i in range(Ho):
                # 1. forward recompute (the forward kernels' helpers)
                buf = vs[0]
                if geo == 0:
                    base = b * ss[0] + i * ss[2]
                    if sharp and i > 0 and i < H - 1:
                        fused._sharpen_row(srcf, base, ss[2], ss[1], ss[3], C, W, scale, prm[b, 0, 0], prm[b, 0, 3] > 0.5, cst, buf)
                    else:
                        fused._read_row(srcf, base, ss[1], ss[3], C, W, scale, buf)
                else:
                    fused._coords_row(fs, iv, mat[b], win[b], xs, ys[i], Wo, ss[2], ss[3], cst, wt, ms, ofs)
                    if geo == 1:
                        fused._gather_nearest(srcf, b * ss[0], ss[1], C, Wo, scale, ofs, buf)
                    else:
                        fused._gather_bilinear(srcf, b * ss[0], ss[1], C, Wo, ofs, taps)
                    fused._blend_row(iv, fill[b], C, Wo, scale, wt, ms, taps, cst, buf)
                for k in range(K):
                    nxt = vs[k + 1]
                    nxt[:, :] = vs[k]
                    code = codes[b, k]
                    if code != IDENTITY and code != SHARPNESS:
                        fused._op_row(nxt, C, Wo, code, prm[b, k, 0], prm[b, k, 1], prm[b, k, 3] > 0.5, stats[b, k], luts[b, k], cst)
                if not final and codes[b, kt] == AUTOCONTRAST:  # ties of the min / max
                    for c in range(C):
                        for x in range(Wo):
                            v = vs[kt, c, x]
                            if v == stats[b, kt, c, 0]:
                                nlo[kt, c] += 1.0
                            if v == stats[b, kt, c, 1]:
                                nhi[kt, c] += 1.0
                # 2. gradient of the stage output row
                for c in range(C):
                    for x in range(Wo):
                        g[c, x] = gout[b, c, i, x] if c < co else 0.0
                if has_ep:
                    _epilogue_back(vs[K], g, i, C, co, Wo, osc, norm, mean[b], std[b], rects[b], rphase[b], rvals[b], who1, who2,
                                   gmean[b] if final else jmean, gstd[b] if final else jstd, grv[b] if final else jrv)  # fmt: skip
                # 3. ops in reverse (down to the target op of a statistics pass)
                for k in range(K - 1, -1, -1):
                    code = codes[b, k]
                    q = prm[b, k, 3] > 0.5
                    acc = gprm[b, k] if final else junk
                    if k == kt:
                        gm[k] += _op_back(code, C, Wo, prm[b, k, 0], prm[b, k, 1], q, stflag[b, k], stats[b, k], vs[k], g,
                                          junk, glo[k], ghi[k])
                        break
                    if fold and k < kc:
                        _op_back(code, C, Wo, prm[b, k, 0], prm[b, k, 1], q, stflag[b, k], stats[b, k], vs[k], u, gprm_u[k], dlo, dhi)
                    gmk = _op_back(code, C, Wo, prm[b, k, 0], prm[b, k, 1], q, stflag[b, k], stats[b, k], vs[k], g, acc, dlo, dhi)
                    if fold and k == kc:
                        gmf += gmk
                        for c in range(C):
                            for x in range(Wo):
                                u[c, x] = useed[c]
                    elif _live(code, q, stflag[b, k]):
                        _add_global(code, C, Wo, stats[b, k], vs[k], g, gm[k], glo[k], ghi[k], nlo[k], nhi[k], npix)
                if not final:
                    continue
                # 4. geometry / read / sharpen backward
                if geo == 0:
                    a0 = prm[b, 0, 0] if K > 0 else 0.0
                    _read_back(src, b, g, i, C, H, W, scale, sharp, a0, need_src, gsrc, b, gprm[b, 0] if K > 0 else junk)
                    if fold:
                        _read_back(src, b, u, i, C, H, W, scale, sharp, a0, need_src, gsrc_u, 0, gprm_u[0])
                else:
                    _resample_back(src, b, g, i, C, H, W, Wo, scale, geo, iv[fused.I_CLAMP] != 0, iv[fused.I_FILL] != 0,
                                   mat[b], win[b], fill[b], need_src, gsrc, gmat[b], gfill[b], okb, fold, u, gsrc_u, gmat_u,
                                   gfill_u)  # fmt: skip
        if fold:  # add the mean's share: its gradient times the mean stream's, then clear the stream
            _fold_in(b, C, H, W, kc, gmf, need_src, gsrc, gprm, gmat, gfill, gsrc_u, gprm_u, gmat_u, gfill_u)


# ----------------------------------------------------------------------------------------------
# host side


def supports(src: torch.Tensor, stage: Stage, epilogue: Epilogue | None) -> bool:
    """CPU tensors; SHARPNESS only at k = 0 of a stage without geometry (what the compiler emits)."""
    if src.device.type != "cpu" or not src.is_floating_point():
        return False
    if stage.geometry is not None and stage.program.shape[1] > 0 and int(Op.SHARPNESS) in stage.codes_at(0):
        return False
    return not (stage.geometry is not None and stage.geometry.quantize)


def _np(t: torch.Tensor | None, dtype, shape) -> np.ndarray:
    if t is None:
        return np.zeros(shape, dtype=dtype)
    return np.ascontiguousarray(t.detach().cpu().reshape(shape).numpy(), dtype=dtype)


def _launch(nb: int, args: tuple) -> None:
    """Samples split over :func:`backend.num_threads` threads (nogil kernel)."""
    nthreads = min(num_threads(), nb)
    bounds = [nb * j // nthreads for j in range(nthreads + 1)]
    if nthreads == 1:
        run_backward(0, nb, *args)
        return
    errors: list[BaseException] = []

    def work(j: int) -> None:
        try:
            run_backward(bounds[j], bounds[j + 1], *args)
        except BaseException as e:  # re-raised in the calling thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(j,), daemon=True) for j in range(1, nthreads)]
    for th in threads:
        th.start()
    work(0)
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


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
    work = torch.float64 if src.dtype == torch.float64 else torch.float32
    ftype = np.float64 if work == torch.float64 else np.float32
    x = src.detach().to(work).contiguous()
    b, c, h, w = x.shape
    ho, wo = _out_size(x, stage)
    k = stage.program.shape[1]
    co = epilogue.out_channels if epilogue is not None else c
    gout = grad.detach().to(torch.float64 if work == torch.float64 else torch.float32).contiguous().numpy()
    iv = np.zeros(fused.NUM_FLAGS, np.int64)
    iv[fused.I_CO] = co
    geo = stage.geometry
    if geo is not None:
        iv[fused.I_GEO : fused.I_QUANT + 1] = (2 if geo.bilinear else 1, geo.clamp, geo.fill is not None, geo.quantize)
        mat, win, fill = _np(geo.matrix, ftype, (b, 9)), _np(geo.window, ftype, (b, 4)), _np(geo.fill, ftype, (b, c))
    else:
        mat, win, fill = np.zeros((b, 9), ftype), np.zeros((b, 4), ftype), np.zeros((b, c), ftype)
    ep = epilogue
    nr = 0 if ep is None or ep.rects is None else ep.rects.shape[1]
    iv[fused.I_NORM] = int(ep is not None and ep.mean is not None)
    mean = _np(None if ep is None else ep.mean, ftype, (b, c))
    std = _np(None if ep is None else ep.std, ftype, (b, c))
    rects = _np(None if nr == 0 else ep.rects, np.int32, (b, nr, 4))
    rphase = _np(None if nr == 0 else ep.rect_phase, np.int32, (b, nr))
    rvals = _np(None if nr == 0 else ep.rect_values, ftype, (b, nr, c))
    codes = _effective_codes(stage, c)
    prm = _np(stage.params[..., :NUM_PARAMS], ftype, (b, k, NUM_PARAMS))
    stflag = np.isin(codes, ST_CODES) & ((prm[..., 2] > 0.5) | straight_through)
    fs = np.array([stage.in_scale, 1.0 if ep is None else ep.out_scale, w - 1, h - 1], dtype=ftype)
    xnp = x.numpy()
    gsrc = np.zeros((b, c, h, w) if needs.src else (1, 1, 1, 1), ftype)  # accumulated in the working dtype
    gprm = np.zeros((b, k, NUM_PARAMS), np.float64)
    gmat = np.zeros((b, 9), np.float64)
    gfill, gmean, gstd = np.zeros((b, c)), np.zeros((b, c)), np.zeros((b, c))
    grv = np.zeros((b, nr, c))
    args = (
        xnp.reshape(-1), xnp, np.array(x.stride(), np.int64), c, h, w, fs, iv, mat, win, fill,
        np.arange(wo, dtype=ftype), np.arange(ho, dtype=ftype), codes, prm, stflag,
        _np(stats, ftype, (b, k, c, 2)), _np(luts, ftype, (b, k, c, 256)), fused.constants(ftype),
        ho, wo, gout, epilogue is not None, mean, std, rects, rphase, rvals, bool(needs.src), gsrc, gprm, gmat, gfill, gmean, gstd, grv,
    )  # fmt: skip
    _launch(b, args)

    def back(arr: np.ndarray, ref: torch.Tensor | None, want: bool) -> torch.Tensor | None:
        if not want or ref is None:
            return None
        return torch.from_numpy(arr).reshape(ref.shape).to(ref.dtype)

    g_src = torch.from_numpy(gsrc) if needs.src else None
    return StageGrads(
        src=g_src,
        params=back(gprm, stage.params, needs.params),
        matrix=back(gmat, None if geo is None else geo.matrix, needs.matrix),
        fill=back(gfill, None if geo is None else geo.fill, needs.fill),
        mean=back(gmean, None if ep is None else ep.mean, needs.mean),
        std=back(gstd, None if ep is None else ep.std, needs.std),
        rect_values=back(grv, None if ep is None else ep.rect_values, needs.rect_values),
    )
