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
dL/dmean at op k, and at the end adds dL/dmean x that stream to the sample's gradients.

Speed: gradient rows are in the working dtype (float32) and every per-row loop is branch-free, so it
vectorises; its sums (parameter gradients) are row partials in the working dtype, reassociated
(fast-math ``reassoc`` on the backward helpers only: the forward recompute stays bit-exact), added into
float64 totals. The resampling backward reuses the forward recompute's tap offsets, weights and values,
and scatters a sample's image gradient into a per-thread pixel-interleaved buffer (a tap's channels, and
the folded mean's stream, in one cache line), written out planar once per sample. Samples go to threads in
chunks from a shared counter, as the forward's tasks do.
Semantics: see :mod:`fastaug.autograd`; the ground truth is torch autograd through ``kernels/reference.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from fastaug import engine
from fastaug.autograd import StageGrads, StageNeeds
from fastaug.ops.catalogue import ST_OPS
from fastaug.plan import NUM_PARAMS, Epilogue, Op, Stage, reference_backward

from . import fused
from .backend import _effective_codes, _flat, _out_size, run_chunked

# No NRT (no reference counting of arrays shared by the threads, no allocation: scratch comes from the host).
bjit = njit(cache=True, error_model="numpy", nogil=True, _nrt=False)
fjit = njit(cache=True, error_model="numpy", nogil=True, _nrt=False, fastmath={"reassoc", "nsz"})  # row sums vectorise
U = fused.U

# op codes: the forward's (from the catalogue)
IDENTITY, BRIGHTNESS, CONTRAST, SATURATION, HUE = fused.IDENTITY, fused.BRIGHTNESS, fused.CONTRAST, fused.SATURATION, fused.HUE
GAMMA, SHARPNESS, GRAYSCALE, INVERT, POSTERIZE = fused.GAMMA, fused.SHARPNESS, fused.GRAYSCALE, fused.INVERT, fused.POSTERIZE
SOLARIZE, AUTOCONTRAST, EQUALIZE, TO_FLOAT, TO_UINT8 = fused.SOLARIZE, fused.AUTOCONTRAST, fused.EQUALIZE, fused.TO_FLOAT, fused.TO_UINT8
ST_CODES = tuple(int(op) for op in ST_OPS)


# ----------------------------------------------------------------------------------------------
# per-op backward on a row: g (gradient of the op's output) becomes the gradient of its input


@bjit
def _hue_back_row(vin, g, Wo, a, cst, ga):
    """HUE backward of an RGB row, in place on ``g``; the hue factor's gradient per pixel into ``ga``.

    The forward is recomputed as :func:`fused._hue_row` computes it (strict arithmetic: the same sector and
    clamps), then differentiated as torch differentiates the reference: ``torch.maximum`` / ``minimum``
    split a tie's gradient evenly (a pixel with r == g gets half of the max's gradient on each), ``where``
    and the sector masks pass none. Branch-free (selects): it vectorises."""
    zero = cst[fused.ZERO]
    one = cst[fused.ONE]
    half = cst[fused.HALF]
    two = cst[fused.TWO]
    three = cst[fused.THREE]
    four = cst[fused.FOUR]
    five = cst[fused.FIVE]
    six = cst[fused.SIX]
    for x in range(Wo):
        r = vin[0, x]
        gn = vin[1, x]
        b = vin[2, x]
        maxc, minc, eqc, s, div, rc, gc, bc, i, f = fused._hue_sector(r, gn, b, a, one, two, four, six)
        val = maxc
        span = maxc - minc
        m1 = r if r > gn else gn
        n1 = r if r < gn else gn
        isr = maxc == r
        isg = (maxc == gn) & (maxc != r)
        isb = (maxc != r) & (maxc != gn)
        oms = one - s
        sf = s * f
        pp = val * oms
        qp = val * (one - sf)
        tp = val * (sf + oms)
        # sector i: (r, g, b) = (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q); each output's gradient to its source
        gr = g[0, x]
        gg = g[1, x]
        gb = g[2, x]
        rv = (i == zero) | (i == five)
        rq = i == one
        rt = i == four
        gt_ = i == zero
        gv = (i == one) | (i == two)
        gq = i == three
        bp = i <= one
        bt = i == two
        bq = i == five
        gval = ((gr if rv else zero) + (gg if gv else zero)) + (gb if (i == three) | (i == four) else zero)
        g_q = ((gr if rq else zero) + (gg if gq else zero)) + (gb if bq else zero)
        g_t = ((gr if rt else zero) + (gg if gt_ else zero)) + (gb if bt else zero)
        g_p = ((gr if (i == two) | (i == three) else zero) + (gg if i >= four else zero)) + (gb if bp else zero)
        g_p = g_p if (pp >= zero) & (pp <= one) else zero  # clamp(0, 1)
        g_q = g_q if (qp >= zero) & (qp <= one) else zero
        g_t = g_t if (tp >= zero) & (tp <= one) else zero
        gval = gval + g_p * oms + g_q * (one - sf) + g_t * (sf + oms)
        gs = (g_t * (f - one) - g_p - g_q * f) * val
        # dL/df; f = 6 h - i with h = (h0 / 6 + 1 + a) mod 1: dL/da = 6 dL/df and dL/dh0 = dL/df
        gf = (g_t - g_q) * (val * s)
        ga[x] = six * gf
        dhr = gf if isr else zero
        dhg = gf if isg else zero
        dhb = gf if isb else zero
        drc = dhg - dhb
        dgc = dhb - dhr
        dbc = dhr - dhg
        gspan = gs if eqc else gs / maxc - ((drc * rc + dgc * gc) + dbc * bc) / div
        gmax = (drc + dgc + dbc) / div + gval + gspan - (zero if eqc else gs * span / (maxc * maxc))
        gmin = -gspan
        # maximum(maximum(r, g), b) and minimum(minimum(r, g), b): ties split evenly
        wb = one if b > m1 else (half if b == m1 else zero)
        wr = one if r > gn else (half if r == gn else zero)
        vb = one if b < n1 else (half if b == n1 else zero)
        vr = one if r < gn else (half if r == gn else zero)
        gm1 = gmax * (one - wb)
        gn1 = gmin * (one - vb)
        g[0, x] = -drc / div + gm1 * wr + gn1 * vr
        g[1, x] = -dgc / div + gm1 * (one - wr) + gn1 * (one - vr)
        g[2, x] = -dbc / div + gmax * wb + gmin * vb


