"""The ops a found policy may use: AutoAugment's 14 and every other catalogue op that has a magnitude.

Each :class:`SearchOp` maps a normalised magnitude ``m`` in [0, 1] onto its op's value
``lo + m * (hi - lo)`` (negated with probability 1/2 per sample for ``signed`` ops, torchvision's rule).
AutoAugment's ops keep torchvision's ranges (RandAugment's magnitudes: the ends of its bins, so a magnitude
``m`` of a found policy means what bin ``9 m`` means in AutoAugment's tables) and run through the policies'
shared :func:`~fastaug.policies.ops.slot_calls`. The other ops build their calls from the op's own transform
with the value fixed (``build(value, canvas_hw, interpolation, fill)``), so their draws (positions, noise keys)
are the transform's own; their ranges are chosen for augmentation search (moderate at ``m = 1``) and
written next to each op.

:data:`EXCLUDED` names every catalogue function that is not a search op, with the reason: a test checks
that the two together cover the catalogue, so a new op must join one or the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastaug import transforms as T
from fastaug.ops.calls import ColorCall
from fastaug.ops.catalogue import CATALOGUE
from fastaug.plan import Op
from fastaug.policies.ops import AUTO_AUGMENT_SPACE

Build = Callable[[float, tuple[int, int], str, object], T.Transform]  # (value, (H, W), interpolation, fill) -> transform


@dataclass(frozen=True)
class SearchOp:
    """One op of the search space. ``function``: the fastaug.functional op it runs; ``lo``/``hi``: the value at
    ``m = 0`` and ``m = 1``; ``build`` None: an AutoAugment op (drawn through ``slot_calls``); ``rgb``: needs
    3 channels (an identity, or an error, on gray images: left out of a gray space)."""

    name: str
    function: str
    signed: bool = False
    lo: float = 0.0
    hi: float = 1.0
    build: Build | None = None
    rgb: bool = False
    magnitude: bool = True

    def value(self, m: float) -> float:
        """The op's (unsigned) value at normalised magnitude ``m``."""
        return self.lo + m * (self.hi - self.lo)


class _Calls(T.Transform):
    """A transform from a function of the context (ops without a transform of their own)."""

    def __init__(self, fn):
        self._fn = fn

    def calls(self, ctx):
        return self._fn(ctx)


def _gamma(value: float, hw, interpolation, fill) -> T.Transform:
    def calls(ctx):
        params = torch.zeros(ctx.canvas.b, 3, dtype=torch.float32, device=ctx.canvas.device)
        params[:, 0], params[:, 1] = 1.0 + value, 1.0
        return [ColorCall(name="adjust_gamma", code=int(Op.GAMMA), params=params)]

    return _Calls(calls)


def _fill(fill):
    """A policy's fill (None: zero padding) as the geometric transforms take it."""
    return 0 if fill is None else fill


def _blur_size(sigma: float) -> int:
    return 2 * math.ceil(3.0 * sigma) + 1  # +-3 sigma, odd


def _odd(value: float) -> int:
    return 2 * int(round((value - 1.0) / 2.0)) + 1


def _elastic_sigma(hw: tuple[int, int]) -> float:
    """torchvision's default sigma 5, smaller on small images (its blur kernel, 8 sigma + 1, must fit the image)."""
    return min(5.0, max(0.5, min(hw) / 8.0))


def _xy_masking(value: float, hw, interpolation, fill) -> T.Transform:
    h, w = hw
    return T.XYMasking(1, 1, (0, int(value * w)), (0, int(value * h)), p=1.0)


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
    SearchOp("Hue", "adjust_hue", True, 0.0, 0.5, lambda v, hw, i, f: T.ColorJitter(hue=(v, v)), rgb=True),
    SearchOp("Gamma", "adjust_gamma", True, 0.0, 0.5, _gamma),  # gamma 1 +- value
    SearchOp("GaussianBlur", "gaussian_blur", False, 0.1, 2.0, lambda v, hw, i, f: T.GaussianBlur(_blur_size(v), (v, v))),
    SearchOp("GaussianNoise", "gaussian_noise", False, 0.0, 0.2, lambda v, hw, i, f: T.GaussianNoise(0.0, v)),
    SearchOp("MotionBlur", "motion_blur", False, 3.0, 9.0, lambda v, hw, i, f: T.MotionBlur((_odd(v), _odd(v)), p=1.0)),
    SearchOp("Sharpen", "sharpen", False, 0.0, 1.0, lambda v, hw, i, f: T.Sharpen((v, v), (1.0, 1.0), p=1.0)),
    SearchOp("Emboss", "emboss", False, 0.0, 1.0, lambda v, hw, i, f: T.Emboss((v, v), (0.5, 0.5), p=1.0)),
    SearchOp("PixelDropout", "pixel_dropout", False, 0.0, 0.2, lambda v, hw, i, f: T.PixelDropout(v, p=1.0)),
    SearchOp("SaltAndPepper", "salt_and_pepper", False, 0.0, 0.1, lambda v, hw, i, f: T.SaltAndPepper((v, v), p=1.0)),
    SearchOp("MultiplicativeNoise", "multiplicative_noise", False, 0.0, 0.5,
             lambda v, hw, i, f: T.MultiplicativeNoise((1.0 - v, 1.0 + v), elementwise=True, p=1.0)),
    SearchOp("RGBShift", "rgb_shift", False, 0.0, 0.2, lambda v, hw, i, f: T.RGBShift((-v, v), (-v, v), (-v, v), p=1.0), rgb=True),
    SearchOp("RGBGain", "rgb_gain", False, 0.0, 0.5, lambda v, hw, i, f: T.RGBGain(v, v, v, p=1.0), rgb=True),
    SearchOp("Fog", "fog", False, 0.0, 1.0, lambda v, hw, i, f: T.RandomFog((v, v), p=1.0)),
    SearchOp("Downscale", "downscale", False, 1.0, 0.25, lambda v, hw, i, f: T.Downscale((v, v), p=1.0)),
    SearchOp("Superpixels", "superpixels", False, 0.0, 1.0, lambda v, hw, i, f: T.Superpixels((v, v), p=1.0)),
    SearchOp("SafeRotate", "safe_rotate", True, 0.0, 90.0, lambda v, hw, i, f: T.SafeRotate((v, v), interpolation=i, fill=_fill(f), p=1.0)),
    SearchOp("Perspective", "perspective", False, 0.0, 0.5,
             lambda v, hw, i, f: T.RandomPerspective(v, p=1.0, interpolation=i, fill=_fill(f))),
    SearchOp("ElasticTransform", "elastic_transform", False, 0.0, 100.0,
             lambda v, hw, i, f: T.ElasticTransform((v, v), _elastic_sigma(hw), interpolation=i, fill=_fill(f))),
    SearchOp("Crop", "resized_crop", False, 1.0, 0.25, lambda v, hw, i, f: T.RandomResizedCrop(hw, (v, v), interpolation=i)),
    SearchOp("Erasing", "erase", False, 0.02, 0.33, lambda v, hw, i, f: T.RandomErasing(1.0, (v, v))),
    SearchOp("XYMasking", "xy_masking", False, 0.0, 0.3, _xy_masking),
    SearchOp("CoarseDropout", "coarse_dropout", False, 0.05, 0.3,
             lambda v, hw, i, f: T.CoarseDropout((1, 3), (v, v), (v, v), p=1.0)),
)  # fmt: skip

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
