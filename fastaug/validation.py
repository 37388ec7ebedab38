"""Input checks: clear ValueError/TypeError naming the argument, without host syncs or device asserts on the GPU.

Types, shapes, dtypes, channel counts and host numbers are checked everywhere, eagerly. *Values* held in tensors are
checked where they can be read for free: CPU tensors raise a ValueError (TypeError for non-integers) now. Values on
an accelerator are never read on the host (a sync) nor asserted on the device (``torch._assert_async`` is sticky:
one upstream 1.0000001 would end the CUDA context and the training run); instead, the same on every backend
(the rule runs in torch on the device tensors, before the Plan that any backend executes):

- an image batch's float values are used as given: no [0, 1] or NaN check (as torchvision); ops clamp where their
  formula does (uint8 outputs, the color ops that clip to the value range);
- per-sample magnitudes (:func:`per_sample`) are made valid: NaN becomes the argument's neutral value (the op's
  identity: factor 1, angle 0, noise factors 1, a blur's sigma 1e-6, ...; solarize, whose range holds no identity,
  leaves a NaN threshold's sample unchanged), +-inf the bound on that side (the neutral value on an unbounded
  side), then values are clamped into the argument's range and integer arguments rounded;
- dataset indices and a device epoch are not checked: the hash reads their two's complement bits (a negative index
  or an epoch >= 2**32 draws deterministically, as on every backend);
- the other value checks (``_check``: finite fills, kernels and displacements, a non-degenerate perspective, a
  non-zero std) are skipped; the callers named there make their values valid where a value would poison a whole
  image (sigma and scale kept > 0, low <= high, odd kernel sizes).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from fastaug.constants import cached, constant

IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def checks_values(t: torch.Tensor) -> bool:
    """Whether ``t``'s values are checked (raise) here: CPU tensors. Elsewhere they are made valid or used as given."""
    return t.device.type == "cpu"


def _check(cond, message: str, exc: type[Exception] = ValueError, on: torch.Tensor | None = None) -> None:
    """CPU: raise ``exc(message)`` now unless ``cond`` holds everywhere. Accelerators and meta: nothing (the module
    doc's device rule: no host sync, no device assert). ``cond``: a bool tensor, or a function returning one, called
    only where the tensor ``on`` is checked (no op on a device)."""
    if callable(cond):
        if not checks_values(on):
            return
        cond = cond()
    if checks_values(cond) and not bool(cond.all()):
        raise exc(message)


def sanitize(t: torch.Tensor, lo: float | None = None, hi: float | None = None, integer: bool = False,
             neutral: float = 0.0) -> torch.Tensor:
    """The device rule for per-sample values (module doc): NaN -> ``neutral``, +-inf -> the bound on that side (else
    ``neutral``), clamped into [lo, hi], integers rounded. Differentiable where the value is valid already."""
    t = torch.nan_to_num(t, nan=neutral, posinf=neutral if hi is None else hi, neginf=neutral if lo is None else lo)
    if lo is not None or hi is not None:
        t = torch.clamp(t, lo, hi)
    return torch.round(t) if integer else t


def as_batch(img: torch.Tensor, name: str = "img") -> tuple[torch.Tensor, bool]:
    """Validate an image batch [B,C,H,W] (or one image [C,H,W]); returns (batch, was_unbatched)."""
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(img).__name__}")
    if img.dtype not in IMAGE_DTYPES:
        raise TypeError(f"{name} must be uint8 or float16/bfloat16/float32/float64, got {img.dtype}")
    if img.dim() not in (3, 4):
        raise ValueError(f"{name} must have shape [B,C,H,W] or [C,H,W], got {tuple(img.shape)}")
    unbatched = img.dim() == 3
    x = img.unsqueeze(0) if unbatched else img
    b, c, h, w = x.shape
    if b == 0:
        raise ValueError(f"{name} is an empty batch (B=0)")
    if c == 0 or h == 0 or w == 0:
        raise ValueError(f"{name} has a zero-size dimension: {tuple(img.shape)}")
    if x.is_floating_point() and checks_values(x):  # on a device: used as given (module doc)
        lo, hi = torch.aminmax(x.detach())
        _check(~torch.isnan(lo) & ~torch.isnan(hi), f"{name} contains NaN")
        _check((lo >= 0) & (hi <= 1), f"float {name} must hold values in [0, 1]")
    return x, unbatched


