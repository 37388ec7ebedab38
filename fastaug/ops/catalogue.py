"""The op catalogue: one :class:`OpSpec` per op, the single source of every op list.

The compiler, the backends, the policies' op spaces and the tests derive what they need from here:
the program op codes (:data:`Op`), which ops mix RGB channels, read statistics, read a neighbourhood,
draw per-pixel noise, pass a straight-through gradient, and each functional op's arguments with their
ranges. Adding an op = one entry here + its case in each backend (reference, numba, triton; forward
and backward) + tests.

Program ops (``code`` set) run per pixel inside a Stage program; their formulas (``math``) are the
contract every backend meets, on working values ``v`` with ``a, b = params[..., 0], params[..., 1]``,
``bound`` = 255 in the uint8 domain and 1 in the float domain, "trunc" = ``floor`` in the uint8
domain only. Codes are append-only: a code never changes meaning (compiled kernels and records keep
them). This module imports nothing from fastaug: the kernels import it as part of the contract.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# kinds of op: how an op reads its input
POINTWISE = "pointwise"  # each channel value on its own (per-channel: any channel count)
RGB = "rgb"  # mixes the channels of a pixel: needs C == 3 (C == 1: identity or gray)
STATISTICS = "statistics"  # reads statistics of the whole image (a reduction pass before it)
NEIGHBOURHOOD = "neighbourhood"  # reads the stage input around the pixel (k = 0 of a stage without geometry)
RANDOM = "random"  # per-pixel draws from the counter-based hash
GEOMETRIC = "geometric"  # a coordinate map: composed into the stage's one resampling
RECTANGLE = "rectangle"  # paints rectangles in the epilogue
EPILOGUE = "epilogue"  # normalize, dtype and channel selection
KINDS = (POINTWISE, RGB, STATISTICS, NEIGHBOURHOOD, RANDOM, GEOMETRIC, RECTANGLE, EPILOGUE)


@dataclass(frozen=True)
class Arg:
    """A magnitude argument: its name in fastaug.functional (and torchvision), its range, and whether
    torchvision takes it as an int. ``hi`` None: unbounded; "bound": the image's value bound (255 / 1)."""

    name: str
    lo: float | None = None
    hi: float | str | None = None
    integer: bool = False
    grad: bool = True  # a gradient reaches it (where the op is differentiable at all)


@dataclass(frozen=True)
class OpSpec:
    """One op. ``code``: its program op code (None: not a per-pixel program op).

    ``args``: the magnitudes; for program ops ``args[i]`` is ``params[..., i]``. ``channels``: the
    channel counts it accepts (None: any). ``statistic``: what it reads from the reduction pass
    ("gray_mean", "min_max", "histogram"). ``radius``: the neighbourhood it reads (an int; "call" when
    the call sets it, e.g. a kernel size; "image": anywhere in the stage input). ``image_grad``: the image gets a (non-zero) gradient.
    ``straight_through``: ``params[..., 2] > 0.5`` asks for an identity gradient instead.
    """

    name: str  # Op member name (program ops) or an upper-case name
    function: str  # fastaug.functional name
    kind: str
    code: int | None = None
    args: tuple[Arg, ...] = ()
    channels: tuple[int, ...] | None = None
    statistic: str | None = None
    radius: int | str = 0
    image_grad: bool = True
    straight_through: bool = False
    math: str = ""


