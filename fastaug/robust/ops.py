"""The named directional ops of a robustness analysis, each an intensity in [0, 1] mapped onto a catalogue op's value.

An op's value at intensity ``t`` is ``lo + t (hi - lo)``; ``t = 0`` is the identity (or the op's mildest form) and
``t = 1`` the far end of what the op can do. Ops with two directions come as two named ops (``brighten`` /
``darken``, ``contrast`` / ``decontrast``, ``saturate`` / ``desaturate``, ``hue`` / ``dehue``, ``more_red`` /
``less_red`` and green and blue, ``rotate`` / ``rotate_cw``, ...), as users of boundary-search tools know them.
Every op builds its calls from one value per sample (:class:`RobustAugment`), so a batch may mix ops and
intensities freely and still run as one Plan. Where an op needs further draws (a crop's position, a motion blur's
angle, the per-pixel noise) they come from the counter-based key of (seed, epoch, dataset index), so a sample at
two intensities differs only by the intensity.

:data:`EXCLUDED` names every catalogue function that no robust op runs, with the reason: a test checks that the two
together cover the catalogue, so a new op must join one or the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastaug import functional as F
from fastaug.ops.calls import Call, ColorCall, RectCall
from fastaug.ops.catalogue import CATALOGUE
from fastaug.plan import Op
from fastaug.policies import search_ops as S
from fastaug.transforms import Context, Transform

Calls = Callable[[Context, torch.Tensor], list[Call]]  # (ctx, value [B] float64) -> calls
INTERPOLATION = "bilinear"
_INNER_SLOTS = 1 << 20  # an op's own draws: slots far above any Compose position's


@dataclass(frozen=True)
class RobustOp:
    """One named op: ``function`` (the catalogue function it runs), the value ``lo`` at intensity 0 and ``hi`` at 1,
    ``unit`` (what the value means), ``rgb`` (needs 3 channels), ``geometric`` (moves pixels: targets move too)."""

    name: str
    function: str
    lo: float
    hi: float
    build: Calls
    unit: str = ""
    rgb: bool = False
    geometric: bool = False

    def value(self, t):
        """The op's value at intensity ``t`` (a number or a tensor)."""
        return self.lo + t * (self.hi - self.lo)


def _params(*columns: torch.Tensor) -> torch.Tensor:
    cols = list(columns) + [torch.zeros_like(columns[0])] * (3 - len(columns))
    return torch.stack(cols, 1).to(torch.float32)


def _color(name: str, op: Op, arg: str) -> Calls:
    def build(ctx, v):
        return [ColorCall(name=name, kwargs={arg: v}, code=int(op), params=_params(v))]

    return build


def _gamma(ctx, v):
    return [ColorCall(name="adjust_gamma", kwargs={"gamma": v}, code=int(Op.GAMMA), params=_params(v, torch.ones_like(v)))]


def _posterize(ctx, v):
    bits = torch.round(v)
    return [ColorCall(name="posterize", kwargs={"bits": bits}, code=int(Op.POSTERIZE), params=_params(bits))]


def _solarize(ctx, v):  # the threshold as a fraction of the value range
    t = v * (255.0 if ctx.uint8 else 1.0)
    return [ColorCall(name="solarize", kwargs={"threshold": t}, code=int(Op.SOLARIZE), params=_params(t))]


def _channel_shift(channel: int) -> Calls:
    """One channel shifted by ``value`` of the value range (rgb_shift with the other two channels at 0)."""

    def build(ctx, v):
        shifts = torch.zeros(v.shape[0], 3, dtype=torch.float64, device=v.device)
        shifts[:, channel] = v * (255.0 if ctx.uint8 else 1.0)
        kw = dict(zip(("r_shift", "g_shift", "b_shift"), shifts.unbind(1), strict=True))
        return [ColorCall(name="rgb_shift", kwargs=kw, code=int(Op.RGB_SHIFT), params=shifts.to(torch.float32))]

    return build


def _odd_kernel(extent: float, h: int, w: int) -> int:
    """An odd kernel size of ``2 ceil(extent) + 1``, at most ``2 min(h, w) - 1`` (reflected borders must fit)."""
    return max(1, min(2 * math.ceil(extent) + 1, 2 * min(h, w) - 1))


BLUR_SIGMA = 3.0  # gaussian_blur's sigma at intensity 1


