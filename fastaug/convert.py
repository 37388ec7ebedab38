"""Bring a torchvision v2 or albumentations pipeline over: :func:`from_torchvision`, :func:`from_albumentations`.

Each op with a fastaug equivalent of the same parameter meaning becomes that fastaug transform (the same
distributions, per sample; fixed parameters give the same pixels within fastaug's stated tolerances). An op
without one raises a ``ValueError`` naming every such op of the pipeline, or, with ``fallback=True``, runs per
sample with the original library between fused fastaug segments (its randomness keyed by fastaug's
(seed, epoch, index, position), so batches replay; image only).

========================================  ==========================================================  ========
torchvision.transforms.v2                 fastaug                                                     status
========================================  ==========================================================  ========
Compose                                   flattened                                                   supported
Identity, ToImage, ToPureTensor           dropped (fastaug takes and returns tensors)                 supported
RandomHorizontalFlip / RandomVerticalFlip RandomHorizontalFlip / RandomVerticalFlip                   supported
RandomAffine, RandomRotation              RandomAffine, RandomRotation (nearest / bilinear; no expand) supported
RandomPerspective                         RandomPerspective                                           supported
RandomResizedCrop                         RandomResizedCrop (antialias=False only)                    supported
ColorJitter                               ColorJitter                                                 supported
RandomPosterize, RandomSolarize           RandomPosterize, RandomSolarize                             supported
RandomEqualize, RandomAutocontrast        RandomEqualize, RandomAutocontrast                          supported
RandomInvert, RandomAdjustSharpness       RandomInvert, RandomAdjustSharpness                         supported
RandomGrayscale, GaussianBlur             RandomGrayscale, GaussianBlur                               supported
GaussianNoise, ElasticTransform           GaussianNoise, ElasticTransform                             supported
RandomErasing                             RandomErasing                                               supported
Normalize, ToDtype                        Normalize, ToDtype (a dict dtype raises)                    supported
RandAugment, TrivialAugmentWide,          RandAugment, TrivialAugmentWide, AutoAugment                supported
AutoAugment
anything else (Resize, CenterCrop,        --                                                          raises / fallback
RandomCrop, Pad, RandomApply, RandomChoice,
AugMix, CutMix, MixUp, ...)
========================================  ==========================================================  ========

========================================  ==========================================================  ========
albumentations                            fastaug                                                     status
========================================  ==========================================================  ========
Compose                                   flattened (bbox / keypoint params: pass targets to fastaug) supported
HorizontalFlip, VerticalFlip              RandomHorizontalFlip, RandomVerticalFlip                    supported
InvertImg                                 RandomInvert                                                supported
ToGray (weighted_average, 3 channels)     RandomGrayscale                                             supported
Normalize (standard, max_pixel_value=255) Normalize                                                   supported
RandomResizedCrop (nearest / linear)      RandomResizedCrop                                           supported
SafeRotate (constant border)              SafeRotate                                                  supported
RGBShift, MultiplicativeNoise             RGBShift, MultiplicativeNoise                               supported
PixelDropout, SaltAndPepper               PixelDropout, SaltAndPepper                                 supported
Emboss, Sharpen, MotionBlur               Emboss, Sharpen, MotionBlur                                 supported
CoarseDropout, XYMasking (number fill)    CoarseDropout, XYMasking                                    supported
Rotate (constant border, no crop_border)  RandomRotation (+ WithProbability when p < 1)               supported
Affine (constant border, no fit_output)   AlbumentationsAffine (its draws; run as a perspective call) supported
GaussNoise (per_channel, scale factor 1)  GaussianNoise (mean / std ranges; + WithProbability)        supported
Posterize (one num_bits or range)         RandomPosterize / AlbumentationsPosterize (randint bits)    supported
Solarize                                  AlbumentationsSolarize (threshold_range times 255 or 1)     supported
Equalize                                  -- (cv2.equalizeHist / a PIL variant: other LUTs)           raises / fallback
RandomBrightnessContrast                  -- (clip(alpha*v + beta): no such op)                       raises / fallback
anything else (HueSaturationValue,        --                                                          raises / fallback
CenterCrop, ShiftScaleRotate, ...)
========================================  ==========================================================  ========

An op whose arguments leave the supported meaning (an interpolation other than nearest / bilinear, antialias,
a non-constant border, ``p < 1`` on a wrapper) is reported like an op without an equivalent, with the reason.
Known pixel differences of supported ops: albumentations' Sharpen(method='gaussian') computes ``v - G v`` in uint8 on
uint8 images (it wraps below 0; fastaug keeps the formula: float images agree); Posterize on float images follows
torchvision (albumentations rounds through uint8); fills other than 0 blend on the one-pixel rim under bilinear.
The converter's own samplers (:class:`WithProbability`, ``Albumentations*``) draw like every fastaug transform, and
like them are written by ``Compose.to_json`` and read back by ``fastaug.load`` (the same outputs, bit for bit); so is a
:class:`Pipeline` with fallback ops (an albumentations op as its own ``to_dict`` document, a torchvision v2 op as its
constructor arguments; see ``fastaug.serialize``).
"""