_FACTOR = {"lo": 0.0}
CATALOGUE: tuple[OpSpec, ...] = (
    # ---- program ops (codes are append-only)
    OpSpec("IDENTITY", "identity", POINTWISE, 0, math="v"),
    OpSpec("BRIGHTNESS", "adjust_brightness", POINTWISE, 1, (Arg("brightness_factor", **_FACTOR),),
           math="trunc(clamp(v*a, 0, bound))"),
    OpSpec("CONTRAST", "adjust_contrast", STATISTICS, 2, (Arg("contrast_factor", **_FACTOR),), channels=(1, 3),
           statistic="gray_mean",
           math="m = stats[b,k,0,0] (mean gray: C==3 trunc(0.2989r + 0.587g + 0.114b), C==1 v); "
                "trunc(clamp(v*a + m*(1-a), 0, bound))"),
    OpSpec("SATURATION", "adjust_saturation", RGB, 3, (Arg("saturation_factor", **_FACTOR),), channels=(1, 3),
           math="C==3: g = trunc(0.2989r + 0.587g + 0.114b); trunc(clamp(v*a + g*(1-a), 0, bound)); C==1: identity"),
    OpSpec("HUE", "adjust_hue", RGB, 4, (Arg("hue_factor", -0.5, 0.5),), channels=(1, 3),
           math="C==3: (uint8: v*(1/255)) rgb->hsv, h=(h+a) mod 1, hsv->rgb (torchvision formulas); "
                "uint8: floor(v*255.999); C==1: identity"),
    OpSpec("GAMMA", "adjust_gamma", POINTWISE, 5, (Arg("gamma", 0.0), Arg("gain", 0.0)),
           math="(uint8: v*(1/255)); v = v**a (computed in float64, rounded to the working dtype: every backend's bits); "
                "if b != 1: v = clamp(v*b, 0, 1); uint8: floor(v*255.999)"),
    OpSpec("SHARPNESS", "adjust_sharpness", NEIGHBOURHOOD, 6, (Arg("sharpness_factor", **_FACTOR),), radius=1,
           math="interior pixels: blur = 3x3 [1 1 1;1 5 1;1 1 1]/13 of the stage input (uint8: rint), "
                "trunc(clamp(v + (1-a)*(blur-v), 0, bound)); border pixels (and H<=2 or W<=2): unchanged"),
    OpSpec("GRAYSCALE", "rgb_to_grayscale", RGB, 7, channels=(1, 3),
           math="C==3: g = trunc(0.2989r + 0.587g + 0.114b) into every channel; C==1: identity"),
    OpSpec("INVERT", "invert", POINTWISE, 8, math="bound - v"),
    OpSpec("POSTERIZE", "posterize", POINTWISE, 9, (Arg("bits", 0.0, 8.0, integer=True, grad=False),),
           image_grad=False, straight_through=True,
           math="uint8: floor(v / 2**(8-a)) * 2**(8-a); float: L=2**a, clamp(floor(v*L), 0, L-1)/L"),
    OpSpec("SOLARIZE", "solarize", POINTWISE, 10, (Arg("threshold", 0.0, "bound", grad=False),), straight_through=True,
           math="bound - v if v >= a else v (a in the domain's scale)"),
    OpSpec("AUTOCONTRAST", "autocontrast", STATISTICS, 11, statistic="min_max", straight_through=True,
           math="lo, hi = stats[b,k,c,0], stats[b,k,c,1] (the channel's min / max without its NaN pixels; NaN only: "
                "+inf, -inf); if hi == lo: lo=0, s=1 else s=(hi-lo)*float32(1/bound); trunc(clamp((v-lo)/s, 0, bound)) "
                "(a NaN pixel stays NaN)"),
    OpSpec("EQUALIZE", "equalize", STATISTICS, 12, statistic="histogram", image_grad=False, straight_through=True,
           math="uint8: luts[b,k,c,int(v)]; float: luts[b,k,c,floor(v*255.999)] / 255"),
    OpSpec("TO_FLOAT", "to_dtype", EPILOGUE, 13, math="v * (1/255)   (uint8 domain -> float domain)"),
    OpSpec("TO_UINT8", "to_dtype", EPILOGUE, 14, image_grad=False, math="floor(v * 255.999)   (float domain -> uint8 domain)"),
    OpSpec("GAUSSIAN_BLUR", "gaussian_blur", NEIGHBOURHOOD, 15, (Arg("sigma_x", 0.0), Arg("sigma_y", 0.0)), radius="call",
           math="separable: h = sum_t taps[b,0,t] * v[y, reflect(x+t-R)]; v = sum_t taps[b,1,t] * h[reflect(y+t-R), x] "
                "(t ascending, from 0; R = stage radius, reflect without repeating the edge); uint8: rint"),
    OpSpec("GAUSSIAN_NOISE", "gaussian_noise", RANDOM, 16, (Arg("mean"), Arg("sigma", 0.0), Arg("clip", grad=False)),
           math="z = the standard normal of (keys[b,k], c, y, x) (fastaug.ops.counter); float: v + (a + z*b); "
                "uint8: v + trunc_toward_zero(a*255 + z*(b*255)) (torchvision's int16 cast); "
                "params[2] > 0.5 (clip): clamp(0, bound), else uint8 wraps mod 256"),
    OpSpec("CONVOLVE", "convolve", NEIGHBOURHOOD, 17, radius="call",
           math="acc = sum_dy sum_dx kernel[b,dy,dx] * v[reflect(y+dy-R), reflect(x+dx-R)] (dy, then dx ascending, "
                "from 0: correlation, as cv2.filter2D); clamp(acc, 0, bound), uint8: rint"),
    # per-pixel uniform u of (keys[b,k], c', y, x) (fastaug.ops.counter); c' = c when per channel (params[2] mod 2 = 1), else 0
    OpSpec("PIXEL_DROPOUT", "pixel_dropout", RANDOM, 18, (Arg("dropout_prob", 0.0, 1.0, grad=False), Arg("drop_value"),
           Arg("per_channel", grad=False)),
           math="params[2] = dropout_mode(per channel, t): t = floor(params[2] / 2) - 1 the one channel this slot drops "
                "(-1: every channel); channel c (every c, or c == t only) becomes b if u < a, else v (b in the domain's "
                "units). One drop value per channel: C slots t = 0..C-1 with the same key (the same draws), b = value t"),
    OpSpec("SALT_AND_PEPPER", "salt_and_pepper", RANDOM, 19, (Arg("amount", 0.0, 1.0, grad=False),
           Arg("salt_vs_pepper", 0.0, 1.0, grad=False)), math="c' = 0; bound if u < a*b, else 0 if u < a, else v"),
    OpSpec("MULTIPLICATIVE_NOISE", "multiplicative_noise", RANDOM, 20, (Arg("low", 0.0, grad=False), Arg("high", 0.0, grad=False),
           Arg("per_channel", grad=False)), math="m = a + (b - a) * u; trunc(clamp(v*m, 0, bound))"),
    OpSpec("RGB_SHIFT", "rgb_shift", RGB, 21, (Arg("r_shift"), Arg("g_shift"), Arg("b_shift")), channels=(3,),
           math="channel c of (r, g, b) += (a, b, params[2])[c] (in the domain's units); trunc(clamp(v, 0, bound))"),
    OpSpec("RGB_GAIN", "rgb_gain", RGB, 22, (Arg("r_gain", 0.0), Arg("g_gain", 0.0), Arg("b_gain", 0.0)), channels=(3,),
           math="channel c of (r, g, b) *= (a, b, params[2])[c]; trunc(clamp(v, 0, bound))"),
    OpSpec("FOG", "fog", RANDOM, 23, (Arg("density", 0.0, 1.0), Arg("scale", 0.0, grad=False), Arg("threshold", 0.0, 1.0, grad=False)),
           math="n = the value noise of (keys[b,k], scale = b) at (y, x) (fastaug.ops.counter, shared by the channels); "
                "alpha = a * clamp((n - t) / (1 - t), 0, 1) with t = params[2]; trunc(v + alpha * (bound - v))"),
    OpSpec("DOWNSCALE", "downscale", NEIGHBOURHOOD, 24, (Arg("scale", 0.0, 1.0, grad=False), Arg("mode", 0.0, 3.0, True, False)),
           radius="image",
           math="a = max(a, 2**-20) (NaN: 2**-20); the stage input resized to (hd, wd) = max(rint(H*a), 1), max(rint(W*a), 1) "
                "and back to (H, W) (cv2's "
                "resize(fx = fy = a), then resize to the size); mode b: bit 0 bilinear down, bit 1 bilinear up (else nearest). "
                "An axis of n_in values read with r input pixels per output pixel (down: r = 1/a; up: r = hd/H, wd/W): "
                "nearest i = min(floor(pos*r), n_in-1); bilinear s = max((pos+0.5)*r - 0.5, 0), i0 = min(floor(s), n_in-1), "
                "i1 = min(i0+1, n_in-1), l = s - floor(s), (1-l) v[i0] + l v[i1] (within rows, then across); "
                "uint8: the small image's values and the result rint"),
    OpSpec("SUPERPIXELS", "superpixels", NEIGHBOURHOOD, 25, (Arg("p_replace", 0.0, 1.0, grad=False),
           Arg("n_segments", 1.0, integer=True, grad=False)), radius="image",
           math="labels = fastaug.ops.superpixels.slic of the stage input (n_segments b, at most Stage.max_segments); "
                "segment s replaced by its per-channel mean when the hash of (keys[b,k], s) < a (uint8: the mean rint); "
                "run in torch by the engine before the stage's kernels (they see an identity)"),
    # functional ops that compile to CONVOLVE with a per-sample kernel (albumentations' formulas)
    OpSpec("SHARPEN", "sharpen", NEIGHBOURHOOD, args=(Arg("alpha", 0.0, 1.0), Arg("lightness", 0.0)), radius=1,
           math="kernel = (1-alpha) I3 + alpha [[-1,-1,-1],[-1,8+lightness,-1],[-1,-1,-1]]"),
    OpSpec("EMBOSS", "emboss", NEIGHBOURHOOD, args=(Arg("alpha", 0.0, 1.0), Arg("strength", 0.0)), radius=1,
           math="kernel = (1-alpha) I3 + alpha [[-1-s,-s,0],[-s,1,s],[0,s,1+s]]"),
    OpSpec("MOTION_BLUR", "motion_blur", NEIGHBOURHOOD, args=(Arg("kernel_size", 3.0, integer=True, grad=False),
           Arg("angle", grad=False), Arg("direction", -1.0, 1.0, grad=False)), radius="call",
           math="a line of k points through the centre at angle, rasterised (rint), weights 1/count"),
    # ---- geometric ops: one resampling per sample, composed
    OpSpec("AFFINE", "affine", GEOMETRIC, args=(Arg("angle"), Arg("translate"), Arg("scale", 0.0), Arg("shear"))),
    OpSpec("ROTATE", "rotate", GEOMETRIC, args=(Arg("angle"),)),
    OpSpec("HORIZONTAL_FLIP", "horizontal_flip", GEOMETRIC),
    OpSpec("VERTICAL_FLIP", "vertical_flip", GEOMETRIC),
    OpSpec("CROP", "crop", GEOMETRIC, args=(Arg("top", integer=True), Arg("left", integer=True),
                                             Arg("height", 1.0, integer=True), Arg("width", 1.0, integer=True))),
    OpSpec("RESIZED_CROP", "resized_crop", GEOMETRIC, args=(Arg("top"), Arg("left"), Arg("height", 0.0), Arg("width", 0.0))),
    OpSpec("PERSPECTIVE", "perspective", GEOMETRIC, args=(Arg("startpoints"), Arg("endpoints"))),
    OpSpec("SAFE_ROTATE", "safe_rotate", GEOMETRIC, args=(Arg("angle"),)),
    OpSpec("ELASTIC", "elastic_transform", GEOMETRIC, args=(Arg("displacement"),),
           math="per output pixel: (j + dx * W/2, i + dy * H/2) before the matrix (Geometry.displacement, input pixels)"),
    # ---- rectangles and the epilogue
    OpSpec("ERASE", "erase", RECTANGLE, args=(Arg("i", integer=True), Arg("j", integer=True), Arg("h", integer=True),
                                               Arg("w", integer=True), Arg("v"))),
    OpSpec("XY_MASKING", "xy_masking", RECTANGLE),
    OpSpec("COARSE_DROPOUT", "coarse_dropout", RECTANGLE),
    OpSpec("NORMALIZE", "normalize", EPILOGUE, args=(Arg("mean"), Arg("std"))),
)  # fmt: skip

