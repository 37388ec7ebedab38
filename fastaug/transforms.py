"""Transforms: torchvision-v2-like parameter samplers. They never touch pixels.

Each transform draws its parameters per sample from (seed, epoch, sample index, slot) and emits op
calls; :class:`Compose` compiles all calls of a batch into one Plan and runs it as one fused pass per
stage. Sampling follows torchvision's ``get_params`` rules, drawn independently for every sample.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fastaug import functional as F
from fastaug import rng
from fastaug.constants import constant
from fastaug.functional import Canvas
from fastaug.ops import counter
from fastaug.ops import geometry as G
from fastaug.ops.calls import Call, ColorCall, DtypeCall, NormalizeCall, RectCall
from fastaug.plan import Op
from fastaug.validation import channels_for, fill_values
from fastaug.validation import interpolation as check_interpolation

SLOTS_PER_TRANSFORM = 64


@dataclass
class Context:
    """What a transform sees while drawing: the batch canvas and the randomness key."""

    canvas: Canvas
    seed: int
    epoch: int
    indices: torch.Tensor
    slot: int
    uint8: bool  # the image's value range at this point is [0, 255]

    def uniform(self, n: int = 1, offset: int = 0) -> torch.Tensor:
        return rng.uniform(self.seed, self.epoch, self.indices, self.slot + offset, n)

    def coin(self, p: float, offset: int = 0) -> torch.Tensor:
        return self.uniform(1, offset)[:, 0] < p


class Transform:
    """Base class: ``calls(ctx)`` returns the op calls for a batch (parameters only)."""

    def calls(self, ctx: Context) -> list[Call]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _range(value, name: str, center: float | None = None, lo: float | None = None) -> tuple[float, float] | None:
    """torchvision's jitter argument: a number d -> (center-d, center+d) (or (-d, d)), or a (min, max) pair."""
    if value is None:
        return None
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
        c = 0.0 if center is None else center
        r = (c - float(value), c + float(value))
        if lo is not None:
            r = (max(lo, r[0]), r[1])
    elif isinstance(value, Sequence) and len(value) == 2:
        r = (float(value[0]), float(value[1]))
        if r[0] > r[1]:
            raise ValueError(f"{name} must be (min, max) with min <= max, got {value}")
    else:
        raise TypeError(f"{name} must be a number or a (min, max) pair, got {value!r}")
    if not (math.isfinite(r[0]) and math.isfinite(r[1])):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return r


def _jitter(value, name: str, center: float = 1.0, bound: tuple[float, float] = (0.0, math.inf), clip_first_on_zero: bool = True):
    """torchvision's ``ColorJitter._check_input``: a number d -> (center-d, center+d) (clipped at 0), or a
    (min, max) pair inside ``bound``; None when the range is exactly ``{center}`` (the op is off). So a
    number 0 is off, while the pair (0, 0) means the factor 0 (brightness: black, contrast: gray mean,
    saturation: grayscale). Bounds must be finite."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not value >= 0:  # NaN too
            raise ValueError(f"{name} as a single number must be non-negative, got {value}")
        r = [center - float(value), center + float(value)]
        if clip_first_on_zero:
            r[0] = max(r[0], 0.0)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
            raise TypeError(f"{name} must be a number or a (min, max) pair of numbers, got {value!r}")
        r = [float(value[0]), float(value[1])]
    else:
        raise TypeError(f"{name} must be a number or a (min, max) pair, got {value!r}")
    if not (math.isfinite(r[0]) and math.isfinite(r[1]) and bound[0] <= r[0] <= r[1] <= bound[1]):
        raise ValueError(f"{name} must be finite (min, max) values within {bound} with min <= max, got {value!r}")
    return None if r[0] == r[1] == center else (r[0], r[1])


def _lerp(u: torch.Tensor, r: tuple[float, float]) -> torch.Tensor:
    return r[0] + u * (r[1] - r[0])


def _lerp_columns(u: torch.Tensor, ranges: list[tuple[float, float]]) -> torch.Tensor:
    """:func:`_lerp` of each column j of ``u`` [B,n] (float64) with ``ranges[j]``: two ops, the same bits."""
    lo = constant([r[0] for r in ranges], torch.float64, u.device)
    span = constant([r[1] - r[0] for r in ranges], torch.float64, u.device)
    return lo + u * span


def _probability(p, name: str = "p") -> float:
    if not isinstance(p, numbers.Number) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _fill(fill, ctx: Context, name: str = "fill") -> torch.Tensor | None:
    return fill_values(fill, ctx.canvas.b, ctx.canvas.c, ctx.canvas.device, name)


def _check_fill(fill, name: str = "fill"):
    """A transform's fill at construction: its type and finite values (the channel count, and a tensor's
    values, are checked when drawing)."""
    if fill is not None and not isinstance(fill, torch.Tensor):
        fill_values(fill, 1, max(len(fill), 1) if isinstance(fill, (list, tuple)) else 1, torch.device("cpu"), name)
    return fill


class RandomHorizontalFlip(Transform):
    def __init__(self, p: float = 0.5):
        self.p = _probability(p)

    def calls(self, ctx):
        call = F.flip_call(ctx.canvas, True)
        call.applied = ctx.coin(self.p)
        return [call]


class RandomVerticalFlip(Transform):
    def __init__(self, p: float = 0.5):
        self.p = _probability(p)

    def calls(self, ctx):
        call = F.flip_call(ctx.canvas, False)
        call.applied = ctx.coin(self.p)
        return [call]


class RandomAffine(Transform):
    """torchvision's RandomAffine: angle ~ U(degrees), translate rounded to pixels, scale, shear."""

    def __init__(self, degrees, translate=None, scale=None, shear=None, interpolation="nearest", fill=0, center=None):
        self.degrees = _range(degrees, "degrees")
        if translate is not None and (len(translate) != 2 or not all(0.0 <= t <= 1.0 for t in translate)):
            raise ValueError(f"translate must be two fractions in [0, 1], got {translate!r}")
        self.translate = translate
        if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1] < math.inf):
            raise ValueError(f"scale must be finite (min, max) with 0 < min <= max, got {scale!r}")
        self.scale = scale
        # every range checked here (finite, min <= max): the draws are then valid by construction, and a device uses
        # them as given (per_sample(drawn=True): no sanitizer)
        if shear is None:
            self.shear = None
        elif isinstance(shear, numbers.Number):
            self.shear = (*_range(shear, "shear"), 0.0, 0.0)
        elif len(shear) == 2:
            self.shear = (*_range(tuple(shear), "shear"), 0.0, 0.0)
        elif len(shear) == 4:
            self.shear = (*_range(tuple(shear[:2]), "shear (x)"), *_range(tuple(shear[2:]), "shear (y)"))
        else:
            raise ValueError(f"shear must be a number or 2 or 4 values, got {shear!r}")
        check_interpolation(interpolation)
        self.interpolation = interpolation
        self.fill = _check_fill(fill)
        self.center = center

    def calls(self, ctx):
        cv = ctx.canvas
        u = ctx.uniform(6)
        mx, my = (self.translate[0] * cv.w, self.translate[1] * cv.h) if self.translate is not None else (0.0, 0.0)
        ranges = [self.degrees, (-mx, mx), (-my, my), tuple(self.scale) if self.scale is not None else (1.0, 1.0),
                  *((self.shear[:2], self.shear[2:]) if self.shear is not None else ((0.0, 0.0), (0.0, 0.0)))]  # fmt: skip
        v = _lerp_columns(u, ranges)  # absent options: lo + u * 0 = lo exactly (translate 0, scale 1, shear 0)
        if self.translate is not None:  # whole pixels (v is this call's own tensor: rounded in place, one op)
            v[:, 1:3].round_()
        center = None if self.center is None else list(self.center)
        return [F.affine_call(cv, v[:, 0], v[:, 1:3], v[:, 3], v[:, 4:6], self.interpolation, self.fill, center, drawn=True)]