@fjit
def _op_back(code, C, Wo, a, bb, cc, q, st, stk, vin, g, acc, glo, ghi, cst, tmp):
    """Backward of one op on a row, in place on ``g`` (``a, bb, cc`` = params[:3]); parameter gradients into ``acc`` [4];
    AUTOCONTRAST's min / max gradients into ``glo`` / ``ghi`` [C]. Returns CONTRAST's mean gradient.
    ``tmp``: a scratch row [Wo].
    Branch-free row loops (selects), row sums in the working dtype: they vectorise."""
    zero = cst[fused.ZERO]
    one = cst[fused.ONE]
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
                g[c, x] = -g[c, x] if vin[c, x] >= a else g[c, x]
        return gmean
    if code == TO_FLOAT:
        inv = cst[fused.INV255]
        for c in range(C):
            for x in range(Wo):
                g[c, x] = g[c, x] * inv
        return gmean
    if code == IDENTITY or code == SHARPNESS:
        return gmean
    if q or code == POSTERIZE or code == EQUALIZE or code == TO_UINT8:  # truncating: zero gradient
        for c in range(C):
            for x in range(Wo):
                g[c, x] = zero
        return gmean
    if code == BRIGHTNESS:
        s0 = zero
        for c in range(C):
            for x in range(Wo):
                v = vin[c, x]
                y = v * a
                gy = g[c, x] if (y >= zero) & (y <= one) else zero
                s0 += gy * v
                g[c, x] = gy * a
        acc[0] += s0
    elif code == CONTRAST:
        m = stk[0, 0]
        t = m * (one - a)
        s0 = zero
        s1 = zero
        for c in range(C):
            for x in range(Wo):
                v = vin[c, x]
                y = v * a + t
                gy = g[c, x] if (y >= zero) & (y <= one) else zero
                s0 += gy * (v - m)
                s1 += gy
                g[c, x] = gy * a
        acc[0] += s0
        gmean = np.float64(s1) * (1.0 - a)
    elif code == SATURATION:
        gw0, gw1, gw2 = cst[fused.GW0], cst[fused.GW1], cst[fused.GW2]
        oma = one - a
        s0 = zero
        for x in range(Wo):
            r, gg, b = vin[0, x], vin[1, x], vin[2, x]
            y = (r * gw0 + gg * gw1) + b * gw2
            yt = y * oma
            zr = r * a + yt
            zg = gg * a + yt
            zb = b * a + yt
            hr = g[0, x] if (zr >= zero) & (zr <= one) else zero
            hg = g[1, x] if (zg >= zero) & (zg <= one) else zero
            hb = g[2, x] if (zb >= zero) & (zb <= one) else zero
            s0 += (hr * (r - y) + hg * (gg - y)) + hb * (b - y)
            t = (hr + hg + hb) * oma
            g[0, x] = hr * a + gw0 * t
            g[1, x] = hg * a + gw1 * t
            g[2, x] = hb * a + gw2 * t
        acc[0] += s0
    elif code == fused.RGB_SHIFT or code == fused.RGB_GAIN:
        gain = code == fused.RGB_GAIN
        for c in range(3):
            p = a if c == 0 else (bb if c == 1 else cc)
            s0 = zero
            for x in range(Wo):
                v = vin[c, x]
                y = v * p if gain else v + p
                gy = g[c, x] if (y >= zero) & (y <= one) else zero
                s0 += gy * v if gain else gy
                g[c, x] = gy * p if gain else gy
            acc[c] += s0
    elif code == GRAYSCALE:
        gw0, gw1, gw2 = cst[fused.GW0], cst[fused.GW1], cst[fused.GW2]
        for x in range(Wo):
            t = g[0, x] + g[1, x] + g[2, x]
            g[0, x] = gw0 * t
            g[1, x] = gw1 * t
            g[2, x] = gw2 * t
    elif code == HUE:
        _hue_back_row(vin, g, Wo, a, cst, tmp)
        s0 = zero
        for x in range(Wo):
            s0 += tmp[x]
        acc[0] += s0
    elif code == GAMMA:
        s0 = 0.0
        s1 = 0.0
        ad = np.float64(a)
        for c in range(C):
            for x in range(Wo):  # the forward's value (reference.gamma_pow): its clamp's band decides on the same bits
                tmp[x] = np.float64(vin[c, x]) ** ad
            for x in range(Wo):
                v = vin[c, x]
                y = tmp[x]
                gy = g[c, x]
                if bb != one:
                    z = y * bb
                    gz = gy if (z >= zero) & (z <= one) else zero
                    s1 += gz * y
                    gy = gz * bb
                if v != zero:
                    s0 += gy * y * np.log(v)
                g[c, x] = gy * a * y / v if v > zero else zero  # a v^(a-1) = a y / v; 0 at v = 0 (see the reference)
        acc[0] += s0
        acc[1] += s1
    elif code == AUTOCONTRAST:
        for c in range(C):
            lo = stk[c, 0]
            hi = stk[c, 1]
            if hi == lo:
                for x in range(Wo):
                    v = vin[c, x]
                    g[c, x] = g[c, x] if (v >= zero) & (v <= one) else zero
                continue
            s = hi - lo
            s2 = s * s
            sl = zero
            sh = zero
            for x in range(Wo):
                v = vin[c, x]
                y = (v - lo) / s
                gy = g[c, x] if (y >= zero) & (y <= one) else zero
                sl += gy * (v - hi)
                sh += gy * (v - lo)
                g[c, x] = gy / s
            glo[c] += sl / s2
            ghi[c] -= sh / s2
    return gmean


@bjit
def _random(code):
    return (code == fused.GAUSSIAN_NOISE or code == fused.PIXEL_DROPOUT or code == fused.SALT_AND_PEPPER
            or code == fused.MULTIPLICATIVE_NOISE or code == fused.FOG)  # fmt: skip


@bjit
def _random_row(buf, C, Wo, i, code, key, p, yi, mxf, xs, cst, tmp):
    """A random op on output row ``i``, forward: the forward kernel's row functions."""
    q = p[3] > cst[fused.HALF]
    if code == fused.GAUSSIAN_NOISE:
        fused._noise_row(buf, C, Wo, i, key, p[0], p[1], p[2] > cst[fused.HALF], q, cst, tmp)
    elif code == fused.FOG:
        fused._fog_row(buf, C, Wo, yi, mxf, xs, key, p[0], p[1], p[2], q, cst, tmp)
    else:
        own, target = fused._dropout_mode(p[2], cst[fused.HALF])
        fused._uniform_row(buf, C, Wo, i, code, key, p[0], p[1], own, target, q, cst, tmp)


@bjit
def _draws(code, C, Wo, i, key, p, yi, mxf, xs, cst, rnd, tmp):
    """The draws of random op ``code`` on row ``i`` into ``rnd`` by the forward's row functions applied to constant rows
    (the same bits): GAUSSIAN_NOISE the normals z (0 + (0 + z * 1)); PIXEL_DROPOUT, SALT_AND_PEPPER and
    MULTIPLICATIVE_NOISE the uniforms u, per channel or shared (1 * (0 + 1 * u)); FOG its clamp term in row 0
    (0 + (1 * clamp) * (1 - 0))."""
    zero, one, half = cst[fused.ZERO], cst[fused.ONE], cst[fused.HALF]
    rows = 1 if code == fused.FOG else C
    for c in range(rows):
        for x in range(Wo):
            rnd[c, x] = zero if (code == fused.GAUSSIAN_NOISE or code == fused.FOG) else one
    if code == fused.GAUSSIAN_NOISE:
        fused._noise_row(rnd, C, Wo, i, key, zero, one, False, False, cst, tmp)
    elif code == fused.FOG:
        fused._fog_row(rnd, 1, Wo, yi, mxf, xs, key, one, p[1], p[2], False, cst, tmp)
    else:
        own = fused._dropout_mode(p[2], half)[0] and code != fused.SALT_AND_PEPPER
        fused._uniform_row(rnd, C, Wo, i, fused.MULTIPLICATIVE_NOISE, key, zero, one, own, -1, False, cst, tmp)


