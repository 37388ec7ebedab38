"""Per-sample functional ops on batches, with torchvision.transforms.v2.functional names and arguments.

``img`` is [B,C,H,W] (or one image [C,H,W]), uint8 or float in [0, 1]. Every magnitude is a number
or a per-sample tensor [B] (``translate``, ``shear``: [B,2]). Each op equals torchvision's functional
op applied to each sample with that sample's values. ``backend``: "auto" (triton for CUDA tensors,
numba for CPU), "triton", "numba" or "torch" (the plain reference).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from fastaug import autograd, rng
from fastaug.compiler import compile_plan
from fastaug.constants import constant
from fastaug.ops import counter
from fastaug.ops import geometry as G
from fastaug.ops.calls import Call, ChannelsCall, ColorCall, DtypeCall, GeometricCall, NormalizeCall, RectCall
from fastaug.ops.catalogue import dropout_mode
from fastaug.plan import Op
from fastaug.validation import (
    _check,
    as_batch,
    channels_for,
    check_epoch,
    check_indices,
    check_seed,
    checks_values,
    fill_values,
    interpolation,
    per_sample,
)

__all__ = [
    "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue", "adjust_gamma",
    "adjust_sharpness", "rgb_to_grayscale", "invert", "posterize", "solarize", "equalize", "autocontrast",
    "gaussian_blur", "gaussian_noise", "convolve", "sharpen", "emboss", "motion_blur", "pixel_dropout", "salt_and_pepper",
    "multiplicative_noise", "rgb_shift", "rgb_gain", "fog", "downscale", "superpixels",
    "affine", "rotate", "horizontal_flip", "elastic_transform", "vertical_flip", "crop", "resized_crop", "perspective",
    "erase", "xy_masking", "normalize", "to_dtype", "run_calls", "safe_rotate",
]  # fmt: skip


def run_calls(img: torch.Tensor, calls: list[Call], backend: str = "auto") -> torch.Tensor:
    """Compile calls for ``img`` into one Plan and execute it."""
    x, unbatched = as_batch(img)
    plan = compile_plan(calls, tuple(x.shape), x.dtype, x.device)
    out = autograd.execute(plan, x, backend)  # differentiable when x or a magnitude requires grad
    return out[0] if unbatched else out


@dataclass(frozen=True)
class Canvas:
    """What call builders need to know of a batch: its shape and device."""

    b: int
    c: int
    h: int
    w: int
    device: torch.device

    def __iter__(self):
        return iter((self.b, self.c, self.h, self.w, self.device))


def _batch(img: torch.Tensor) -> Canvas:
    x, _ = as_batch(img)
    b, c, h, w = x.shape
    return Canvas(b, c, h, w, x.device)


def _bound(img: torch.Tensor) -> float:
    return 255.0 if img.dtype == torch.uint8 else 1.0


def _color(img, name: str, op: Op, kwargs: dict, params: list[torch.Tensor], backend: str, **extra) -> torch.Tensor:
    b = params[0].shape[0] if params else _batch(img).b
    dev = img.device
    p = torch.zeros(b, 3, dtype=torch.float64, device=dev)
    for i, t in enumerate(params):
        p[:, i] = t.to(torch.float64)  # differentiable: gradients reach the magnitude tensors
    call = ColorCall(name=name, kwargs=kwargs, code=int(op), params=p, **extra)
    return run_calls(img, [call], backend)


def _positive(t: torch.Tensor, name: str) -> torch.Tensor:
    """``t`` > 0: a CPU tensor raises otherwise; a device tensor is kept >= 1e-6 (the device rule of
    ``fastaug.validation``: the op's near-identity, e.g. a blur with sigma 1e-6 keeps the image)."""
    _check(lambda: t > 0, f"{name} must be > 0", on=t)
    return t if checks_values(t) else torch.clamp(t, min=1e-6)


def _finite(t: torch.Tensor, name: str) -> torch.Tensor:
    """``t`` finite: a CPU tensor raises otherwise; on a device NaN and +-inf become 0 (``fastaug.validation``)."""
    _check(lambda: torch.isfinite(t.detach()), f"{name} must hold finite values" if name == "kernel" else f"{name} must be finite", on=t)
    return t if checks_values(t) else torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)


def _factor(
    img, value, name: str, channels: tuple[int, ...] | None, op: Op, fname: str, backend: str, straight_through=False,
    nan_skips: bool = False, **rng_kw,
):
    """A one-value color op. ``nan_skips``: a device NaN leaves its sample unchanged (an op whose range holds no
    identity: solarize), else it becomes the value ``neutral`` (the factor's identity: 1; hue 0, bits 8)."""
    b, c, _, _, dev = _batch(img)
    if channels is not None:
        channels_for(c, channels, fname)
    extra = {}
    if nan_skips and isinstance(value, torch.Tensor) and not checks_values(value) and value.numel() in (1, b):
        extra["applied"] = ~torch.isnan(value.detach()).reshape(-1).expand(b)
    f = per_sample(value, b, name, dev, **rng_kw)
    return _color(img, fname, op, {name: f}, [f] + _straight_through(straight_through, b, dev), backend, **extra)


def _straight_through(flag: bool, b: int, dev) -> list[torch.Tensor]:
    """params[..., 2] = 1: the op passes the gradient to the image unchanged (see fastaug.autograd)."""
    return [torch.zeros(b, device=dev), torch.ones(b, device=dev)] if flag else []


def adjust_brightness(img: torch.Tensor, brightness_factor, *, backend: str = "auto") -> torch.Tensor:
    """Multiply by ``brightness_factor`` (>= 0), clamp."""
    return _factor(img, brightness_factor, "brightness_factor", None, Op.BRIGHTNESS, "adjust_brightness", backend, lo=0.0, neutral=1.0)


def adjust_contrast(img: torch.Tensor, contrast_factor, *, backend: str = "auto") -> torch.Tensor:
    """Blend with the mean gray value (1 or 3 channels)."""
    return _factor(img, contrast_factor, "contrast_factor", (1, 3), Op.CONTRAST, "adjust_contrast", backend, lo=0.0, neutral=1.0)


def adjust_saturation(img: torch.Tensor, saturation_factor, *, backend: str = "auto") -> torch.Tensor:
    """Blend with the grayscale image (RGB; 1 channel: unchanged)."""
    return _factor(img, saturation_factor, "saturation_factor", (1, 3), Op.SATURATION, "adjust_saturation", backend, lo=0.0, neutral=1.0)


def adjust_hue(img: torch.Tensor, hue_factor, *, backend: str = "auto") -> torch.Tensor:
    """Shift the hue by ``hue_factor`` in [-0.5, 0.5] (RGB; 1 channel: unchanged)."""
    return _factor(img, hue_factor, "hue_factor", (1, 3), Op.HUE, "adjust_hue", backend, lo=-0.5, hi=0.5)


def adjust_gamma(img: torch.Tensor, gamma, gain=1.0, *, backend: str = "auto") -> torch.Tensor:
    """``gain * img ** gamma`` on the [0, 1] scale (clamped when gain != 1)."""
    b, _, _, _, dev = _batch(img)
    g = per_sample(gamma, b, "gamma", dev, lo=0.0, neutral=1.0)
    k = per_sample(gain, b, "gain", dev, lo=0.0, neutral=1.0)
    return _color(img, "adjust_gamma", Op.GAMMA, {"gamma": g, "gain": k}, [g, k], backend)


def rgb_shift(img: torch.Tensor, r_shift=0.0, g_shift=0.0, b_shift=0.0, *, backend: str = "auto") -> torch.Tensor:
    """albumentations' RGBShift with given shifts: ``clamp(channel + shift, 0, bound)`` per channel of an RGB image.

    Shifts are in the image's value units (uint8: 0..255, float: 0..1); a uint8 result is truncated (integer
    shifts give exact integers). Differentiable to the image and the shifts."""
    b, c, _, _, dev = _batch(img)
    channels_for(c, (3,), "rgb_shift")
    names = ("r_shift", "g_shift", "b_shift")
    got = [per_sample(v, b, n, dev) for n, v in zip(names, (r_shift, g_shift, b_shift), strict=True)]
    return _color(img, "rgb_shift", Op.RGB_SHIFT, dict(zip(names, got, strict=True)), got, backend)