from __future__ import annotations

import hashlib
import inspect
import numbers
from collections.abc import Callable

import numpy as np
import torch

from fastaug import functional as F
from fastaug import policies
from fastaug import transforms as T
from fastaug.compose import Compose
from fastaug.ops.calls import ColorCall
from fastaug.plan import Op
from fastaug.validation import as_batch, check_epoch, check_indices

__all__ = ["Pipeline", "from_albumentations", "from_torchvision"]


class Unsupported(Exception):
    """An op with no fastaug equivalent (the message says why)."""


# ----------------------------------------------------------------------------------------------- torchvision


def _interp(mode) -> str:
    name = getattr(mode, "value", mode)
    name = str(name).lower()
    if name not in ("nearest", "bilinear"):
        raise Unsupported(f"interpolation={name!r} (fastaug resamples nearest or bilinear)")
    return name


def _tv_fill(fill):
    if isinstance(fill, dict):
        values = {v if not isinstance(v, (list, tuple)) else tuple(v) for v in fill.values()}
        if len(values) != 1:
            raise Unsupported("a fill per tv_tensors type (pass one fill)")
        fill = next(iter(fill.values()))
    return 0 if fill is None else fill


def _tv_op(op) -> list[T.Transform]:
    n = type(op).__name__
    a = op
    if n in ("Identity", "ToImage", "ToPureTensor"):
        return []
    if n in ("RandomHorizontalFlip", "RandomVerticalFlip"):
        return [getattr(T, n)(p=a.p)]
    if n == "RandomAffine":
        return [T.RandomAffine(list(a.degrees), a.translate, a.scale, a.shear, _interp(a.interpolation), _tv_fill(a.fill), a.center)]
    if n == "RandomRotation":
        if a.expand:
            raise Unsupported("expand=True")
        return [T.RandomRotation(list(a.degrees), _interp(a.interpolation), False, a.center, _tv_fill(a.fill))]
    if n == "RandomPerspective":
        return [T.RandomPerspective(a.distortion_scale, a.p, _interp(a.interpolation), _tv_fill(a.fill))]
    if n == "RandomResizedCrop":
        if a.antialias:
            raise Unsupported("antialias=True (fastaug resamples without antialiasing: pass antialias=False)")
        return [T.RandomResizedCrop(list(a.size), a.scale, a.ratio, _interp(a.interpolation))]
    if n == "ColorJitter":
        return [T.ColorJitter(a.brightness, a.contrast, a.saturation, a.hue)]
    if n == "RandomPosterize":
        return [T.RandomPosterize(a.bits, a.p)]
    if n == "RandomSolarize":
        return [T.RandomSolarize(a.threshold, a.p)]
    if n in ("RandomEqualize", "RandomAutocontrast", "RandomInvert", "RandomGrayscale"):
        return [getattr(T, n)(p=a.p)]
    if n == "RandomAdjustSharpness":
        return [T.RandomAdjustSharpness(a.sharpness_factor, a.p)]
    if n == "GaussianBlur":
        return [T.GaussianBlur(list(a.kernel_size), list(a.sigma))]
    if n == "GaussianNoise":
        return [T.GaussianNoise(a.mean, a.sigma, a.clip)]
    if n == "ElasticTransform":
        return [T.ElasticTransform(a.alpha, a.sigma, _interp(a.interpolation), _tv_fill(a.fill))]
    if n == "RandomErasing":
        value = a.value if a.value is not None else 0
        if isinstance(value, str):
            raise Unsupported(f"value={value!r}")
        return [T.RandomErasing(a.p, a.scale, a.ratio, value)]
    if n == "Normalize":
        return [T.Normalize(list(a.mean), list(a.std))]
    if n == "ToDtype":
        if isinstance(a.dtype, dict):
            raise Unsupported("a dtype per tv_tensors type")
        return [T.ToDtype(a.dtype, a.scale)]
    if n == "RandAugment":
        return [policies.RandAugment(a.num_ops, a.magnitude, a.num_magnitude_bins, _interp(a.interpolation), _tv_fill_or_none(a.fill))]
    if n == "TrivialAugmentWide":
        return [policies.TrivialAugmentWide(a.num_magnitude_bins, _interp(a.interpolation), _tv_fill_or_none(a.fill))]
    if n == "AutoAugment":
        name = getattr(a.policy, "value", a.policy)
        return [policies.AutoAugment(str(name).lower(), _interp(a.interpolation), _tv_fill_or_none(a.fill))]
    raise Unsupported("no fastaug equivalent")