class RandomRotation(Transform):
    def __init__(self, degrees, interpolation="nearest", expand: bool = False, center=None, fill=0):
        if expand:
            raise ValueError("expand=True is not supported: per-sample angles would give per-sample output sizes")
        self.degrees = _range(degrees, "degrees")
        check_interpolation(interpolation)
        self.interpolation = interpolation
        self.center = center
        self.fill = _check_fill(fill)

    def calls(self, ctx):
        angle = _lerp(ctx.uniform(1)[:, 0], self.degrees)
        center = None if self.center is None else list(self.center)
        return [F.rotate_call(ctx.canvas, angle, self.interpolation, center, self.fill, drawn=True)]


class SafeRotate(Transform):
    """albumentations' SafeRotate with probability p: ``angle ~ U(limit)`` degrees per sample (a number l
    means (-l, l)), counter-clockwise on screen; the image is rotated about its centre and scaled, x and
    y separately, so that the whole rotated image fits the unchanged H x W frame
    (``fastaug.functional.safe_rotate``; the matrix is ``fastaug.ops.geometry.safe_rotate_matrix``):

        W' = int(H|sin a| + W|cos a|),  H' = int(H|cos a| + W|sin a|)
        dst = diag(W/W', H/H') (Rot(a) (p - c) + (W'/2, H'/2)),  c = (W/2 - 0.5, H/2 - 0.5)   (pixel indices)

    (albumentations' +0.5 px centre shift included: c lands on (W/2, H/2)). ``interpolation``:
    "bilinear" (cv2.INTER_LINEAR, the default) or "nearest"; ``fill``: the border value in the image's
    value range (0: cv2's BORDER_CONSTANT exactly; see ``safe_rotate`` for other fills on the rim). A
    geometric op: masks (nearest, fill 0 = albumentations' fill_mask default), boxes and keypoints follow
    the same matrix (fastaug's continuous coordinates, pixel i spans [i, i+1))."""

    def __init__(self, limit=(-90, 90), interpolation="bilinear", fill=0, p: float = 0.5):
        pair = isinstance(limit, Sequence) and not isinstance(limit, (str, bytes)) and len(limit) == 2
        if not (isinstance(limit, numbers.Real) or pair) or isinstance(limit, bool) or (
            pair and not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in limit)
        ):
            raise TypeError(f"limit must be a number or a (min, max) pair of numbers (degrees), got {limit!r}")
        self.limit = _range(limit, "limit")
        check_interpolation(interpolation)
        self.interpolation = interpolation
        self.fill = _check_fill(fill)
        self.p = _probability(p)

    def calls(self, ctx):
        u = ctx.uniform(2)
        call = F.safe_rotate_call(ctx.canvas, _lerp(u[:, 0], self.limit), self.interpolation, self.fill)
        call.applied = u[:, 1] < self.p
        return [call]


class RandomPerspective(Transform):
    def __init__(self, distortion_scale: float = 0.5, p: float = 0.5, interpolation="bilinear", fill=0):
        if not 0.0 <= distortion_scale <= 1.0:
            raise ValueError(f"distortion_scale must be in [0, 1], got {distortion_scale}")
        self.distortion_scale = float(distortion_scale)
        self.p = _probability(p)
        check_interpolation(interpolation)
        self.interpolation = interpolation
        self.fill = _check_fill(fill)

    def calls(self, ctx):
        cv = ctx.canvas
        start, end = G.random_perspective_points(ctx.uniform(8, 1), (cv.h, cv.w), self.distortion_scale)
        call = F.perspective_call(cv, start, end, self.interpolation, self.fill)
        call.applied = ctx.coin(self.p)
        return [call]