def rgb_gain(img: torch.Tensor, r_gain=1.0, g_gain=1.0, b_gain=1.0, *, backend: str = "auto") -> torch.Tensor:
    """Per-channel gains of an RGB image ("more / less red, green, blue"): ``clamp(channel * gain, 0, bound)``
    (uint8: truncated, as ``adjust_brightness``, which is the case of three equal gains). Differentiable to the
    image and the gains."""
    b, c, _, _, dev = _batch(img)
    channels_for(c, (3,), "rgb_gain")
    names = ("r_gain", "g_gain", "b_gain")
    got = [per_sample(v, b, n, dev, lo=0.0, neutral=1.0) for n, v in zip(names, (r_gain, g_gain, b_gain), strict=True)]
    return _color(img, "rgb_gain", Op.RGB_GAIN, dict(zip(names, got, strict=True)), got, backend)


def adjust_sharpness(img: torch.Tensor, sharpness_factor, *, backend: str = "auto") -> torch.Tensor:
    """Blend with a 3x3 smoothed image (interior pixels; any channel count)."""
    return _factor(img, sharpness_factor, "sharpness_factor", None, Op.SHARPNESS, "adjust_sharpness", backend, lo=0.0, neutral=1.0)


def rgb_to_grayscale(img: torch.Tensor, num_output_channels: int = 1, *, backend: str = "auto") -> torch.Tensor:
    """ITU-R 601 luma; ``num_output_channels`` 1 or 3."""
    b, c, _, _, dev = _batch(img)
    channels_for(c, (1, 3), "rgb_to_grayscale")
    if num_output_channels not in (1, 3):
        raise ValueError(f"num_output_channels must be 1 or 3, got {num_output_channels}")
    calls: list[Call] = [
        ColorCall(name="rgb_to_grayscale", kwargs={"num_output_channels": num_output_channels}, code=int(Op.GRAYSCALE))
    ]
    if num_output_channels == 1:
        calls.append(ChannelsCall(name="channels", channels=1))
    out = run_calls(img, calls, backend)
    if c == 1 and num_output_channels == 3:  # a gray image is its own luma: repeat it, as torchvision does
        out = out.repeat_interleave(3, dim=-3)
    return out


def invert(img: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """``bound - img``."""
    return _color(img, "invert", Op.INVERT, {}, [], backend)


def posterize(img: torch.Tensor, bits, *, straight_through: bool = False, backend: str = "auto") -> torch.Tensor:
    """Keep the ``bits`` (0..8) most significant bits (``straight_through``: identity gradient)."""
    return _factor(
        img, bits, "bits", None, Op.POSTERIZE, "posterize", backend, straight_through, lo=0.0, hi=8.0, integer=True, neutral=8.0
    )


def solarize(img: torch.Tensor, threshold, *, straight_through: bool = False, backend: str = "auto") -> torch.Tensor:
    """Invert values >= ``threshold`` (in the image's value range; ``straight_through``: identity gradient)."""
    return _factor(img, threshold, "threshold", None, Op.SOLARIZE, "solarize", backend, straight_through, nan_skips=True, lo=0.0,
                   hi=_bound(img))  # fmt: skip


def equalize(img: torch.Tensor, *, straight_through: bool = False, backend: str = "auto") -> torch.Tensor:
    """Per-channel histogram equalization (PIL/torchvision rule; ``straight_through``: identity gradient)."""
    b = _batch(img).b
    st = [torch.zeros(b, device=img.device)] + _straight_through(straight_through, b, img.device)
    return _color(img, "equalize", Op.EQUALIZE, {}, st, backend)


def autocontrast(img: torch.Tensor, *, straight_through: bool = False, backend: str = "auto") -> torch.Tensor:
    """Stretch each channel to the full range (``straight_through``: identity gradient, else through min / max)."""
    b = _batch(img).b
    st = [torch.zeros(b, device=img.device)] + _straight_through(straight_through, b, img.device)
    return _color(img, "autocontrast", Op.AUTOCONTRAST, {}, st, backend)


def kernel_sizes(kernel_size, name: str = "kernel_size") -> tuple[int, int]:
    """torchvision's ``kernel_size``: an odd positive int, or an (x, y) pair of them."""
    ks = [kernel_size, kernel_size] if not isinstance(kernel_size, (list, tuple)) else list(kernel_size)
    if len(ks) != 2 or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in ks):
        raise TypeError(f"{name} must be an odd positive int or a pair of them, got {kernel_size!r}")
    if not all(k > 0 and k % 2 == 1 for k in ks):
        raise ValueError(f"{name} must hold odd positive ints, got {kernel_size!r}")
    return int(ks[0]), int(ks[1])


