"""Independent per-sample oracle of torchvision.transforms.v2.functional, in float64.

Every function takes ONE image [C,H,W] (uint8, or float in [0, 1]) and plain Python numbers and
returns what torchvision's tensor kernel returns, in the input dtype. The formulas were written from
torchvision's documented/implemented semantics (``_color.py``, ``_geometry.py``, ``_misc.py``,
``_augment.py``), not from fastaug's code:

* uint8 results of blends (brightness, contrast, saturation, sharpness, autocontrast) are truncated
  (``.to(uint8)`` of a non-negative float), grid resampling and resize results are rounded
  (``round`` = half to even), float -> uint8 ``to_dtype(scale=True)`` is ``trunc(x * 255.999)``.
* geometry builds torchvision's sampling grid (``_get_inverse_affine_matrix`` + ``_affine_grid`` or
  ``_perspective_grid``) and samples it with ``torch.nn.functional.grid_sample`` (align_corners=False,
  zero padding) in float64; ``fill`` uses torchvision's extra mask channel.
* resize is ``interpolate`` semantics: bilinear align_corners=False antialias=False (source coordinate
  ``(i + 0.5) * in/out - 0.5`` clamped at 0, upper tap clamped to the last pixel) and the legacy
  'nearest' (``floor(i * float32(in/out))``, computed in float32 exactly like torch).

Geometric oracles return a :class:`Sampled` (image, sampling coordinates in input pixel-index space,
unrounded values) so a test can exclude output pixels whose sample point sits on a nearest-rounding
tie, and uint8 values whose exact result is a k + 0.5 rounding tie, where float32 and float64 may
legitimately disagree.

Precision: everything is float64 except where torchvision's own float32 rounding decides a uint8
truncation systematically (autocontrast: the channel maximum maps to exactly 255, so whether it
truncates to 254 depends on float32 rounding; evaluated in float32 in torchvision's operation order),
and the float -> uint8 conversions (``trunc(x * 255.999)``, done in float32 like torchvision).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as tnf

F64 = torch.float64
TO_UINT8_SCALE = 255.0 + 1.0 - 1e-3  # torchvision to_dtype float -> integer: (max + 1 - eps)


# --------------------------------------------------------------------------------------------- helpers
def bound_of(dtype: torch.dtype) -> float:
    return 255.0 if dtype == torch.uint8 else 1.0


def _f64(img: torch.Tensor) -> torch.Tensor:
    return img.to(F64)


def _trunc_cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor.to(dtype)`` of a value that torchvision computed as float (uint8: truncation)."""
    if dtype == torch.uint8:
        return torch.floor(x).clamp(0, 255).to(torch.uint8)
    return x.to(dtype)


def _round_cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``round_().to(dtype)`` for integer images (grid sampling, resize)."""
    if dtype == torch.uint8:
        return torch.round(x).clamp(0, 255).to(torch.uint8)
    return x.to(dtype)


def to_unit(img: torch.Tensor) -> torch.Tensor:
    """to_dtype(img, float, scale=True) in float64: uint8 / 255."""
    x = _f64(img)
    return x / 255.0 if img.dtype == torch.uint8 else x


def from_unit(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """to_dtype(float image, dtype, scale=True): uint8 is trunc(x * 255.999) computed in float32."""
    if dtype == torch.uint8:
        y = x.to(torch.float32) * torch.tensor(TO_UINT8_SCALE, dtype=torch.float32)
        return torch.trunc(y).clamp(0, 255).to(torch.uint8)
    return x.to(dtype)


def _gray(x: torch.Tensor, floor: bool) -> torch.Tensor:
    """ITU-R 601 luma with torchvision's weights (0.2989, 0.587, 0.114); [1,H,W]."""
    g = x[0] * 0.2989 + x[1] * 0.587 + x[2] * 0.114
    if floor:
        g = torch.floor(g)
    return g.unsqueeze(0)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: float, dtype: torch.dtype) -> torch.Tensor:
    out = (x * ratio + other * (1.0 - ratio)).clamp(0.0, bound_of(dtype))
    return _trunc_cast(out, dtype)


# ------------------------------------------------------------------------------------------ color ops
def adjust_brightness(img: torch.Tensor, factor: float) -> torch.Tensor:
    out = (_f64(img) * factor).clamp(0.0, bound_of(img.dtype))
    return _trunc_cast(out, img.dtype)


def adjust_contrast(img: torch.Tensor, factor: float) -> torch.Tensor:
    x = _f64(img)
    gray = _gray(x, floor=img.dtype == torch.uint8) if img.shape[0] == 3 else x
    mean = gray.mean()
    return _blend(x, mean, factor, img.dtype)