def _tv_fill_or_none(fill):
    f = _tv_fill(fill)
    return None if f == 0 else f


def _tv_children(op):
    return list(op.transforms) if type(op).__name__ == "Compose" else None


# ----------------------------------------------------------------------------------------------- albumentations

_SAME_NAME = {
    "HorizontalFlip": "RandomHorizontalFlip", "VerticalFlip": "RandomVerticalFlip", "InvertImg": "RandomInvert",
    "RGBShift": "RGBShift", "MultiplicativeNoise": "MultiplicativeNoise", "PixelDropout": "PixelDropout",
    "SaltAndPepper": "SaltAndPepper", "Emboss": "Emboss", "Sharpen": "Sharpen", "MotionBlur": "MotionBlur",
    "CoarseDropout": "CoarseDropout", "XYMasking": "XYMasking",
}  # fmt: skip


def _cv2_interp(code: int) -> str:
    if code == 0:
        return "nearest"
    if code == 1:
        return "bilinear"
    raise Unsupported(f"interpolation={code} (fastaug resamples nearest (0) or linear (1))")


def _build(cls, args: dict, keys: list[str]):
    params = inspect.signature(cls.__init__).parameters
    return cls(**{k: args[k] for k in keys if k in args and k in params})


def _al_zero_fill(fill):
    """albumentations' fill: None (cv2's BORDER_CONSTANT with 0, no blend on the rim) when zero, else the values."""
    values = [fill] if isinstance(fill, numbers.Real) else list(fill)
    return None if all(v == 0 for v in values) else fill


def _al_border(args: dict, name: str) -> None:
    """Geometric ops: the constant border, masks nearest with fill 0 (fastaug's mask semantics)."""
    if args["border_mode"] != 0:
        raise Unsupported(f"border_mode={args['border_mode']} (fastaug pads with a constant: BORDER_CONSTANT, 0)")
    if args.get("mask_interpolation", 0) != 0:
        raise Unsupported(f"mask_interpolation={args['mask_interpolation']} (fastaug resamples masks nearest)")
    fill_mask = args.get("fill_mask", 0)
    if any(v != 0 for v in ([fill_mask] if isinstance(fill_mask, numbers.Real) else fill_mask)):
        raise Unsupported(f"fill_mask={fill_mask!r} (fastaug fills masks with 0)")
    if args.get("rotate_method", "largest_box") != "largest_box":
        raise Unsupported(f"rotate_method={args['rotate_method']!r} (fastaug moves box corners: 'largest_box')")