def crop_box(u: torch.Tensor, h: int, w: int, scale, ratio) -> tuple[torch.Tensor, ...]:
    """torchvision RandomResizedCrop.get_params, 10 attempts per sample, vectorised. u: [B, 40]; ``scale`` ends may be
    per-sample tensors [B, 1]."""
    b = u.shape[0]
    area = h * w
    target = area * _lerp(u[:, 0:10], scale)
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(_lerp(u[:, 10:20], lr))
    cw = torch.round(torch.sqrt(target * aspect))
    ch = torch.round(torch.sqrt(target / aspect))
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)
    any_ok = ok.any(1)
    cw_s, ch_s = cw.gather(1, first)[:, 0], ch.gather(1, first)[:, 0]
    top = torch.floor(u.gather(1, 20 + first)[:, 0] * (h - ch_s + 1))
    left = torch.floor(u.gather(1, 30 + first)[:, 0] * (w - cw_s + 1))
    in_ratio = w / h
    if in_ratio < min(ratio):
        fw, fh = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = h, int(round(h * max(ratio)))
    else:
        fw, fh = w, h
    full = torch.ones(b, dtype=torch.float64, device=u.device)
    top = torch.where(any_ok, top, full * ((h - fh) // 2))
    left = torch.where(any_ok, left, full * ((w - fw) // 2))
    ch_s = torch.where(any_ok, ch_s, full * fh)
    cw_s = torch.where(any_ok, cw_s, full * fw)
    return top, left, ch_s, cw_s


class RandomResizedCrop(Transform):
    """torchvision's RandomResizedCrop sampling (10 attempts, then a centre crop), antialias=False."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0), interpolation="bilinear", antialias: bool = False):
        self.size = F._out_size(size)
        if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"scale and ratio must be (min, max) with 0 < min <= max, got {scale!r}, {ratio!r}")
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        check_interpolation(interpolation)
        self.interpolation = interpolation
        if antialias:
            raise ValueError("antialias=True is not supported (fastaug resamples once per sample); pass antialias=False")
        self.antialias = False

    def calls(self, ctx):
        cv = ctx.canvas
        top, left, h, w = crop_box(ctx.uniform(40), cv.h, cv.w, self.scale, self.ratio)
        return [F.resized_crop_call(cv, top, left, h, w, list(self.size), self.interpolation)]


class ColorJitter(Transform):
    """Brightness, contrast, saturation and hue factors per sample, applied in a per-sample random order."""

    def __init__(self, brightness=None, contrast=None, saturation=None, hue=None):
        self.brightness = _jitter(brightness, "brightness")
        self.contrast = _jitter(contrast, "contrast")
        self.saturation = _jitter(saturation, "saturation")
        self.hue = _jitter(hue, "hue", center=0.0, bound=(-0.5, 0.5), clip_first_on_zero=False)

    def calls(self, ctx):
        parts = [
            (Op.BRIGHTNESS, self.brightness),
            (Op.CONTRAST, self.contrast),
            (Op.SATURATION, self.saturation),
            (Op.HUE, self.hue),
        ]
        parts = [(op, r) for op, r in parts if r is not None]  # None: off; (0, 0) brightness: factor 0
        if not parts:
            return []
        u = ctx.uniform(8)
        n = len(parts)
        codes = constant([int(op) for op, _ in parts], torch.int32, u.device)  # int32: the Plan's program, no cast
        values = _lerp_columns(u[:, :n], [r for _, r in parts])
        order = torch.argsort(u[:, 4 : 4 + n], dim=1)  # a random permutation per sample
        picked = values.gather(1, order).to(torch.float32).unsqueeze(-1)  # [B,n,1] (the compiler pads with constants)
        ordered = codes[order]
        static = tuple(int(op) for op, _ in parts)
        token = object()  # each op once per sample: one statistics round for CONTRAST, wherever it lands
        return [ColorCall(name="color_jitter", code=ordered[:, k], params=picked[:, k], codes=static, permutation=token)
                for k in range(n)]  # fmt: skip


def _color(name: str, op: Op, value: float | None, p: float, ctx: Context, extra: float | None = None) -> list[Call]:
    row = [0.0 if value is None else float(value), 0.0 if extra is None else float(extra), 0.0]
    params = constant(row, torch.float32, ctx.canvas.device).expand(ctx.canvas.b, 3)  # a cached constant's view
    return [ColorCall(name=name, code=int(op), params=params, applied=ctx.coin(p))]


class RandomPosterize(Transform):
    def __init__(self, bits: int, p: float = 0.5):
        if not isinstance(bits, int) or not 0 <= bits <= 8:
            raise ValueError(f"bits must be an int in [0, 8], got {bits!r}")
        self.bits, self.p = bits, _probability(p)

    def calls(self, ctx):
        return _color("posterize", Op.POSTERIZE, self.bits, self.p, ctx)


class RandomSolarize(Transform):
    def __init__(self, threshold: float, p: float = 0.5):
        if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool):
            raise TypeError(f"threshold must be a number, got {threshold!r}")
        if not (0 <= threshold < math.inf):  # NaN and inf too
            raise ValueError(f"threshold must be a finite non-negative number, got {threshold}")
        self.threshold, self.p = float(threshold), _probability(p)

    def calls(self, ctx):
        bound = 255.0 if ctx.uint8 else 1.0
        if self.threshold > bound:
            raise ValueError(f"threshold {self.threshold} exceeds the image's maximum value {bound}")
        return _color("solarize", Op.SOLARIZE, self.threshold, self.p, ctx)


class RandomEqualize(Transform):
    def __init__(self, p: float = 0.5):
        self.p = _probability(p)

    def calls(self, ctx):
        return _color("equalize", Op.EQUALIZE, None, self.p, ctx)


class RandomAutocontrast(Transform):
    def __init__(self, p: float = 0.5):
        self.p = _probability(p)

    def calls(self, ctx):
        return _color("autocontrast", Op.AUTOCONTRAST, None, self.p, ctx)


class RandomInvert(Transform):
    def __init__(self, p: float = 0.5):
        self.p = _probability(p)

    def calls(self, ctx):
        return _color("invert", Op.INVERT, None, self.p, ctx)


class RandomAdjustSharpness(Transform):
    def __init__(self, sharpness_factor: float, p: float = 0.5):
        if not isinstance(sharpness_factor, numbers.Real) or isinstance(sharpness_factor, bool):
            raise TypeError(f"sharpness_factor must be a number, got {sharpness_factor!r}")
        if not (0 <= sharpness_factor < math.inf):  # NaN and inf too
            raise ValueError(f"sharpness_factor must be a finite non-negative number, got {sharpness_factor}")
        self.sharpness_factor, self.p = float(sharpness_factor), _probability(p)

    def calls(self, ctx):
        return _color("adjust_sharpness", Op.SHARPNESS, self.sharpness_factor, self.p, ctx)


class GaussianBlur(Transform):
    """torchvision's GaussianBlur: ``sigma`` a number (fixed) or (min, max), drawn uniformly per sample
    (the same for x and y); ``kernel_size`` odd (int or (x, y))."""

    def __init__(self, kernel_size, sigma=(0.1, 2.0)):
        self.kernel_size = F.kernel_sizes(kernel_size)
        if isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
            sigma = (sigma, sigma)
        r = _range(sigma, "sigma")
        if not 0.0 < r[0]:
            raise ValueError(f"sigma must be positive, as a number or (min, max), got {sigma!r}")
        self.sigma = r

    def calls(self, ctx):
        s = _lerp(ctx.uniform(1)[:, 0].to(torch.float64), self.sigma)
        return [F.gaussian_blur_call(ctx.canvas, self.kernel_size, s)]


def _unit_range(value, name: str, lo: float = 0.0, hi: float = math.inf) -> tuple[float, float]:
    """A number (fixed) or a (min, max) pair inside [lo, hi]."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)
    r = _range(value, name)
    if not lo <= r[0] <= r[1] <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}] with min <= max, got {value!r}")
    return r


def _kernel_calls(ctx: Context, name: str, kernel, ranges: dict, p: float) -> list[Call]:
    """A CONVOLVE call whose per-sample kernel is ``kernel(*values)``, each value ~ U(its range)."""
    u = ctx.uniform(len(ranges)).to(torch.float64)
    values = {k: _lerp(u[:, i], r) for i, (k, r) in enumerate(ranges.items())}
    call = F.convolve_call(ctx.canvas, kernel(*values.values()), name, values)
    call.applied = ctx.coin(p, len(ranges))
    return [call]


class Sharpen(Transform):
    """albumentations' Sharpen, per sample: alpha ~ U(alpha) and, with ``method="kernel"``, lightness ~ U(lightness)
    (a 3x3 kernel, ``sharpen_kernel``); ``method="gaussian"``: the unsharp mask ``v + alpha (v - G v)`` with a
    ``kernel_size`` Gaussian of ``sigma`` (``unsharp_kernel``; see ``fastaug.functional.sharpen`` for uint8)."""

    def __init__(self, alpha=(0.2, 0.5), lightness=(0.5, 1.0), method: str = "kernel", kernel_size: int = 5, sigma: float = 1.0,
                 p: float = 0.5):  # fmt: skip
        self.kernel_size, self.sigma = F.sharpen_options(method, kernel_size, sigma)
        self.method = method
        self.alpha, self.lightness = _unit_range(alpha, "alpha", 0.0, 1.0), _unit_range(lightness, "lightness")
        self.p = _probability(p)

    def calls(self, ctx):
        if self.method == "gaussian":
            kernel = functools.partial(F.unsharp_kernel, kernel_size=self.kernel_size, sigma=self.sigma)
            calls = _kernel_calls(ctx, "sharpen", kernel, {"alpha": self.alpha}, self.p)
            calls[0].kwargs.update(method="gaussian", kernel_size=self.kernel_size, sigma=self.sigma)
            return calls
        return _kernel_calls(ctx, "sharpen", F.sharpen_kernel, {"alpha": self.alpha, "lightness": self.lightness}, self.p)


class Emboss(Transform):
    """albumentations' Emboss: per sample alpha ~ U(alpha), strength ~ U(strength), then ``fastaug.functional.emboss``."""

    def __init__(self, alpha=(0.2, 0.5), strength=(0.2, 0.7), p: float = 0.5):
        self.alpha, self.strength = _unit_range(alpha, "alpha", 0.0, 1.0), _unit_range(strength, "strength")
        self.p = _probability(p)

    def calls(self, ctx):
        return _kernel_calls(ctx, "emboss", F.emboss_kernel, {"alpha": self.alpha, "strength": self.strength}, self.p)


class MotionBlur(Transform):
    """albumentations' MotionBlur: per sample an odd kernel size in ``blur_limit`` (uniform over the odd values), an
    angle ~ U(angle_range) degrees, a direction ~ U(direction_range) and, with ``allow_shifted``, a shift of the line
    ~ U(-1, 1) * (k // 2) / 2 per axis; then ``fastaug.functional.motion_blur``."""

    def __init__(self, blur_limit=(3, 7), allow_shifted: bool = True, angle_range=(0.0, 360.0), direction_range=(-1.0, 1.0),
                 p: float = 0.5):  # fmt: skip
        lo, hi = (3, blur_limit) if isinstance(blur_limit, numbers.Integral) and not isinstance(blur_limit, bool) else blur_limit
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (lo, hi)) or not 3 <= lo <= hi:
            raise ValueError(f"blur_limit must be an int >= 3 or a (min, max) pair of them, got {blur_limit!r}")
        if lo % 2 == 0 or hi % 2 == 0:
            raise ValueError(f"blur_limit values must be odd, got {blur_limit!r}")
        self.blur_limit = (int(lo), int(hi))
        self.angle_range = _range(angle_range, "angle_range")
        self.direction_range = _unit_range(direction_range, "direction_range", -1.0, 1.0)
        if not isinstance(allow_shifted, bool):
            raise TypeError(f"allow_shifted must be a bool, got {allow_shifted!r}")
        self.allow_shifted, self.p = allow_shifted, _probability(p)

    def calls(self, ctx):
        lo, hi = self.blur_limit
        u = ctx.uniform(5).to(torch.float64)
        k = lo + 2 * torch.floor(u[:, 0] * ((hi - lo) // 2 + 1))
        angle = _lerp(u[:, 1], self.angle_range)
        direction = _lerp(u[:, 2], self.direction_range)
        shift = (u[:, 3:5] * 2 - 1) * torch.floor(k / 2).unsqueeze(1) / 2
        if not self.allow_shifted:
            shift = torch.zeros_like(shift)
        kern = F.motion_blur_kernel(k, angle, direction, shift, hi)
        kw = {"kernel_size": k, "angle": angle, "direction": direction, "shift": shift}
        call = F.convolve_call(ctx.canvas, kern, "motion_blur", kw)
        call.applied = ctx.coin(self.p, 5)
        return [call]


class PixelDropout(Transform):
    """albumentations' PixelDropout (see ``fastaug.functional.pixel_dropout``), per sample.

    ``drop_value`` (the image's units; uint8 truncates): a number, one value per channel (a sequence of C numbers, any
    channel count; a single-element sequence is one value), or None: a random value per channel, uint8 an integer in
    0..254 and float a value in [0, 1) as albumentations (``fastaug.functional.random_drop_values``, from the
    sample's key). albumentations draws these once per call, so the images of one call (``images=``) share them;
    here every sample draws its own, as every fastaug transform draws per sample.

    ``mask_drop_value``: None leaves masks untouched; a number is painted into masks (``Compose(..., mask=)``) at the
    pixels the image drops, from the same per-pixel draws: every mask channel follows the image's shared draw, or with
    ``per_channel`` mask channel k follows image channel k's draw (albumentations 2 draws the masks' pixels apart from
    the image's). An integer mask gets the value rounded.

    Boxes and keypoints (``Compose(..., bboxes=, keypoints=)``) pass unchanged. Difference from albumentations 2.0.8:
    with ``per_channel=False`` its ``apply_to_bboxes`` filters boxes by the dropped pixels (``mask_dropout_bboxes``: a
    box is removed when its pixels not dropped are fewer than BboxParams' ``min_area`` or a smaller fraction of the
    box than its ``min_visibility``; kept boxes are not shrunk; with the default thresholds 0 nothing is removed);
    fastaug does not filter boxes for PixelDropout."""

    def __init__(self, dropout_prob: float = 0.01, per_channel: bool = False, drop_value=0, mask_drop_value=None, p: float = 0.5):
        if isinstance(drop_value, Sequence) and not isinstance(drop_value, str) and len(drop_value) > 0:
            values = tuple(drop_value)
        elif drop_value is None:
            values = None
        else:
            values = (drop_value,)
        if values is not None and not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in values
        ):
            raise ValueError(f"drop_value must be None, a finite number >= 0 or one such number per channel, got {drop_value!r}")
        mask_drop_value = _mask_fill(mask_drop_value, "mask_drop_value", " (one value per channel is not supported yet)")
        self.dropout_prob = _probability(dropout_prob, "dropout_prob")
        self.per_channel = F._flag(per_channel, "per_channel")
        self.drop_value = None if values is None else float(values[0]) if len(values) == 1 else tuple(float(v) for v in values)
        self.p = _probability(p)
        self.mask_drop_value = None if mask_drop_value is None else float(mask_drop_value)

    def calls(self, ctx):
        keys = rng.key(ctx.seed, ctx.epoch, ctx.indices, ctx.slot + 1)
        calls = F.pixel_dropout_calls(ctx.canvas, self.dropout_prob, self.per_channel, self.drop_value, ctx.uint8, keys)
        applied = ctx.coin(self.p)
        for call in calls:
            call.applied = applied
        calls[0].mask_value = self.mask_drop_value  # masks: one call over every mask channel (fastaug.targets)
        return calls


class SaltAndPepper(Transform):
    """albumentations' SaltAndPepper, per sample: amount ~ U(amount), salt_vs_pepper ~ U(salt_vs_pepper); see
    ``fastaug.functional.salt_and_pepper`` (independent pixels instead of an exact count)."""

    def __init__(self, amount=(0.01, 0.06), salt_vs_pepper=(0.4, 0.6), p: float = 0.5):
        self.amount = _unit_range(amount, "amount", 0.0, 1.0)
        self.salt_vs_pepper = _unit_range(salt_vs_pepper, "salt_vs_pepper", 0.0, 1.0)
        self.p = _probability(p)

    def calls(self, ctx):
        u = ctx.uniform(2).to(torch.float64)
        keys = rng.key(ctx.seed, ctx.epoch, ctx.indices, ctx.slot + 1)
        call = F.salt_and_pepper_call(ctx.canvas, _lerp(u[:, 0], self.amount), _lerp(u[:, 1], self.salt_vs_pepper), keys)
        call.applied = ctx.coin(self.p, 2)
        return [call]


class MultiplicativeNoise(Transform):
    """albumentations' MultiplicativeNoise, per sample: ``elementwise`` multiplies each pixel (and channel when
    ``per_channel``) by its own ``m ~ U(multiplier)`` (``fastaug.functional.multiplicative_noise``); otherwise the whole
    image by one ``m`` (``adjust_brightness``: the same truncating formula), or with ``per_channel`` each channel by its
    own ``m`` (``rgb_gain`` on 3 channels, the same formula; a single channel takes one ``m``; other channel counts
    raise)."""

    def __init__(self, multiplier=(0.9, 1.1), per_channel: bool = False, elementwise: bool = False, p: float = 0.5):
        self.multiplier = _unit_range(multiplier, "multiplier")
        self.per_channel = F._flag(per_channel, "per_channel")
        self.elementwise = F._flag(elementwise, "elementwise")
        self.p = _probability(p)

    def calls(self, ctx):
        lo, hi = self.multiplier
        if self.elementwise:
            keys = rng.key(ctx.seed, ctx.epoch, ctx.indices, ctx.slot + 1)
            call = F.multiplicative_noise_call(ctx.canvas, lo, hi, self.per_channel, keys)
            call.applied = ctx.coin(self.p)
            return [call]
        if self.per_channel and ctx.canvas.c != 1:
            channels_for(ctx.canvas.c, (3,), "MultiplicativeNoise(per_channel=True, elementwise=False)")
            gains = _lerp(ctx.uniform(3).to(torch.float64), self.multiplier)  # [B,3]: one multiplier per channel
            kwargs = dict(zip(("r_gain", "g_gain", "b_gain"), gains.unbind(1), strict=True))
            return [ColorCall(name="rgb_gain", kwargs=kwargs, code=int(Op.RGB_GAIN), params=gains, applied=ctx.coin(self.p, 1))]
        m = _lerp(ctx.uniform(1)[:, 0].to(torch.float64), self.multiplier)
        return [ColorCall(name="adjust_brightness", code=int(Op.BRIGHTNESS), params=torch.stack([m, 0 * m, 0 * m], 1),
                          applied=ctx.coin(self.p, 1))]  # fmt: skip


def _symmetric(value, name: str) -> tuple[float, float]:
    """albumentations' shift limit: a number d -> (-d, d), or a (min, max) pair; finite."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (-abs(float(value)), abs(float(value)))
    r = _range(value, name)
    assert r is not None
    return r


class RGBShift(Transform):
    """albumentations' RGBShift, per sample: one shift per channel ~ U(limit) (``fastaug.functional.rgb_shift``).

    As albumentations reads the limits: a range with a value beyond 1 in magnitude is in 0..255 units, otherwise in
    0..1 units; either is converted to the image's value range at this point of the pipeline."""

    def __init__(self, r_shift_limit=(-20, 20), g_shift_limit=(-20, 20), b_shift_limit=(-20, 20), p: float = 0.5):
        self.r_shift_limit = _symmetric(r_shift_limit, "r_shift_limit")
        self.g_shift_limit = _symmetric(g_shift_limit, "g_shift_limit")
        self.b_shift_limit = _symmetric(b_shift_limit, "b_shift_limit")
        self.p = _probability(p)

    def calls(self, ctx):
        cv = ctx.canvas
        channels_for(cv.c, (3,), "RGBShift")
        u = ctx.uniform(3).to(torch.float64)
        shifts = []
        for i, r in enumerate((self.r_shift_limit, self.g_shift_limit, self.b_shift_limit)):
            units = 255.0 if max(abs(r[0]), abs(r[1])) > 1.0 else 1.0  # of this range
            shifts.append(_lerp(u[:, i], r) * ((255.0 if ctx.uint8 else 1.0) / units))
        names = ("r_shift", "g_shift", "b_shift")
        return [ColorCall(name="rgb_shift", kwargs=dict(zip(names, shifts, strict=True)), code=int(Op.RGB_SHIFT),
                          params=torch.stack(shifts, 1), applied=ctx.coin(self.p, 3))]  # fmt: skip


class RGBGain(Transform):
    """Per-channel gains ("more / less red, green, blue"), per sample: one gain per channel ~ U(range)
    (``fastaug.functional.rgb_gain``); a number d means (1 - d, 1 + d), as ``ColorJitter``'s brightness."""

    def __init__(self, r_gain=0.2, g_gain=0.2, b_gain=0.2, p: float = 0.5):
        self.r_gain = _jitter(r_gain, "r_gain") or (1.0, 1.0)
        self.g_gain = _jitter(g_gain, "g_gain") or (1.0, 1.0)
        self.b_gain = _jitter(b_gain, "b_gain") or (1.0, 1.0)
        self.p = _probability(p)

    def calls(self, ctx):
        channels_for(ctx.canvas.c, (3,), "RGBGain")
        u = ctx.uniform(3).to(torch.float64)
        gains = [_lerp(u[:, i], r) for i, r in enumerate((self.r_gain, self.g_gain, self.b_gain))]
        names = ("r_gain", "g_gain", "b_gain")
        return [ColorCall(name="rgb_gain", kwargs=dict(zip(names, gains, strict=True)), code=int(Op.RGB_GAIN),
                          params=torch.stack(gains, 1), applied=ctx.coin(self.p, 3))]  # fmt: skip


def _pair(value, name: str, lo: float = 0.0) -> tuple[float, float]:
    """torchvision's ``_setup_number_or_seq``: a number -> (v, v), or a pair; finite, >= lo."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                                                    for v in value)):  # fmt: skip
        raise TypeError(f"{name} must be a number or a pair of numbers, got {value!r}")
    r = (float(value[0]), float(value[1]))
    if not all(math.isfinite(v) and v >= lo for v in r):
        raise ValueError(f"{name} must be finite and >= {lo}, got {value!r}")
    return r


class ElasticTransform(Transform):
    """torchvision's ElasticTransform, per sample: a displacement field drawn on the batch's device from (seed, epoch,
    index): uniform noise in [-1, 1] per pixel and axis (``fastaug.ops.counter``), blurred by a Gaussian of ``sigma``
    (kernel ``int(8 sigma + 1)`` made odd, reflected borders, as torchvision), times ``alpha / W`` (dx) and
    ``alpha / H`` (dy); then ``fastaug.functional.elastic_transform``. Must come after the other geometric transforms
    (the field lives on the final grid); masks, boxes and keypoints follow (keypoints and boxes through
    torchvision's approximate inverse: the displacement at the point subtracted)."""

    def __init__(self, alpha=50.0, sigma=5.0, interpolation="bilinear", fill=0):
        self.alpha = _pair(alpha, "alpha")
        self.sigma = _pair(sigma, "sigma")
        check_interpolation(interpolation)
        self.interpolation = interpolation
        self.fill = _check_fill(fill)

    def calls(self, ctx):
        cv = ctx.canvas
        key = rng.key(ctx.seed, ctx.epoch, ctx.indices, ctx.slot + 1)
        noise = counter.pixel_uniform(key, 2, cv.h, cv.w, torch.float32)  # [B,2,H,W] in [0, 1): dx, dy
        sizes = []
        for s in self.sigma:
            k = int(8 * s + 1)
            k += 1 - k % 2
            if s > 0.0 and k // 2 >= min(cv.h, cv.w):
                raise ValueError(f"ElasticTransform: sigma {s} needs a blur kernel of {k} pixels, too large for "
                                 f"a {cv.h}x{cv.w} image (torchvision's reflect padding fails there too)")  # fmt: skip
            sizes.append(k)
        # blur(2u - 1) = 2 blur(u) - 1: the kernel sums to 1 (the image blur takes [0, 1]); both fields in one pass when
        # torchvision blurs them alike (the same kernel size: x and y use the same sigma pair)
        if self.sigma[0] > 0.0 and self.sigma[1] > 0.0 and sizes[0] == sizes[1]:
            noise = F.gaussian_blur(noise, [sizes[0]] * 2, list(self.sigma))
        else:
            noise = torch.cat([F.gaussian_blur(noise[:, a : a + 1], [sizes[a]] * 2, list(self.sigma)) if self.sigma[a] > 0.0
                               else noise[:, a : a + 1] for a in range(2)], 1)  # fmt: skip
        fields = [(noise[:, a] * 2.0 - 1.0) * (self.alpha[a] / (cv.w if a == 0 else cv.h)) for a in range(2)]
        displacement = torch.stack(fields, -1)  # [B,H,W,2] normalized, torchvision's convention
        return [F.elastic_call(cv, displacement, self.interpolation, _fill(self.fill, ctx))]


class Downscale(Transform):
    """albumentations' Downscale, per sample: scale ~ U(scale_range), the image resized down and back up
    (``fastaug.functional.downscale``); ``interpolation_pair`` maps "downscale" / "upscale" to nearest or bilinear
    (names, torchvision's InterpolationMode or cv2's INTER_NEAREST / INTER_LINEAR)."""

    def __init__(self, scale_range=(0.25, 0.25), interpolation_pair=None, p: float = 0.5):
        self.scale_range = _unit_range(scale_range, "scale_range", 0.0, 1.0)
        if self.scale_range[0] <= 0:
            raise ValueError(f"scale_range must be > 0, got {scale_range!r}")
        pair = {"downscale": "nearest", "upscale": "nearest"} if interpolation_pair is None else dict(interpolation_pair)
        if set(pair) != {"downscale", "upscale"}:
            raise ValueError(f"interpolation_pair must have the keys 'downscale' and 'upscale', got {sorted(pair)}")
        F._resize_interpolation(pair["downscale"], "interpolation_pair['downscale']")
        F._resize_interpolation(pair["upscale"], "interpolation_pair['upscale']")
        self.interpolation_pair, self.p = pair, _probability(p)

    def calls(self, ctx):
        s = _lerp(ctx.uniform(1)[:, 0].to(torch.float64), self.scale_range)
        call = F.downscale_call(ctx.canvas, s, self.interpolation_pair["downscale"], self.interpolation_pair["upscale"])
        call.applied = ctx.coin(self.p, 1)
        return [call]


class Superpixels(Transform):
    """albumentations' Superpixels, per sample: p_replace ~ U(p_replace), n_segments ~ U{n_segments} (integers), then
    ``fastaug.functional.superpixels`` (``max_size``: the segmentation's larger side, None: full resolution)."""

    def __init__(self, p_replace=(0.0, 0.1), n_segments=(100, 100), max_size: int | None = 128, p: float = 0.5):
        self.p_replace = _unit_range(p_replace, "p_replace", 0.0, 1.0)
        n = _unit_range(n_segments, "n_segments", 1.0)
        if n[0] != int(n[0]) or n[1] != int(n[1]):
            raise ValueError(f"n_segments must be integers, got {n_segments!r}")
        self.n_segments = (int(n[0]), int(n[1]))
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1):
            raise ValueError(f"max_size must be None or an int >= 1, got {max_size!r}")
        self.max_size = max_size
        self.p = _probability(p)

    def calls(self, ctx):
        u = ctx.uniform(2).to(torch.float64)
        lo, hi = self.n_segments
        n = torch.clamp(torch.floor(lo + u[:, 1] * (hi - lo + 1)), max=hi)
        keys = rng.key(ctx.seed, ctx.epoch, ctx.indices, ctx.slot + 1)
        call = F.superpixels_call(ctx.canvas, _lerp(u[:, 0], self.p_replace), n, hi, keys, self.max_size)
        call.applied = ctx.coin(self.p, 2)
        return [call]


class Clouds(Transform):
    """A cloud layer per sample (``fastaug.functional.fog``): density ~ U(density_range), threshold ~
    U(threshold_range) (the part of the noise that stays clear sky), the coarsest cell ~ U(scale_range) of the image's
    larger side. (imgaug's Clouds idea: procedural noise layers blended towards white.)"""

    def __init__(self, density_range=(0.6, 1.0), threshold_range=(0.3, 0.6), scale_range=(0.3, 0.7), p: float = 0.5):
        self.density_range = _unit_range(density_range, "density_range", 0.0, 1.0)
        self.threshold_range = _unit_range(threshold_range, "threshold_range", 0.0, 0.95)
        self.scale_range = _unit_range(scale_range, "scale_range", 0.0)
        self.p = _probability(p)

    def calls(self, ctx):
        u = ctx.uniform(3).to(torch.float64)
        keys = rng.key(ctx.seed, ctx.epoch, ctx.indices, ctx.slot + 1)
        call = F.fog_call(ctx.canvas, _lerp(u[:, 0], self.density_range), _lerp(u[:, 2], self.scale_range),
                          _lerp(u[:, 1], self.threshold_range), keys)  # fmt: skip
        call.applied = ctx.coin(self.p, 3)
        return [call]


class RandomFog(Clouds):
    """A fog layer per sample (``fastaug.functional.fog`` with threshold 0): density ~ U(fog_coef_range), the noise's
    coarsest cell ~ U(scale_range) of the image's larger side. albumentations' name and ``fog_coef_range``; its
    texture differs (albumentations blends blurred circles; this is value noise)."""

    def __init__(self, fog_coef_range=(0.3, 1.0), scale_range=(0.2, 0.5), p: float = 0.5):
        super().__init__(_unit_range(fog_coef_range, "fog_coef_range", 0.0, 1.0), 0.0, scale_range, p)


class GaussianNoise(Transform):
    """torchvision's GaussianNoise (see ``fastaug.functional.gaussian_noise``): ``mean`` and ``sigma`` numbers,
    or (min, max) ranges drawn uniformly per sample; per-pixel noise keyed by (seed, epoch, index)."""

    def __init__(self, mean=0.0, sigma=0.1, clip: bool = True):
        self.mean = _range((mean, mean) if isinstance(mean, numbers.Real) and not isinstance(mean, bool) else mean, "mean")
        self.sigma = _range((sigma, sigma) if isinstance(sigma, numbers.Real) and not isinstance(sigma, bool) else sigma, "sigma")
        if self.sigma[0] < 0:
            raise ValueError(f"sigma must be non-negative, got {sigma!r}")
        if not isinstance(clip, bool):
            raise TypeError(f"clip must be a bool, got {clip!r}")
        self.clip = clip

    def calls(self, ctx):
        u = ctx.uniform(2).to(torch.float64)
        keys = rng.key(ctx.seed, ctx.epoch, ctx.indices, ctx.slot + 1)
        return [F.gaussian_noise_call(ctx.canvas, _lerp(u[:, 0], self.mean), _lerp(u[:, 1], self.sigma), self.clip, keys)]


class RandomGrayscale(Transform):
    """Grayscale with probability p, keeping the channel count (torchvision v2 behaviour)."""

    def __init__(self, p: float = 0.1):
        self.p = _probability(p)

    def calls(self, ctx):
        if ctx.canvas.c != 3:
            raise ValueError(f"RandomGrayscale needs 3 channels, got {ctx.canvas.c}")
        return _color("rgb_to_grayscale", Op.GRAYSCALE, None, self.p, ctx)


def erasing_box(u: torch.Tensor, h: int, w: int, scale, ratio) -> tuple[torch.Tensor, ...]:
    """torchvision RandomErasing.get_params, 10 attempts per sample, vectorised: (top, left, height, width, found) from
    uniforms u [B, 40]; ``scale`` ends may be per-sample tensors [B, 1]."""
    target = h * w * _lerp(u[:, 0:10], scale)
    aspect = torch.exp(_lerp(u[:, 10:20], (math.log(ratio[0]), math.log(ratio[1]))))
    eh = torch.round(torch.sqrt(target * aspect))
    ew = torch.round(torch.sqrt(target / aspect))
    ok = (eh < h) & (ew < w)
    first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)
    eh, ew = eh.gather(1, first)[:, 0], ew.gather(1, first)[:, 0]
    top = torch.floor(u.gather(1, 20 + first)[:, 0] * (h - eh + 1))
    left = torch.floor(u.gather(1, 30 + first)[:, 0] * (w - ew + 1))
    return top, left, eh, ew, ok.any(1)


class RandomErasing(Transform):
    """torchvision's RandomErasing box sampling (10 attempts; no box if none fits)."""

    def __init__(self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0, inplace: bool = False):
        self.p = _probability(p)
        if not (0 <= scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"scale must lie in [0, 1] and ratio be positive (min, max), got {scale!r}, {ratio!r}")
        if isinstance(value, str):
            raise ValueError("value='random' (noise) is not supported yet; pass a number or one value per channel")
        if inplace:
            raise ValueError("inplace=True is not supported: fastaug writes a new batch")
        self.scale, self.ratio, self.value = tuple(scale), tuple(ratio), _check_fill(value, "value")

    def calls(self, ctx):
        cv = ctx.canvas
        u = ctx.uniform(41)
        top, left, eh, ew, found = erasing_box(u, cv.h, cv.w, self.scale, self.ratio)
        rects = torch.stack([left, top, left + ew, top + eh], -1).to(torch.int32).view(cv.b, 1, 4)
        vals = _fill(self.value, ctx, "value")
        applied = (u[:, 40] < self.p) & found
        kwargs = {"i": top, "j": left, "h": eh, "w": ew, "v": vals}
        return [RectCall(name="erase", kwargs=kwargs, rects=rects, values=vals.view(cv.b, 1, cv.c), applied=applied)]


class XYMasking(Transform):
    """albumentations' XYMasking with probability p: stripes along x and y with per-channel fill. Its stripes drop or
    shrink boxes (``min_area``, ``min_visibility``) and flag keypoints as CoarseDropout's holes do (albumentations'
    BaseDropout)."""

    def __init__(
        self, num_masks_x=0, num_masks_y=0, mask_x_length=0, mask_y_length=0, fill=0, fill_mask=None, p: float = 0.5, *,
        min_area: float = 0.0, min_visibility: float = 0.0,
    ):  # fmt: skip
        for name, v in (("num_masks_x", num_masks_x), ("num_masks_y", num_masks_y)):
            F._length_range(v, name)
        self.num_masks_x, self.num_masks_y = num_masks_x, num_masks_y
        self.mask_x_length, self.mask_y_length = mask_x_length, mask_y_length
        self.fill, self.fill_mask, self.p = _check_fill(fill), _mask_fill(fill_mask, "fill_mask"), _probability(p)
        self.min_area, self.min_visibility = _hole_filter(min_area, min_visibility)

    def calls(self, ctx):
        cv = ctx.canvas
        call = F.xy_masking_call(
            cv.b, cv.c, cv.h, cv.w, cv.device, self.num_masks_x, self.num_masks_y, self.mask_x_length, self.mask_y_length,
            self.fill, self.fill_mask, ctx.seed, ctx.epoch, ctx.indices, ctx.slot + 1,
        )  # fmt: skip
        call.applied = ctx.coin(self.p)
        call.hole_filter = (self.min_area, self.min_visibility)
        return [call]


def _hole_filter(min_area, min_visibility) -> tuple[float, float]:
    """A dropout's (min_area, min_visibility) for the boxes its holes hide (albumentations' BboxParams names); bools
    are rejected for both (True is no threshold)."""
    if not isinstance(min_area, numbers.Real) or isinstance(min_area, bool):
        raise TypeError(f"min_area must be a number of pixels, got {min_area!r}")
    if not (math.isfinite(min_area) and min_area >= 0):
        raise ValueError(f"min_area must be a finite number >= 0, got {min_area!r}")
    if isinstance(min_visibility, bool):
        raise TypeError(f"min_visibility must be a fraction in [0, 1], got {min_visibility!r}")
    return float(min_area), _probability(min_visibility, "min_visibility")


def _mask_fill(value, name: str, note: str = ""):
    """A value painted into masks (CoarseDropout's and XYMasking's ``fill_mask``, PixelDropout's ``mask_drop_value``):
    None (masks untouched) or a finite number, returned as given."""
    if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value)):
        raise TypeError(f"{name} must be None or a finite number{note}, got {value!r}")
    return value


