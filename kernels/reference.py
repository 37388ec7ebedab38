"""Plain-torch implementation of the Plan semantics (see ``fastaug/plan.py``).

It is the oracle every other backend is tested against and, being plain torch, the ground truth for
autograd. Everything is batched; per-sample programs are evaluated by computing each op for the whole
batch and selecting per sample (no host sync). Math runs in float32, or float64 in a stage whose input is float64
(only the first stage of a Plan on float64 input: ``engine.run_stage`` keeps intermediate stage outputs in float32);
the statistics tables are in the same working dtype (``engine.table_dtype``): float64 minima / maxima / gray means
in a float64 stage, so AUTOCONTRAST's extremes are the pixels' own values."""

from __future__ import annotations

import torch

from fastaug.ops.catalogue import LIVE_OPS, ST_OPS, decode_dropout_mode
from fastaug.ops.counter import fog_noise, pixel_normal, pixel_uniform
from fastaug.ops.superpixels import superpixels
from fastaug.plan import EPS_TO_UINT8, Epilogue, Geometry, Op, Reduction, Stage

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
SHARPNESS_KERNEL = ((1.0, 1.0, 1.0), (1.0, 5.0, 1.0), (1.0, 1.0, 1.0))


def _work_dtype(src: torch.Tensor) -> torch.dtype:
    return torch.float64 if src.dtype == torch.float64 else torch.float32


def read(src: torch.Tensor, stage: Stage) -> torch.Tensor:
    """The stage input as working values ``src * in_scale``."""
    v = src.to(_work_dtype(src))
    return v * stage.in_scale if stage.in_scale != 1.0 else v


def _coordinates(geometry: Geometry, out_size: tuple[int, int], dtype: torch.dtype):
    """Input-space coordinates X, Y [B,Ho,Wo] of every output pixel."""
    ho, wo = out_size
    m = geometry.matrix.to(dtype)
    dev = m.device
    ys = torch.arange(ho, device=dev, dtype=dtype).view(1, ho, 1)
    xs = torch.arange(wo, device=dev, dtype=dtype).view(1, 1, wo)
    if geometry.displacement is not None:  # elastic: per output pixel offsets before the matrix
        d = geometry.displacement.to(dtype)
        xs, ys = xs + d[..., 0], ys + d[..., 1]

    def row(r: int) -> torch.Tensor:
        return m[:, r, 0].view(-1, 1, 1) * xs + m[:, r, 1].view(-1, 1, 1) * ys + m[:, r, 2].view(-1, 1, 1)

    xh, yh, wh = row(0), row(1), row(2)
    return xh / wh, yh / wh


def resample(v: torch.Tensor, geometry: Geometry, out_size: tuple[int, int]) -> torch.Tensor:
    """One resampling per sample (nearest or bilinear), fill as in the Plan contract."""
    b, c, h, w = v.shape
    x, y = _coordinates(geometry, out_size, v.dtype)
    win = geometry.window.to(v.dtype)
    x_lo, y_lo, x_hi, y_hi = (win[:, i].view(-1, 1, 1) for i in range(4))
    if geometry.clamp:
        x = torch.minimum(torch.maximum(x, x_lo), x_hi)
        y = torch.minimum(torch.maximum(y, y_lo), y_hi)
    flat = v.reshape(b, c, h * w)

    def tap(u: torch.Tensor, t: torch.Tensor):
        valid = (u >= 0) & (u <= w - 1) & (t >= 0) & (t <= h - 1)
        if not geometry.clamp:
            valid = valid & (u >= x_lo) & (u <= x_hi) & (t >= y_lo) & (t <= y_hi)
        idx = (t.clamp(0, h - 1) * w + u.clamp(0, w - 1)).long().reshape(b, 1, -1).expand(b, c, -1)
        val = flat.gather(2, idx).reshape(b, c, *u.shape[1:])
        return val, valid.unsqueeze(1).to(v.dtype)

    if geometry.bilinear:
        u0, t0 = torch.floor(x), torch.floor(y)
        fx, fy = (x - u0).unsqueeze(1), (y - t0).unsqueeze(1)
        s = torch.zeros((b, c) + tuple(out_size), dtype=v.dtype, device=v.device)
        m = torch.zeros((b, 1) + tuple(out_size), dtype=v.dtype, device=v.device)
        for du, dt, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            val, valid = tap(u0 + du, t0 + dt)
            s = s + wt * valid * val
            m = m + wt * valid
    else:
        s, m = tap(torch.round(x), torch.round(y))
        s = s * m
    if geometry.fill is not None:
        f = geometry.fill.to(v.dtype).view(b, c, 1, 1)
        if geometry.quantize:  # a uint8 image's fill: clamped into [0, 255] (the Plan contract)
            f = f.clamp(0.0, 255.0)
        s = torch.where(m < 0.5, f, s) if not geometry.bilinear else (s - f) * m + f
    return torch.round(s) if geometry.quantize else s