@bjit
def _random_back(code, C, Wo, p, q, vin, rnd, g, acc, cst):
    """Backward of a random op on a row (the reference's formulas, ``rnd`` from :func:`_draws`), in place on ``g``;
    parameter gradients into ``acc``. Truncating forms (uint8 domain) pass nothing, except where the reference's
    formula has no truncation: pixel dropout and salt and pepper (a select), the noise's clamp or wrap of v."""
    zero, one, half = cst[fused.ZERO], cst[fused.ONE], cst[fused.HALF]
    bound = cst[fused.B255] if q else one
    a, bb = p[0], p[1]
    s0 = zero
    s1 = zero
    if code == fused.GAUSSIAN_NOISE:
        clip = p[2] > half
        a255, s255 = a * cst[fused.B255], bb * cst[fused.B255]
        for c in range(C):
            for x in range(Wo):
                v = vin[c, x]
                z = rnd[c, x]
                y = v + np.trunc(a255 + z * s255) if q else v + (a + z * bb)
                gi = g[c, x] if (not clip) or ((y >= zero) & (y <= bound)) else zero
                s0 += gi
                s1 += gi * z
                g[c, x] = gi
        if not q:
            acc[0] += s0
            acc[1] += s1
    elif code == fused.PIXEL_DROPOUT:
        target = fused._dropout_mode(p[2], half)[1]
        for c in range(C):
            if target >= 0 and c != target:
                continue
            for x in range(Wo):
                dropped = rnd[c, x] < a
                s1 += g[c, x] if dropped else zero
                g[c, x] = zero if dropped else g[c, x]
        acc[1] += s1
    elif code == fused.SALT_AND_PEPPER:
        for c in range(C):
            for x in range(Wo):
                g[c, x] = zero if rnd[c, x] < a else g[c, x]
    elif q:  # MULTIPLICATIVE_NOISE, FOG: truncated
        for c in range(C):
            for x in range(Wo):
                g[c, x] = zero
    elif code == fused.MULTIPLICATIVE_NOISE:
        for c in range(C):
            for x in range(Wo):
                v = vin[c, x]
                uu = rnd[c, x]
                m = a + (bb - a) * uu
                y = v * m
                gi = g[c, x] if (y >= zero) & (y <= bound) else zero
                s0 += gi * v * (one - uu)
                s1 += gi * v * uu
                g[c, x] = gi * m
        acc[0] += s0
        acc[1] += s1
    else:  # FOG: v + a t (1 - v), t = rnd[0]
        for c in range(C):
            for x in range(Wo):
                v = vin[c, x]
                t = rnd[0, x]
                s0 += g[c, x] * (t * (one - v))
                g[c, x] = g[c, x] * (one - a * t)
        acc[0] += s0


@bjit
def _live(code, q, st):
    """Does the op's statistic carry a gradient (a global pass is needed)?"""
    return (not q) and (code == CONTRAST or (code == AUTOCONTRAST and not st))


@bjit
def _add_global(code, C, Wo, stk, vin, g, gm, glo, ghi, nlo, nhi, npix, cst):
    """The statistic's share of the gradient: mean -> every pixel, min / max -> their tied pixels."""
    if code == CONTRAST:
        if C == 3:
            for c in range(3):
                t = cst[fused.GW0 + c] * (gm / npix)
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


@fjit
def _epilogue_back(vpre, g, i, C, Co, Wo, osc, norm, mean, std, rects, rphase, rvals, who, gmean, gstd, grv, cst):
    """Gradient through rects / out_scale / normalize of row ``i`` (channels >= Co carry none)."""
    zero = cst[fused.ZERO]
    hit = False
    for r in range(rects.shape[0]):
        hit = hit or (rphase[r] != 0 and rects[r, 1] <= i and i < rects[r, 3] and rects[r, 0] < rects[r, 2])
    if not hit:  # no rect on this row: row loops
        for c in range(C):
            if c >= Co:
                for x in range(Wo):
                    g[c, x] = zero
                continue
            if norm:
                mu = mean[c]
                sc = osc / std[c]
                sg = zero
                sv = zero
                for x in range(Wo):
                    gg = g[c, x]
                    sg += gg
                    sv += gg * (vpre[c, x] * osc - mu)
                    g[c, x] = gg * sc
                gmean[c] -= sg / std[c]
                gstd[c] -= sv / (std[c] * std[c])
            else:
                for x in range(Wo):
                    g[c, x] = g[c, x] * osc
        return
    for x in range(Wo):
        who[0, x] = -1
        who[1, x] = -1
    for r in range(rects.shape[0]):
        if rphase[r] != 0 and rects[r, 1] <= i and i < rects[r, 3]:
            for x in range(max(rects[r, 0], 0), min(rects[r, 2], Wo)):
                who[rphase[r] - 1, x] = r
    for c in range(C):
        for x in range(Wo):
            if c >= Co:
                g[c, x] = zero
                continue
            gg = g[c, x]
            r2 = who[1, x]
            if r2 >= 0:
                grv[r2, c] += gg
                g[c, x] = zero
                continue
            r1 = who[0, x]
            if norm:
                v = rvals[r1, c] if r1 >= 0 else vpre[c, x]
                gmean[c] -= gg / std[c]
                gstd[c] -= gg * (v * osc - mean[c]) / (std[c] * std[c])
                gg = gg / std[c]
            gg = gg * osc
            if r1 >= 0:
                grv[r1, c] += gg
                gg = zero
            g[c, x] = gg


@bjit
def _coords_grad_row(fs, iv, m, win, xs, yi, Wo, cst, crd):
    """What the coordinate gradient of a bilinear row needs (``fused._coords_row``'s arithmetic, not
    fast-math, so the taps and their validity agree with the forward): ``crd`` [14, Wo] = fx, fy, the four
    taps' validity (1 / 0), kx / W', ky / W', X, Y (unclamped), then the shares of the clamped X's gradient
    that go to x_lo, x_hi and of Y's to y_lo, y_hi. k and the shares follow ``minimum(maximum(X, lo), hi)``'s
    derivative in torch: 1 / 0 off a bound, half to each side at a tie."""
    zero = cst[fused.ZERO]
    one = cst[fused.ONE]
    cxl, cyl, cxh, cyh, vxl, vyl, vxh, vyh = fused._bounds(fs, iv, win, cst)
    half = cst[fused.HALF]
    t0, t1, t2 = m[1] * yi, m[4] * yi, m[7] * yi
    for j in range(Wo):
        xj = xs[j]
        wh = (m[6] * xj + t2) + m[8]
        X0 = ((m[0] * xj + t0) + m[2]) / wh
        Y0 = ((m[3] * xj + t1) + m[5]) / wh
        X = min(max(X0, cxl), cxh)
        Y = min(max(Y0, cyl), cyh)
        # d maximum(X0, lo) / d X0 and d minimum(., hi) / d . (torch: half at a tie)
        ax = one if X0 > cxl else (half if X0 == cxl else zero)
        bx = one if max(X0, cxl) < cxh else (half if max(X0, cxl) == cxh else zero)
        ay = one if Y0 > cyl else (half if Y0 == cyl else zero)
        by = one if max(Y0, cyl) < cyh else (half if max(Y0, cyl) == cyh else zero)
        _, _, _, _, fx, fy, ku0, ku1, kv0, kv1 = fused._cell(X, Y, vxl, vyl, vxh, vyh, one)
        crd[0, j] = fx
        crd[1, j] = fy
        crd[2, j] = one if ku0 & kv0 else zero
        crd[3, j] = one if ku1 & kv0 else zero
        crd[4, j] = one if ku0 & kv1 else zero
        crd[5, j] = one if ku1 & kv1 else zero
        crd[6, j] = ax * bx / wh
        crd[7, j] = ay * by / wh
        crd[8, j] = X0
        crd[9, j] = Y0
        crd[10, j] = (one - ax) * bx
        crd[11, j] = one - bx
        crd[12, j] = (one - ay) * by
        crd[13, j] = one - by


