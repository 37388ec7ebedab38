"""The ops a found policy may use: AutoAugment's 14 and every other catalogue op that has a magnitude.

Each :class:`SearchOp` maps a normalised magnitude ``m`` in [0, 1] onto its op's value
``lo + m * (hi - lo)`` (negated with probability 1/2 per sample for ``signed`` ops, torchvision's rule).
AutoAugment's ops keep torchvision's ranges (RandAugment's magnitudes: the ends of its bins, so a magnitude
``m`` of a found policy means what bin ``9 m`` means in AutoAugment's tables) and run through the policies'
shared :func:`~fastaug.policies.ops.slots_calls`. The other ops build their calls from a value per sample
(``calls(ctx, value [B], interpolation, fill)``: one call set serves every sample of a slot, whatever its value);
their ranges are chosen for augmentation search (moderate at ``m = 1``) and their other arguments are fixed or drawn
as written next to each op.

:data:`EXCLUDED` names every catalogue function that is not a search op, with the reason: a test checks
that the two together cover the catalogue, so a new op must join one or the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastaug import functional as F
from fastaug import rng
from fastaug import transforms as T
from fastaug.ops.calls import Call, ColorCall, RectCall
from fastaug.ops.catalogue import CATALOGUE
from fastaug.plan import Op
from fastaug.policies.ops import AUTO_AUGMENT_SPACE
from fastaug.transforms import Context

SPACE_VERSION = 2  # bumped whenever an op's range or meaning changes: a search notebook of another version is refused
Calls = Callable[[Context, torch.Tensor, str, object], list[Call]]  # (ctx, value [B] float64, interpolation, fill)

BLUR_KERNEL = 13  # GaussianBlur's kernel at every sigma: 2 ceil(3 sigma) + 1 for its largest sigma, 2
MOTION_KERNEL = 9  # MotionBlur's largest kernel


@dataclass(frozen=True)
class SearchOp:
    """One op of the search space. ``function``: the fastaug.functional op it runs; ``lo``/``hi``: the value at
    ``m = 0`` and ``m = 1``; ``calls`` None: an AutoAugment op (drawn through ``slots_calls``); ``rgb``: needs
    3 channels (an identity, or an error, on gray images: left out of a gray space)."""

    name: str
    function: str
    signed: bool = False
    lo: float = 0.0
    hi: float = 1.0
    calls: Calls | None = None
    rgb: bool = False
    magnitude: bool = True

    def value(self, m: float) -> float:
        """The op's (unsigned) value at normalised magnitude ``m``."""
        return self.lo + m * (self.hi - self.lo)


def _keys(ctx: Context) -> torch.Tensor:
    return rng.key(ctx.seed, ctx.epoch, ctx.indices, ctx.slot + 1)


def _params(*columns: torch.Tensor) -> torch.Tensor:
    cols = list(columns) + [torch.zeros_like(columns[0])] * (3 - len(columns))
    return torch.stack(cols, 1).to(torch.float32)


def _fill(fill):
    """A policy's fill (None: zero padding) as the geometric calls take it."""
    return 0 if fill is None else fill


def _hue(ctx, v, interpolation, fill):
    return [ColorCall(name="adjust_hue", code=int(Op.HUE), params=_params(v))]


def _gamma(ctx, v, interpolation, fill):  # gamma 1 + value, gain 1
    return [ColorCall(name="adjust_gamma", code=int(Op.GAMMA), params=_params(1.0 + v, torch.ones_like(v)))]


def _blur(ctx, v, interpolation, fill):
    return [F.gaussian_blur_call(ctx.canvas, BLUR_KERNEL, v)]


def _noise(ctx, v, interpolation, fill):
    return [F.gaussian_noise_call(ctx.canvas, torch.zeros_like(v), v, True, _keys(ctx))]


def _motion(ctx, v, interpolation, fill):  # odd kernel size nearest to the value; angle, direction, shift as MotionBlur
    u = ctx.uniform(4).to(torch.float64)
    k = 2.0 * torch.round((v - 1.0) / 2.0) + 1.0
    angle, direction = u[:, 0] * 360.0, u[:, 1] * 2.0 - 1.0
    shift = (u[:, 2:4] * 2 - 1) * torch.floor(k / 2).unsqueeze(1) / 2
    kw = {"kernel_size": k, "angle": angle, "direction": direction, "shift": shift}
    return [F.convolve_call(ctx.canvas, F.motion_blur_kernel(k, angle, direction, shift, MOTION_KERNEL), "motion_blur", kw)]