def _blur(ctx, v):  # one kernel size for the op's largest sigma: a sample's pixels do not depend on its batch neighbours
    cv = ctx.canvas
    return [F.gaussian_blur_call(cv, _odd_kernel(3.0 * BLUR_SIGMA, cv.h, cv.w), v)]


MOTION_KERNEL = 15


def _motion(ctx, v):  # kernel size = the odd size nearest to value; angle, direction, shift drawn as MotionBlur
    cv = ctx.canvas
    top = _odd_kernel(MOTION_KERNEL // 2, cv.h, cv.w)
    u = ctx.uniform(3).to(torch.float64)
    k = torch.clamp(2.0 * torch.round((v - 1.0) / 2.0) + 1.0, 1.0, float(top))
    angle, direction, shift = u[:, 0] * 360.0, u[:, 1] * 2.0 - 1.0, torch.zeros(cv.b, 2, dtype=torch.float64, device=cv.device)
    kw = {"kernel_size": k, "angle": angle, "direction": direction, "shift": shift}
    return [F.convolve_call(cv, F.motion_blur_kernel(k, angle, direction, shift, top), "motion_blur", kw)]


def _erase(ctx, v):  # a box of area ``value`` with the image's aspect ratio, placed uniformly, value 0
    cv = ctx.canvas
    u = ctx.uniform(2).to(torch.float64)
    eh, ew = torch.round(cv.h * torch.sqrt(v)), torch.round(cv.w * torch.sqrt(v))
    top, left = torch.floor(u[:, 0] * (cv.h - eh + 1)), torch.floor(u[:, 1] * (cv.w - ew + 1))
    rects = torch.stack([left, top, left + ew, top + eh], -1).to(torch.int32).view(cv.b, 1, 4)
    vals = torch.zeros(cv.b, cv.c, dtype=torch.float32, device=cv.device)
    kw = {"i": top, "j": left, "h": eh, "w": ew, "v": vals}
    return [RectCall(name="erase", kwargs=kw, rects=rects, values=vals.view(cv.b, 1, cv.c), applied=(eh > 0) & (ew > 0))]


def _search(name: str) -> Calls:
    """A search op's call builder (fastaug.policies.search_ops), bilinear, zero fill."""
    op = S.BY_NAME[name]
    return lambda ctx, v: op.calls(ctx, v, INTERPOLATION, None)


def _affine(kind: str) -> Calls:
    """``rotate`` (degrees, counter-clockwise), ``shear_x`` / ``shear_y`` (degrees), ``translate_x`` / ``translate_y``
    (fraction of the width / height), ``scale`` (zoom factor), about the centre."""

    def build(ctx, v):
        cv = ctx.canvas
        zero, one = torch.zeros_like(v), torch.ones_like(v)
        if kind == "rotate":
            return [F.rotate_call(cv, v, INTERPOLATION)]
        shear = torch.stack([v if kind == "shear_x" else zero, v if kind == "shear_y" else zero], 1)
        move = torch.stack([v * cv.w if kind == "translate_x" else zero, v * cv.h if kind == "translate_y" else zero], 1)
        return [F.affine_call(cv, zero, move, v if kind == "scale" else one, shear, INTERPOLATION)]

    return build


def _op(name, function, lo, hi, build, unit, rgb=False, geometric=False) -> RobustOp:
    return RobustOp(name, function, float(lo), float(hi), build, unit, rgb, geometric)


_B = _color("adjust_brightness", Op.BRIGHTNESS, "brightness_factor")
_C = _color("adjust_contrast", Op.CONTRAST, "contrast_factor")
_S = _color("adjust_saturation", Op.SATURATION, "saturation_factor")
_H = _color("adjust_hue", Op.HUE, "hue_factor")
_SHARPNESS = _color("adjust_sharpness", Op.SHARPNESS, "sharpness_factor")

OPS: tuple[RobustOp, ...] = (
    _op("brighten", "adjust_brightness", 1.0, 3.0, _B, "brightness factor"),
    _op("darken", "adjust_brightness", 1.0, 0.0, _B, "brightness factor"),
    _op("contrast", "adjust_contrast", 1.0, 3.0, _C, "contrast factor"),
    _op("decontrast", "adjust_contrast", 1.0, 0.0, _C, "contrast factor"),
    _op("saturate", "adjust_saturation", 1.0, 5.0, _S, "saturation factor", rgb=True),
    _op("desaturate", "adjust_saturation", 1.0, 0.0, _S, "saturation factor", rgb=True),
    _op("hue", "adjust_hue", 0.0, 0.5, _H, "hue shift (turns)", rgb=True),
    _op("dehue", "adjust_hue", 0.0, -0.5, _H, "hue shift (turns)", rgb=True),
    _op("more_red", "rgb_shift", 0.0, 1.0, _channel_shift(0), "red shift (fraction of the range)", rgb=True),
    _op("less_red", "rgb_shift", 0.0, -1.0, _channel_shift(0), "red shift (fraction of the range)", rgb=True),
    _op("more_green", "rgb_shift", 0.0, 1.0, _channel_shift(1), "green shift (fraction of the range)", rgb=True),
    _op("less_green", "rgb_shift", 0.0, -1.0, _channel_shift(1), "green shift (fraction of the range)", rgb=True),
    _op("more_blue", "rgb_shift", 0.0, 1.0, _channel_shift(2), "blue shift (fraction of the range)", rgb=True),
    _op("less_blue", "rgb_shift", 0.0, -1.0, _channel_shift(2), "blue shift (fraction of the range)", rgb=True),
    _op("rgb_gain", "rgb_gain", 0.0, 1.0, _search("RGBGain"), "per-channel gain spread (1 +- value, drawn)", rgb=True),
    _op("gamma_brighten", "adjust_gamma", 1.0, 0.2, _gamma, "gamma"),
    _op("gamma_darken", "adjust_gamma", 1.0, 5.0, _gamma, "gamma"),
    _op("posterize", "posterize", 8.0, 1.0, _posterize, "bits"),
    _op("solarize", "solarize", 1.01, 0.0, _solarize, "threshold (fraction of the range; above 1: off)"),
    _op("sharpness", "adjust_sharpness", 1.0, 10.0, _SHARPNESS, "sharpness factor"),
    _op("soften", "adjust_sharpness", 1.0, 0.0, _SHARPNESS, "sharpness factor"),
    _op("gaussian_blur", "gaussian_blur", 0.1, BLUR_SIGMA, _blur, "sigma (px)"),
    _op("motion_blur", "motion_blur", 1.0, float(MOTION_KERNEL), _motion, "kernel size (px)"),
    _op("sharpen", "sharpen", 0.0, 1.0, _search("Sharpen"), "alpha"),
    _op("emboss", "emboss", 0.0, 1.0, _search("Emboss"), "alpha"),
    _op("gaussian_noise", "gaussian_noise", 0.0, 0.5, _search("GaussianNoise"), "sigma (fraction of the range)"),
    _op("multiplicative_noise", "multiplicative_noise", 0.0, 1.0, _search("MultiplicativeNoise"), "spread (1 +- value)"),
    _op("pixel_dropout", "pixel_dropout", 0.0, 0.5, _search("PixelDropout"), "drop probability"),
    _op("salt_and_pepper", "salt_and_pepper", 0.0, 0.5, _search("SaltAndPepper"), "amount"),
    _op("fog", "fog", 0.0, 1.0, _search("Fog"), "density"),
    _op("downscale", "downscale", 1.0, 0.1, _search("Downscale"), "scale"),
    _op("superpixels", "superpixels", 0.0, 1.0, _search("Superpixels"), "replace probability"),
    _op("rotate", "rotate", 0.0, 180.0, _affine("rotate"), "degrees, counter-clockwise", geometric=True),
    _op("rotate_cw", "rotate", 0.0, -180.0, _affine("rotate"), "degrees, counter-clockwise", geometric=True),
    _op("shear_x", "affine", 0.0, 45.0, _affine("shear_x"), "degrees", geometric=True),
    _op("shear_y", "affine", 0.0, 45.0, _affine("shear_y"), "degrees", geometric=True),
    _op("translate_x", "affine", 0.0, 0.5, _affine("translate_x"), "fraction of the width", geometric=True),
    _op("translate_y", "affine", 0.0, 0.5, _affine("translate_y"), "fraction of the height", geometric=True),
    _op("zoom_in", "affine", 1.0, 3.0, _affine("scale"), "scale", geometric=True),
    _op("zoom_out", "affine", 1.0, 0.25, _affine("scale"), "scale", geometric=True),
    _op("perspective", "perspective", 0.0, 0.8, _search("Perspective"), "distortion scale", geometric=True),
    _op("crop", "resized_crop", 1.0, 0.05, _search("Crop"), "area kept (resized back)", geometric=True),
    _op("elastic", "elastic_transform", 0.0, 250.0, _search("ElasticTransform"), "alpha (px)", geometric=True),
    _op("erase", "erase", 0.0, 0.9, _erase, "area erased"),
    _op("xy_masking", "xy_masking", 0.0, 0.8, _search("XYMasking"), "stripe length (fraction)"),
    _op("coarse_dropout", "coarse_dropout", 0.0, 0.5, _search("CoarseDropout"), "hole side (fraction)"),
)

BY_NAME: dict[str, RobustOp] = {op.name: op for op in OPS}
NAMES: tuple[str, ...] = tuple(op.name for op in OPS)

# catalogue functions that no robust op runs, and why
EXCLUDED: dict[str, str] = {
    "identity": "intensity 0 of every op",
    "safe_rotate": "rotate covers it (albumentations' matrix moves the image half a pixel at 0 degrees)",
    "invert": "no magnitude", "equalize": "no magnitude",
    "autocontrast": "no magnitude", "rgb_to_grayscale": "no magnitude (desaturate reaches it at intensity 1)",
    "horizontal_flip": "no magnitude", "vertical_flip": "no magnitude", "to_dtype": "a type conversion",
    "normalize": "a model's input convention", "crop": "a fixed window (crop runs resized_crop's area)",
    "convolve": "a user's kernel (sharpen, emboss and motion_blur run its kernels)",
}  # fmt: skip


def catalogue_functions() -> set[str]:
    return {spec.function for spec in CATALOGUE}


def op_names(channels: int = 3) -> tuple[str, ...]:
    """Every op for images with ``channels`` channels (RGB-only ops left out of other channel counts)."""
    return tuple(op.name for op in OPS if channels == 3 or not op.rgb)


def check_ops(ops, channels: int | None = None, name: str = "ops") -> tuple[str, ...]:
    """``ops`` (None: every op for ``channels``) as a tuple of known names; RGB-only ops need 3 channels."""
    if ops is None:
        return op_names(3 if channels is None else channels)
    if isinstance(ops, str) or not hasattr(ops, "__iter__"):
        raise TypeError(f"{name} must be None or a sequence of op names, got {type(ops).__name__}")
    out = []
    for op in ops:
        if op not in BY_NAME:
            raise ValueError(f"{name}: unknown op {op!r} (ops: {', '.join(NAMES)})")
        if channels is not None and channels != 3 and BY_NAME[op].rgb:
            raise ValueError(f"{name}: {op} needs 3 channels, the images have {channels}")
        if op not in out:
            out.append(op)
    if not out:
        raise ValueError(f"{name} must name at least one op")
    return tuple(out)


class RobustAugment(Transform):
    """Per sample any subset of ``ops`` at per-sample intensities: ``intensity`` [B, len(ops)] in [0, 1], NaN where
    the op does not apply. The ops run in the given order, except that elastic runs after every other geometric op
    (its field lives on the final grid) and all geometric ops compose into one resampling that runs first (the
    engine's rule); each op's own draws come from slots of its own, keyed by (seed, epoch, dataset index)."""

    def __init__(self, ops, intensity: torch.Tensor):
        self.ops = check_ops(ops)
        if not isinstance(intensity, torch.Tensor) or intensity.dim() != 2 or intensity.shape[1] != len(self.ops):
            raise ValueError(f"intensity must be a tensor [B, {len(self.ops)}] (one column per op)")
        self.intensity = intensity.to(torch.float64)

    def calls(self, ctx: Context) -> list[Call]:
        cv = ctx.canvas
        if self.intensity.shape[0] != cv.b:
            raise ValueError(f"intensity has {self.intensity.shape[0]} rows for a batch of {cv.b}")
        host = self.intensity
        t = host.to(cv.device)
        order = sorted(range(len(self.ops)), key=lambda j: self.ops[j] == "elastic")
        out: list[Call] = []
        for j in order:
            op = BY_NAME[self.ops[j]]
            if bool(torch.isnan(host[:, j]).all()):
                continue
            mask = ~torch.isnan(t[:, j])
            if op.rgb and cv.c != 3:
                raise ValueError(f"{op.name} needs 3 channels, got {cv.c}")
            value = op.value(torch.where(mask, t[:, j], 0.0).clamp(0.0, 1.0))
            inner = Context(cv, ctx.seed, ctx.epoch, ctx.indices, ctx.slot + (j + 1) * _INNER_SLOTS, ctx.uint8)
            for call in op.build(inner, value):
                call.applied = mask if call.applied is None else call.applied & mask
                out.append(call)
        return out