def per_sample(
    value,
    b: int,
    name: str,
    device: torch.device,
    *,
    width: int | None = None,
    lo: float | None = None,
    hi: float | None = None,
    integer: bool = False,
    neutral: float = 0.0,
    drawn: bool = False,
) -> torch.Tensor:
    """A number or per-sample tensor as a float64 tensor [B] (or [B, width]), range-checked (a device tensor: made
    valid by :func:`sanitize`, NaN becoming ``neutral``, the argument's identity value). ``drawn``: a transform drew
    the tensor from its ranges checked at construction: valid by construction, used as given on a device (no op)."""
    if isinstance(value, bool) or (value is None):
        raise TypeError(f"{name} must be a number or a tensor, got {value!r}")
    if isinstance(value, numbers.Number):
        _check_numbers([value], name, lo, hi, integer)  # host numbers: checked on every device
        t = torch.full((b,) if width is None else (b, width), float(value), dtype=torch.float64, device=device)
    elif (
        isinstance(value, (list, tuple))
        and width is not None
        and len(value) == width
        and all(isinstance(v, numbers.Number) for v in value)
    ):
        _check_numbers(value, name, lo, hi, integer)
        t = constant([float(v) for v in value], torch.float64, device).expand(b, width)
    elif isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real tensor, got {value.dtype}")
        t = value.to(device)
        if not t.is_floating_point():
            t = t.to(torch.float64)
        want = (b,) if width is None else (b, width)
        if t.dim() == 0:
            t = t.expand(want)
        elif width is not None and t.dim() == 1 and t.shape[0] == width:
            t = t.expand(want)
        if tuple(t.shape) != want:
            raise ValueError(
                f"{name} must be a number or a tensor of shape {list(want)} (one per sample), got {list(value.shape)}"
            )
    else:
        raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    if not checks_values(t):
        if drawn:
            return t
        return sanitize(t, lo, hi, integer, min(max(neutral, -math.inf if lo is None else lo), math.inf if hi is None else hi))
    d = t.detach()
    _check(~torch.isnan(d), f"{name} contains NaN")
    _check(~torch.isinf(d), f"{name} contains inf (values must be finite)")
    if lo is not None:
        _check(d >= lo, f"{name} must be >= {lo}")
    if hi is not None:
        _check(d <= hi, f"{name} must be <= {hi}")
    if integer:
        _check(d == torch.round(d), f"{name} must hold integers", TypeError)
    return t


def _check_numbers(values, name: str, lo: float | None, hi: float | None, integer: bool) -> None:
    """:func:`per_sample`'s checks of host numbers (the same messages as its tensor checks), on any device."""
    for v in values:
        if isinstance(v, complex) or isinstance(v, bool):
            raise TypeError(f"{name} must be a real number, got {v!r}")
        v = float(v)
        if math.isnan(v):
            raise ValueError(f"{name} contains NaN")
        if math.isinf(v):
            raise ValueError(f"{name} contains inf (values must be finite)")
        if lo is not None and v < lo:
            raise ValueError(f"{name} must be >= {lo}")
        if hi is not None and v > hi:
            raise ValueError(f"{name} must be <= {hi}")
        if integer and v != round(v):
            raise TypeError(f"{name} must hold integers")


_KEY_MAX = 2**32 - 1  # the hash keys an epoch by its low 32 bits: larger (or negative) epochs would alias