@fjit
def _bilinear_back_row(g, C, Wo, scale, has_fill, fill, taps, wt, ms, crd, coords, ra, gw, gfill, cst):
    """Bilinear resampling backward of a row (``taps``, ``wt``, ``ms``: the forward recompute's): the
    taps' gradient ``gw`` [C, Wo] (x scale, before the tap weights), the fill's into ``gfill``, and (if
    ``coords``) the per-pixel gradients of X, Y and of the weight sum m into ``ra`` [3, Wo]."""
    zero = cst[fused.ZERO]
    one = cst[fused.ONE]
    for j in range(Wo):
        ra[0, j] = zero
        ra[1, j] = zero
        ra[2, j] = zero
    for c in range(C):
        f = fill[c]
        sf = zero
        for j in range(Wo):
            t0 = taps[c, 4 * j] * scale
            t1 = taps[c, 4 * j + 1] * scale
            t2 = taps[c, 4 * j + 2] * scale
            t3 = taps[c, 4 * j + 3] * scale
            gc = g[c, j]
            if has_fill:  # out = (S - f) m + f
                if coords:
                    s = ((wt[0, j] * t0 + wt[1, j] * t1) + wt[2, j] * t2) + wt[3, j] * t3
                    ra[2, j] += gc * (s - f)
                sf += gc * (one - ms[j])
                gc = gc * ms[j]
            if coords:
                fx = crd[0, j]
                fy = crd[1, j]
                a0 = crd[2, j] * t0
                a1 = crd[3, j] * t1
                a2 = crd[4, j] * t2
                a3 = crd[5, j] * t3
                ra[0, j] += gc * ((one - fy) * (a1 - a0) + fy * (a3 - a2))
                ra[1, j] += gc * ((one - fx) * (a2 - a0) + fx * (a3 - a1))
            gw[c, j] = gc * scale
        gfill[c] += sf


@fjit
def _matrix_back_row(Wo, xs, yi, crd, ra, gmat, cst):
    """A bilinear row's coordinate gradients (``ra``) into the 3x3 matrix (through X = X'/W', Y = Y'/W'), ``gmat``
    [0:9], and where a coordinate is clamped into the window, into the window, ``gmat`` [9:13]."""
    one = cst[fused.ONE]
    sxx = 0.0
    sx1 = 0.0
    syx = 0.0
    sy1 = 0.0
    swx = 0.0
    sw1 = 0.0
    sxl = 0.0
    sxh = 0.0
    syl = 0.0
    syh = 0.0
    for j in range(Wo):
        fx = crd[0, j]
        fy = crd[1, j]
        k00, k10, k01, k11 = crd[2, j], crd[3, j], crd[4, j], crd[5, j]
        dmx = (one - fy) * (k10 - k00) + fy * (k11 - k01)  # d(weight sum) / dX
        dmy = (one - fx) * (k01 - k00) + fx * (k11 - k10)
        gcx = ra[0, j] + ra[2, j] * dmx  # dL/dX (clamped)
        gcy = ra[1, j] + ra[2, j] * dmy
        sxl += gcx * crd[10, j]
        sxh += gcx * crd[11, j]
        syl += gcy * crd[12, j]
        syh += gcy * crd[13, j]
        gx = gcx * crd[6, j]  # dL/dX'
        gy = gcy * crd[7, j]
        gwh = -(gx * crd[8, j] + gy * crd[9, j])  # dL/dW'
        xj = xs[j]
        sxx += gx * xj
        sx1 += gx
        syx += gy * xj
        sy1 += gy
        swx += gwh * xj
        sw1 += gwh
    gmat[0] += sxx
    gmat[1] += sx1 * yi
    gmat[2] += sx1
    gmat[3] += syx
    gmat[4] += sy1 * yi
    gmat[5] += sy1
    gmat[6] += swx
    gmat[7] += sw1 * yi
    gmat[8] += sw1
    gmat[9] += sxl
    gmat[10] += syl
    gmat[11] += sxh
    gmat[12] += syh


@bjit
def _scatter_bilinear(acc, S, off, C, Wo, ofs, wt, gw):
    """Taps' gradients ``gw`` x weights into a sample's pixel-interleaved accumulator: channel c of pixel p at
    ``p * S + off + c`` (a tap's channels share a cache line). ``ofs``: the taps' pixel indices (clamped
    taps have weight 0)."""
    if C == 3:  # compile-time channel offsets
        for j in range(Wo):
            g0, g1, g2 = gw[0, j], gw[1, j], gw[2, j]
            for t in range(4):
                o = ofs[t, j] * S + off
                w = wt[t, j]
                acc[U(o)] += g0 * w
                acc[U(o + 1)] += g1 * w
                acc[U(o + 2)] += g2 * w
        return
    for j in range(Wo):
        o0 = ofs[0, j] * S + off
        o1 = ofs[1, j] * S + off
        o2 = ofs[2, j] * S + off
        o3 = ofs[3, j] * S + off
        w0, w1, w2, w3 = wt[0, j], wt[1, j], wt[2, j], wt[3, j]
        for c in range(C):
            gc = gw[c, j]
            acc[U(o0 + c)] += gc * w0
            acc[U(o1 + c)] += gc * w1
            acc[U(o2 + c)] += gc * w2
            acc[U(o3 + c)] += gc * w3


@bjit
def _unpack(acc, S, C, n, fold, t, gsrc, base, sc):
    """A sample's image gradient from its pixel-interleaved accumulator (``n`` pixels; with ``fold``, channels
    ``C..2C-1`` hold the folded mean's stream, added x ``t``), written planar from ``base``; the accumulator
    is zeroed for the next sample. Loops with compile-time strides where they can (RGB: 4-8x faster)."""
    if C == 3 and fold:
        for p in range(n):
            q = p * 6
            gsrc[U(base + p)] = acc[U(q)] + t * acc[U(q + 3)]
            gsrc[U(base + sc + p)] = acc[U(q + 1)] + t * acc[U(q + 4)]
            gsrc[U(base + 2 * sc + p)] = acc[U(q + 2)] + t * acc[U(q + 5)]
    elif C == 3:
        for p in range(n):
            q = p * 3
            gsrc[U(base + p)] = acc[U(q)]
            gsrc[U(base + sc + p)] = acc[U(q + 1)]
            gsrc[U(base + 2 * sc + p)] = acc[U(q + 2)]
    else:
        for c in range(C):
            o = base + c * sc
            for p in range(n):
                gsrc[U(o + p)] = acc[U(p * S + c)] + (t * acc[U(p * S + C + c)] if fold else 0.0)
    for q in range(n * S):
        acc[U(q)] = 0.0


