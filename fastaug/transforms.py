"""Transforms: torchvision-v2-like parameter samplers. They never touch pixels.

Each transform draws its parameters per sample from (seed, epoch, sample index, slot) and emits op
calls; :class:`Compose` compiles all calls of a batch into one Plan and runs it as one fused pass per
stage. Sampling follows torchvision's ``get_params`` rules, drawn independently for every sample.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fastaug import functional as F
from fastaug import rng
from fastaug.functional import Canvas
from fastaug.ops import geometry as G
from fastaug.ops.calls import Call, ColorCall, DtypeCall, RectCall
from fastaug.plan import Op
from fastaug.validation import fill_values
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
        if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1]):
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {scale!r}")
        self.scale = scale
        if shear is None:
            self.shear = None
        elif isinstance(shear, numbers.Number):
            self.shear = (*_range(shear, "shear"), 0.0, 0.0)
        elif len(shear) == 2:
            self.shear = (float(shear[0]), float(shear[1]), 0.0, 0.0)
        elif len(shear) == 4:
            self.shear = tuple(float(s) for s in shear)
        else:
            raise ValueError(f"shear must be a number or 2 or 4 values, got {shear!r}")
        check_interpolation(interpolation)
        self.interpolation = interpolation
        self.fill = _check_fill(fill)
        self.center = center

    def calls(self, ctx):
        cv = ctx.canvas
        u = ctx.uniform(6)
        angle = _lerp(u[:, 0], self.degrees)
        if self.translate is not None:
            mx, my = self.translate[0] * cv.w, self.translate[1] * cv.h
            tx = torch.round(_lerp(u[:, 1], (-mx, mx)))
            ty = torch.round(_lerp(u[:, 2], (-my, my)))
        else:
            tx = ty = torch.zeros_like(angle)
        scale = _lerp(u[:, 3], tuple(self.scale)) if self.scale is not None else torch.ones_like(angle)
        if self.shear is not None:
            shx = _lerp(u[:, 4], self.shear[:2])
            shy = _lerp(u[:, 5], self.shear[2:])
        else:
            shx = shy = torch.zeros_like(angle)
        center = None if self.center is None else list(self.center)
        return [
            F.affine_call(
                cv, angle, torch.stack([tx, ty], -1), scale, torch.stack([shx, shy], -1), self.interpolation, self.fill, center
            )
        ]


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
        return [F.rotate_call(ctx.canvas, angle, self.interpolation, center, self.fill)]


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


def _crop_box(u: torch.Tensor, h: int, w: int, scale, ratio) -> tuple[torch.Tensor, ...]:
    """torchvision RandomResizedCrop.get_params, 10 attempts per sample, vectorised. u: [B, 40]."""
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
        top, left, h, w = _crop_box(ctx.uniform(40), cv.h, cv.w, self.scale, self.ratio)
        return [F.resized_crop_call(cv, top, left, h, w, list(self.size), self.interpolation)]


class ColorJitter(Transform):
    """Brightness, contrast, saturation and hue factors per sample, applied in a per-sample random order."""

    def __init__(self, brightness=None, contrast=None, saturation=None, hue=None):
        self.brightness = _jitter(brightness, "brightness")
        self.contrast = _jitter(contrast, "contrast")
        self.saturation = _jitter(saturation, "saturation")
        self.hue = _jitter(hue, "hue", center=0.0, bound=(-0.5, 0.5), clip_first_on_zero=False)

    def calls(self, ctx):
        b = ctx.canvas.b
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
        codes = torch.tensor([int(op) for op, _ in parts], device=u.device)
        values = torch.stack([_lerp(u[:, i], r) for i, (_, r) in enumerate(parts)], 1)
        order = torch.argsort(u[:, 4 : 4 + len(parts)], dim=1)  # a random permutation per sample
        out = []
        static = tuple(int(op) for op, _ in parts)
        for slot in range(len(parts)):
            pick = order[:, slot]
            params = torch.zeros(b, 3, dtype=torch.float32, device=u.device)
            params[:, 0] = values.gather(1, pick.view(b, 1))[:, 0].to(torch.float32)
            out.append(ColorCall(name="color_jitter", code=codes[pick], params=params, codes=static))
        return out


def _color(name: str, op: Op, value: float | None, p: float, ctx: Context, extra: float | None = None) -> list[Call]:
    b = ctx.canvas.b
    params = torch.zeros(b, 3, dtype=torch.float32, device=ctx.canvas.device)
    if value is not None:
        params[:, 0] = value
    if extra is not None:
        params[:, 1] = extra
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


class RandomGrayscale(Transform):
    """Grayscale with probability p, keeping the channel count (torchvision v2 behaviour)."""

    def __init__(self, p: float = 0.1):
        self.p = _probability(p)

    def calls(self, ctx):
        if ctx.canvas.c != 3:
            raise ValueError(f"RandomGrayscale needs 3 channels, got {ctx.canvas.c}")
        return _color("rgb_to_grayscale", Op.GRAYSCALE, None, self.p, ctx)


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
        area = cv.h * cv.w
        target = area * _lerp(u[:, 0:10], self.scale)
        aspect = torch.exp(_lerp(u[:, 10:20], (math.log(self.ratio[0]), math.log(self.ratio[1]))))
        eh = torch.round(torch.sqrt(target * aspect))
        ew = torch.round(torch.sqrt(target / aspect))
        ok = (eh < cv.h) & (ew < cv.w)
        first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)
        found = ok.any(1)
        eh, ew = eh.gather(1, first)[:, 0], ew.gather(1, first)[:, 0]
        top = torch.floor(u.gather(1, 20 + first)[:, 0] * (cv.h - eh + 1))
        left = torch.floor(u.gather(1, 30 + first)[:, 0] * (cv.w - ew + 1))
        rects = torch.stack([left, top, left + ew, top + eh], -1).to(torch.int32).view(cv.b, 1, 4)
        vals = _fill(self.value, ctx, "value")
        applied = (u[:, 40] < self.p) & found
        kwargs = {"i": top, "j": left, "h": eh, "w": ew, "v": vals}
        return [RectCall(name="erase", kwargs=kwargs, rects=rects, values=vals.view(cv.b, 1, cv.c), applied=applied)]


class XYMasking(Transform):
    """albumentations' XYMasking with probability p: stripes along x and y with per-channel fill."""

    def __init__(self, num_masks_x=0, num_masks_y=0, mask_x_length=0, mask_y_length=0, fill=0, fill_mask=None, p: float = 0.5):
        for name, v in (("num_masks_x", num_masks_x), ("num_masks_y", num_masks_y)):
            F._length_range(v, name)
        self.num_masks_x, self.num_masks_y = num_masks_x, num_masks_y
        self.mask_x_length, self.mask_y_length = mask_x_length, mask_y_length
        self.fill, self.fill_mask, self.p = _check_fill(fill), fill_mask, _probability(p)

    def calls(self, ctx):
        cv = ctx.canvas
        call = F.xy_masking_call(
            cv.b, cv.c, cv.h, cv.w, cv.device, self.num_masks_x, self.num_masks_y, self.mask_x_length, self.mask_y_length,
            self.fill, self.fill_mask, ctx.seed, ctx.epoch, ctx.indices, ctx.slot + 1,
        )  # fmt: skip
        call.applied = ctx.coin(self.p)
        return [call]


class Normalize(Transform):
    def __init__(self, mean, std, inplace: bool = False):
        if inplace:
            raise ValueError("inplace=True is not supported: fastaug writes a new batch")
        F.check_mean_std(mean, std)
        self.mean, self.std = list(mean), list(std)

    def calls(self, ctx):
        return [F.normalize_call(self.mean, self.std, ctx.canvas.c, ctx.canvas.device)]


class ToDtype(Transform):
    def __init__(self, dtype: torch.dtype = torch.float32, scale: bool = False):
        F.check_dtype(dtype)  # the functional op's check: uint8 or a float dtype
        self.dtype, self.scale = dtype, scale

    def calls(self, ctx):
        return [DtypeCall(name="to_dtype", kwargs={"dtype": self.dtype, "scale": self.scale}, dtype=self.dtype, scale=self.scale)]