def _al_op(op) -> list[T.Transform]:
    n = type(op).__name__
    args = op.get_transform_init_args()
    if n in _SAME_NAME:
        cls = getattr(T, _SAME_NAME[n])
        for key in ("fill",):
            if isinstance(args.get(key), str):
                raise Unsupported(f"{key}={args[key]!r}")
        return [_build(cls, args, list(inspect.signature(cls.__init__).parameters)[1:])]
    if n == "ToGray":
        if args["method"] != "weighted_average" or args["num_output_channels"] != 3:
            raise Unsupported("method other than 'weighted_average' or num_output_channels != 3")
        return [T.RandomGrayscale(p=args["p"])]
    if n == "Normalize":
        if args["normalization"] != "standard" or args["max_pixel_value"] != 255.0 or args["p"] != 1.0:
            raise Unsupported("normalization other than 'standard', max_pixel_value != 255 or p < 1")
        mean, std = args["mean"], args["std"]
        return [T.Normalize([mean] if np.isscalar(mean) else list(mean), [std] if np.isscalar(std) else list(std))]
    if n == "RandomResizedCrop":
        if args["p"] != 1.0 or args.get("area_for_downscale"):
            raise Unsupported("p < 1 or area_for_downscale")
        return [T.RandomResizedCrop(list(args["size"]), args["scale"], args["ratio"], _cv2_interp(args["interpolation"]))]
    if n == "SafeRotate":
        _al_border(args, n)
        return [T.SafeRotate(args["limit"], _cv2_interp(args["interpolation"]), args["fill"], args["p"])]
    if n == "Rotate":
        _al_border(args, n)
        if args["crop_border"]:
            raise Unsupported("crop_border=True (a per-sample output size)")
        rotation = T.RandomRotation(list(args["limit"]), _cv2_interp(args["interpolation"]), fill=_al_zero_fill(args["fill"]))
        return [_with_p(rotation, args["p"])]
    if n == "Affine":
        _al_border(args, n)
        if args["fit_output"]:
            raise Unsupported("fit_output=True (a per-sample output size)")
        return [AlbumentationsAffine(
            args["scale"], args["translate_percent"], args["translate_px"], args["rotate"], args["shear"],
            _cv2_interp(args["interpolation"]), args["keep_ratio"], args["balanced_scale"], _al_zero_fill(args["fill"]), args["p"],
        )]  # fmt: skip
    if n == "GaussNoise":
        if not args["per_channel"]:
            raise Unsupported("per_channel=False (one noise for every channel; fastaug draws per pixel and channel)")
        if args["noise_scale_factor"] != 1:
            raise Unsupported(f"noise_scale_factor={args['noise_scale_factor']} (noise drawn at a lower resolution and resized)")
        return [_with_p(T.GaussianNoise(args["mean_range"], args["std_range"], clip=True), args["p"])]
    if n == "Posterize":
        bits = args["num_bits"]
        if isinstance(bits, list):
            raise Unsupported("num_bits per channel")
        if bits[0] == bits[1]:
            return [T.RandomPosterize(int(bits[0]), args["p"])]
        return [AlbumentationsPosterize(tuple(bits), args["p"])]
    if n == "Solarize":
        return [AlbumentationsSolarize(tuple(args["threshold_range"]), args["p"])]
    if n == "Equalize":
        raise Unsupported(
            "its LUTs are cv2.equalizeHist's (mode='cv') or a PIL variant on the inclusive cumulative histogram (mode='pil'); "
            "fastaug equalizes as torchvision / PIL (exclusive cumulative histogram)"
        )
    if n == "RandomBrightnessContrast":
        raise Unsupported(
            "clip(alpha * v + beta): contrast about 0 and additive brightness (by max or by the image mean), clipped once; "
            "fastaug's brightness and contrast are torchvision's (multiplicative; contrast about the gray mean)"
        )
    raise Unsupported("no fastaug equivalent")


# albumentations draws that fastaug's torchvision-like transforms do not make: the converter's own samplers (they
# draw from (seed, epoch, index, slot) like every fastaug transform; fastaug.serialize writes and reads them: each keeps
# its constructor arguments under their own names)


def _check_p(p) -> float:
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    return float(p)


class WithProbability(T.Transform):
    """``transform`` applied to each sample with probability ``p`` (albumentations' ``p``): its calls, with a coin
    drawn from the last slot of this transform's block (``transform`` draws from the first ones)."""

    def __init__(self, transform: T.Transform, p: float = 0.5):
        if not isinstance(transform, T.Transform):
            raise TypeError(f"transform must be a fastaug transform, got {type(transform).__name__}")
        self.transform, self.p = transform, _check_p(p)

    def calls(self, ctx):
        out = self.transform.calls(ctx)
        if self.p == 1.0:
            return out
        coin = ctx.coin(self.p, offset=T.SLOTS_PER_TRANSFORM - 1)
        for call in out:
            call.applied = coin if call.applied is None else call.applied & coin
        return out


def _with_p(transform: T.Transform, p: float) -> T.Transform:
    return transform if p == 1.0 else WithProbability(transform, p)