@bjit
def _nearest_back_row(gsrc, base, sc, C, Wo, scale, has_fill, need_src, ofs, ms, g, gfill, cst):
    """Nearest resampling backward of a row: the tap's gradient (valid taps) and the fill's (the others)."""
    one = cst[fused.ONE]
    for c in range(C):
        if has_fill:
            sf = cst[fused.ZERO]
            for j in range(Wo):
                sf += g[c, j] * (one - ms[j])
            gfill[c] += sf
        if need_src:
            cc = base + c * sc
            for j in range(Wo):
                gsrc[U(cc + ofs[0, j])] += g[c, j] * ms[j] * scale


@fjit
def _read_back(gsrc, base, sc, sx, C, W, scale, g):
    """Plain read backward of a row (``base``: offset of (b, 0, i, 0) in the flat gradient)."""
    for c in range(C):
        o = base + c * sc
        for x in range(W):
            gsrc[U(o + x * sx)] += g[c, x] * scale


@bjit
def _sharpen_back(srcf, sbase, gsrc, gbase, ss, g, i, C, W, scale, a, need_src, acc, cst):
    """SHARPNESS at k = 0 (3x3 stencil), backward of interior row ``i``; ``acc[0]``: the factor's gradient."""
    zero = cst[fused.ZERO]
    one = cst[fused.ONE]
    w1 = cst[fused.W1]
    w5 = cst[fused.W5]
    sy, sc, sx = ss[2], ss[1], ss[3]
    s0 = 0.0
    for c in range(C):
        o = sbase + c * sc + i * sy
        og = gbase + c * sc + i * sy
        if need_src:
            gsrc[U(og)] += g[c, 0] * scale
            gsrc[U(og + (W - 1) * sx)] += g[c, W - 1] * scale
        for x in range(1, W - 1):
            p = o + x * sx
            blur = zero
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    blur += (w5 if (dy == 0 and dx == 0) else w1) * srcf[U(p + dy * sy + dx * sx)]
            blur = blur * scale
            v = srcf[U(p)] * scale
            y = v + (one - a) * (blur - v)
            gy = g[c, x] if (y >= zero) & (y <= one) else zero
            s0 += gy * (v - blur)
            if need_src:
                q = og + x * sx
                gsrc[U(q)] += gy * a * scale
                t = gy * (one - a) * scale
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        gsrc[U(q + dy * sy + dx * sx)] += (w5 if (dy == 0 and dx == 0) else w1) * t
    acc[0] += s0


@bjit
def _row_back(srcf, sb, gsrc, ss, gy, r, C, W, scale, R, w, f, need_src, out, line, gline):
    """Input row ``r``'s part of a correlation's backward, its taps ``f * w[t]`` on the reflected line (``gline``, folded
    back onto the row): ``out[t] += f * sum gy * v(r, reflect(x+t-R))``, the image's gradient scattered when
    ``need_src``. Returns ``sum_t w[t] * sum gy * v(r, reflect(x+t-R))``."""
    T = w.shape[0]
    sy, sc, sx = ss[2], ss[1], ss[3]
    fused._read_line(srcf, sb + r * sy, sc, sx, C, W, scale, R, line)
    total = 0.0
    for t in range(T):
        s = 0.0
        for c in range(C):
            for x in range(W):
                s += gy[c, x] * line[c, x + t]
        total += w[t] * s
        out[t] += f * s
    if need_src:
        for c in range(C):
            for j in range(W + 2 * R):
                gline[c, j] = 0.0
            for t in range(T):
                wt = f * w[t] * scale
                for x in range(W):
                    gline[c, x + t] += wt * gy[c, x]
            base = sb + c * sc + r * sy
            for j in range(W + 2 * R):
                gsrc[U(base + fused._reflect(j - R, W) * sx)] += gline[c, j]
    return total


@bjit
def _blur_back(srcf, sb, gsrc, ss, g, i, C, H, W, scale, taps, need_src, gt, line, gline):
    """GAUSSIAN_BLUR at k = 0, backward of output row ``i`` (float domain): ``out = sum_ty wy[ty] hx(reflect(i+ty-R))``,
    ``hx(r, x) = sum_tx wx[tx] v(r, reflect(x+tx-R))``: each input row through :func:`_row_back` with taps
    ``wy[ty] * wx``; the taps' gradients into ``gt`` [2, T]."""
    T = taps.shape[1]
    R = (T - 1) // 2
    for ty in range(T):
        r = fused._reflect(i + ty - R, H)
        gt[1, ty] += _row_back(srcf, sb, gsrc, ss, g, r, C, W, scale, R, taps[0], taps[1, ty], need_src, gt[0], line, gline)


@bjit
def _downscale_back(gsrc, sb, ss, g, i, C, H, W, scale, a, mode, xs, ys, cst):
    """DOWNSCALE at k = 0, backward of output row ``i`` (float domain): each output pixel's gradient scattered through
    the up-sampling taps and, for each, the down-sampling taps (the forward's weights, ``fused._resize_tap``)."""
    zero, one, half = cst[fused.ZERO], cst[fused.ONE], cst[fused.HALF]
    hd, wd, rh, rw, inv, down_bil, up_bil = fused._downscale_setup(H, W, a, mode, xs, ys, cst)
    sy, sc, sx = ss[2], ss[1], ss[3]
    u0, u1, uy = fused._resize_tap(ys[i], rh, hd, up_bil, half, zero)
    for x in range(W):
        v0, v1, ux = fused._resize_tap(xs[x], rw, wd, up_bil, half, zero)
        for t in range(4):
            yd = u0 if t < 2 else u1
            xd = v0 if t % 2 == 0 else v1
            wu = (one - uy if t < 2 else uy) * (one - ux if t % 2 == 0 else ux)
            r0, r1, ly = fused._resize_tap(ys[yd], inv, H, down_bil, half, zero)
            c0, c1, lx = fused._resize_tap(xs[xd], inv, W, down_bil, half, zero)
            for s in range(4):
                r = r0 if s < 2 else r1
                col = c0 if s % 2 == 0 else c1
                w = wu * ((one - ly if s < 2 else ly) * (one - lx if s % 2 == 0 else lx)) * scale
                for c in range(C):
                    gsrc[U(sb + c * sc + r * sy + col * sx)] += w * g[c, x]