def gaussian_taps(kernel_size: tuple[int, int], sigma: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per-sample separable Gaussian kernels [B,2,T] (x, y; T = the larger size, the smaller kernel
    centred and zero-padded) from ``sigma`` [B,2], computed as torchvision computes its kernel
    (``softmax(-(x / sigma)^2)`` over ``x = linspace(-lim, lim, k)``, ``lim = (k-1) / (2 sqrt 2)``), in
    ``dtype``; differentiable in sigma."""
    t = max(kernel_size)
    rows = []
    for axis, k in enumerate(kernel_size):
        lim = (k - 1) / (2.0 * 2.0**0.5)
        x = torch.linspace(-lim, lim, steps=k, dtype=dtype, device=sigma.device)
        kern = torch.softmax(-(x / sigma[:, axis : axis + 1].to(dtype)).pow(2), dim=1)
        pad = (t - k) // 2
        rows.append(torch.nn.functional.pad(kern, (pad, pad)))
    return torch.stack(rows, 1)


def gaussian_blur_call(cv: Canvas, kernel_size, sigma=None, dtype: torch.dtype = torch.float32) -> ColorCall:
    ks = kernel_sizes(kernel_size)
    b, dev = cv.b, cv.device
    if sigma is None:
        sigma = [k * 0.15 + 0.35 for k in ks]  # torchvision's default
    if isinstance(sigma, torch.Tensor) and sigma.dim() == 1:
        if sigma.shape[0] != b:
            raise ValueError(f"sigma as a 1-D tensor holds one value per sample ([{b}]); (x, y) pairs go as [B, 2], "
                             f"got {list(sigma.shape)}")
        sigma = sigma.unsqueeze(1).expand(b, 2)  # one sigma per sample, for both axes
    sig = _positive(per_sample(sigma, b, "sigma", dev, width=2, lo=0.0), "sigma")  # a device NaN: 1e-6, the near-identity
    pdtype = torch.float64 if dtype == torch.float64 else torch.float32
    params = torch.stack([sig[:, 0], sig[:, 1], torch.zeros_like(sig[:, 0])], 1)
    kwargs = {"kernel_size": list(ks), "sigma": sig}
    return ColorCall(name="gaussian_blur", kwargs=kwargs, code=int(Op.GAUSSIAN_BLUR), params=params,
                     taps=gaussian_taps(ks, sig, pdtype))  # fmt: skip


def gaussian_blur(img: torch.Tensor, kernel_size, sigma=None, *, backend: str = "auto") -> torch.Tensor:
    """Gaussian blur with reflected borders, as torchvision's: ``kernel_size`` odd (int or (x, y)),
    ``sigma`` > 0: a number, an (x, y) pair, or a tensor per sample: [B] (both axes) or [B,2] (default:
    ``0.15 * kernel_size + 0.35``). Any channel count; gradients to the image and to sigma."""
    return run_calls(img, [gaussian_blur_call(_batch(img), kernel_size, sigma, img.dtype)], backend)


def convolve_call(cv: Canvas, kernel: torch.Tensor, name: str = "convolve", kwargs: dict | None = None) -> ColorCall:
    """A CONVOLVE call: ``kernel`` [T,T] (every sample) or [B,T,T], T odd; differentiable in the kernel."""
    if not isinstance(kernel, torch.Tensor) or kernel.is_complex() or not kernel.is_floating_point():
        raise TypeError(f"kernel must be a real floating tensor [k, k] or [B, k, k], got {kernel!r}")
    k = kernel.to(cv.device)
    if k.dim() == 2:
        k = k.expand(cv.b, *k.shape)
    if k.dim() != 3 or k.shape[0] != cv.b or k.shape[1] != k.shape[2] or k.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be [k, k] or [B, k, k] with k odd, got {list(kernel.shape)}")
    k = _finite(k, "kernel")
    params = torch.zeros(cv.b, 3, dtype=torch.float64, device=cv.device)
    return ColorCall(name=name, kwargs=kwargs if kwargs is not None else {"kernel": k}, code=int(Op.CONVOLVE), params=params,
                     kernel=k)  # fmt: skip


def convolve(img: torch.Tensor, kernel: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Per-sample 2-D correlation (cv2.filter2D's orientation, reflected borders without repeating the edge, as
    albumentations' ``convolve``), clamped into the value range, uint8 rounded half to even. ``kernel`` [k,k] or
    [B,k,k], k odd. Any channel count; gradients to the image and to the kernel."""
    return run_calls(img, [convolve_call(_batch(img), kernel)], backend)


def sharpen_kernel(alpha: torch.Tensor, lightness: torch.Tensor) -> torch.Tensor:
    """albumentations' Sharpen kernel: ``(1-alpha) I + alpha [[-1,-1,-1],[-1,8+lightness,-1],[-1,-1,-1]]`` [B,3,3]."""
    m1 = -alpha
    mid = (1.0 - alpha) + alpha * (8.0 + lightness)
    return torch.stack([m1, m1, m1, m1, mid, m1, m1, m1, m1], 1).view(-1, 3, 3)


def emboss_kernel(alpha: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """albumentations' Emboss kernel: ``(1-alpha) I + alpha [[-1-s,-s,0],[-s,1,s],[0,s,1+s]]`` [B,3,3]."""
    s = strength
    z = torch.zeros_like(alpha)
    mid = (1.0 - alpha) + alpha
    vals = [alpha * (-1.0 - s), alpha * -s, z, alpha * -s, mid, alpha * s, z, alpha * s, alpha * (1.0 + s)]
    return torch.stack(vals, 1).view(-1, 3, 3)


def unsharp_kernel(alpha: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """The unsharp mask ``v + alpha (v - G v)`` as one kernel ``(1 + alpha) I - alpha G`` [B,k,k], ``G`` the k x k
    Gaussian of ``sigma`` (cv2's ``getGaussianKernel``: ``exp(-(i - (k-1)/2)^2 / (2 sigma^2))``, normalised, outer
    product with itself)."""
    k = kernel_size
    x = torch.arange(k, dtype=torch.float64, device=alpha.device) - (k - 1) / 2.0
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    g = g / g.sum()
    a = alpha.to(torch.float64).view(-1, 1, 1)
    eye = torch.zeros(k, k, dtype=torch.float64, device=alpha.device)
    eye[k // 2, k // 2] = 1.0
    return (1.0 + a) * eye - a * torch.outer(g, g)


def sharpen_options(method: str, kernel_size, sigma) -> tuple[int, float]:
    """Checked ``method`` ("kernel" or "gaussian"), ``kernel_size`` (odd, >= 3) and ``sigma`` (> 0)."""
    if method not in ("kernel", "gaussian"):
        raise ValueError(f"method must be 'kernel' or 'gaussian', got {method!r}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, numbers.Integral) or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 3, got {kernel_size!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not 0.0 < sigma < math.inf:
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    return int(kernel_size), float(sigma)


def sharpen(img: torch.Tensor, alpha, lightness=None, *, method: str = "kernel", kernel_size: int = 5, sigma: float = 1.0,
            backend: str = "auto") -> torch.Tensor:  # fmt: skip
    """albumentations' Sharpen: :func:`convolve` with :func:`sharpen_kernel` (``method="kernel"``; ``lightness`` >= 0)
    or with :func:`unsharp_kernel` (``method="gaussian"``: ``v + alpha (v - G v)``, ``G`` a ``kernel_size`` Gaussian of
    ``sigma``; albumentations computes ``v - G v`` in uint8 for uint8 images, which wraps around below 0: fastaug keeps
    the formula). ``alpha`` in [0, 1]; numbers or per-sample tensors [B]; gradients to the image, alpha, lightness."""
    cv = _batch(img)
    ks, sg = sharpen_options(method, kernel_size, sigma)
    a = per_sample(alpha, cv.b, "alpha", cv.device, lo=0.0, hi=1.0)
    if method == "gaussian":
        kw = {"alpha": a, "method": method, "kernel_size": ks, "sigma": sg}
        return run_calls(img, [convolve_call(cv, unsharp_kernel(a, ks, sg), "sharpen", kw)], backend)
    if lightness is None:
        raise ValueError("lightness must be given with method='kernel' (a number >= 0 or a per-sample tensor [B])")
    li = per_sample(lightness, cv.b, "lightness", cv.device, lo=0.0)
    call = convolve_call(cv, sharpen_kernel(a, li), "sharpen", {"alpha": a, "lightness": li})
    return run_calls(img, [call], backend)


def emboss(img: torch.Tensor, alpha, strength, *, backend: str = "auto") -> torch.Tensor:
    """albumentations' Emboss: :func:`convolve` with :func:`emboss_kernel`; ``alpha`` in [0, 1], ``strength`` >= 0,
    numbers or per-sample tensors [B]; gradients to the image, alpha and strength."""
    cv = _batch(img)
    a = per_sample(alpha, cv.b, "alpha", cv.device, lo=0.0, hi=1.0)
    st = per_sample(strength, cv.b, "strength", cv.device, lo=0.0)
    call = convolve_call(cv, emboss_kernel(a, st), "emboss", {"alpha": a, "strength": st})
    return run_calls(img, [call], backend)


def motion_blur_kernel(kernel_size: torch.Tensor, angle: torch.Tensor, direction: torch.Tensor, shift: torch.Tensor,
                       size: int) -> torch.Tensor:  # fmt: skip
    """albumentations' MotionBlur kernels [B,size,size] (each sample's k x k kernel centred, zero-padded): the k points
    ``c + (cos a, sin a) * t + shift`` for ``t = linspace(t0, t1, k)`` (``t0, t1`` = (-L, L) shortened by
    ``direction``: < 0 cuts the positive end, > 0 the negative one; L = k // 2, c = L), rounded half to even and
    clipped into the k x k grid, weight 1 on each distinct pixel (the centre when none), normalised to sum 1.
    ``angle`` in degrees; ``shift`` [B,2] (x, y) in kernel pixels. Not differentiable (a rasterisation)."""
    b = kernel_size.shape[0]
    dev = kernel_size.device
    k = kernel_size.to(torch.float64).view(b, 1)
    half = torch.floor(k / 2)
    d = direction.to(torch.float64).view(b, 1)
    t0 = torch.where(d > 0, -half * (1 - d), -half)
    t1 = torch.where(d < 0, half * (1 - d.abs()), half)
    j = torch.arange(size, dtype=torch.float64, device=dev).view(1, size)
    valid = j < k
    t = j * ((t1 - t0) / torch.clamp(k - 1, min=1)) + t0  # numpy's linspace, its last point exact
    t = torch.where(j == k - 1, t1, t)
    rad = torch.deg2rad(angle.to(torch.float64)).view(b, 1)
    sh = shift.to(torch.float64)
    xs = torch.clamp(torch.round(half + torch.cos(rad) * t + sh[:, :1]), torch.zeros_like(k), k - 1)
    ys = torch.clamp(torch.round(half + torch.sin(rad) * t + sh[:, 1:]), torch.zeros_like(k), k - 1)
    off = (size - k) / 2
    index = ((ys + off) * size + (xs + off)).to(torch.int64).clamp(0, size * size - 1)
    hits = torch.zeros(b, size * size, dtype=torch.float64, device=dev).scatter_add_(1, index, valid.to(torch.float64))
    kern = (hits > 0).to(torch.float64)
    centre = (size * size) // 2
    empty = kern.sum(1, keepdim=True) == 0
    kern[:, centre] = torch.where(empty[:, 0], 1.0, kern[:, centre])
    return (kern / kern.sum(1, keepdim=True)).view(b, size, size).to(torch.float32)


def motion_blur(img: torch.Tensor, kernel_size, angle, direction=0.0, shift=(0.0, 0.0), *, backend: str = "auto") -> torch.Tensor:
    """albumentations' MotionBlur with given parameters: :func:`convolve` with :func:`motion_blur_kernel`;
    ``kernel_size`` an odd int >= 3 (or per-sample odd ints [B]), ``angle`` degrees, ``direction`` in [-1, 1],
    ``shift`` (x, y) kernel pixels or [B,2]. (Per-sample sizes: the kernel tensor's size is their maximum, read
    from the tensor: a host sync on CUDA; the MotionBlur transform knows it statically.)"""
    cv = _batch(img)
    ks = per_sample(kernel_size, cv.b, "kernel_size", cv.device, lo=3.0, integer=True)
    _check(lambda: torch.remainder(ks, 2) == 1, "kernel_size must be odd", on=ks)
    if not checks_values(ks):  # the device rule (fastaug.validation): an even size becomes the next odd one
        ks = ks + 1 - torch.remainder(ks, 2)
    a = per_sample(angle, cv.b, "angle", cv.device)
    d = per_sample(direction, cv.b, "direction", cv.device, lo=-1.0, hi=1.0)
    sh = per_sample(shift, cv.b, "shift", cv.device, width=2)
    size = int(kernel_size) if isinstance(kernel_size, numbers.Integral) else int(ks.max())  # a CPU value or a max
    kern = motion_blur_kernel(ks, a, d, sh, size)
    kw = {"kernel_size": ks, "angle": a, "direction": d, "shift": sh}
    return run_calls(img, [convolve_call(cv, kern, "motion_blur", kw)], backend)


def _random_call(cv: Canvas, name: str, op: Op, values: list[torch.Tensor], kwargs: dict, keys: torch.Tensor) -> ColorCall:
    params = torch.stack([v.to(torch.float64) for v in values], 1)
    return ColorCall(name=name, kwargs=kwargs, code=int(op), params=params, keys=keys)


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def _random_keys(cv: Canvas, seed, epoch, indices, key, op: Op) -> torch.Tensor:
    """Per-sample 32-bit keys of a random op: ``key`` when given (an int or [B] integers, as ``Record.calls`` lists
    them), else drawn from (seed, epoch, index) with the op's code as the slot (chained ops draw independently)."""
    if key is not None:
        return per_sample(key, cv.b, "key", cv.device, lo=0.0, hi=float(2**32 - 1), integer=True).to(torch.int64)
    seed, epoch = check_seed(seed), check_epoch(epoch)
    return rng.key(seed, epoch, check_indices(indices, cv.b, cv.device), int(op))


def random_drop_values(keys: torch.Tensor, channels: int, uint8: bool) -> torch.Tensor:
    """``drop_value=None``: one value per sample and channel [B,C] (float64) from the per-sample keys [B],
    ``u = (mix(mix(key ^ STREAM2) ^ c) >> 8) * 2**-24`` (``fastaug.ops.counter``); uint8 ``floor(u * 255)`` in
    0..254 (albumentations' ``integers(0, 255)``), float ``u`` in [0, 1)."""
    k = keys.to(torch.int64).view(-1, 1)
    cs = torch.arange(channels, dtype=torch.int64, device=k.device).view(1, channels)
    u = (counter.mix(counter.mix(k ^ counter.STREAM2) ^ cs) >> 8).to(torch.float64) * counter.INV24
    return torch.floor(u * 255.0) if uint8 else u


def _drop_values(cv: Canvas, drop_value, uint8: bool, keys: torch.Tensor) -> torch.Tensor:
    """PixelDropout's values in the domain's units (uint8: floored): [B] (every channel alike) or [B,C] (per channel)."""
    if drop_value is None:
        return random_drop_values(keys, cv.c, uint8)
    width = None
    if isinstance(drop_value, (list, tuple)):
        if len(drop_value) not in (1, cv.c):
            raise ValueError(f"drop_value must be a number or one value per channel ({cv.c} for this image), "
                             f"got {len(drop_value)} values")  # fmt: skip
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in drop_value):
            raise TypeError(f"drop_value must hold numbers, got {drop_value!r}")
        if len(drop_value) == 1 or all(v == drop_value[0] for v in drop_value):
            drop_value = drop_value[0]  # one value (NaN is unequal to itself: per_sample rejects it below)
        else:
            width = cv.c
    elif isinstance(drop_value, torch.Tensor) and drop_value.dim() == 2:
        width = cv.c  # [B,C]
    v = per_sample(drop_value, cv.b, "drop_value", cv.device, width=width, lo=0.0, hi=255.0 if uint8 else 1.0)
    return torch.floor(v) if uint8 else v  # a uint8 image holds integers (albumentations casts the value)


def pixel_dropout_calls(cv: Canvas, dropout_prob, per_channel: bool, drop_value, uint8: bool, keys: torch.Tensor) -> list[ColorCall]:
    """PIXEL_DROPOUT's calls: one for one drop value (every channel), else one per channel t, each dropping only channel
    t with its value and the same keys (the same draws); every call's kwargs list the whole op."""
    p = per_sample(dropout_prob, cv.b, "dropout_prob", cv.device, lo=0.0, hi=1.0)
    pc = _flag(per_channel, "per_channel")
    v = _drop_values(cv, drop_value, uint8, keys)
    kw = {"dropout_prob": p, "per_channel": per_channel, "drop_value": v}
    if v.dim() == 1 or cv.c == 1:
        value = v if v.dim() == 1 else v[:, 0]
        return [_random_call(cv, "pixel_dropout", Op.PIXEL_DROPOUT, [p, value, torch.full_like(p, dropout_mode(pc))], kw, keys)]
    return [_random_call(cv, "pixel_dropout", Op.PIXEL_DROPOUT, [p, v[:, t], torch.full_like(p, dropout_mode(pc, t))], kw, keys)
            for t in range(cv.c)]  # fmt: skip


def pixel_dropout_call(cv: Canvas, dropout_prob, per_channel: bool, drop_value, uint8: bool, keys: torch.Tensor) -> ColorCall:
    """The one PIXEL_DROPOUT call of a single drop value (a number or per-sample [B]); see :func:`pixel_dropout_calls`."""
    calls = pixel_dropout_calls(cv, dropout_prob, per_channel, drop_value, uint8, keys)
    if len(calls) != 1:
        raise ValueError("drop_value: one value per channel takes one call per channel (pixel_dropout_calls)")
    return calls[0]


def pixel_dropout(
    img: torch.Tensor, dropout_prob=0.01, per_channel: bool = False, drop_value=0.0, *, seed: int = 0, epoch: int = 0,
    indices: torch.Tensor | None = None, key=None, backend: str = "auto",
) -> torch.Tensor:  # fmt: skip
    """albumentations' PixelDropout: each pixel (each pixel and channel when ``per_channel``) is replaced by the drop
    value with probability ``dropout_prob``, from a uniform per pixel of (seed, epoch, index) (``fastaug.ops.counter``).

    ``drop_value`` (the image's units; uint8 truncates): a number or per-sample tensor [B] for every channel; one value
    per channel, a sequence of C numbers or a tensor [B,C]; or None: per sample one random value per channel
    (:func:`random_drop_values`: uint8 0..254, float [0, 1)). Gradients to the image (kept pixels) and to ``drop_value``."""
    cv = _batch(img)
    keys = _random_keys(cv, seed, epoch, indices, key, Op.PIXEL_DROPOUT)
    calls = pixel_dropout_calls(cv, dropout_prob, per_channel, drop_value, img.dtype == torch.uint8, keys)
    return run_calls(img, calls, backend)


def salt_and_pepper_call(cv: Canvas, amount, salt_vs_pepper, keys: torch.Tensor) -> ColorCall:
    a = per_sample(amount, cv.b, "amount", cv.device, lo=0.0, hi=1.0)
    r = per_sample(salt_vs_pepper, cv.b, "salt_vs_pepper", cv.device, lo=0.0, hi=1.0)
    return _random_call(cv, "salt_and_pepper", Op.SALT_AND_PEPPER, [a, r, torch.zeros_like(a)],
                        {"amount": a, "salt_vs_pepper": r}, keys)  # fmt: skip


def salt_and_pepper(
    img: torch.Tensor, amount, salt_vs_pepper=0.5, *, seed: int = 0, epoch: int = 0, indices: torch.Tensor | None = None,
    key=None, backend: str = "auto",
) -> torch.Tensor:  # fmt: skip
    """Salt and pepper noise: with one uniform ``u`` per pixel (shared by its channels) of (seed, epoch, index), the
    pixel becomes white (the bound) if ``u < amount * salt_vs_pepper``, else black if ``u < amount``. albumentations
    draws exactly ``int(H*W*amount)`` distinct pixels; here each pixel is hit independently with probability
    ``amount`` (the same expected count, a binomial spread)."""
    cv = _batch(img)
    keys = _random_keys(cv, seed, epoch, indices, key, Op.SALT_AND_PEPPER)
    return run_calls(img, [salt_and_pepper_call(cv, amount, salt_vs_pepper, keys)], backend)


def multiplicative_noise_call(cv: Canvas, low, high, per_channel: bool, keys: torch.Tensor) -> ColorCall:
    lo = per_sample(low, cv.b, "low", cv.device, lo=0.0, neutral=1.0)  # a device NaN: factor 1, the identity
    hi = per_sample(high, cv.b, "high", cv.device, lo=0.0, neutral=1.0)
    _check(lambda: lo <= hi, "low must be <= high", on=hi)
    if not checks_values(hi):  # the device rule (fastaug.validation): high below low is low
        hi = torch.maximum(lo, hi)
    pc = torch.full_like(lo, 1.0 if _flag(per_channel, "per_channel") else 0.0)
    kw = {"low": lo, "high": hi, "per_channel": per_channel}
    return _random_call(cv, "multiplicative_noise", Op.MULTIPLICATIVE_NOISE, [lo, hi, pc], kw, keys)


def multiplicative_noise(
    img: torch.Tensor, low=0.9, high=1.1, per_channel: bool = False, *, seed: int = 0, epoch: int = 0,
    indices: torch.Tensor | None = None, key=None, backend: str = "auto",
) -> torch.Tensor:  # fmt: skip
    """albumentations' MultiplicativeNoise(elementwise=True): each pixel (each pixel and channel when ``per_channel``)
    multiplied by ``m ~ U(low, high)`` from a uniform per pixel of (seed, epoch, index), clamped (uint8: truncated,
    as albumentations). Gradients to the image."""
    cv = _batch(img)
    keys = _random_keys(cv, seed, epoch, indices, key, Op.MULTIPLICATIVE_NOISE)
    return run_calls(img, [multiplicative_noise_call(cv, low, high, per_channel, keys)], backend)


_CV2_INTERPOLATION = {0: "nearest", 1: "bilinear"}  # cv2.INTER_NEAREST, cv2.INTER_LINEAR (albumentations' flags)


def _resize_interpolation(mode, name: str) -> bool:
    """True for bilinear: 'nearest' / 'bilinear', torchvision's InterpolationMode, or cv2's INTER_NEAREST / INTER_LINEAR."""
    if isinstance(mode, numbers.Integral) and not isinstance(mode, bool):
        if int(mode) not in _CV2_INTERPOLATION:
            raise ValueError(f"{name} must be nearest or bilinear (cv2.INTER_NEAREST = 0, cv2.INTER_LINEAR = 1), got {mode!r}")
        mode = _CV2_INTERPOLATION[int(mode)]
    try:
        return interpolation(mode)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def downscale_call(cv: Canvas, scale, down_interpolation="nearest", up_interpolation="nearest") -> ColorCall:
    s = _positive(per_sample(scale, cv.b, "scale", cv.device, lo=0.0, hi=1.0, neutral=1.0), "scale")
    down = _resize_interpolation(down_interpolation, "down_interpolation")
    up = _resize_interpolation(up_interpolation, "up_interpolation")
    mode = torch.full_like(s, float(int(down) + 2 * int(up)))
    kw = {"scale": s, "down_interpolation": "bilinear" if down else "nearest", "up_interpolation": "bilinear" if up else "nearest"}
    return ColorCall(name="downscale", kwargs=kw, code=int(Op.DOWNSCALE), params=torch.stack([s, mode, 0 * s], 1))


def downscale(img: torch.Tensor, scale, down_interpolation="nearest", up_interpolation="nearest", *, backend: str = "auto") -> torch.Tensor:
    """albumentations' Downscale with a given scale: each sample resized to (hd, wd) = max(round(H * scale), 1),
    max(round(W * scale), 1) and back to (H, W), each way nearest (``(i * n_in) // n_out``, as cv2's INTER_NEAREST
    and torch's "nearest") or bilinear (half-pixel centres, no antialiasing: cv2's INTER_LINEAR, torch's
    "bilinear"); a uint8 image rounds the small image and the result, as cv2 does. ``scale`` in (0, 1] or [B];
    interpolations as names, torchvision's InterpolationMode or cv2's flags (0, 1). Gradients to the image."""
    return run_calls(img, [downscale_call(_batch(img), scale, down_interpolation, up_interpolation)], backend)


def superpixels_call(cv: Canvas, p_replace, n_segments, max_segments: int, keys: torch.Tensor, max_size: int | None = None) -> ColorCall:
    p = per_sample(p_replace, cv.b, "p_replace", cv.device, lo=0.0, hi=1.0)
    n = per_sample(n_segments, cv.b, "n_segments", cv.device, lo=1.0, integer=True)
    if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
        raise ValueError(f"max_segments must be an int >= 1, got {max_segments!r}")
    _check(lambda: n <= max_segments, f"n_segments must be <= max_segments = {max_segments}", on=n)
    n = n if checks_values(n) else torch.clamp(n, max=float(max_segments))  # the device rule (fastaug.validation)
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1):
        raise ValueError(f"max_size must be None or an int >= 1, got {max_size!r}")
    call = _random_call(cv, "superpixels", Op.SUPERPIXELS, [p, n, 0 * p], {"p_replace": p, "n_segments": n}, keys)
    call.max_segments = max_segments
    call.segment_size = max_size or 0
    return call


def superpixels(
    img: torch.Tensor, p_replace, n_segments=100, *, max_size: int | None = None, max_segments: int | None = None,
    seed: int = 0, epoch: int = 0, indices: torch.Tensor | None = None, key=None, backend: str = "auto",
) -> torch.Tensor:  # fmt: skip
    """albumentations' Superpixels with given parameters: a SLIC segmentation per sample into about ``n_segments``
    superpixels (``fastaug.ops.superpixels.slic``: batched, on the batch's device), each replaced by its mean colour
    with probability ``p_replace`` (drawn per segment from (seed, epoch, index); uint8: the mean rounded).
    ``max_size``: segment a copy downscaled (area) to this larger side when the image is larger; the labels are
    upsampled (nearest) and the means and replacement stay at full resolution (albumentations replaces on the small
    image and resizes the whole result back, blurring every pixel). ``max_segments``: the largest ``n_segments``
    (default: read from ``n_segments``, a host read for a device tensor). Other differences from albumentations:
    any segment may be replaced (albumentations never replaces segment 0) and the decisions are counter-based.
    Gradients to the image (float domain: through the means)."""
    cv = _batch(img)
    if max_segments is None:
        max_segments = int(n_segments) if isinstance(n_segments, numbers.Real) else int(torch.as_tensor(n_segments).max())
    keys = _random_keys(cv, seed, epoch, indices, key, Op.SUPERPIXELS)
    return run_calls(img, [superpixels_call(cv, p_replace, n_segments, max_segments, keys, max_size)], backend)


def fog_call(cv: Canvas, density, scale, threshold, keys: torch.Tensor) -> ColorCall:
    d = per_sample(density, cv.b, "density", cv.device, lo=0.0, hi=1.0)
    s = per_sample(scale, cv.b, "scale", cv.device, lo=0.0)
    t = per_sample(threshold, cv.b, "threshold", cv.device, lo=0.0, hi=1.0)
    return _random_call(cv, "fog", Op.FOG, [d, s, t], {"density": d, "scale": s, "threshold": t}, keys)


def fog(
    img: torch.Tensor, density, scale=0.3, threshold=0.0, *, seed: int = 0, epoch: int = 0,
    indices: torch.Tensor | None = None, key=None, backend: str = "auto",
) -> torch.Tensor:  # fmt: skip
    """A fog or cloud layer from procedural value noise: ``v + alpha * (bound - v)`` (towards white) with
    ``alpha = density * clamp((n - threshold) / (1 - threshold), 0, 1)`` and ``n`` in [0, 1) four octaves of value noise
    drawn per sample from (seed, epoch, index) (``fastaug.ops.counter``; the coarsest cell ``scale`` times the image's
    larger side, no cell below a pixel), one value per pixel shared by the channels; uint8 truncates.

    ``threshold`` 0 gives a haze over the whole image (fog); 0.3-0.6 gives patches of cloud with clear sky between.
    (albumentations' RandomFog draws blurred circles along a path instead: a different texture, the same blend
    towards white.) Gradients to the image and to ``density``."""
    cv = _batch(img)
    keys = _random_keys(cv, seed, epoch, indices, key, Op.FOG)
    return run_calls(img, [fog_call(cv, density, scale, threshold, keys)], backend)


def gaussian_noise_call(cv: Canvas, mean, sigma, clip: bool, keys: torch.Tensor) -> ColorCall:
    b, dev = cv.b, cv.device
    if not isinstance(clip, bool):
        raise TypeError(f"clip must be a bool, got {clip!r}")
    m = per_sample(mean, b, "mean", dev)
    s = per_sample(sigma, b, "sigma", dev, lo=0.0)
    params = torch.stack([m, s, torch.full_like(m, 1.0 if clip else 0.0)], 1)
    return ColorCall(name="gaussian_noise", kwargs={"mean": m, "sigma": s, "clip": clip}, code=int(Op.GAUSSIAN_NOISE),
                     params=params, keys=keys)  # fmt: skip


def gaussian_noise(
    img: torch.Tensor, mean=0.0, sigma=0.1, clip: bool = True, *, seed: int = 0, epoch: int = 0,
    indices: torch.Tensor | None = None, key=None, backend: str = "auto",
) -> torch.Tensor:  # fmt: skip
    """torchvision's gaussian_noise: ``img + (mean + z * sigma)`` in [0, 1] units (uint8: the noise
    ``mean*255 + z*sigma*255`` truncated toward zero, as torchvision's int16 cast), clamped when ``clip``
    (uint8 without clip wraps mod 256, as torchvision). ``z`` is a standard normal per pixel and channel
    from the counter-based hash of (seed, epoch, index) (``fastaug.ops.counter``): the same on every
    backend and device (``key``: per-sample 32-bit keys instead, as ``Record.calls`` lists them). ``mean`` and
    ``sigma`` (>= 0) are numbers or per-sample tensors [B]; gradients to the image, mean and sigma (float input)."""
    cv = _batch(img)
    keys = _random_keys(cv, seed, epoch, indices, key, Op.GAUSSIAN_NOISE)
    return run_calls(img, [gaussian_noise_call(cv, mean, sigma, clip, keys)], backend)


def _center(center, b: int, dev) -> torch.Tensor | None:
    return None if center is None else per_sample(center, b, "center", dev, width=2)


def affine(
    img: torch.Tensor,
    angle,
    translate,
    scale,
    shear,
    interpolation="nearest",
    fill=None,
    center=None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Affine map about the centre: clockwise ``angle`` (degrees), ``translate`` (px), ``scale``, ``shear`` (degrees)."""
    return run_calls(img, [affine_call(_batch(img), angle, translate, scale, shear, interpolation, fill, center)], backend)


def affine_call(cv: Canvas, angle, translate, scale, shear, mode="nearest", fill=None, center=None, *,
                drawn: bool = False) -> GeometricCall:
    """``drawn``: the tensors come from a transform's checked ranges (``validation.per_sample``: no op on a device)."""
    b, c, h, w, dev = cv
    a = per_sample(angle, b, "angle", dev, drawn=drawn)
    t = per_sample(translate, b, "translate", dev, width=2, drawn=drawn)
    s = per_sample(scale, b, "scale", dev, neutral=1.0, drawn=drawn)
    if isinstance(shear, numbers.Number) and not isinstance(shear, bool):
        shear = [float(shear), 0.0]
    sh = per_sample(shear, b, "shear", dev, width=2, drawn=drawn)
    s = s if drawn and not checks_values(s) else _positive(s, "scale")
    ctr = _center(center, b, dev)
    args = G.AffineArgs(a, t, s, sh, (h, w), ctr)
    kwargs = {
        "angle": a,
        "translate": t,
        "scale": s,
        "shear": sh,
        "interpolation": _interp_name(mode),
        "fill": fill,
    }
    if ctr is not None:
        kwargs["center"] = ctr
    return GeometricCall(name="affine", kwargs=kwargs, affine=args, bilinear=interpolation(mode), fill=fill_values(fill, b, c, dev))


def _interp_name(mode) -> str:
    return str(getattr(mode, "value", mode))


def rotate(
    img: torch.Tensor,
    angle,
    interpolation="nearest",
    expand: bool = False,
    center=None,
    fill=None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Counter-clockwise rotation by ``angle`` degrees about the centre (expand=False)."""
    if expand:
        raise ValueError("expand=True is not supported: per-sample angles would give per-sample output sizes")
    return run_calls(img, [rotate_call(_batch(img), angle, interpolation, center, fill)], backend)


def rotate_call(cv: Canvas, angle, interpolation_mode="nearest", center=None, fill=None, *, drawn: bool = False) -> GeometricCall:
    """``drawn``: as :func:`affine_call`."""
    b, c, h, w, dev = cv
    a = per_sample(angle, b, "angle", dev, drawn=drawn)
    ctr = _center(center, b, dev)
    args = G.AffineArgs(a, None, None, None, (h, w), ctr, rotate=True)
    kwargs = {"angle": a, "interpolation": _interp_name(interpolation_mode), "fill": fill}
    if ctr is not None:
        kwargs["center"] = ctr
    bil = interpolation(interpolation_mode)
    return GeometricCall(name="rotate", kwargs=kwargs, affine=args, bilinear=bil, fill=fill_values(fill, b, c, dev))


def safe_rotate(img: torch.Tensor, angle, interpolation="bilinear", fill=None, *, backend: str = "auto") -> torch.Tensor:
    """albumentations' SafeRotate with a given ``angle`` (degrees, counter-clockwise on screen; a number or
    a per-sample tensor [B]): the image is rotated about its centre and scaled, x and y separately, so that
    the whole rotated image fits the unchanged H x W frame (cv2.warpAffine of albumentations' matrix,
    including its +0.5 px centre shift; see ``fastaug.ops.geometry.safe_rotate_matrix``).

    ``fill``: None or 0 (a number or all-zero values) is cv2's BORDER_CONSTANT 0 exactly (out-of-image
    taps count 0); another fill blends torchvision-style, ``(S - fill) * m + fill`` with m the in-image
    tap weight, where cv2 computes ``S + (1 - m) * fill``: the two differ only on the one-pixel rim of
    the rotated image under bilinear sampling."""
    return run_calls(img, [safe_rotate_call(_batch(img), angle, interpolation, fill)], backend)


def _zero_fill(fill) -> bool:
    if isinstance(fill, numbers.Real) and not isinstance(fill, bool):
        return fill == 0
    return isinstance(fill, (list, tuple)) and len(fill) > 0 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and v == 0 for v in fill
    )


def safe_rotate_call(cv: Canvas, angle, mode="bilinear", fill=None) -> GeometricCall:
    b, c, h, w, dev = cv
    a = per_sample(angle, b, "angle", dev)
    bil = interpolation(mode)
    vals = fill_values(fill, b, c, dev)  # checks the fill (type, finite values, channel count)
    if _zero_fill(fill):
        vals = None  # zero padding without the blend: cv2's BORDER_CONSTANT with 0, on the rim too
    kwargs = {"angle": a, "interpolation": _interp_name(mode), "fill": fill}
    return GeometricCall(name="safe_rotate", kwargs=kwargs, matrix=G.safe_rotate_matrix(a, (h, w)), bilinear=bil, fill=vals)


def flip_call(cv: Canvas, horizontal: bool) -> GeometricCall:
    name = "horizontal_flip" if horizontal else "vertical_flip"
    return GeometricCall(name=name, matrix=G.flip_matrix(cv.b, (cv.h, cv.w), horizontal, cv.device))


def horizontal_flip(img: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Mirror left-right."""
    return run_calls(img, [flip_call(_batch(img), True)], backend)


def vertical_flip(img: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Mirror top-bottom."""
    return run_calls(img, [flip_call(_batch(img), False)], backend)


def _size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive int (one output size for the whole batch), got {value!r}")
    return int(value)


def crop(img: torch.Tensor, top, left, height: int, width: int, *, backend: str = "auto") -> torch.Tensor:
    """Crop [top:top+height, left:left+width] per sample (zero padding outside the image)."""
    b, _, _, _, dev = _batch(img)
    hh, ww = _size(height, "height"), _size(width, "width")
    t = per_sample(top, b, "top", dev, integer=True)
    lf = per_sample(left, b, "left", dev, integer=True)
    call = GeometricCall(
        name="crop", kwargs={"top": t, "left": lf, "height": hh, "width": ww}, matrix=G.crop_matrix(t, lf), out_size=(hh, ww)
    )
    return run_calls(img, [call], backend)


def _out_size(size) -> tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        return _size(size, "size"), _size(size, "size")
    if isinstance(size, (list, tuple)) and len(size) in (1, 2):
        s = [_size(v, "size") for v in size]
        return (s[0], s[0]) if len(s) == 1 else (s[0], s[1])
    raise ValueError(f"size must be an int or (height, width), got {size!r}")


def resized_crop_call(cv: Canvas, top, left, height, width, size, mode="bilinear", antialias=False) -> GeometricCall:
    if antialias:
        raise ValueError(
            "antialias=True is not supported: fastaug resamples once per sample without an antialias filter "
            "(torchvision's antialias=False); pass antialias=False"
        )
    b, _, _, _, dev = cv
    out = _out_size(size)
    t = per_sample(top, b, "top", dev)
    lf = per_sample(left, b, "left", dev)
    hh = per_sample(height, b, "height", dev, lo=1e-6)
    ww = per_sample(width, b, "width", dev, lo=1e-6)
    bil = interpolation(mode)
    window = torch.stack([lf, t, lf + ww - 1, t + hh - 1], -1)
    return GeometricCall(
        name="resized_crop",
        kwargs={
            "top": t,
            "left": lf,
            "height": hh,
            "width": ww,
            "size": list(out),
            "interpolation": _interp_name(mode),
            "antialias": False,
        },
        matrix=G.resize_matrix(t, lf, hh, ww, out, bil),
        out_size=out,
        bilinear=bil,
        window=window,
        resize=True,
    )


def resized_crop(
    img: torch.Tensor,
    top,
    left,
    height,
    width,
    size,
    interpolation="bilinear",
    antialias: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Crop a per-sample box and resize it to ``size`` (torch ``interpolate`` sampling, antialias=False)."""
    return run_calls(img, [resized_crop_call(_batch(img), top, left, height, width, size, interpolation, antialias)], backend)


def _points(value, b: int, name: str, dev) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float64, device=dev)
    if t.shape == (4, 2):
        t = t.expand(b, 4, 2)
    if tuple(t.shape) != (b, 4, 2):
        raise ValueError(f"{name} must have shape [4,2] or [B,4,2], got {list(t.shape)}")
    return t


def perspective(
    img: torch.Tensor,
    startpoints,
    endpoints,
    interpolation="bilinear",
    fill=None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Projective map taking ``endpoints`` to ``startpoints`` ([4,2] or per-sample [B,4,2])."""
    return run_calls(img, [perspective_call(_batch(img), startpoints, endpoints, interpolation, fill)], backend)


_TRIPLES = ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3))


def _check_quadrilateral(points: torch.Tensor, name: str) -> None:
    """Four finite points per sample, no three of them on one line (else no perspective map exists); CPU tensors only
    (on a device the points are used as given: ``fastaug.validation``)."""
    if not checks_values(points):
        return
    p = points.detach()
    areas = []
    for i, j, k in _TRIPLES:  # twice the area of each triangle of three of the four points
        d1, d2 = p[:, j] - p[:, i], p[:, k] - p[:, i]
        areas.append(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])
    span = (p.amax(1) - p.amin(1)).amax(1, keepdim=True)  # [B,1]: the points' extent
    ok = torch.stack(areas, 1).abs() > 1e-9 * span * span  # false for NaN / inf and for equal points
    _check(ok, f"{name} must be four finite points with no three on one line (degenerate {name}: no perspective map)")


def perspective_call(cv: Canvas, startpoints, endpoints, interpolation_mode="bilinear", fill=None) -> GeometricCall:
    b, c, _, _, dev = cv
    sp, ep = _points(startpoints, b, "startpoints", dev), _points(endpoints, b, "endpoints", dev)
    _check_quadrilateral(sp, "startpoints")
    _check_quadrilateral(ep, "endpoints")
    return GeometricCall(
        name="perspective",
        kwargs={"startpoints": sp, "endpoints": ep, "interpolation": _interp_name(interpolation_mode), "fill": fill},
        matrix=G.perspective_matrix(sp, ep),
        bilinear=interpolation(interpolation_mode),
        fill=fill_values(fill, b, c, dev),
    )


def elastic_call(cv: Canvas, displacement, interpolation_mode="bilinear", fill=None) -> GeometricCall:
    """An elastic_transform call; ``displacement`` [1 or B, H, W, 2] in torchvision's normalized units."""
    b, c, h, w, dev = cv
    if not isinstance(displacement, torch.Tensor):
        displacement = torch.as_tensor(displacement, dtype=torch.float64, device=dev)
    d = displacement
    if d.dim() == 3:
        d = d.unsqueeze(0)
    if d.dim() != 4 or d.shape[0] not in (1, b) or tuple(d.shape[1:]) != (h, w, 2):
        raise ValueError(f"displacement must have shape [1, {h}, {w}, 2] or [{b}, {h}, {w}, 2], got {list(displacement.shape)}")
    if not d.is_floating_point():
        raise TypeError(f"displacement must be a float tensor, got {d.dtype}")
    d = _finite(d.to(dev), "displacement")
    d = d.expand(b, h, w, 2)
    scale = constant([w / 2.0, h / 2.0], torch.float64, dev)  # normalized -> input pixels
    return GeometricCall(
        name="elastic_transform",
        kwargs={"displacement": d, "interpolation": _interp_name(interpolation_mode), "fill": fill},
        matrix=G.identity(b, dev),
        bilinear=interpolation(interpolation_mode),
        fill=fill_values(fill, b, c, dev),
        displacement=d.to(torch.float64) * scale,
    )


def elastic_transform(img: torch.Tensor, displacement, interpolation="bilinear", fill=None, *, backend: str = "auto") -> torch.Tensor:
    """torchvision's elastic_transform per sample: output pixel (x, y) reads the input at (x + dx * W / 2, y + dy * H / 2)
    for ``displacement`` [1 or B, H, W, 2] = (dx, dy) in normalized units (torchvision's ``grid_sample`` convention,
    ``align_corners=False``), nearest or bilinear, ``fill`` outside. In a pipeline it composes with the geometric ops
    before it into one resampling and must be the last geometric op. Gradients to the image, the fill and the
    displacement (bilinear)."""
    return run_calls(img, [elastic_call(_batch(img), displacement, interpolation, fill)], backend)


def erase(img: torch.Tensor, i, j, h, w, v, inplace: bool = False, *, backend: str = "auto") -> torch.Tensor:
    """Set the box rows [i, i+h), columns [j, j+w) to ``v`` (number, [C] or [B,C]) per sample."""
    if inplace:
        raise ValueError("inplace=True is not supported: fastaug writes a new batch")
    b, c, img_h, img_w, dev = _batch(img)
    top = per_sample(i, b, "i", dev, integer=True)
    left = per_sample(j, b, "j", dev, integer=True)
    hh = per_sample(h, b, "h", dev, lo=0.0, integer=True)
    ww = per_sample(w, b, "w", dev, lo=0.0, integer=True)
    vals = fill_values(v, b, c, dev, name="v")
    # clip the box to the image (in float64, exact for these integers) before the int32 cast: a box
    # reaching past 2**31 would otherwise wrap and erase nothing; torchvision's slicing clips the same way
    x0, x1 = left.clamp(0, img_w), (left + ww).clamp(0, img_w)
    y0, y1 = top.clamp(0, img_h), (top + hh).clamp(0, img_h)
    rects = torch.stack([x0, y0, x1, y1], -1).to(torch.int32).view(b, 1, 4)
    call = RectCall(
        name="erase", kwargs={"i": top, "j": left, "h": hh, "w": ww, "v": vals}, rects=rects, values=vals.view(b, 1, c)
    )
    return run_calls(img, [call], backend)


def _length_range(value, name: str) -> tuple[int, int]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        lo = hi = int(value)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = (int(v) for v in value)
    else:
        raise ValueError(f"{name} must be an int or a (min, max) range, got {value!r}")
    if lo < 0 or hi < lo:
        raise ValueError(f"{name} must satisfy 0 <= min <= max, got {value!r}")
    return lo, hi


def xy_masking_call(
    b: int, c: int, h: int, w: int, dev, num_masks_x, num_masks_y, mask_x_length, mask_y_length, fill, mask_fill,
    seed: int, epoch: int, indices: torch.Tensor, slot: int,
) -> RectCall:  # fmt: skip
    """Draw XYMasking's stripes: vertical stripes (full height) along x, horizontal ones along y."""
    nx_lo, nx_hi = _length_range(num_masks_x, "num_masks_x")
    ny_lo, ny_hi = _length_range(num_masks_y, "num_masks_y")
    lx_lo, lx_hi = _length_range(mask_x_length, "mask_x_length")
    ly_lo, ly_hi = _length_range(mask_y_length, "mask_y_length")
    if lx_hi > w:
        raise ValueError(f"mask_x_length max {lx_hi} exceeds the image width {w}")
    if ly_hi > h:
        raise ValueError(f"mask_y_length max {ly_hi} exceeds the image height {h}")
    vals = fill_values(fill, b, c, dev)
    nx = rng.randint(seed, epoch, indices, slot, nx_lo, nx_hi + 1)[:, 0]
    ny = rng.randint(seed, epoch, indices, slot + 1, ny_lo, ny_hi + 1)[:, 0]
    lx = rng.randint(seed, epoch, indices, slot + 2, lx_lo, lx_hi + 1, n=max(nx_hi, 1))
    ly = rng.randint(seed, epoch, indices, slot + 3, ly_lo, ly_hi + 1, n=max(ny_hi, 1))
    # u (24 bits) times a positive integer is exact and >= 0: the truncating cast is the floor
    x0 = (rng.uniform(seed, epoch, indices, slot + 4, max(nx_hi, 1)) * (w - lx + 1)).to(torch.int64)
    y0 = (rng.uniform(seed, epoch, indices, slot + 5, max(ny_hi, 1)) * (h - ly + 1)).to(torch.int64)
    xr = torch.stack([x0, torch.zeros_like(x0), x0 + lx, torch.full_like(x0, h)], -1)[:, :nx_hi]
    yr = torch.stack([torch.zeros_like(y0), y0, torch.full_like(y0, w), y0 + ly], -1)[:, :ny_hi]
    rects = torch.cat([xr, yr], 1).to(torch.int32)
    ax = torch.arange(nx_hi, device=dev).view(1, -1) < nx.view(-1, 1)
    ay = torch.arange(ny_hi, device=dev).view(1, -1) < ny.view(-1, 1)
    active = torch.cat([ax, ay], 1) & (torch.cat([lx[:, :nx_hi], ly[:, :ny_hi]], 1) > 0)
    r = rects.shape[1]
    return RectCall(
        name="xy_masking",
        kwargs={"rects": rects, "active": active, "fill": vals},
        rects=rects,
        values=vals.view(b, 1, c).expand(b, r, c),
        active=active,
        mask_value=mask_fill,
    )


def xy_masking(
    img: torch.Tensor,
    num_masks_x=0,
    num_masks_y=0,
    mask_x_length=0,
    mask_y_length=0,
    fill=0,
    *,
    seed: int = 0,
    epoch: int = 0,
    indices: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """albumentations' XYMasking: per sample, ``num_masks_x`` full-height stripes of width
    ``mask_x_length`` and ``num_masks_y`` full-width stripes of height ``mask_y_length`` (ints or
    (min, max) ranges, drawn per sample from (seed, epoch, index)); ``fill`` a number or one value per
    channel. One axis alone is SpecAugment's time / frequency masking."""
    b, c, h, w, dev = _batch(img)
    seed, epoch = check_seed(seed), check_epoch(epoch)
    idx = check_indices(indices, b, dev)
    call = xy_masking_call(
        b, c, h, w, dev, num_masks_x, num_masks_y, mask_x_length, mask_y_length, fill, None, seed, epoch, idx, 0
    )
    return run_calls(img, [call], backend)


def normalize(img: torch.Tensor, mean, std, inplace: bool = False, *, backend: str = "auto") -> torch.Tensor:
    """``(img - mean) / std`` per channel (uint8 input is scaled to [0, 1] first)."""
    if inplace:
        raise ValueError("inplace=True is not supported: fastaug writes a new batch")
    _, c, _, _, dev = _batch(img)
    return run_calls(img, [normalize_call(mean, std, c, dev)], backend)


def normalize_call(mean, std, c: int, dev) -> NormalizeCall:
    """The call of ``normalize``: float tensors stay attached (gradients w.r.t. mean / std) and are read where they
    live; numbers and sequences are checked on the host and become cached constants on ``dev`` (no copy per call)."""
    m, s = _per_channel(mean, "mean", c, dev), _per_channel(std, "std", c, dev)
    if m.numel() != c or s.numel() != c:
        raise ValueError(f"mean and std need 1 or {c} values (one per channel), got {m.numel()} and {s.numel()}")
    check_mean_std(m, s)
    if dev.type != "cpu":  # listed as tensors: reading device values back would wait for the device
        m, s = m.to(dev), s.to(dev)
        return NormalizeCall(name="normalize", kwargs={"mean": m, "std": s}, mean=m, std=s)
    return NormalizeCall(name="normalize", kwargs={"mean": m.tolist(), "std": s.tolist()}, mean=m, std=s)


def _per_channel(value, name: str, c: int, dev) -> torch.Tensor:
    """``mean`` / ``std`` as a flat float tensor of ``c`` (or as many as given) values: float tensors as given
    (attached), numbers and sequences checked here and made a cached constant on ``dev``."""
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got {value.dtype}")
        t = (value if value.dtype in (torch.float32, torch.float64) else value.to(torch.float32)).flatten()
        return t.expand(c) if t.numel() == 1 else t
    try:
        values = np.asarray(value, dtype=np.float32).ravel().tolist()
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a number, a sequence of numbers or a tensor, got {value!r}") from e
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must hold finite values (no NaN or inf)")
    if name == "std" and any(v == 0 for v in values):
        raise ValueError("std evaluated to zero, leading to division by zero")
    return constant(values * c if len(values) == 1 else values, torch.float32, dev)


def check_mean_std(mean, std) -> None:
    """``mean`` and ``std`` hold finite numbers and ``std`` no zero (ValueError naming the argument; a device
    tensor is not checked and used as given: ``fastaug.validation``)."""
    for name, value in (("mean", mean), ("std", std)):
        try:
            t = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{name} must be a number, a sequence of numbers or a tensor, got {value!r}") from e
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got {t.dtype}")
        _check(lambda t=t: torch.isfinite(t), f"{name} must hold finite values (no NaN or inf)", on=t)
        if name == "std":
            _check(lambda t=t: t != 0, "std evaluated to zero, leading to division by zero", on=t)


_TO_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_dtype(dtype) -> None:
    """``to_dtype``'s target: torch.uint8 or a float dtype (TypeError naming ``dtype`` otherwise)."""
    if not isinstance(dtype, torch.dtype) or dtype not in _TO_DTYPES:
        raise TypeError(f"dtype must be torch.uint8 or a float dtype, got {dtype!r}")


def to_dtype(
    img: torch.Tensor, dtype: torch.dtype = torch.float32, scale: bool = False, *, backend: str = "auto"
) -> torch.Tensor:
    """Convert dtype; ``scale=True`` maps uint8 [0, 255] <-> float [0, 1] like torchvision."""
    check_dtype(dtype)
    return run_calls(
        img, [DtypeCall(name="to_dtype", kwargs={"dtype": dtype, "scale": scale}, dtype=dtype, scale=scale)], backend
    )