def _gray(v: torch.Tensor) -> torch.Tensor:
    r, g, b = v[:, 0:1], v[:, 1:2], v[:, 2:3]
    return r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]


def _rgb_to_hsv(v: torch.Tensor):
    r, g, b = v[:, 0], v[:, 1], v[:, 2]
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    eqc = maxc == minc
    span = maxc - minc
    one = torch.ones_like(maxc)
    s = span / torch.where(eqc, one, maxc)
    div = torch.where(eqc, one, span)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~is_r & ~(maxc == g)
    h = (bc - gc) * is_r + (2.0 + rc - bc) * is_g + (4.0 + gc - rc) * is_b
    h = torch.fmod(h / 6.0 + 1.0, 1.0)
    return h, s, maxc


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = torch.remainder(i, 6.0)
    p = (val * (1.0 - s)).clamp(0.0, 1.0)
    q = (val * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (val * (s * f + (1.0 - s))).clamp(0.0, 1.0)
    sel = [i == n for n in range(6)]

    def pick(*choices):
        out = choices[5]
        for n in range(4, -1, -1):
            out = torch.where(sel[n], choices[n], out)
        return out

    r = pick(val, q, p, p, t, val)
    g = pick(t, val, val, q, p, p)
    b = pick(p, p, t, val, val, q)
    return torch.stack((r, g, b), dim=1)


def gamma_pow(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """GAMMA's ``x ** a``: in float64, rounded to ``x``'s dtype. In float32 that is the correctly rounded power
    (but for a float64 result within ~1e-16 of a float32 rounding boundary), which every backend computes the same
    way (numba: float64 ``**``, Triton: float64 libdevice.pow), so GAMMA's uint8 results agree exactly; a float32
    ``pow`` is within an ulp only (torch: vectorised Sleef or libm by position, libm powf, libdevice), and floor(x *
    255.999) turned that ulp into a step of 1."""
    if x.dtype == torch.float64:
        return torch.pow(x, a)
    return torch.pow(x.double(), a.double()).to(x.dtype)


def _sharpen(v: torch.Tensor, a: torch.Tensor, q: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    b, c, h, w = v.shape
    if h <= 2 or w <= 2:
        return v
    k = torch.tensor(SHARPNESS_KERNEL, dtype=v.dtype, device=v.device) / 13.0
    blur = torch.nn.functional.conv2d(v.reshape(b * c, 1, h, w), k.view(1, 1, 3, 3)).reshape(b, c, h - 2, w - 2)
    blur = torch.where(q, torch.round(blur), blur)
    inner = v[:, :, 1:-1, 1:-1]
    inner = torch.clamp(inner + (1.0 - a) * (blur - inner), torch.zeros_like(bound), bound)  # gradient: 0 <= y <= bound
    inner = torch.where(q, torch.floor(inner), inner)
    out = v.clone()
    out[:, :, 1:-1, 1:-1] = inner
    return out


def reflect_index(n: int, radius: int, device) -> torch.Tensor:
    """Indices ``reflect(j)`` for j = -radius..n-1+radius: mirrored at the edges without repeating them
    (torch's "reflect" padding, OpenCV's BORDER_REFLECT_101); needs radius < n (n == 1: the pixel itself)."""
    j = torch.arange(-radius, n + radius, device=device)
    if n == 1:
        return torch.zeros_like(j)
    period = 2 * (n - 1)
    j = torch.remainder(j, period)
    return torch.where(j > n - 1, period - j, j)


def _blur(v: torch.Tensor, taps: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """GAUSSIAN_BLUR: a separable per-sample convolution with reflected borders, x first (see the catalogue)."""
    b, c, h, w = v.shape
    t = taps.shape[-1]
    r = (t - 1) // 2
    wts = taps.to(v.dtype)
    vx = v.index_select(3, reflect_index(w, r, v.device))
    acc = torch.zeros_like(v)
    for i in range(t):
        acc = acc + wts[:, 0, i].view(b, 1, 1, 1) * vx[..., i : i + w]
    vy = acc.index_select(2, reflect_index(h, r, v.device))
    out = torch.zeros_like(v)
    for i in range(t):
        out = out + wts[:, 1, i].view(b, 1, 1, 1) * vy[:, :, i : i + h]
    return torch.where(q, torch.round(out), out)


def _convolve(v: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Per-sample 2-D correlation with reflected borders (CONVOLVE before its clamp; see the catalogue)."""
    b, c, h, w = v.shape
    t = kernel.shape[-1]
    r = (t - 1) // 2
    k = kernel.to(v.dtype)
    padded = v.index_select(2, reflect_index(h, r, v.device)).index_select(3, reflect_index(w, r, v.device))
    acc = torch.zeros_like(v)
    for dy in range(t):
        for dx in range(t):
            acc = acc + k[:, dy, dx].view(b, 1, 1, 1) * padded[:, :, dy : dy + h, dx : dx + w]
    return acc


def _down_sizes(a: torch.Tensor, h: int, w: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """DOWNSCALE's per-sample size (hd, wd) = max(rint(H * a), 1), max(rint(W * a), 1), in the working dtype."""
    return torch.clamp(torch.round(a.to(dtype) * float(h)), min=1.0), torch.clamp(torch.round(a.to(dtype) * float(w)), min=1.0)


def _resize_taps(pos: torch.Tensor, ratio: torch.Tensor, n_in: torch.Tensor, bilinear: torch.Tensor):
    """Source taps (i0, i1, lam) of output positions ``pos`` [B,P] along an axis of ``n_in`` [B,1] values read with
    ``ratio`` [B,1] input pixels per output pixel: nearest ``min(floor(pos * ratio), n_in - 1)``; bilinear
    ``s = max((pos + 0.5) * ratio - 0.5, 0)``, ``i0 = min(floor(s), n_in - 1)``, ``i1 = min(i0 + 1, n_in - 1)``,
    ``lam = s - floor(s)``."""
    last = n_in - 1.0
    near = torch.minimum(torch.floor(pos * ratio), last)
    src = torch.clamp((pos + 0.5) * ratio - 0.5, min=0.0)
    f = torch.floor(src)
    i0 = torch.minimum(f, last)
    i1 = torch.minimum(i0 + 1.0, last)
    lam = torch.where(bilinear, src - f, torch.zeros_like(src))
    return torch.where(bilinear, i0, near).long(), torch.where(bilinear, i1, near).long(), lam


def _gather2(v: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    b, c, h, w = v.shape
    t = v.gather(2, rows.view(b, 1, -1, 1).expand(b, c, rows.shape[1], w))
    return t.gather(3, cols.view(b, 1, 1, -1).expand(b, c, rows.shape[1], cols.shape[1]))


def _downscale(v: torch.Tensor, a: torch.Tensor, mode: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """DOWNSCALE (see the catalogue): resize each sample to (hd, wd) and back, nearest or bilinear each way."""
    b, c, h, w = v.shape
    dt = v.dtype
    a = a.view(b, 1).to(dt)
    a = torch.where(a > 2.0**-20, a, 2.0**-20)  # the catalogue's floor (NaN too): indices stay finite
    hd, wd = _down_sizes(a, h, w, dt)
    m = mode.view(b).round().long()
    down_bil, up_bil = (m & 1).bool().view(b, 1), (m & 2).bool().view(b, 1)
    fh, fw = torch.full_like(hd, float(h)), torch.full_like(wd, float(w))
    inv = 1.0 / a  # down: input pixels per small-image pixel, cv2's 1 / fx
    y = torch.arange(h, device=v.device, dtype=dt).expand(b, h)
    x = torch.arange(w, device=v.device, dtype=dt).expand(b, w)
    qq = q.view(b, 1, 1, 1)

    def down(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:  # the small image at (rows, cols)
        r0, r1, ly = _resize_taps(rows.to(dt), inv, fh, down_bil)
        c0, c1, lx = _resize_taps(cols.to(dt), inv, fw, down_bil)
        ly, lx = ly.view(b, 1, -1, 1), lx.view(b, 1, 1, -1)
        top = (1.0 - lx) * _gather2(v, r0, c0) + lx * _gather2(v, r0, c1)
        bot = (1.0 - lx) * _gather2(v, r1, c0) + lx * _gather2(v, r1, c1)
        d = (1.0 - ly) * top + ly * bot
        return torch.where(qq, torch.round(d), d)

    u0, u1, uy = _resize_taps(y, hd / fh, hd, up_bil)
    v0, v1, ux = _resize_taps(x, wd / fw, wd, up_bil)
    uy, ux = uy.view(b, 1, -1, 1), ux.view(b, 1, 1, -1)
    top = (1.0 - ux) * down(u0, v0) + ux * down(u0, v1)
    bot = (1.0 - ux) * down(u1, v0) + ux * down(u1, v1)
    out = (1.0 - uy) * top + uy * bot
    return torch.where(qq, torch.round(out), out)


RUNS_WHOLE_IMAGE_OPS = True  # SUPERPIXELS in apply_op (the engine's prologue is for the other backends)
FOLDS_SHARPNESS = True  # a folded SHARPNESS (plan.Fold) in apply_op: the engine need not split the stage there


def superpixels_of(v: torch.Tensor, stage: Stage, active: torch.Tensor) -> torch.Tensor:
    """SUPERPIXELS at k = 0 on working values ``v`` for the samples ``active`` [B] (others: a harmless p = 0, n = 1)."""
    prm = stage.params[:, 0].to(v.dtype)
    p = torch.where(active, prm[:, 0], 0.0)
    n = torch.where(active, torch.round(prm[:, 1]), 1.0).clamp(1, stage.max_segments).long()
    out = superpixels(v, p, n, stage.keys[:, 0], max_segments=stage.max_segments, uint8_domain=False,
                      max_size=stage.segment_size or None)
    q = (prm[:, 3] > 0.5).view(-1, 1, 1, 1)
    return torch.where(q, torch.round(out).clamp(0.0, 255.0), out)  # the uint8 domain: means rounded


def apply_op(v: torch.Tensor, k: int, stage: Stage, stats: torch.Tensor, luts: torch.Tensor) -> torch.Tensor:
    """Apply op k of every sample's program (per-sample selection by op code)."""
    b, c = v.shape[:2]
    code = stage.program[:, k].view(b, 1, 1, 1)
    prm = stage.params[:, k].to(v.dtype)
    a, bb = prm[:, 0].view(b, 1, 1, 1), prm[:, 1].view(b, 1, 1, 1)
    q = (prm[:, 3] > 0.5).view(b, 1, 1, 1)
    bound = torch.where(q, 255.0, 1.0).to(v.dtype)
    zero = torch.zeros_like(bound)

    def trunc(x):
        return torch.where(q, torch.floor(x), x)

    def clip(x):  # torch.clamp, as torchvision clamps: the gradient passes where 0 <= x <= bound, bounds included
        return torch.clamp(x, zero, bound)

    out = v
    present = set(stage.codes_at(k))

    def choose(op: Op, result: torch.Tensor):
        nonlocal out
        out = torch.where(code == int(op), result, out)

    if Op.BRIGHTNESS in present:
        choose(Op.BRIGHTNESS, trunc(clip(v * a)))
    if Op.CONTRAST in present:
        mean = stats[:, k, 0, 0].to(v.dtype).view(b, 1, 1, 1)
        choose(Op.CONTRAST, trunc(clip(v * a + mean * (1.0 - a))))
    if c == 3:
        gray = trunc(_gray(v))
        if Op.SATURATION in present:
            choose(Op.SATURATION, trunc(clip(v * a + gray * (1.0 - a))))
        if Op.GRAYSCALE in present:
            choose(Op.GRAYSCALE, gray.expand_as(v))
        per_channel = prm[:, :3].view(b, 3, 1, 1)  # (r, g, b) values of RGB_SHIFT / RGB_GAIN
        if Op.RGB_SHIFT in present:
            choose(Op.RGB_SHIFT, trunc(clip(v + per_channel)))
        if Op.RGB_GAIN in present:
            choose(Op.RGB_GAIN, trunc(clip(v * per_channel)))
        if Op.HUE in present:
            x = torch.where(q, v * (1.0 / 255.0), v)
            h, s, val = _rgb_to_hsv(x)
            h = torch.remainder(h + a.view(b, 1, 1), 1.0)
            x = _hsv_to_rgb(h, s, val)
            choose(Op.HUE, torch.where(q, torch.floor(x * EPS_TO_UINT8), x))
    if Op.GAMMA in present:
        x = torch.where(q, v * (1.0 / 255.0), v)
        x = torch.where(code == int(Op.GAMMA), x, torch.ones_like(x))  # other samples: no NaN in pow's backward
        # a black pixel's gradient is 0, not d(x^a)/dx = inf (a < 1; inf x 0 = NaN further back); values unchanged
        pos = x > 0.0
        x = torch.where(pos, gamma_pow(torch.where(pos, x, torch.ones_like(x)), a), gamma_pow(x.detach(), a))
        x = torch.where(bb != 1.0, (x * bb).clamp(0.0, 1.0), x)
        choose(Op.GAMMA, torch.where(q, torch.floor(x * EPS_TO_UINT8), x))
    folded = any(f.position == k for f in stage.folds)
    if Op.SHARPNESS in present and folded:  # a folded SHARPNESS: the chain so far around each pixel
        choose(Op.SHARPNESS, _sharpen(v, a, q, bound))
    if k == 0 and stage.geometry is None:  # neighbourhood ops: the stage input around each pixel
        if Op.SHARPNESS in present and not folded:
            choose(Op.SHARPNESS, _sharpen(v, a, q, bound))
        if Op.GAUSSIAN_BLUR in present and stage.taps is not None:
            choose(Op.GAUSSIAN_BLUR, _blur(v, stage.taps, q))
        if Op.CONVOLVE in present and stage.kernel is not None:
            acc = _convolve(v, stage.kernel)
            choose(Op.CONVOLVE, torch.where(q, torch.round(clip(acc)), clip(acc)))
        if Op.SUPERPIXELS in present and stage.keys is not None and stage.max_segments > 0:
            choose(Op.SUPERPIXELS, superpixels_of(v, stage, code.view(b) == int(Op.SUPERPIXELS)))
        if Op.DOWNSCALE in present:
            down = code.view(b) == int(Op.DOWNSCALE)  # other samples: a harmless scale and mode (their values are not used)
            choose(Op.DOWNSCALE, _downscale(v, torch.where(down, a.view(b), 1.0), torch.where(down, bb.view(b), 0.0), q))
    if Op.INVERT in present:
        choose(Op.INVERT, bound - v)
    if Op.POSTERIZE in present:
        bits = a.detach()  # an integer: no derivative (else floor(v * 2^bits) / 2^bits would give it one through the division)
        step = torch.pow(2.0, 8.0 - bits)
        levels = torch.pow(2.0, bits)
        up = torch.floor(v / step) * step
        fp = torch.minimum(torch.clamp(torch.floor(v * levels), min=0.0), levels - 1.0) / levels
        choose(Op.POSTERIZE, torch.where(q, up, fp))
    if Op.SOLARIZE in present:
        choose(Op.SOLARIZE, torch.where(v >= a, bound - v, v))
    if Op.AUTOCONTRAST in present:
        lo = stats[:, k, :, 0].to(v.dtype).view(b, c, 1, 1)
        hi = stats[:, k, :, 1].to(v.dtype).view(b, c, 1, 1)
        eq = hi == lo
        scale = torch.where(eq, torch.ones_like(hi), (hi - lo) * (1.0 / bound))
        lo = torch.where(eq, torch.zeros_like(lo), lo)
        choose(Op.AUTOCONTRAST, trunc(clip((v - lo) / scale)))
    if Op.EQUALIZE in present:
        u8 = torch.nan_to_num(torch.where(q, v, torch.floor(v * EPS_TO_UINT8)), nan=0.0).clamp(0, 255).long()  # NaN: bin 0
        lut = luts[:, k].to(v.dtype)  # [B,C,256]
        mapped = lut.gather(2, u8.reshape(b, c, -1)).reshape(v.shape)
        choose(Op.EQUALIZE, torch.where(q, mapped, mapped * (1.0 / 255.0)))
    if Op.GAUSSIAN_NOISE in present and stage.keys is not None:
        h, w = v.shape[-2:]
        z = pixel_normal(stage.keys[:, k], c, h, w, v.dtype)
        clip_on = prm[:, 2].view(b, 1, 1, 1) > 0.5
        mean255, sigma255 = a * 255.0, bb * 255.0
        noise = torch.where(q, torch.trunc(mean255 + z * sigma255), a + z * bb)
        x = v + noise
        x = torch.where(clip_on, clip(x), torch.where(q, x - 256.0 * torch.floor(x / 256.0), x))
        choose(Op.GAUSSIAN_NOISE, x)
    if stage.keys is not None and present & {Op.PIXEL_DROPOUT, Op.SALT_AND_PEPPER, Op.MULTIPLICATIVE_NOISE}:
        h, w = v.shape[-2:]
        key = stage.keys[:, k]
        shared = pixel_uniform(key, 1, h, w, v.dtype)
        per_channel, t = decode_dropout_mode(prm[:, 2].detach())
        u = torch.where(per_channel.view(b, 1, 1, 1), pixel_uniform(key, c, h, w, v.dtype), shared)
        if Op.PIXEL_DROPOUT in present:  # a slot of one drop value per channel drops only channel t (-1: every channel)
            t = t.view(b, 1, 1, 1)
            mine = (t < 0) | (torch.arange(c, device=v.device, dtype=t.dtype).view(1, c, 1, 1) == t)
            choose(Op.PIXEL_DROPOUT, torch.where((u < a) & mine, bb, v))
        if Op.SALT_AND_PEPPER in present:
            choose(Op.SALT_AND_PEPPER, torch.where(shared < a * bb, bound, torch.where(shared < a, zero, v)))
        if Op.MULTIPLICATIVE_NOISE in present:
            choose(Op.MULTIPLICATIVE_NOISE, trunc(clip(v * (a + (bb - a) * u))))
    if Op.FOG in present and stage.keys is not None:
        h, w = v.shape[-2:]
        n = fog_noise(stage.keys[:, k], prm[:, 1], h, w, v.dtype)
        t = torch.where(code == int(Op.FOG), prm[:, 2].view(b, 1, 1, 1), 0.0)  # other samples: no 0 / 0
        alpha = a * torch.clamp((n - t) / (1.0 - t), 0.0, 1.0)
        choose(Op.FOG, trunc(v + alpha * (bound - v)))
    if Op.TO_FLOAT in present:
        choose(Op.TO_FLOAT, v * (1.0 / 255.0))
    if Op.TO_UINT8 in present:
        choose(Op.TO_UINT8, torch.floor(v * EPS_TO_UINT8))
    return out


def chain(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, stop: int) -> torch.Tensor:
    """Working values after geometry and ops 0..stop-1 of the stage."""
    v = read(src, stage)
    if stage.geometry is not None:
        v = resample(v, stage.geometry, stage.out_size or tuple(src.shape[-2:]))
    for k in range(stop):
        v = apply_op(v, k, stage, stats, luts)
    return v


def reduce(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, stop: int | torch.Tensor) -> Reduction:
    """Statistics of each sample's chain before op ``stop`` (all kinds, for every sample).

    ``stop``: an int k (every sample) or a per-sample integer tensor [B]; a sample whose stop lies
    outside [0, K) is skipped (its entries are unspecified; here: those before op 0)."""
    if not isinstance(stop, torch.Tensor):
        v = chain(src, stage, stats, luts, stop)
        at = torch.full((src.shape[0],), int(stop), dtype=torch.int64, device=stage.params.device)
    else:
        k_total = stage.program.shape[1]
        at = stop.to(device=stage.params.device, dtype=torch.int64).reshape(-1)
        at = torch.where((at < 0) | (at >= k_total), 0, at)
        v = chain(src, stage, stats, luts, 0)
        for k in range(k_total):
            v = torch.where((at > k).view(-1, 1, 1, 1), apply_op(v, k, stage, stats, luts), v)
    b, c = v.shape[:2]
    q = (stage.params[torch.arange(b, device=at.device), at, 3] > 0.5).view(b, 1, 1, 1)
    if c == 3:
        gray = torch.where(q, torch.floor(_gray(v)), _gray(v))
    else:
        gray = v[:, :1]
    gray_sum = gray.to(torch.float64).sum(dim=(1, 2, 3))
    flat = v.reshape(b, c, -1)
    u8 = torch.nan_to_num(torch.where(q.view(b, 1, 1), flat, torch.floor(flat * EPS_TO_UINT8)), nan=0.0).clamp(0, 255).long()
    hist = torch.zeros(b, c, 256, dtype=torch.int64, device=v.device)
    hist.scatter_add_(2, u8, torch.ones_like(u8))
    lo, hi = _min_max(flat, 2)
    return Reduction(gray_sum=gray_sum, minimum=lo, maximum=hi, hist=hist)  # min / max in the working dtype


def _min_max(v: torch.Tensor, dim) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum and maximum over ``dim`` of the values that are not NaN (AUTOCONTRAST's statistics, every backend: a NaN
    pixel is left out; a channel of NaN only: +inf, -inf). ``amin`` / ``amax`` alone would make one NaN pixel the whole
    channel's NaN; ties among the others share the gradient as ``amin`` / ``amax`` do."""
    nan = torch.isnan(v)
    return torch.where(nan, float("inf"), v).amin(dim), torch.where(nan, -float("inf"), v).amax(dim)


def _in_rects(epilogue: Epilogue, phase: int, v: torch.Tensor) -> torch.Tensor:
    b, c, h, w = v.shape
    if epilogue.rects is None or epilogue.rects.shape[1] == 0:
        return v
    ys = torch.arange(h, device=v.device).view(1, h, 1)
    xs = torch.arange(w, device=v.device).view(1, 1, w)
    for r in range(epilogue.rects.shape[1]):
        x0, y0, x1, y1 = (epilogue.rects[:, r, i].view(b, 1, 1) for i in range(4))
        on = (epilogue.rect_phase[:, r].view(b, 1, 1) == phase) & (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        val = epilogue.rect_values[:, r].to(v.dtype).view(b, c, 1, 1)
        v = torch.where(on.unsqueeze(1), val, v)
    return v


def finish(v: torch.Tensor, epilogue: Epilogue) -> torch.Tensor:
    """Erasing, normalize and output channel selection (before the cast)."""
    b, c = v.shape[:2]
    v = _in_rects(epilogue, 1, v)
    if epilogue.out_scale != 1.0:
        v = v * epilogue.out_scale
    if epilogue.mean is not None:
        v = (v - epilogue.mean.to(v.dtype).view(b, c, 1, 1)) / epilogue.std.to(v.dtype).view(b, c, 1, 1)
    v = _in_rects(epilogue, 2, v)
    return v[:, : epilogue.out_channels]


def cast(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return v.to(dtype)
    return torch.round(v).clamp(0, 255).to(dtype)


def apply(
    src: torch.Tensor,
    stage: Stage,
    stats: torch.Tensor,
    luts: torch.Tensor,
    epilogue: Epilogue | None,
    out: torch.Tensor,
) -> None:
    """Run the stage and write ``out`` (float32 working values, or the epilogue's output)."""
    v = chain(src, stage, stats, luts, stage.program.shape[1])
    if epilogue is not None:
        out.copy_(cast(finish(v, epilogue), out.dtype))
    else:
        out.copy_(cast(v, out.dtype))  # a uint8 intermediate (an integral stage): rounded and clamped, as the kernels store it


def forward(src: torch.Tensor, stage: Stage, stats, luts, epilogue: Epilogue | None) -> torch.Tensor:
    """Differentiable form of :func:`apply` (returns instead of writing)."""
    v = chain(src, stage, stats, luts, stage.program.shape[1])
    return finish(v, epilogue) if epilogue is not None else v


# ----------------------------------------------------------------------------------------------
# autograd ground truth: the stage with statistics recomputed in the graph, straight-through ops

# ST_OPS (params[..., 2] > 0.5: straight-through) and LIVE_OPS (statistics read with a gradient): the catalogue's


def live_stats(v: torch.Tensor, stage: Stage, k: int) -> torch.Tensor:
    """stats[:, k] [B,C,2] of the chain value ``v`` in differentiable torch ops: per-channel (min, max),
    with the gray mean in entry (0, 0) for samples running CONTRAST at k (as the engine fills it)."""
    b, c = v.shape[:2]
    q = (stage.params[:, k, 3] > 0.5).view(b, 1, 1, 1)
    gray = torch.where(q, torch.floor(_gray(v)), _gray(v)) if c == 3 else v[:, :1]
    mean = gray.mean(dim=(1, 2, 3))
    lo, hi = _min_max(v, (2, 3))
    lo0 = torch.where(stage.program[:, k] == int(Op.CONTRAST), mean, lo[:, 0])
    return torch.stack([torch.cat([lo0.unsqueeze(1), lo[:, 1:]], 1), hi], -1)


def chain_live(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, straight_through: bool = False):
    """:func:`chain` over the whole program, differentiable: CONTRAST / AUTOCONTRAST read statistics
    recomputed from the chain (gradients reach the pixels through the mean / min / max); ops in
    ``ST_OPS`` flagged by ``params[..., 2] > 0.5`` (or all of them if ``straight_through``) pass the
    gradient to their input unchanged."""
    v = read(src, stage)
    if stage.geometry is not None:
        v = resample(v, stage.geometry, stage.out_size or tuple(src.shape[-2:]))
    st = stats.to(v.dtype)
    b = v.shape[0]
    for k in range(stage.program.shape[1]):
        present = set(stage.codes_at(k))
        if present & set(LIVE_OPS):
            st = torch.cat([st[:, :k], live_stats(v, stage, k).unsqueeze(1), st[:, k + 1 :]], 1)
        out = apply_op(v, k, stage, st, luts)
        if present & set(ST_OPS):
            code = stage.program[:, k]
            flag = torch.isin(code, torch.tensor([int(o) for o in ST_OPS], device=code.device))
            flag = flag & ((stage.params[:, k, 2] > 0.5) | straight_through)
            out = torch.where(flag.view(b, 1, 1, 1), v + (out - v).detach(), out)
        v = out
    return v


def forward_live(src: torch.Tensor, stage: Stage, stats, luts, epilogue: Epilogue | None, straight_through: bool = False):
    """Differentiable stage (see :func:`chain_live`): the reference's autograd ground truth."""
    v = chain_live(src, stage, stats, luts, straight_through)
    return finish(v, epilogue) if epilogue is not None else v
