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
anything else (Affine, Rotate, GaussNoise, --                                                         raises / fallback
RandomBrightnessContrast, HueSaturation...)
========================================  ==========================================================  ========

An op whose arguments leave the supported meaning (an interpolation other than nearest / bilinear, antialias,
a non-constant border, ``p < 1`` on a wrapper) is reported like an op without an equivalent, with the reason.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable

import numpy as np
import torch

from fastaug import policies
from fastaug import transforms as T
from fastaug.compose import Compose
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
        if args["border_mode"] != 0 or args["rotate_method"] != "largest_box":
            raise Unsupported("border_mode other than BORDER_CONSTANT or rotate_method other than 'largest_box'")
        return [T.SafeRotate(args["limit"], _cv2_interp(args["interpolation"]), args["fill"], args["p"])]
    raise Unsupported("no fastaug equivalent")


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
        self.stages, self.seed = stages, seed
        self.segments = torch.nn.ModuleList([s for s in stages if isinstance(s, Compose)])

    def forward(self, image: torch.Tensor, *, indices=None, epoch: int = 0) -> torch.Tensor:
        x, unbatched = as_batch(image, "image")
        idx = check_indices(indices, x.shape[0], x.device)
        epoch = check_epoch(epoch)
        for stage in self.stages:
            x = stage(x, indices=idx, epoch=epoch) if isinstance(stage, Compose) else stage(x, idx, self.seed, epoch)
        return x[0] if unbatched else x

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