PROGRAM_SPECS: dict[int, OpSpec] = {s.code: s for s in CATALOGUE if s.code is not None}

# Program op codes; the per-op formulas are in CATALOGUE's ``math``.
Op = enum.IntEnum("Op", [(s.name, s.code) for s in sorted(PROGRAM_SPECS.values(), key=lambda s: s.code)], module=__name__)
Op.__doc__ = "Per-pixel op codes of a Stage program (see fastaug.ops.catalogue.CATALOGUE for each op's math)."


def dropout_mode(per_channel: bool, channel: int = -1) -> float:
    """PIXEL_DROPOUT's ``params[..., 2]``: ``per_channel + 2 * (channel + 1)``; ``channel`` -1 drops every channel, else
    the slot drops only that channel (0 and 1 keep their meaning: shared or per-channel draws, every channel)."""
    return float(bool(per_channel)) + 2.0 * (channel + 1)


def decode_dropout_mode(mode):
    """:func:`dropout_mode` undone, on a float or a float tensor (elementwise): ``(per_channel, channel)`` =
    ``(mode mod 2 > 0.5, floor(mode / 2) - 1)``, a bool (tensor) and a float (tensor); channel -1: every channel.
    The kernels decode it inline (the same formula)."""
    half = mode // 2  # floor, for a float and a tensor alike
    return mode - 2 * half > 0.5, half - 1