def _sharpen(ctx, v, interpolation, fill):  # alpha = value, lightness 1
    one = torch.ones_like(v)
    return [F.convolve_call(ctx.canvas, F.sharpen_kernel(v, one), "sharpen", {"alpha": v, "lightness": one})]


def _emboss(ctx, v, interpolation, fill):  # alpha = value, strength 0.5
    half = torch.full_like(v, 0.5)
    return [F.convolve_call(ctx.canvas, F.emboss_kernel(v, half), "emboss", {"alpha": v, "strength": half})]


def _pixel_dropout(ctx, v, interpolation, fill):
    return [F.pixel_dropout_call(ctx.canvas, v, False, 0.0, ctx.uint8, _keys(ctx))]


def _salt_and_pepper(ctx, v, interpolation, fill):  # salt and pepper alike
    return [F.salt_and_pepper_call(ctx.canvas, v, torch.full_like(v, 0.5), _keys(ctx))]


def _multiplicative_noise(ctx, v, interpolation, fill):  # per pixel m ~ U(1 - value, 1 + value)
    return [F.multiplicative_noise_call(ctx.canvas, 1.0 - v, 1.0 + v, False, _keys(ctx))]


def _rgb_shift(ctx, v, interpolation, fill):  # per channel ~ U(-value, value) of the value range
    shifts = (ctx.uniform(3).to(torch.float64) * 2.0 - 1.0) * v.unsqueeze(1) * (255.0 if ctx.uint8 else 1.0)
    kw = dict(zip(("r_shift", "g_shift", "b_shift"), shifts.unbind(1), strict=True))
    return [ColorCall(name="rgb_shift", kwargs=kw, code=int(Op.RGB_SHIFT), params=shifts.to(torch.float32))]


def _rgb_gain(ctx, v, interpolation, fill):  # per channel ~ U(1 - value, 1 + value)
    gains = 1.0 + (ctx.uniform(3).to(torch.float64) * 2.0 - 1.0) * v.unsqueeze(1)
    kw = dict(zip(("r_gain", "g_gain", "b_gain"), gains.unbind(1), strict=True))
    return [ColorCall(name="rgb_gain", kwargs=kw, code=int(Op.RGB_GAIN), params=gains.to(torch.float32))]


def _fog(ctx, v, interpolation, fill):  # density = value; the noise's cell ~ U(0.2, 0.5) of the image (RandomFog's)
    scale = 0.2 + 0.3 * ctx.uniform(1)[:, 0].to(torch.float64)
    return [F.fog_call(ctx.canvas, v, scale, torch.zeros_like(v), _keys(ctx))]


def _downscale(ctx, v, interpolation, fill):
    return [F.downscale_call(ctx.canvas, v)]


def _superpixels(ctx, v, interpolation, fill):  # p_replace = value, 100 segments, segmented at most 128 px
    return [F.superpixels_call(ctx.canvas, v, torch.full_like(v, 100.0), 100, _keys(ctx), 128)]


def _safe_rotate(ctx, v, interpolation, fill):
    return [F.safe_rotate_call(ctx.canvas, v, interpolation, _fill(fill))]