@bjit
def _convolve_back(srcf, sb, gsrc, ss, g, i, C, H, W, scale, kern, need_src, gk, line, gline, acc, cst):
    """CONVOLVE at k = 0, backward of output row ``i`` (float domain): the clamp's band from the recomputed sum
    (``acc``, the forward's order), then each input row through :func:`_row_back` (the kernel's gradient into ``gk``
    [T, T])."""
    T = kern.shape[0]
    R = (T - 1) // 2
    zero, one = cst[fused.ZERO], cst[fused.ONE]
    sy, sc, sx = ss[2], ss[1], ss[3]
    fused._correlate_row(srcf, sb, sy, sc, sx, C, H, W, scale, i, kern, line, acc)
    for c in range(C):
        for x in range(W):
            acc[c, x] = g[c, x] if (acc[c, x] >= zero) & (acc[c, x] <= one) else zero  # the band's gradient
    for dy in range(T):
        _row_back(srcf, sb, gsrc, ss, acc, fused._reflect(i + dy - R, H), C, W, scale, R, kern[dy], one, need_src, gk[dy], line,
                  gline)


@bjit
def _fold_in(gbase, n, kc, t, need_src, gsrc, gprm, gmat, gfill, gsrc_u, gprm_u, gmat_u, gfill_u):
    """A sample's gradients += ``t`` (the folded mean's gradient) x the mean stream's; the stream is zeroed.
    ``gprm`` / ``gmat`` / ``gfill``: the sample's rows; ``n``: its image gradient's length from ``gbase``."""
    if need_src:
        for x in range(n):
            gsrc[U(gbase + x)] += t * gsrc_u[x]
            gsrc_u[x] = 0.0
    for k in range(kc):
        for j in range(gprm_u.shape[1]):
            gprm[k, j] += t * gprm_u[k, j]
            gprm_u[k, j] = 0.0
    for j in range(gmat_u.shape[0]):
        gmat[j] += t * gmat_u[j]
        gmat_u[j] = 0.0
    for c in range(gfill_u.shape[0]):
        gfill[c] += t * gfill_u[c]
        gfill_u[c] = 0.0


# ----------------------------------------------------------------------------------------------
# the task loop