def _codes(pred) -> tuple[Op, ...]:
    return tuple(Op(c) for c, s in sorted(PROGRAM_SPECS.items()) if pred(s))


STAT_OPS = _codes(lambda s: s.statistic is not None)  # a reduction pass fills stats / luts before them
LIVE_OPS = _codes(lambda s: s.statistic in ("gray_mean", "min_max"))  # read statistics that carry a gradient
RGB_OPS = _codes(lambda s: s.kind == RGB)  # need C == 3 (C == 1: identity)
GRAY_OPS = _codes(lambda s: s.channels == (1, 3))  # read a gray value: 1 or 3 channels only
# op code -> the channel counts it accepts (ops that accept any count are absent)
CHANNELS = {Op(c): s.channels for c, s in PROGRAM_SPECS.items() if s.channels is not None}
NEIGHBOURHOOD_OPS = _codes(lambda s: s.kind == NEIGHBOURHOOD)  # k = 0 of a stage without geometry only
ST_OPS = _codes(lambda s: s.straight_through)  # params[..., 2] > 0.5: straight-through gradient
RANDOM_OPS = _codes(lambda s: s.kind == RANDOM)  # per-pixel draws keyed by keys[b, k]
# op code -> (functional name, names of params[..., 0], params[..., 1], ...): record listings
COLOR_OPS: dict[int, tuple[str, tuple[str, ...]]] = {
    c: (s.function, tuple(a.name for a in s.args)) for c, s in PROGRAM_SPECS.items() if s.kind not in (EPILOGUE,) and c != 0
}
# arguments torchvision takes as ints: listed as ints when their (float) value is integral
INTEGER_ARGS = frozenset(a.name for s in CATALOGUE for a in s.args if a.integer)
# the widest neighbourhood a fixed-radius op reads
FIXED_RADIUS = {Op(c): s.radius for c, s in PROGRAM_SPECS.items() if isinstance(s.radius, int) and s.radius > 0}