def _perspective(ctx, v, interpolation, fill):  # torchvision's corner jitter with distortion_scale = value
    cv = ctx.canvas
    u = ctx.uniform(8).to(torch.float64)
    reach = torch.stack([torch.floor(v * (cv.w // 2)) + 1, torch.floor(v * (cv.h // 2)) + 1], 1).repeat(1, 4)  # [B,8]
    start = torch.tensor([[0, 0], [cv.w - 1, 0], [cv.w - 1, cv.h - 1], [0, cv.h - 1]], dtype=torch.float64)
    start = start.to(cv.device).expand(cv.b, 4, 2)
    sign = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float64).to(cv.device)
    end = start + sign * torch.floor(u * reach).view(cv.b, 4, 2)
    return [F.perspective_call(cv, start.clone(), end, interpolation, _fill(fill))]


def elastic_sigma(hw: tuple[int, int]) -> float:
    """torchvision's default sigma 5, smaller on small images (its blur kernel, 8 sigma + 1, must fit the image)."""
    return min(5.0, max(0.5, min(hw) / 8.0))


def _elastic(ctx, v, interpolation, fill):  # alpha = value: the field is linear in alpha
    cv = ctx.canvas
    unit = T.ElasticTransform((1.0, 1.0), elastic_sigma((cv.h, cv.w)), interpolation, _fill(fill)).calls(ctx)[0]
    return [F.elastic_call(cv, unit.displacement * v.to(unit.displacement.dtype).view(-1, 1, 1, 1), interpolation, unit.fill)]


def _crop(ctx, v, interpolation, fill):  # RandomResizedCrop back to the image size, area scale = value, ratio 3/4..4/3
    cv = ctx.canvas
    s = v.unsqueeze(1)
    top, left, h, w = T.crop_box(ctx.uniform(40), cv.h, cv.w, (s, s), (3.0 / 4.0, 4.0 / 3.0))
    return [F.resized_crop_call(cv, top, left, h, w, [cv.h, cv.w], interpolation)]


def _erasing(ctx, v, interpolation, fill):  # RandomErasing's box of area scale = value, ratio 0.3..3.3, value 0
    cv = ctx.canvas
    s = v.unsqueeze(1)
    top, left, eh, ew, found = T.erasing_box(ctx.uniform(40), cv.h, cv.w, (s, s), (0.3, 3.3))
    rects = torch.stack([left, top, left + ew, top + eh], -1).to(torch.int32).view(cv.b, 1, 4)
    vals = torch.zeros(cv.b, cv.c, dtype=torch.float32, device=cv.device)
    kw = {"i": top, "j": left, "h": eh, "w": ew, "v": vals}
    return [RectCall(name="erase", kwargs=kw, rects=rects, values=vals.view(cv.b, 1, cv.c), applied=found)]


def _rect_call(name: str, ctx: Context, rects: torch.Tensor, active: torch.Tensor) -> list[Call]:
    cv = ctx.canvas
    values = torch.zeros(cv.b, rects.shape[1], cv.c, dtype=torch.float32, device=cv.device)
    rects = rects.to(torch.int32)
    return [RectCall(name=name, kwargs={"rects": rects, "active": active, "fill": values[:, 0]}, rects=rects, values=values,
                     active=active)]  # fmt: skip


def _xy_masking(ctx, v, interpolation, fill):  # one stripe along x and one along y, lengths ~ U{0..value x size}, fill 0
    cv = ctx.canvas
    u = ctx.uniform(4).to(torch.float64)
    lx, ly = torch.floor(u[:, 0] * (torch.floor(v * cv.w) + 1)), torch.floor(u[:, 1] * (torch.floor(v * cv.h) + 1))
    x0, y0 = torch.floor(u[:, 2] * (cv.w - lx + 1)), torch.floor(u[:, 3] * (cv.h - ly + 1))
    zero = torch.zeros_like(x0)
    rects = torch.stack([torch.stack([x0, zero, x0 + lx, zero + cv.h], -1), torch.stack([zero, y0, zero + cv.w, y0 + ly], -1)], 1)
    return _rect_call("xy_masking", ctx, rects, torch.stack([lx > 0, ly > 0], 1))


def _coarse_dropout(ctx, v, interpolation, fill):  # 1..3 holes of value x the image's height and width, fill 0
    cv = ctx.canvas
    u = ctx.uniform(7).to(torch.float64)
    n = torch.floor(u[:, 0] * 3.0) + 1.0
    hh, ww = torch.floor(cv.h * v).unsqueeze(1), torch.floor(cv.w * v).unsqueeze(1)
    y0, x0 = torch.floor(u[:, 1:4] * (cv.h - hh + 1)), torch.floor(u[:, 4:7] * (cv.w - ww + 1))
    rects = torch.stack([x0, y0, x0 + ww, y0 + hh], -1)  # [B,3,4]
    active = (torch.arange(3, device=cv.device).view(1, 3) < n.view(-1, 1)) & (hh > 0) & (ww > 0)
    return _rect_call("coarse_dropout", ctx, rects, active)


_AA_FUNCTION = {
    "ShearX": "affine", "ShearY": "affine", "TranslateX": "affine", "TranslateY": "affine", "Rotate": "rotate",
    "Brightness": "adjust_brightness", "Color": "adjust_saturation", "Contrast": "adjust_contrast",
    "Sharpness": "adjust_sharpness", "Posterize": "posterize", "Solarize": "solarize", "AutoContrast": "autocontrast",
    "Equalize": "equalize", "Invert": "invert",
}  # fmt: skip

AUTOAUGMENT_OPS: tuple[SearchOp, ...] = tuple(
    SearchOp(op.name, _AA_FUNCTION[op.name], op.signed, rgb=op.name == "Color", magnitude=op.bins(2, 8, 8) is not None)
    for op in AUTO_AUGMENT_SPACE
)

EXTRA_OPS: tuple[SearchOp, ...] = (
    SearchOp("Hue", "adjust_hue", True, 0.0, 0.5, _hue, rgb=True),
    SearchOp("Gamma", "adjust_gamma", True, 0.0, 0.5, _gamma),
    SearchOp("GaussianBlur", "gaussian_blur", False, 0.1, 2.0, _blur),
    SearchOp("GaussianNoise", "gaussian_noise", False, 0.0, 0.2, _noise),
    SearchOp("MotionBlur", "motion_blur", False, 3.0, float(MOTION_KERNEL), _motion),
    SearchOp("Sharpen", "sharpen", False, 0.0, 1.0, _sharpen),
    SearchOp("Emboss", "emboss", False, 0.0, 1.0, _emboss),
    SearchOp("PixelDropout", "pixel_dropout", False, 0.0, 0.2, _pixel_dropout),
    SearchOp("SaltAndPepper", "salt_and_pepper", False, 0.0, 0.1, _salt_and_pepper),
    SearchOp("MultiplicativeNoise", "multiplicative_noise", False, 0.0, 0.5, _multiplicative_noise),
    SearchOp("RGBShift", "rgb_shift", False, 0.0, 0.2, _rgb_shift, rgb=True),
    SearchOp("RGBGain", "rgb_gain", False, 0.0, 0.5, _rgb_gain, rgb=True),
    SearchOp("Fog", "fog", False, 0.0, 1.0, _fog),
    SearchOp("Downscale", "downscale", False, 1.0, 0.25, _downscale),
    SearchOp("Superpixels", "superpixels", False, 0.0, 1.0, _superpixels),
    SearchOp("SafeRotate", "safe_rotate", True, 0.0, 90.0, _safe_rotate),
    SearchOp("Perspective", "perspective", False, 0.0, 0.5, _perspective),
    SearchOp("ElasticTransform", "elastic_transform", False, 0.0, 100.0, _elastic),
    SearchOp("Crop", "resized_crop", False, 1.0, 0.25, _crop),
    SearchOp("Erasing", "erase", False, 0.02, 0.33, _erasing),
    SearchOp("XYMasking", "xy_masking", False, 0.0, 0.3, _xy_masking),
    SearchOp("CoarseDropout", "coarse_dropout", False, 0.05, 0.3, _coarse_dropout),
)

SEARCH_OPS: tuple[SearchOp, ...] = AUTOAUGMENT_OPS + EXTRA_OPS
BY_NAME: dict[str, SearchOp] = {op.name: op for op in SEARCH_OPS}

# catalogue functions that are not search ops, and why
EXCLUDED: dict[str, str] = {
    "identity": "a probability below 1 already leaves samples unchanged",
    "rgb_to_grayscale": "no magnitude",
    "horizontal_flip": "no magnitude", "vertical_flip": "no magnitude",
    "to_dtype": "a type conversion", "normalize": "a model's input convention",
    "crop": "a fixed window (Crop searches resized_crop's scale)",
    "convolve": "a user's kernel (Sharpen, Emboss and MotionBlur search its kernels)",
}  # fmt: skip


def covered_functions() -> set[str]:
    """The catalogue functions the search space runs."""
    return {op.function for op in SEARCH_OPS}


def catalogue_functions() -> set[str]:
    return {spec.function for spec in CATALOGUE}


def space_names(channels: int = 3) -> tuple[str, ...]:
    """The search ops for images with ``channels`` channels (RGB-only ops left out of a gray space)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return tuple(op.name for op in SEARCH_OPS if channels == 3 or not op.rgb)