def adjust_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    if img.shape[0] == 1:
        return img.clone()
    x = _f64(img)
    return _blend(x, _gray(x, floor=img.dtype == torch.uint8), factor, img.dtype)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """torchvision's (PIL's) RGB -> HSV, h in [0, 1)."""
    r, g, b = x[0], x[1], x[2]
    maxc = x.amax(0)
    minc = x.amin(0)
    eq = maxc == minc
    rng = maxc - minc
    s = rng / torch.where(eq, torch.ones_like(maxc), maxc)
    div = torch.where(eq, torch.ones_like(rng), rng)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.fmod(h / 6.0 + 1.0, 1.0)
    return torch.stack([h, s, maxc])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv[0], hsv[1], hsv[2]
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = torch.remainder(i.to(torch.int64), 6)
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    # sector -> (r, g, b) taken from (v, p, q, t)
    table = {0: (v, t, p), 1: (q, v, p), 2: (p, v, t), 3: (p, q, v), 4: (t, p, v), 5: (v, p, q)}
    out = torch.zeros((3, *h.shape), dtype=h.dtype)
    for k, (rr, gg, bb) in table.items():
        m = i == k
        out[0][m], out[1][m], out[2][m] = rr[m], gg[m], bb[m]
    return out


def adjust_hue(img: torch.Tensor, factor: float) -> torch.Tensor:
    if img.shape[0] == 1:
        return img.clone()
    hsv = rgb_to_hsv(to_unit(img))
    hsv[0] = torch.remainder(hsv[0] + factor, 1.0)
    return from_unit(hsv_to_rgb(hsv), img.dtype)


def adjust_gamma(img: torch.Tensor, gamma: float, gain: float = 1.0) -> torch.Tensor:
    out = torch.pow(to_unit(img), gamma)
    if gain != 1.0:
        out = (out * gain).clamp(0.0, 1.0)
    return from_unit(out, img.dtype)


SHARPNESS_KERNEL = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], dtype=F64) / 13.0