def _integer_scalar(value, name: str) -> torch.Tensor | int:
    """An int (not a bool) or a 0-dim integer tensor (seed and epoch may live on the device: CUDA graphs)."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
            raise TypeError(f"{name} must be an int or a 0-dim integer tensor, got a {value.dtype} tensor of shape {list(value.shape)}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int (or a 0-dim integer tensor), got {value!r}")
    return int(value)


def check_seed(value, name: str = "seed") -> torch.Tensor | int:
    """A seed: an int or a 0-dim integer tensor (TypeError naming it otherwise)."""
    return _integer_scalar(value, name)


def check_epoch(value, name: str = "epoch") -> torch.Tensor | int:
    """An epoch: an int in [0, 2**32) or a 0-dim integer tensor holding one (a CPU tensor is checked now; a device
    tensor is not checked: the hash reads its low 32 bits)."""
    e = _integer_scalar(value, name)
    message = f"{name} must be in [0, 2**32) (a non-negative int)"
    if isinstance(e, torch.Tensor):
        t = e.detach().to(torch.int64)
        _check(lambda: (t >= 0) & (t <= _KEY_MAX), message, on=t)
    elif not 0 <= e <= _KEY_MAX:
        raise ValueError(f"{message}, got {e}")
    return e


def check_indices(value, b: int, device: torch.device, name: str = "indices") -> torch.Tensor:
    """Dataset indices: None (0..B-1) or B non-negative integers -> int64 [B] on ``device``.

    Host indices for a device batch (a DataLoader's) are checked on the host and copied with ``non_blocking=True``:
    no wait for the device's queue. Indices already on the device cost no copy (needed inside a CUDA graph)."""
    if value is None:
        return torch.arange(b, device=device)
    try:
        idx = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be an integer tensor of shape [{b}] (one dataset index per sample), got {value!r}") from e
    if idx.dtype.is_floating_point or idx.is_complex() or idx.dtype == torch.bool or tuple(idx.shape) != (b,):
        raise ValueError(f"{name} must be an integer tensor of shape [{b}] (one dataset index per sample)")
    if idx.device.type == "cpu":  # checked with numpy: host values, no device work
        host = idx.numpy().astype(np.int64, copy=False)
        if host.size and host.min() < 0:
            raise ValueError(f"{name} must be non-negative (dataset indices)")
        return torch.from_numpy(host).to(device, non_blocking=True)
    idx = idx.to(torch.int64)  # device indices are not checked (module doc): the hash reads their bits
    return idx.to(device, non_blocking=torch.device(device).type != "cpu")  # to the host: wait for the values


def channels_for(c: int, allowed: tuple[int, ...], op: str) -> None:
    if c not in allowed:
        raise ValueError(f"{op} needs an image with {' or '.join(map(str, allowed))} channels, got {c}")


def interpolation(mode) -> bool:
    """True for bilinear, False for nearest (strings or torchvision InterpolationMode)."""
    name = getattr(mode, "value", mode)
    if name not in ("nearest", "bilinear"):
        raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {mode!r}")
    return name == "bilinear"


def _constant_fill(values: list[float], b: int, device: torch.device) -> torch.Tensor:
    """A host fill as a cached contiguous float32 [B,C] (no op and no host -> device copy per call; read-only)."""
    return cached(("fill", tuple(values), b, torch.device(device)),
                  lambda: constant(values, torch.float32, device).expand(b, len(values)).contiguous())


def fill_values(fill, b: int, c: int, device: torch.device, name: str = "fill") -> torch.Tensor | None:
    """None, a number, one value per channel, or per-sample [B,C] -> [B,C] float32 (a float64 tensor stays
    float64, and a tensor stays in the autograd graph: exact gradients to the fill)."""
    if fill is None:
        return None
    finite = f"{name} must hold finite values (no NaN or inf)"
    if isinstance(fill, numbers.Number) and not isinstance(fill, bool):
        if not math.isfinite(fill):
            raise ValueError(f"{finite}, got {fill!r}")
        return _constant_fill([float(fill)] * c, b, device)
    if isinstance(fill, (list, tuple)):
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in fill):
            raise TypeError(f"{name} must be None, a number or a sequence of numbers, got {fill!r}")
        if not all(math.isfinite(v) for v in fill):
            raise ValueError(f"{finite}, got {fill!r}")
        if len(fill) == 1:
            return _constant_fill([float(fill[0])] * c, b, device)
        if len(fill) != c:
            raise ValueError(f"{name} has {len(fill)} values but the image has {c} channels")
        return _constant_fill([float(v) for v in fill], b, device)
    if isinstance(fill, torch.Tensor):
        t = fill.to(device=device, dtype=torch.float64 if fill.dtype == torch.float64 else torch.float32)
        _check(lambda: torch.isfinite(t.detach()), finite, on=t)
        if t.dim() == 0:
            return t.expand(b, c).contiguous()
        if t.dim() == 1 and t.shape[0] == c:
            return t.expand(b, c).contiguous()
        if tuple(t.shape) == (b, c):
            return t
        raise ValueError(f"{name} must be a number, [C] or [B,C], got shape {list(t.shape)}")
    raise TypeError(f"{name} must be None, a number, a sequence or a tensor, got {type(fill).__name__}")