class _DrawnColorOp(T.Transform):
    """One color op whose magnitude is drawn per sample (``_magnitude``), applied with probability ``p``."""

    name, code = "", Op.IDENTITY

    def _magnitude(self, u: torch.Tensor, ctx: T.Context) -> torch.Tensor:
        raise NotImplementedError

    def calls(self, ctx):
        u = ctx.uniform(2)
        params = torch.zeros(ctx.canvas.b, 3, dtype=torch.float32, device=u.device)
        params[:, 0] = self._magnitude(u[:, 0], ctx)
        return [ColorCall(name=self.name, code=int(self.code), params=params, applied=u[:, 1] < self.p)]


def _bounded_pair(values, kind: type, top: float, name: str) -> tuple:
    """``(lo, hi)`` converted by ``kind``, with 0 <= lo <= hi <= top (else a ValueError naming ``name``)."""
    lo, hi = (kind(v) for v in values)
    if not 0 <= lo <= hi <= top:
        raise ValueError(f"{name} must be (lo, hi) with 0 <= lo <= hi <= {top}, got {values!r}")
    return lo, hi


class AlbumentationsPosterize(_DrawnColorOp):
    """albumentations' Posterize: ``bits ~ randint(lo, hi)`` (inclusive) per sample, with probability ``p``. uint8
    images: the same pixels; float images are posterized as torchvision does (levels k / 2**bits), where albumentations
    rounds through uint8."""

    name, code = "posterize", Op.POSTERIZE

    def __init__(self, num_bits: tuple[int, int] = (4, 4), p: float = 0.5):
        self.num_bits, self.p = _bounded_pair(num_bits, int, 8, "num_bits"), _check_p(p)

    def _magnitude(self, u, ctx):
        lo, hi = self.num_bits
        return torch.clamp(lo + torch.floor(u * (hi - lo + 1)), max=hi)


class AlbumentationsSolarize(_DrawnColorOp):
    """albumentations' Solarize: ``threshold ~ U(threshold_range)`` times the image's maximum (255 or 1) per sample;
    values ``>=`` it are inverted; probability ``p``."""

    name, code = "solarize", Op.SOLARIZE

    def __init__(self, threshold_range: tuple[float, float] = (0.5, 0.5), p: float = 0.5):
        self.threshold_range, self.p = _bounded_pair(threshold_range, float, 1, "threshold_range"), _check_p(p)

    def _magnitude(self, u, ctx):
        lo, hi = self.threshold_range
        if not ctx.uint8:  # albumentations compares float32 pixels with the threshold in float32 too (a NumPy weak scalar)
            return lo + u * (hi - lo)
        # uint8: its LUT compares integers with the float64 threshold; the float32 not below it decides the same
        t = (lo + u.to(torch.float64) * (hi - lo)) * 255.0
        t32 = t.to(torch.float32)
        return torch.where(t32.to(torch.float64) < t, torch.nextafter(t32, torch.full_like(t32, float("inf"))), t32)


def _pair_of(value: dict, key: str) -> tuple[float, float]:
    lo, hi = value[key]
    return float(lo), float(hi)