def adjust_sharpness(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Interior pixels: x + (1 - f) * (blur3x3(x) - x); border pixels untouched (any channel count)."""
    c, h, w = img.shape
    if h <= 2 or w <= 2:
        return img.clone()
    x = _f64(img)
    blur = torch.zeros(c, h - 2, w - 2, dtype=F64)
    for dy in range(3):
        for dx in range(3):
            blur += SHARPNESS_KERNEL[dy, dx] * x[:, dy : dy + h - 2, dx : dx + w - 2]
    if img.dtype == torch.uint8:
        blur = torch.round(blur)
    out = x.clone()
    inner = x[:, 1:-1, 1:-1]
    out[:, 1:-1, 1:-1] = inner + (1.0 - factor) * (blur - inner)
    return _trunc_cast(out.clamp(0.0, bound_of(img.dtype)), img.dtype)


def rgb_to_grayscale(img: torch.Tensor, num_output_channels: int = 1) -> torch.Tensor:
    if img.shape[0] == 1:
        return img.clone() if num_output_channels == 1 else img.repeat(3, 1, 1)
    g = _trunc_cast(_gray(_f64(img), floor=False), img.dtype)
    return g.expand(num_output_channels, -1, -1).clone()


def invert(img: torch.Tensor) -> torch.Tensor:
    if img.dtype == torch.uint8:
        return (255 - img.to(torch.int32)).to(torch.uint8)
    return (1.0 - _f64(img)).to(img.dtype)


def posterize(img: torch.Tensor, bits: int) -> torch.Tensor:
    bits = int(bits)
    if img.dtype == torch.uint8:
        if bits >= 8:
            return img.clone()
        mask = ((1 << bits) - 1) << (8 - bits)
        return img & mask
    levels = 1 << bits
    out = torch.floor(_f64(img) * levels).clamp(0, levels - 1) / levels
    return out.to(img.dtype)


def solarize(img: torch.Tensor, threshold: float) -> torch.Tensor:
    # torch compares a tensor with a Python scalar in the tensor's (promoted) dtype: float32 for uint8
    thr = float(torch.tensor(threshold, dtype=torch.float32 if img.dtype == torch.uint8 else img.dtype))
    x = _f64(img)
    return torch.where(x >= thr, invert(img), img)


def _image_as_uint8(img: torch.Tensor) -> torch.Tensor:
    """to_dtype(img, uint8, scale=True) for the input image itself (float32 arithmetic like torchvision)."""
    if img.dtype == torch.uint8:
        return img.clone()
    y = img.to(torch.float32) * torch.tensor(TO_UINT8_SCALE, dtype=torch.float32)
    return torch.trunc(y).to(torch.uint8)


def equalize_lut(values: np.ndarray) -> np.ndarray | None:
    """PIL's equalize LUT for one channel of uint8 values; None when the step is 0 (channel unchanged)."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.int64)
    nonzero = np.nonzero(hist)[0]
    step = (int(hist.sum()) - int(hist[nonzero[-1]])) // 255
    if step == 0:
        return None
    lut = np.zeros(256, dtype=np.int64)
    acc = step // 2
    for k in range(256):
        lut[k] = min(acc // step, 255)
        acc += int(hist[k])
    return lut


def equalize(img: torch.Tensor) -> torch.Tensor:
    q = _image_as_uint8(img).numpy()
    out = q.copy()
    for ch in range(q.shape[0]):
        lut = equalize_lut(q[ch])
        if lut is not None:
            out[ch] = lut[q[ch]].astype(np.uint8)
    res = torch.from_numpy(out)
    if img.dtype == torch.uint8:
        return res
    return (res.to(F64) / 255.0).to(img.dtype)


def autocontrast(img: torch.Tensor) -> torch.Tensor:
    """Per channel: (x - min) / ((max - min) / bound), clamped; a flat channel is left as is.

    uint8: the exact result is an integer for every pixel at the channel maximum (and for many others),
    so the truncation depends on the rounding of torchvision's float32 arithmetic; evaluate it the same
    way (float32, ``(max - min) * (1 / bound)``, then a division) instead of in float64.
    """
    bound = bound_of(img.dtype)
    x = img.to(torch.float32) if img.dtype == torch.uint8 else _f64(img)
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    eq = hi == lo
    inv_scale = torch.where(eq, torch.ones_like(hi), (hi - lo) * (1.0 / bound))
    lo = torch.where(eq, torch.zeros_like(lo), lo)
    out = ((x - lo) / inv_scale).clamp(0.0, bound)
    return _trunc_cast(out, img.dtype)


# ---------------------------------------------------------------------------------- misc / augment ops
def normalize(img: torch.Tensor, mean, std) -> torch.Tensor:
    """(x - mean) / std per channel; fastaug scales uint8 to [0, 1] first (documented)."""
    x = to_unit(img)
    c = x.shape[0]
    m = torch.as_tensor(mean, dtype=F64).flatten().expand(c).reshape(c, 1, 1)
    s = torch.as_tensor(std, dtype=F64).flatten().expand(c).reshape(c, 1, 1)
    return ((x - m) / s).to(torch.float32 if img.dtype == torch.uint8 else img.dtype)


def to_dtype(img: torch.Tensor, dtype: torch.dtype, scale: bool = False) -> torch.Tensor:
    if img.dtype == dtype:
        return img.clone()
    if not scale:
        return _trunc_cast(_f64(img), dtype) if dtype == torch.uint8 else img.to(dtype)
    if img.dtype == torch.uint8:  # int -> float
        return (_f64(img) / 255.0).to(dtype)
    if dtype == torch.uint8:  # float -> int
        return _image_as_uint8(img)
    return img.to(dtype)


def erase(img: torch.Tensor, i: int, j: int, h: int, w: int, v) -> torch.Tensor:
    out = img.clone()
    val = torch.as_tensor(v, dtype=F64).flatten().expand(img.shape[0]).reshape(-1, 1, 1)
    region = out[:, i : i + h, j : j + w]
    out[:, i : i + h, j : j + w] = val.expand_as(region).to(img.dtype)
    return out


# -------------------------------------------------------------------------------------------- geometry
def horizontal_flip(img: torch.Tensor) -> torch.Tensor:
    return img.flip(-1)


def vertical_flip(img: torch.Tensor) -> torch.Tensor:
    return img.flip(-2)


def crop(img: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """Crop with zero padding where the box leaves the image."""
    c, h, w = img.shape
    out = torch.zeros(c, height, width, dtype=img.dtype)
    y0, y1 = max(top, 0), min(top + height, h)
    x0, x1 = max(left, 0), min(left + width, w)
    if y1 > y0 and x1 > x0:
        out[:, y0 - top : y1 - top, x0 - left : x1 - left] = img[:, y0:y1, x0:x1]
    return out


def inverse_affine_matrix(center, angle, translate, scale, shear) -> list[float]:
    """torchvision's inverse of M = T * C * R(angle) S(scale) SHy(shear_y) SHx(shear_x) * C^-1 (degrees)."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    # forward rotate-scale-shear (without scale): [[a, b], [c, d]], determinant 1
    a = math.cos(rot - sy) / math.cos(sy)
    b = -(a * math.tan(sx) + math.sin(rot))
    c = math.sin(rot - sy) / math.cos(sy)
    d = math.cos(rot) - c * math.tan(sx)
    m = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0]
    m[2] += cx - m[0] * (cx + tx) - m[1] * (cy + ty)
    m[5] += cy - m[3] * (cx + tx) - m[4] * (cy + ty)
    return m


def _affine_coords(m: list[float], h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling coordinates of ``_affine_grid`` (output size = input size), in input pixel-index space.

    torchvision: base (x, y) = pixel index minus (size - 1) / 2, grid = theta @ (x, y, 1) / (size / 2),
    then grid_sample(align_corners=False) reads pixel ((g + 1) * size - 1) / 2.
    """
    xs = torch.arange(w, dtype=F64) - (w - 1) * 0.5
    ys = torch.arange(h, dtype=F64) - (h - 1) * 0.5
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    gx = (m[0] * x + m[1] * y + m[2]) / (0.5 * w)
    gy = (m[3] * x + m[4] * y + m[5]) / (0.5 * h)
    return ((gx + 1.0) * w - 1.0) / 2.0, ((gy + 1.0) * h - 1.0) / 2.0


class Sampled(NamedTuple):
    """A resampling result: the image, the sampling point of every output pixel in input pixel-index
    space (ix, iy: [H,W] float64), and the unrounded float64 values (raw: [C,H,W]) before the cast."""

    image: torch.Tensor
    ix: torch.Tensor
    iy: torch.Tensor
    raw: torch.Tensor


def _sample(img: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor, mode: str, fill) -> Sampled:
    """torchvision's _apply_grid_transform, with the grid given in pixel-index coordinates."""
    c, h, w = img.shape
    x = _f64(img).unsqueeze(0)
    if fill is not None:
        x = torch.cat([x, torch.ones(1, 1, h, w, dtype=F64)], dim=1)
    grid = torch.stack([(2.0 * ix + 1.0) / w - 1.0, (2.0 * iy + 1.0) / h - 1.0], dim=-1).unsqueeze(0)
    out = tnf.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)[0]
    if fill is not None:
        out, mask = out[:c], out[c:].expand(c, -1, -1)
        fills = [float(fill)] if isinstance(fill, (int, float)) else [float(f) for f in fill]
        f = torch.tensor(fills, dtype=F64).expand(c).reshape(c, 1, 1).expand_as(out)
        out = torch.where(mask < 0.5, f, out) if mode == "nearest" else (out - f) * mask + f
    return Sampled(_round_cast(out, img.dtype), ix, iy, out)


def affine(img, angle, translate, scale, shear, interpolation="nearest", fill=None, center=None):
    _, h, w = img.shape
    if isinstance(shear, (int, float)):
        shear = [float(shear), 0.0]
    ctr = [0.0, 0.0] if center is None else [center[0] - w * 0.5, center[1] - h * 0.5]
    m = inverse_affine_matrix(ctr, float(angle), [float(t) for t in translate], float(scale), [float(s) for s in shear])
    ix, iy = _affine_coords(m, h, w)
    return _sample(img, ix, iy, interpolation, fill)


def rotate(img, angle, interpolation="nearest", center=None, fill=None) -> Sampled:
    """expand=False. torchvision's fast paths (centre None: 0, 180; 90/270 on square images) are exact."""
    _, h, w = img.shape
    angle = float(angle) % 360.0
    if center is None:
        jj, ii = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
        fast = None
        if angle == 0:
            fast = img.clone(), ii, jj
        elif angle == 180:
            fast = torch.rot90(img, 2, dims=(-2, -1)), (w - 1) - ii, (h - 1) - jj
        elif h == w and angle == 90:
            fast = torch.rot90(img, 1, dims=(-2, -1)), (w - 1) - jj, ii
        elif h == w and angle == 270:
            fast = torch.rot90(img, 3, dims=(-2, -1)), jj, (h - 1) - ii
        if fast is not None:
            return Sampled(*fast, _f64(fast[0]))
    ctr = [0.0, 0.0] if center is None else [center[0] - w * 0.5, center[1] - h * 0.5]
    m = inverse_affine_matrix(ctr, -angle, [0.0, 0.0], 1.0, [0.0, 0.0])
    ix, iy = _affine_coords(m, h, w)
    return _sample(img, ix, iy, interpolation, fill)


def perspective_coeffs(startpoints, endpoints) -> list[float]:
    """Coefficients (a..h) of the map endpoint -> startpoint: x' = (a x + b y + c) / (g x + h y + 1)."""
    rows, rhs = [], []
    for (ex, ey), (sx, sy) in zip(endpoints, startpoints, strict=True):
        rows.append([ex, ey, 1.0, 0.0, 0.0, 0.0, -sx * ex, -sx * ey])
        rows.append([0.0, 0.0, 0.0, ex, ey, 1.0, -sy * ex, -sy * ey])
        rhs += [sx, sy]
    sol = np.linalg.lstsq(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64), rcond=None)[0]
    return [float(v) for v in sol]


def perspective(img, startpoints, endpoints, interpolation="bilinear", fill=None) -> Sampled:
    """torchvision's _perspective_grid: the map is applied at pixel centres (j + 0.5, i + 0.5)."""
    _, h, w = img.shape
    cf = perspective_coeffs(startpoints, endpoints)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=F64) + 0.5, torch.arange(w, dtype=F64) + 0.5, indexing="ij")
    den = cf[6] * xs + cf[7] * ys + 1.0
    gx = (cf[0] * xs + cf[1] * ys + cf[2]) / den / (0.5 * w) - 1.0
    gy = (cf[3] * xs + cf[4] * ys + cf[5]) / den / (0.5 * h) - 1.0
    ix, iy = ((gx + 1.0) * w - 1.0) / 2.0, ((gy + 1.0) * h - 1.0) / 2.0
    return _sample(img, ix, iy, interpolation, fill)