@njit(cache=True, error_model="numpy", nogil=True, _nrt=False)
def run_backward(b0, b1, srcf, ss, C, H, W, fs, iv, mat, win, fill, xs, ys, codes, prm, stflag, stats, luts, cst,
                 Ho, Wo, gout, gs, has_ep, mean, std, rects, rphase, rvals, need_src, need_geo, need_fill, gsrc, gprm, gmat,
                 gfill, gmean, gstd, grv, keys, btaps, gtaps, kern, gkern, vs, rows, wt, ms, ofs, taps, crd, ra, who, small, gm,
                 glo, ghi, nlo, nhi, jrv, gsrc_u, gprm_u, gmat_u, dzero, rnd, rtmp, line, gline, ring):  # fmt: skip
    """Samples ``b0..b1-1``: recompute each row forward (fused helpers), then backward (see the module doc).

    ``need_src`` / ``need_geo`` / ``need_fill``: which gradients are asked beyond the parameters' (the
    image; the matrix or window; the fill): the rest is skipped. ``srcf``: the (contiguous) input's flat
    memory, strides ``ss``; ``gout``: the output gradient's flat memory [B,Co,Ho,Wo], strides ``gs`` (an
    expanded gradient is read as it is). Gradients: ``gsrc`` flat like the input (if ``need_src``; working
    dtype; each sample's part is zeroed here, by the thread that accumulates it), ``gprm`` [B,K,4],
    ``gmat`` [B,13] (the matrix, then the window), ``gfill`` / ``gmean`` / ``gstd`` [B,C], ``grv`` [B,R,C]
    (float64, zero-initialised). The rest is the calling thread's scratch (:func:`_scratch`).
    """
    K = codes.shape[1]
    geo = iv[fused.I_GEO]
    co = iv[fused.I_CO]
    norm = iv[fused.I_NORM] != 0
    has_fill = iv[fused.I_FILL] != 0
    scale = fs[fused.S_IN]
    osc = fs[fused.S_OUT]
    g, u, gw, hw = rows[0], rows[1], rows[2], rows[3]  # gradient rows: output stream, mean stream, tap gradients
    ot = gw[0]  # the ops' backward scratch row (free until the resampling backward writes gw)
    junk = small[0, :NUM_PARAMS]  # parameter gradients of the statistics passes (discarded)
    dlo, dhi = small[1, :C], small[2, :C]  # min / max gradients of ops already summed (discarded)
    jmean, jstd = small[3, :C], small[4, :C]  # epilogue gradients of the statistics passes (discarded)
    useed, gfill_u = small[5, :C], small[6, :C]  # the mean stream's seed; its fill gradient
    npix = float(Ho * Wo)
    for c in range(C):
        useed[c] = (cst[fused.GW0 + c] if C == 3 else cst[fused.ONE]) / npix
    sharp_ok = geo == 0 and K > 0 and H > 2 and W > 2
    n_img = C * H * W
    for b in range(b0, b1):
        gm[:] = 0.0
        glo[:, :] = 0.0
        ghi[:, :] = 0.0
        nlo[:, :] = 0.0
        nhi[:, :] = 0.0
        sharp = sharp_ok and codes[b, 0] == SHARPNESS
        blurred = codes[b, 0] == fused.GAUSSIAN_BLUR and btaps.shape[2] > 0 and geo == 0
        convolved = codes[b, 0] == fused.CONVOLVE and kern.shape[1] > 0 and geo == 0
        downscaled = codes[b, 0] == fused.DOWNSCALE and geo == 0
        mxf = (xs[Wo - 1] if Wo >= Ho else ys[Ho - 1]) + cst[fused.ONE]  # max(Ho, Wo), as the forward (FOG)
        nlive = 0
        kc = -1
        for k in range(K):
            if _live(codes[b, k], prm[b, k, 3] > 0.5, stflag[b, k]):
                nlive += 1
                kc = k
        fold = nlive == 1 and codes[b, kc] == CONTRAST  # one CONTRAST: no statistics pass
        gmf = 0.0  # its mean's gradient (folded)
        sb = b * ss[0]
        interleaved = need_src and geo == 2  # bilinear: accumulated per pixel in gsrc_u, unpacked at the end
        S = 2 * C if fold else C
        if need_src and not interleaved:
            for x in range(n_img):
                gsrc[U(sb + x)] = 0.0
        for kt in range(K - 1, -2, -1):
            final = kt < 0
            if not final and (fold or not _live(codes[b, kt], prm[b, kt, 3] > 0.5, stflag[b, kt])):
                continue
            for i in range(Ho):
                # 1. forward recompute (the forward kernels' helpers)
                buf = vs[0]
                if geo == 0:
                    base = sb + i * ss[2]
                    if sharp and i > 0 and i < H - 1:
                        fused._sharpen_row(srcf, base, ss[2], ss[1], ss[3], C, W, scale, prm[b, 0, 0], prm[b, 0, 3] > 0.5, cst, buf)
                    elif blurred:  # the forward's ring of x-blurred rows, refilled each row: the same bits
                        fused._blur_row(srcf, sb, ss[2], ss[1], ss[3], C, H, W, scale, i, True, btaps[b], prm[b, 0, 3] > 0.5,
                                        cst[fused.ZERO], line, ring, buf)
                    elif convolved:
                        fused._convolve_row(srcf, sb, ss[2], ss[1], ss[3], C, H, W, scale, i, kern[b], prm[b, 0, 3] > 0.5, cst, line,
                                            buf)
                    elif downscaled:
                        fused._downscale_row(srcf, sb, ss[2], ss[1], ss[3], C, H, W, scale, i, prm[b, 0, 0], prm[b, 0, 1],
                                             prm[b, 0, 3] > 0.5, xs, ys, cst, buf)
                    else:
                        fused._read_row(srcf, base, ss[1], ss[3], C, W, scale, buf)
                else:
                    fused._coords_row(fs, iv, mat[b], win[b], xs, ys[i], Wo, ss[2], ss[3], cst, wt, ms, ofs, dzero)
                    if geo == 1:
                        fused._gather_nearest(srcf, sb, ss[1], C, Wo, scale, ofs, buf)
                    else:
                        fused._gather_bilinear(srcf, sb, ss[1], C, Wo, ofs, taps)
                    fused._blend_row(iv, fill[b], C, Wo, scale, wt, ms, taps, cst, buf)
                for k in range(K):
                    nxt = vs[k + 1]
                    for c in range(C):
                        for x in range(Wo):
                            nxt[c, x] = vs[k, c, x]
                    code = codes[b, k]
                    if _random(code):
                        _random_row(nxt, C, Wo, i, code, keys[b, k], prm[b, k], ys[i], mxf, xs, cst, rtmp)
                    elif code != IDENTITY and code != SHARPNESS:
                        fused._op_row(
                            nxt, C, Wo, code, prm[b, k, 0], prm[b, k, 1], prm[b, k, 2], prm[b, k, 3] > 0.5, stats[b, k], luts[b, k], cst,
                            rtmp,
                        )
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
                    ob = b * gs[0] + c * gs[1] + i * gs[2]
                    for x in range(Wo):
                        g[c, x] = gout[U(ob + x * gs[3])] if c < co else 0.0
                if has_ep:
                    _epilogue_back(vs[K], g, i, C, co, Wo, osc, norm, mean[b], std[b], rects[b], rphase[b], rvals[b], who,
                                   gmean[b] if final else jmean, gstd[b] if final else jstd, grv[b] if final else jrv, cst)  # fmt: skip
                # 3. ops in reverse (down to the target op of a statistics pass)
                for k in range(K - 1, -1, -1):
                    code = codes[b, k]
                    q = prm[b, k, 3] > 0.5
                    acc = gprm[b, k] if final else junk
                    if _random(code):  # its draws recomputed by the forward's row functions (the same bits)
                        _draws(code, C, Wo, i, keys[b, k], prm[b, k], ys[i], mxf, xs, cst, rnd, rtmp)
                        if fold and k < kc:
                            _random_back(code, C, Wo, prm[b, k], q, vs[k], rnd, u, gprm_u[k], cst)
                        _random_back(code, C, Wo, prm[b, k], q, vs[k], rnd, g, acc, cst)
                        continue
                    if k == kt:
                        gm[k] += _op_back(code, C, Wo, prm[b, k, 0], prm[b, k, 1], prm[b, k, 2], q, stflag[b, k], stats[b, k],
                                          vs[k], g, junk, glo[k], ghi[k], cst, ot)  # fmt: skip
                        break
                    if fold and k < kc:
                        _op_back(code, C, Wo, prm[b, k, 0], prm[b, k, 1], prm[b, k, 2], q, stflag[b, k], stats[b, k], vs[k], u,
                                 gprm_u[k], dlo, dhi, cst, ot)  # fmt: skip
                    gmk = _op_back(code, C, Wo, prm[b, k, 0], prm[b, k, 1], prm[b, k, 2], q, stflag[b, k], stats[b, k], vs[k], g, acc,
                                   dlo, dhi, cst, ot)  # fmt: skip
                    if fold and k == kc:
                        gmf += gmk
                        for c in range(C):
                            for x in range(Wo):
                                u[c, x] = useed[c]
                    elif _live(code, q, stflag[b, k]):
                        _add_global(code, C, Wo, stats[b, k], vs[k], g, gm[k], glo[k], ghi[k], nlo[k], nhi[k], npix, cst)
                if not final:
                    continue
                # 4. geometry / read / sharpen backward
                if geo == 0:
                    if blurred:
                        if prm[b, 0, 3] <= 0.5:  # the uint8 domain rounds: no gradient
                            _blur_back(srcf, sb, gsrc, ss, g, i, C, H, W, scale, btaps[b], need_src, gtaps[b], line, gline)
                    elif downscaled:
                        if prm[b, 0, 3] <= 0.5 and need_src:  # the uint8 domain rounds: no gradient
                            _downscale_back(gsrc, sb, ss, g, i, C, H, W, scale, prm[b, 0, 0], prm[b, 0, 1], xs, ys, cst)
                    elif convolved:
                        if prm[b, 0, 3] <= 0.5:
                            _convolve_back(srcf, sb, gsrc, ss, g, i, C, H, W, scale, kern[b], need_src, gkern[b], line, gline,
                                           ring[0], cst)
                    elif sharp and i > 0 and i < H - 1:
                        a0 = prm[b, 0, 0]
                        _sharpen_back(srcf, sb, gsrc, sb, ss, g, i, C, W, scale, a0, need_src, gprm[b, 0], cst)
                        if fold:
                            _sharpen_back(srcf, sb, gsrc_u, 0, ss, u, i, C, W, scale, a0, need_src, gprm_u[0], cst)
                    elif need_src:
                        _read_back(gsrc, sb + i * ss[2], ss[1], ss[3], C, W, scale, g)
                        if fold:
                            _read_back(gsrc_u, i * ss[2], ss[1], ss[3], C, W, scale, u)
                elif geo == 1 and (need_src or need_fill):
                    _nearest_back_row(gsrc, sb, ss[1], C, Wo, scale, has_fill, need_src, ofs, ms, g, gfill[b], cst)
                    if fold:
                        _nearest_back_row(gsrc_u, 0, ss[1], C, Wo, scale, has_fill, need_src, ofs, ms, u, gfill_u, cst)
                elif geo == 2 and (need_src or need_geo or need_fill):  # only what is asked
                    if need_geo:
                        _coords_grad_row(fs, iv, mat[b], win[b], xs, ys[i], Wo, cst, crd)
                    _bilinear_back_row(g, C, Wo, scale, has_fill, fill[b], taps, wt, ms, crd, need_geo, ra[0], gw, gfill[b], cst)
                    if need_geo:
                        _matrix_back_row(Wo, xs, ys[i], crd, ra[0], gmat[b], cst)
                    if need_src:
                        _scatter_bilinear(gsrc_u, S, 0, C, Wo, ofs, wt, gw)
                    if fold:
                        _bilinear_back_row(u, C, Wo, scale, has_fill, fill[b], taps, wt, ms, crd, need_geo, ra[1], hw, gfill_u, cst)
                        if need_geo:
                            _matrix_back_row(Wo, xs, ys[i], crd, ra[1], gmat_u, cst)
                        if need_src:
                            _scatter_bilinear(gsrc_u, S, C, C, Wo, ofs, wt, hw)
        if interleaved:
            _unpack(gsrc_u, S, C, H * W, fold, gmf, gsrc, sb, ss[1])
        if fold:  # add the mean's share: its gradient times the mean stream's, then clear the stream
            _fold_in(sb, n_img, kc, gmf, need_src and not interleaved, gsrc, gprm[b], gmat[b], gfill[b], gsrc_u, gprm_u, gmat_u,
                     gfill_u)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# host side