class AlbumentationsAffine(T.Transform):
    """albumentations' Affine (fit_output=False, constant border): per sample ``scale`` x and y ~ U (the same draw
    with ``keep_ratio``; ``balanced_scale``: below or above 1 with equal odds), translation ``translate_px``
    ~ randint (inclusive) or ``int(U(translate_percent) * size)``, ``rotate`` ~ U degrees (counter-clockwise on
    screen), ``shear`` x and y ~ U degrees; with probability ``p``. The map, about the image centre (continuous
    coordinates), is ``out = Sh(-shear) R(rotate) S(scale) (in - c) + c + t`` with ``Sh = [[1, tan x], [tan y, 1]]``,
    run as the perspective call taking the input's corners to their images (so records list it as ``perspective``)."""

    def __init__(self, scale, translate_percent, translate_px, rotate, shear, interpolation="bilinear", keep_ratio=False,
                 balanced_scale=False, fill=None, p: float = 0.5):  # fmt: skip
        self.scale = {k: _pair_of(scale, k) for k in ("x", "y")}
        self.translate_percent = None if translate_percent is None else {k: _pair_of(translate_percent, k) for k in ("x", "y")}
        self.translate_px = None if translate_px is None else {k: tuple(int(v) for v in translate_px[k]) for k in ("x", "y")}
        self.rotate = (float(rotate[0]), float(rotate[1]))
        self.shear = {k: _pair_of(shear, k) for k in ("x", "y")}
        self.interpolation, self.keep_ratio, self.balanced_scale = interpolation, bool(keep_ratio), bool(balanced_scale)
        self.fill, self.p = tuple(fill) if isinstance(fill, (list, tuple)) else fill, _check_p(p)  # a tuple also when read from JSON

    def _scale(self, u: torch.Tensor, pick: torch.Tensor, r: tuple[float, float]) -> torch.Tensor:
        if not self.balanced_scale:
            return r[0] + u * (r[1] - r[0])
        lower, upper = (r[0], 1.0) if r[0] < 1 else None, (1.0, r[1]) if r[1] > 1 else None
        if lower is None and upper is None:
            return torch.ones_like(u)
        lo = torch.full_like(u, (lower or upper)[0])
        hi = torch.full_like(u, (lower or upper)[1])
        if lower is not None and upper is not None:
            lo, hi = torch.where(pick, upper[0], lo), torch.where(pick, upper[1], hi)
        return lo + u * (hi - lo)

    def calls(self, ctx):
        cv = ctx.canvas
        u = ctx.uniform(12).to(torch.float64)
        sx = self._scale(u[:, 0], u[:, 1] < 0.5, self.scale["x"])
        sy = sx if self.keep_ratio else self._scale(u[:, 2], u[:, 3] < 0.5, self.scale["y"])
        if self.translate_px is not None:
            (x0, x1), (y0, y1) = self.translate_px["x"], self.translate_px["y"]
            tx = torch.clamp(x0 + torch.floor(u[:, 4] * (x1 - x0 + 1)), max=x1)
            ty = torch.clamp(y0 + torch.floor(u[:, 5] * (y1 - y0 + 1)), max=y1)
        elif self.translate_percent is not None:
            (x0, x1), (y0, y1) = self.translate_percent["x"], self.translate_percent["y"]
            tx = torch.trunc((x0 + u[:, 4] * (x1 - x0)) * cv.w)
            ty = torch.trunc((y0 + u[:, 5] * (y1 - y0)) * cv.h)
        else:
            tx = ty = torch.zeros_like(sx)
        rot = torch.deg2rad(self.rotate[0] + u[:, 6] * (self.rotate[1] - self.rotate[0]))
        (a0, a1), (b0, b1) = self.shear["x"], self.shear["y"]
        shx = torch.tan(torch.deg2rad(-(a0 + u[:, 7] * (a1 - a0))))
        shy = torch.tan(torch.deg2rad(-(b0 + u[:, 8] * (b1 - b0))))
        cos, sin = torch.cos(rot), torch.sin(rot)
        rs = torch.stack([torch.stack([cos * sx, sin * sy], -1), torch.stack([-sin * sx, cos * sy], -1)], -2)  # R S
        shear = torch.stack([torch.stack([torch.ones_like(shx), shx], -1), torch.stack([shy, torch.ones_like(shy)], -1)], -2)
        linear = shear @ rs  # [B,2,2]
        centre = torch.tensor([cv.w / 2.0, cv.h / 2.0], dtype=torch.float64, device=u.device)
        corners = torch.tensor([[0.0, 0.0], [cv.w, 0.0], [cv.w, cv.h], [0.0, cv.h]], dtype=torch.float64, device=u.device)
        ends = (corners - centre) @ linear.transpose(1, 2) + centre + torch.stack([tx, ty], -1).unsqueeze(1)
        call = F.perspective_call(cv, corners.expand(cv.b, 4, 2), ends, self.interpolation, self.fill)
        call.applied = u[:, 11] < self.p
        return [call]


def _al_children(op):
    name = type(op).__name__
    if name in ("Compose", "Sequential") and getattr(op, "p", 1.0) == 1.0:
        return list(op.transforms)
    return None


# ----------------------------------------------------------------------------------------------- pipelines


class _Fallback:
    """One op of the original library, run per sample (image only)."""

    def __init__(self, op, library: str, position: int):
        self.op, self.library, self.position = op, library, position

    def _key(self, seed: int, epoch: int, index: int) -> int:
        digest = hashlib.blake2b(f"{seed}/{epoch}/{index}/{self.position}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") & ((1 << 63) - 1)

    def __call__(self, x: torch.Tensor, indices: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        outs = []
        for img, index in zip(x, indices.tolist(), strict=True):
            key = self._key(seed, int(epoch), index)
            if self.library == "torchvision":
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(key)
                    outs.append(self.op(img))
            else:
                self.op.set_random_seed(key % (1 << 32))
                arr = self.op(image=img.permute(1, 2, 0).cpu().numpy())["image"]
                arr = arr[..., None] if arr.ndim == 2 else arr
                outs.append(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).to(x.device))
        return torch.stack(outs)

    def __repr__(self) -> str:
        return f"fallback({self.op!r})"