def nearest_source_index(out_size: int, in_size: int) -> torch.Tensor:
    """torch's legacy 'nearest' source index (float32 arithmetic, like ATen's nearest_idx)."""
    i = torch.arange(out_size)
    if out_size == in_size:
        return i
    if out_size == 2 * in_size:
        return i // 2
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = torch.floor(i.to(torch.float32) * scale).to(torch.int64)
    return src.clamp(max=in_size - 1)


def nearest_index_ambiguous(out_size: int, in_size: int, tol: float = 1e-3) -> torch.Tensor:
    """Output positions whose exact source position i*in/out sits within ``tol`` of an integer, where the
    float32 floor differs from the exact one (the float rounding, not the formula, decides)."""
    i = torch.arange(out_size, dtype=F64)
    exact = i * in_size / out_size
    f32 = nearest_source_index(out_size, in_size)
    near = (exact - torch.round(exact)).abs() < tol
    return near & (f32 != torch.floor(exact + 1e-9).clamp(max=in_size - 1).to(torch.int64))


def _bilinear_axis(out_size: int, in_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """interpolate(bilinear, align_corners=False) taps along one axis: i0, i1, lambda."""
    scale = in_size / out_size
    src = ((torch.arange(out_size, dtype=F64) + 0.5) * scale - 0.5).clamp(min=0.0)
    i0 = torch.floor(src).to(torch.int64).clamp(max=in_size - 1)
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    lam = src - i0.to(F64)
    lam = torch.where(i1 == i0, torch.zeros_like(lam), lam)
    return i0, i1, lam


def resize_raw(img: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """resize_image(antialias=False) of the whole image to ``size`` (h, w), in float64 before the cast."""
    _, h, w = img.shape
    oh, ow = size
    if (oh, ow) == (h, w):
        return _f64(img)
    if interpolation == "nearest":
        ys, xs = nearest_source_index(oh, h), nearest_source_index(ow, w)
        return _f64(img[:, ys][:, :, xs])
    x = _f64(img)
    y0, y1, ly = _bilinear_axis(oh, h)
    x0, x1, lx = _bilinear_axis(ow, w)
    ly, lx = ly.view(1, -1, 1), lx.view(1, 1, -1)
    top = x[:, y0][:, :, x0] * (1 - lx) + x[:, y0][:, :, x1] * lx
    bot = x[:, y1][:, :, x0] * (1 - lx) + x[:, y1][:, :, x1] * lx
    return top * (1 - ly) + bot * ly


def resize(img: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    return _round_cast(resize_raw(img, size, interpolation), img.dtype)


def resized_crop_raw(img, top, left, height, width, size, interpolation="bilinear") -> torch.Tensor:
    return resize_raw(crop(img, top, left, height, width), size, interpolation)


def resized_crop(img, top, left, height, width, size, interpolation="bilinear") -> torch.Tensor:
    return _round_cast(resized_crop_raw(img, top, left, height, width, size, interpolation), img.dtype)