def _first_is(stage: Stage, op: Op, tensor: torch.Tensor | None) -> bool:
    """``op`` may run at k = 0 of this stage (no geometry, its tensor given)."""
    return stage.geometry is None and tensor is not None and stage.program.shape[1] > 0 and int(op) in stage.codes_at(0)


def _blur_first(stage: Stage) -> bool:
    return _first_is(stage, Op.GAUSSIAN_BLUR, stage.taps)


def supports(src: torch.Tensor, stage: Stage, epilogue: Epilogue | None) -> bool:
    """CPU tensors; no quantized geometry; no folded SHARPNESS (``fastaug.plan.unfold`` first); not a stage of
    ``fastaug.plan.reference_backward`` (random ops: covered)."""
    if src.device.type != "cpu" or not src.is_floating_point() or stage.folds:
        return False
    if stage.geometry is not None and stage.geometry.quantize:
        return False
    neighbourhood = _blur_first(stage) or _first_is(stage, Op.CONVOLVE, stage.kernel) or _first_is(stage, Op.DOWNSCALE, stage.program)
    if neighbourhood and stage.may_run(Op.CONTRAST):
        return False  # a folded CONTRAST's mean stream has no taps / kernel gradient: the reference's
    return not reference_backward(stage, fused_random=True, fused_neighbourhood=True)


def _np(t: torch.Tensor | None, dtype, shape) -> np.ndarray:
    if t is None:
        return np.zeros(shape, dtype=dtype)
    return np.ascontiguousarray(t.detach().cpu().reshape(shape).numpy(), dtype=dtype)


def _scratch(k: int, c: int, wo: int, nr: int, ftype, acc_len: int, radius: int = 0) -> tuple[np.ndarray, ...]:
    """One thread's scratch of :func:`run_backward` (row stack, gradient rows, resampling rows, small sums; the
    sample-sized accumulator of ``acc_len`` elements: the folded mean's stream, or the interleaved bilinear scatter)."""
    f64 = np.float64
    return (
        np.empty((k + 1, c, wo), ftype), np.empty((4, c, wo), ftype), np.empty((4, wo), ftype), np.empty(wo, ftype),
        np.empty((4, wo), np.int32), np.empty((c, 4 * wo), ftype), np.empty((14, wo), ftype), np.empty((2, 3, wo), ftype),
        np.empty((2, wo), np.int64), np.zeros((7, max(c, NUM_PARAMS)), f64), np.zeros(k, f64), np.zeros((k, c), f64),
        np.zeros((k, c), f64), np.zeros((k, c), f64), np.zeros((k, c), f64), np.zeros((nr, c), f64),
        np.zeros(acc_len, ftype), np.zeros((k, NUM_PARAMS), f64), np.zeros(13, f64), np.zeros((0, 2), ftype),
        np.empty((c, wo), ftype), np.empty((4, wo + 2), ftype),
        np.empty((c, wo + 2 * radius), ftype), np.empty((c, wo + 2 * radius), ftype), np.empty((2 * radius + 1, c, wo), ftype),
    )  # fmt: skip


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
    gout, gstrides = _flat(grad.detach().to(work))
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
    # flat like x (contiguous), in the working dtype; zeroed by the kernel, sample by sample (no page faults here)
    g_src = engine.empty((b, c, h, w), work, x.device) if needs.src else None
    gsrc = g_src.view(-1).numpy() if needs.src else np.zeros(1, ftype)
    gprm = np.zeros((b, k, NUM_PARAMS), np.float64)
    gmat = np.zeros((b, 13), np.float64)  # the matrix [0:9] and the window [9:13]
    gfill, gmean, gstd = np.zeros((b, c)), np.zeros((b, c)), np.zeros((b, c))
    grv = np.zeros((b, nr, c))
    blur = _blur_first(stage)
    t = stage.taps.shape[-1] if blur else 0
    radius = (t - 1) // 2 if blur else 0
    btaps = _np(stage.taps, ftype, (b, 2, t)) if blur else np.zeros((b, 2, 0), ftype)  # [B, 2, 0]: no blur
    gtaps = np.zeros((b, 2, t), np.float64)
    conv = _first_is(stage, Op.CONVOLVE, stage.kernel)
    tk = stage.kernel.shape[-1] if conv else 0
    radius = max(radius, (tk - 1) // 2 if conv else 0)
    kern = _np(stage.kernel, ftype, (b, tk, tk)) if conv else np.zeros((b, 0, 0), ftype)  # [B, 0, 0]: no convolution
    gkern = np.zeros((b, tk, tk), np.float64)
    args = (
        xnp.reshape(-1), np.array(x.stride(), np.int64), c, h, w, fs, iv, mat, win, fill,
        np.arange(wo, dtype=ftype), np.arange(ho, dtype=ftype), codes, prm, stflag,
        _np(stats, ftype, (b, k, c, 2)), _np(luts, ftype, (b, k, c, 256)), fused.constants(ftype),
        ho, wo, gout, gstrides, epilogue is not None, mean, std, rects, rphase, rvals, bool(needs.src),
        bool(needs.matrix or needs.window), bool(needs.fill), gsrc, gprm, gmat,
        gfill, gmean, gstd, grv, _np(stage.keys, np.int64, (b, k)), btaps, gtaps, kern, gkern,
    )  # fmt: skip
    # a sample's accumulator: a bilinear scatter interleaves the image gradient (2 streams if a CONTRAST may fold)
    fold = stage.may_run(Op.CONTRAST, positions=range(k))
    bilinear = geo is not None and geo.bilinear
    acc_len = (2 if fold else 1) * c * h * w if bilinear else (c * h * w if fold else 1)
    acc_len = acc_len if needs.src else 1
    run_chunked(run_backward, b, args, lambda: _scratch(k, c, wo, nr, ftype, acc_len, radius))  # tasks: samples

    def back(arr: np.ndarray, ref: torch.Tensor | None, want: bool) -> torch.Tensor | None:
        if not want or ref is None:
            return None
        return torch.from_numpy(arr).reshape(ref.shape).to(ref.dtype)

    return StageGrads(
        src=g_src,
        params=back(gprm, stage.params, needs.params),
        matrix=back(gmat[:, :9], None if geo is None else geo.matrix, needs.matrix),
        window=back(gmat[:, 9:], None if geo is None or not geo.clamp else geo.window, needs.window),
        fill=back(gfill, None if geo is None else geo.fill, needs.fill),
        mean=back(gmean, None if ep is None else ep.mean, needs.mean),
        std=back(gstd, None if ep is None else ep.std, needs.std),
        rect_values=back(grv, None if ep is None else ep.rect_values, needs.rect_values),
        taps=back(gtaps, stage.taps if blur else None, needs.taps),
        kernel=back(gkern, stage.kernel if conv else None, needs.kernel),
    )