def _int_range(value, name: str, lo: int) -> tuple[int, int]:
    """A (min, max) pair of ints with lo <= min <= max."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a (min, max) pair of ints, got {value!r}")
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        raise TypeError(f"{name} must be a (min, max) pair of ints, got {value!r}")
    a, b = int(value[0]), int(value[1])
    if not lo <= a <= b:
        raise ValueError(f"{name} must satisfy {lo} <= min <= max, got {value!r}")
    return a, b


def _size_range(value, name: str) -> tuple[float, float]:
    """A (min, max) pair of finite numbers with 0 <= min <= max."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a (min, max) pair of numbers, got {value!r}")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
        raise TypeError(f"{name} must be a (min, max) pair of numbers, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (math.isfinite(a) and math.isfinite(b) and 0.0 <= a <= b):
        raise ValueError(f"{name} must be finite with 0 <= min <= max, got {value!r}")
    return a, b


def _draw_int(u: torch.Tensor, lo, hi) -> torch.Tensor:
    """Integers uniform in [lo, hi] (inclusive ints) from u in [0, 1)."""
    return torch.floor(lo + u * (hi - lo + 1)).clamp(max=hi)  # a scalar bound: no host->device copy


class CoarseDropout(Transform):
    """albumentations' CoarseDropout (v2 API) with probability p: per sample, ``n`` rectangular holes
    filled with ``fill``. Each sample draws its own parameters (albumentations draws once per call):

    - ``n`` uniform in ``num_holes_range`` = (lo, hi), inclusive (ints, lo >= 1); at most hi holes.
    - Hole sizes, each hole on its own. The unit is picked by ``hole_height_range[1]`` **alone**
      (albumentations' rule): if ``hole_height_range[1] >= 1`` both ranges are pixel counts,
      ``h`` uniform in ``[int(h0), int(min(h1, H))]`` and ``w`` uniform in ``[int(w0), int(min(w1, W))]``
      (inclusive); otherwise both are fractions, ``h = int(H * U(h0, h1))``, ``w = int(W * U(w0, w1))``
      (truncated: 0 is possible, and a 0-sized hole paints nothing). **Quirk** (reproduced): a fraction
      width range next to a pixel height range is read as pixels, so ``hole_height_range=(8, 16),
      hole_width_range=(0.1, 0.5)`` gives width ``int(0.1)..int(0.5)`` = 0 (no hole at all), and
      ``hole_height_range=(0.5, 1.0)`` means 0..1 pixels, not 50..100 %. A pixel width range next to a
      fraction height range would make holes wider than the image (albumentations fails at random
      then): it is a ValueError here.
    - Position fully inside the image: ``y0`` uniform in ``[0, H - h]``, ``x0`` in ``[0, W - w]``; the hole is
      rows ``[y0, y0 + h)``, columns ``[x0, x0 + w)``. Holes are painted in order (later ones win).
    - ``fill``: a number, one value per channel (or a tensor [C] / [B,C]) in the image's own value range
      at this point (float: [0, 1]); uint8 truncates like ``np.array(fill, dtype=uint8)`` (127.9 -> 127).
      ``"random_uniform"``: one random colour per hole and channel, ``floor(U * 256)`` for uint8 (0..255)
      or ``U(0, 1)`` for float. ``"random"`` (per-pixel noise) and ``"inpaint_telea"`` / ``"inpaint_ns"``
      are not supported yet (ValueError).
    - ``fill_mask``: None leaves masks untouched; a number paints the same holes into masks.
    - Boxes and keypoints (``Compose(..., bboxes=, keypoints=)``), as albumentations 2's BaseDropout, in a sample
      with at least one hole: a box of ``area`` whole pixels (``int(x0)..int(x1)`` x ``int(y0)..int(y1)``),
      ``visible`` of them under no hole, is dropped with its label unless ``visible > 0``, ``visible >= min_area``
      and ``visible / area >= min_visibility``; a kept box's sides that holes cut move to its visible pixels'
      bounding rectangle. albumentations takes both thresholds from its BboxParams; here they are the
      transform's (default 0: only boxes with no visible pixel are dropped). A keypoint with
      ``x0 <= x < x1`` and ``y0 <= y < y1`` for a hole is flagged not visible in ``keypoints_visible``.
      See ``fastaug.targets.filter_boxes_by_holes``.

    Differences from albumentations: a uint8 fill outside [0, 255] saturates (albumentations raises or
    wraps); an integer mask gets ``fill_mask`` rounded, not truncated; keypoints in holes are flagged, not
    removed (albumentations removes them when its KeypointParams has ``remove_invisible=True``, the default);
    a box's sides not cut by a hole keep their sub-pixel coordinates (albumentations truncates them) and a box
    of no whole pixel is kept (albumentations drops it). Holes are painted in the epilogue, after every color
    op and in the output frame of the pipeline (like RandomErasing and XYMasking); boxes and keypoints are
    filtered there too."""

    _UNSUPPORTED = ("random", "inpaint_telea", "inpaint_ns")

    def __init__(
        self, num_holes_range=(1, 2), hole_height_range=(0.1, 0.2), hole_width_range=(0.1, 0.2), fill=0, fill_mask=None,
        p: float = 0.5, *, min_area: float = 0.0, min_visibility: float = 0.0,
    ):  # fmt: skip
        self.num_holes_range = _int_range(num_holes_range, "num_holes_range", 1)
        self.hole_height_range = _size_range(hole_height_range, "hole_height_range")
        self.hole_width_range = _size_range(hole_width_range, "hole_width_range")
        self._pixels = self.hole_height_range[1] >= 1  # albumentations' rule: the height range alone decides
        if not self._pixels and self.hole_width_range[1] > 1:
            raise ValueError(
                f"hole_width_range must be fractions in [0, 1] with hole_height_range={hole_height_range!r} (a height "
                f"max < 1 makes both ranges fractions of the image size, as in albumentations), got {hole_width_range!r}"
            )
        if isinstance(fill, str):
            if fill in self._UNSUPPORTED:
                raise ValueError(f"fill={fill!r} is not supported yet; pass a number, one value per channel or 'random_uniform'")
            if fill != "random_uniform":
                raise ValueError(f"fill must be a number, one value per channel or 'random_uniform', got {fill!r}")
            self.fill = fill
        elif fill is None:
            raise TypeError("fill must be a number, one value per channel or 'random_uniform', got None")
        else:
            self.fill = _check_fill(fill)
        self.fill_mask = _mask_fill(fill_mask, "fill_mask")
        self.p = _probability(p)
        self.min_area, self.min_visibility = _hole_filter(min_area, min_visibility)

    def calls(self, ctx):
        cv = ctx.canvas
        b, c, h, w = cv.b, cv.c, cv.h, cv.w
        lo, r = self.num_holes_range
        (h0, h1), (w0, w1) = self.hole_height_range, self.hole_width_range
        n = _draw_int(ctx.uniform(1, 1)[:, 0], lo, r)  # [B]
        uh, uw = ctx.uniform(r, 2), ctx.uniform(r, 3)  # [B,R]
        if self._pixels:
            hlo, hhi, wlo, whi = int(h0), int(min(h1, h)), int(w0), int(min(w1, w))
            if hlo > hhi:
                raise ValueError(f"hole_height_range {self.hole_height_range} (pixels) exceeds the image height {h}")
            if wlo > whi:
                raise ValueError(f"hole_width_range {self.hole_width_range} (pixels) exceeds the image width {w}")
            hh, ww = _draw_int(uh, hlo, hhi), _draw_int(uw, wlo, whi)
        else:
            hh, ww = torch.floor(h * _lerp(uh, (h0, h1))), torch.floor(w * _lerp(uw, (w0, w1)))
        y0 = torch.floor(ctx.uniform(r, 4) * (h - hh + 1))
        x0 = torch.floor(ctx.uniform(r, 5) * (w - ww + 1))
        rects = torch.stack([x0, y0, x0 + ww, y0 + hh], -1).to(torch.int32)  # [B,R,4]
        active = (torch.arange(r, device=cv.device).view(1, r) < n.view(b, 1)) & (hh > 0) & (ww > 0)
        if isinstance(self.fill, str):  # "random_uniform"
            u = ctx.uniform(r * c, 6).view(b, r, c)
            values = (torch.floor(u * 256.0) if ctx.uint8 else u).to(torch.float32)
            fill = values
        else:
            fill = _fill(self.fill, ctx)
            values = fill.view(b, 1, c).expand(b, r, c)
        call = RectCall(name="coarse_dropout", kwargs={"rects": rects, "active": active, "fill": fill}, rects=rects,
                        values=values, active=active, mask_value=self.fill_mask,
                        hole_filter=(self.min_area, self.min_visibility))  # fmt: skip
        call.applied = ctx.coin(self.p)
        return [call]


class Normalize(Transform):
    def __init__(self, mean, std, inplace: bool = False):
        if inplace:
            raise ValueError("inplace=True is not supported: fastaug writes a new batch")
        F.check_mean_std(mean, std)
        self.mean, self.std = list(mean), list(std)

    def calls(self, ctx):
        # checked at construction; the tensors cached per device (no host -> device copy per call)
        c, dev = ctx.canvas.c, ctx.canvas.device
        m, s = (self.mean * c if len(self.mean) == 1 else self.mean), (self.std * c if len(self.std) == 1 else self.std)
        if len(m) != c or len(s) != c:
            raise ValueError(f"mean and std need 1 or {c} values (one per channel), got {len(self.mean)} and {len(self.std)}")
        m, s = [float(v) for v in m], [float(v) for v in s]
        return [NormalizeCall(name="normalize", kwargs={"mean": m, "std": s}, mean=constant(m, torch.float32, dev),
                              std=constant(s, torch.float32, dev), values=(tuple(m), tuple(s)))]  # fmt: skip


class ToDtype(Transform):
    def __init__(self, dtype: torch.dtype = torch.float32, scale: bool = False):
        F.check_dtype(dtype)  # the functional op's check: uint8 or a float dtype
        self.dtype, self.scale = dtype, scale

    def calls(self, ctx):
        return [DtypeCall(name="to_dtype", kwargs={"dtype": self.dtype, "scale": self.scale}, dtype=self.dtype, scale=self.scale)]