class Pipeline(torch.nn.Module):
    """Fused fastaug segments (:class:`~fastaug.Compose`) with per-sample fallback ops of the original library
    between them; called like a Compose on an image batch (no targets)."""

    def __init__(self, stages: list, seed: int = 0):
        super().__init__()
        self.stages = stages
        self.segments = torch.nn.ModuleList([s for s in stages if isinstance(s, Compose)])
        self.seed = seed

    def __setattr__(self, name, value) -> None:
        super().__setattr__(name, value)
        if name == "seed" and "segments" in self._modules:  # one seed for every segment and the fallback ops
            for segment in self.segments:
                segment.seed = value

    def forward(self, image: torch.Tensor, *, indices=None, epoch: int = 0, backend: str | None = None) -> torch.Tensor:
        """The stages in order; ``backend``: the fused segments' (None: each Compose's own)."""
        x, unbatched = as_batch(image, "image")
        idx = check_indices(indices, x.shape[0], x.device)
        epoch = check_epoch(epoch)
        for stage in self.stages:
            if isinstance(stage, Compose):
                x = stage(x, indices=idx, epoch=epoch, **({} if backend is None else {"backend": backend}))
            else:
                x = stage(x, idx, self.seed, epoch)
        return x[0] if unbatched else x

    def to_json(self, path):
        """Write this pipeline as versioned JSON (``fastaug.load`` reads it back; see ``fastaug.serialize``)."""
        from fastaug.serialize import to_json

        return to_json(self, path)

    def __repr__(self) -> str:
        return "Pipeline([\n    " + ",\n    ".join(repr(s) for s in self.stages) + f"\n], seed={self.seed})"


def _convert(pipeline, library: str, op_fn: Callable, children: Callable, seed: int, backend: str, fallback: bool):
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not isinstance(fallback, bool):
        raise TypeError(f"fallback must be a bool, got {type(fallback).__name__}")
    flat: list = []

    def walk(op):
        kids = children(op)
        if kids is None:
            flat.append(op)
        else:
            for k in kids:
                walk(k)

    walk(pipeline)
    stages: list = []
    current: list[T.Transform] = []
    missing: list[str] = []
    for pos, op in enumerate(flat):
        try:
            current.extend(op_fn(op))
        except Unsupported as e:
            if not fallback:
                missing.append(f"{type(op).__name__} ({e})")
                continue
            if current:
                stages.append(Compose(current, seed=seed, backend=backend))
                current = []
            stages.append(_Fallback(op, library, pos))
    if missing:
        raise ValueError(f"{library} ops without a fastaug equivalent: {', '.join(missing)} (or convert with fallback=True)")
    if current or not stages:
        stages.append(Compose(current, seed=seed, backend=backend))
    return stages[0] if len(stages) == 1 else Pipeline(stages, seed)


def from_torchvision(pipeline, *, seed: int = 0, backend: str = "auto", fallback: bool = False):
    """A ``torchvision.transforms.v2`` op or Compose -> a :class:`fastaug.Compose` (or a :class:`Pipeline` when
    ``fallback=True`` keeps ops without an equivalent). Raises ``ValueError`` naming every op without one."""
    if not callable(pipeline) or not type(pipeline).__module__.startswith("torchvision.transforms"):
        raise TypeError(f"pipeline must be a torchvision.transforms(.v2) transform, got {type(pipeline).__name__}")
    return _convert(pipeline, "torchvision", _tv_op, _tv_children, seed, backend, fallback)


def from_albumentations(pipeline, *, seed: int = 0, backend: str = "auto", fallback: bool = False):
    """An ``albumentations`` transform or Compose -> a :class:`fastaug.Compose` (or a :class:`Pipeline`, see
    :func:`from_torchvision`). fastaug takes ``[B,C,H,W]`` tensors (or numpy ``image=`` calls, see Compose)."""
    if not callable(pipeline) or not type(pipeline).__module__.startswith("albumentations"):
        raise TypeError(f"pipeline must be an albumentations transform, got {type(pipeline).__name__}")
    return _convert(pipeline, "albumentations", _al_op, _al_children, seed, backend, fallback)
