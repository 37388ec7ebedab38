"""Bad inputs to fastaug.functional raise ValueError or TypeError whose message names the culprit.

Every case is checked on the CPU reference backend (``backend="torch"``); a message must contain the
argument's name (``img`` for the image). Channel-count errors name the op and say "channels" (the image
argument itself has the right type and rank, its channel count is what is wrong). A hypothesis
property test checks that random valid inputs never raise and keep their shape and dtype, and that
every invalid rank or dtype raises.
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastaug
import fastaug.functional as FA

B = 3
BAD = (ValueError, TypeError)


def u8(b=B, c=3, h=6, w=7) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def f32(b=B, c=3, h=6, w=7) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(0))


def raises(fn, name: str, exc=BAD):
    """``fn()`` raises ``exc`` and the message contains ``name`` as a word."""
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert re.search(rf"\b{re.escape(name)}\b", msg, re.IGNORECASE), f"message {msg!r} does not name {name!r}"


# ops taking only the image, used to check image validation everywhere
IMAGE_OPS = {
    "adjust_brightness": lambda x: FA.adjust_brightness(x, 1.2, backend="torch"),
    "adjust_contrast": lambda x: FA.adjust_contrast(x, 1.2, backend="torch"),
    "adjust_hue": lambda x: FA.adjust_hue(x, 0.1, backend="torch"),
    "adjust_gamma": lambda x: FA.adjust_gamma(x, 1.2, backend="torch"),
    "adjust_sharpness": lambda x: FA.adjust_sharpness(x, 1.2, backend="torch"),
    "posterize": lambda x: FA.posterize(x, 3, backend="torch"),
    "equalize": lambda x: FA.equalize(x, backend="torch"),
    "autocontrast": lambda x: FA.autocontrast(x, backend="torch"),
    "invert": lambda x: FA.invert(x, backend="torch"),
    "affine": lambda x: FA.affine(x, 10.0, [1.0, 2.0], 1.1, [3.0, 0.0], backend="torch"),
    "rotate": lambda x: FA.rotate(x, 10.0, backend="torch"),
    "horizontal_flip": lambda x: FA.horizontal_flip(x, backend="torch"),
    "crop": lambda x: FA.crop(x, 1, 1, 3, 3, backend="torch"),
    "resized_crop": lambda x: FA.resized_crop(x, 0, 0, 4, 4, [3, 3], backend="torch"),
    "perspective": lambda x: FA.perspective(
        x, [[0, 0], [4, 0], [4, 4], [0, 4]], [[1, 0], [4, 1], [3, 4], [0, 3]], backend="torch"
    ),
    "erase": lambda x: FA.erase(x, 1, 1, 2, 2, 0, backend="torch"),
    "normalize": lambda x: FA.normalize(x, [0.5], [0.25], backend="torch"),
    "to_dtype": lambda x: FA.to_dtype(x, torch.float32, scale=True, backend="torch"),
}
IMAGE_OP_IDS = list(IMAGE_OPS)


# ---------------------------------------------------------------------------------------- the image
@pytest.mark.parametrize("op", IMAGE_OP_IDS)
@pytest.mark.parametrize(
    "shape",
    [(7,), (6, 7), (1, 2, 3, 6, 7), (1, 1, 2, 3, 6, 7)],
    ids=["1-D", "2-D", "5-D", "6-D"],
)
def test_wrong_rank(op, shape):
    raises(lambda: IMAGE_OPS[op](torch.rand(shape)), "img", ValueError)


@pytest.mark.parametrize("op", IMAGE_OP_IDS)
@pytest.mark.parametrize(
    "dtype", [torch.int32, torch.int16, torch.int64, torch.bool, torch.complex64], ids=lambda d: str(d).split(".")[-1]
)
def test_wrong_dtype(op, dtype):
    x = torch.ones(B, 3, 6, 7).to(dtype)
    raises(lambda: IMAGE_OPS[op](x), "img", TypeError)


@pytest.mark.parametrize("op", IMAGE_OP_IDS)
@pytest.mark.parametrize("value", [1.5, -0.25, float("inf")], ids=["above-1", "negative", "inf"])
def test_float_image_out_of_range(op, value):
    x = f32()
    x[1, 0, 2, 3] = value
    raises(lambda: IMAGE_OPS[op](x), "img", ValueError)


@pytest.mark.parametrize("op", IMAGE_OP_IDS)
def test_nan_in_image(op):
    x = f32()
    x[2, 1, 0, 0] = float("nan")
    raises(lambda: IMAGE_OPS[op](x), "img", ValueError)


@pytest.mark.parametrize("op", IMAGE_OP_IDS)
@pytest.mark.parametrize("shape", [(0, 3, 6, 7), (2, 3, 0, 7), (2, 3, 6, 0), (2, 0, 6, 7)], ids=["B=0", "H=0", "W=0", "C=0"])
def test_empty_batch_or_zero_size(op, shape):
    raises(lambda: IMAGE_OPS[op](torch.zeros(shape, dtype=torch.uint8)), "img", ValueError)


@pytest.mark.parametrize("value", [[[0.5]], "image", None, 3], ids=["list", "str", "None", "int"])
def test_image_not_a_tensor(value):
    raises(lambda: FA.invert(value, backend="torch"), "img", TypeError)


# ------------------------------------------------------------------------------------ the magnitudes
FACTOR_OPS = [
    ("adjust_brightness", "brightness_factor"),
    ("adjust_contrast", "contrast_factor"),
    ("adjust_saturation", "saturation_factor"),
    ("adjust_sharpness", "sharpness_factor"),
    ("adjust_hue", "hue_factor"),
    ("adjust_gamma", "gamma"),
    ("posterize", "bits"),
    ("solarize", "threshold"),
]


@pytest.mark.parametrize("op,name", FACTOR_OPS, ids=[o for o, _ in FACTOR_OPS])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["number", "tensor"])
def test_nan_magnitude(op, name, as_tensor):
    v = torch.tensor([0.5, float("nan"), 0.5]) if as_tensor else float("nan")
    raises(lambda: getattr(FA, op)(u8(), v, backend="torch"), name)


@pytest.mark.parametrize("op,name", FACTOR_OPS, ids=[o for o, _ in FACTOR_OPS])
@pytest.mark.parametrize("length", [B - 1, B + 1, 1], ids=["short", "long", "one"])
def test_per_sample_wrong_length(op, name, length):
    v = torch.zeros(length)
    raises(lambda: getattr(FA, op)(u8(), v, backend="torch"), name, ValueError)


@pytest.mark.parametrize("op,name", FACTOR_OPS, ids=[o for o, _ in FACTOR_OPS])
@pytest.mark.parametrize("value", ["1.0", True, None, [1.0, 2.0]], ids=["str", "bool", "None", "list"])
def test_magnitude_wrong_type(op, name, value):
    raises(lambda: getattr(FA, op)(u8(), value, backend="torch"), name)


@pytest.mark.parametrize("op,name", FACTOR_OPS, ids=[o for o, _ in FACTOR_OPS])
def test_magnitude_complex_tensor(op, name):
    raises(lambda: getattr(FA, op)(u8(), torch.zeros(B, dtype=torch.complex64), backend="torch"), name, TypeError)


OUT_OF_RANGE = [
    ("adjust_brightness", "brightness_factor", -0.1, "u8"),
    ("adjust_contrast", "contrast_factor", -1.0, "u8"),
    ("adjust_saturation", "saturation_factor", -0.01, "u8"),
    ("adjust_sharpness", "sharpness_factor", -2.0, "u8"),
    ("adjust_gamma", "gamma", -0.5, "u8"),
    ("adjust_hue", "hue_factor", 0.51, "u8"),
    ("adjust_hue", "hue_factor", -0.6, "u8"),
    ("posterize", "bits", 9, "u8"),
    ("posterize", "bits", -1, "u8"),
    ("posterize", "bits", 2.5, "u8"),
    ("solarize", "threshold", 256, "u8"),
    ("solarize", "threshold", 1.5, "f32"),
    ("solarize", "threshold", -0.5, "f32"),
]


@pytest.mark.parametrize("op,name,value,kind", OUT_OF_RANGE, ids=[f"{o}={v}" for o, _, v, _ in OUT_OF_RANGE])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["number", "per-sample"])
def test_magnitude_out_of_range(op, name, value, kind, as_tensor):
    x = u8() if kind == "u8" else f32()
    ok = 1.0  # valid for every op here
    v = torch.tensor([ok, float(value), ok]) if as_tensor else value
    raises(lambda: getattr(FA, op)(x, v, backend="torch"), name)


def test_gamma_negative_gain():
    raises(lambda: FA.adjust_gamma(u8(), 1.0, -0.5, backend="torch"), "gain")


@pytest.mark.parametrize("scale", [0.0, -1.0, torch.tensor([1.0, 0.0, 1.0])], ids=["zero", "negative", "per-sample-zero"])
def test_affine_scale_not_positive(scale):
    raises(lambda: FA.affine(u8(), 0.0, [0.0, 0.0], scale, [0.0, 0.0], backend="torch"), "scale", ValueError)


@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(angle=torch.zeros(B + 1)), "angle"),
        (dict(translate=torch.zeros(B, 3)), "translate"),
        (dict(translate=torch.zeros(B + 1, 2)), "translate"),
        (dict(scale=torch.ones(B - 1)), "scale"),
        (dict(shear=torch.zeros(B, 3)), "shear"),
        (dict(angle=float("nan")), "angle"),
        (dict(translate=torch.tensor([[0.0, float("nan")]] * B)), "translate"),
        (dict(center=torch.zeros(B, 3)), "center"),
    ],
    ids=[
        "angle-len",
        "translate-width",
        "translate-len",
        "scale-len",
        "shear-width",
        "angle-nan",
        "translate-nan",
        "center-width",
    ],
)
def test_affine_bad_per_sample(kw, name):
    args = dict(angle=0.0, translate=[0.0, 0.0], scale=1.0, shear=[0.0, 0.0]) | kw
    raises(lambda: FA.affine(u8(), **args, backend="torch"), name)


# -------------------------------------------------------------------------------------- channels
@pytest.mark.parametrize(
    "op,c",
    [("adjust_hue", 4), ("adjust_saturation", 4), ("adjust_contrast", 2), ("adjust_hue", 2), ("adjust_contrast", 4)],
)
def test_rgb_ops_wrong_channel_count(op, c):
    raises(lambda: getattr(FA, op)(u8(c=c), 0.1, backend="torch"), "channels")


@pytest.mark.parametrize("c", [2, 4])
def test_rgb_to_grayscale_wrong_channel_count(c):
    raises(lambda: FA.rgb_to_grayscale(u8(c=c), 1, backend="torch"), "channels")


@pytest.mark.parametrize("part", ["contrast", "saturation", "hue"])
def test_color_jitter_gray_ops_wrong_channel_count(part):
    import fastaug

    aug = fastaug.Compose([fastaug.ColorJitter(**{part: 0.3})], backend="torch")
    raises(lambda: aug(f32(c=4)), "channels")
    assert fastaug.Compose([fastaug.ColorJitter(brightness=0.3)], backend="torch")(f32(c=4)).shape[1] == 4


@pytest.mark.parametrize("n", [0, 2, 4])
def test_rgb_to_grayscale_bad_num_output_channels(n):
    raises(lambda: FA.rgb_to_grayscale(u8(), n, backend="torch"), "num_output_channels")


FILL_OPS = {
    "affine": lambda x, fill: FA.affine(x, 10.0, [0.0, 0.0], 1.0, [0.0, 0.0], fill=fill, backend="torch"),
    "rotate": lambda x, fill: FA.rotate(x, 10.0, fill=fill, backend="torch"),
    "perspective": lambda x, fill: FA.perspective(
        x, [[0, 0], [6, 0], [6, 5], [0, 5]], [[1, 0], [6, 1], [5, 5], [0, 4]], fill=fill, backend="torch"
    ),
}


@pytest.mark.parametrize("op", list(FILL_OPS))
@pytest.mark.parametrize(
    "fill",
    [[1.0, 2.0], [1.0, 2.0, 3.0, 4.0], torch.zeros(2), torch.zeros(B, 4), torch.zeros(B + 1, 3), "red"],
    ids=["list-2", "list-4", "tensor-2", "tensor-Bx4", "tensor-(B+1)x3", "str"],
)
def test_fill_wrong_channels(op, fill):
    raises(lambda: FILL_OPS[op](u8(), fill), "fill")


@pytest.mark.parametrize("v", [[1.0, 2.0], torch.zeros(B, 2), torch.zeros(4)], ids=["list-2", "tensor-Bx2", "tensor-4"])
def test_erase_value_wrong_channels(v):
    raises(lambda: FA.erase(u8(), 1, 1, 2, 2, v, backend="torch"), "v")


# ------------------------------------------------------------------------------------- normalize
@pytest.mark.parametrize(
    "mean,std,name",
    [
        ([0.5, 0.5], [0.2, 0.2, 0.2], "mean"),
        ([0.5, 0.5, 0.5], [0.2, 0.2], "std"),
        ([0.5] * 4, [0.2] * 4, "mean"),
        ([0.5, 0.5, 0.5], [0.2, 0.0, 0.2], "std"),
        ([0.5], [0.0], "std"),
        (0.5, 0.0, "std"),
    ],
    ids=["mean-2", "std-2", "both-4", "std-zero", "std-zero-1", "std-zero-scalar"],
)
def test_normalize_bad_mean_std(mean, std, name):
    raises(lambda: FA.normalize(f32(), mean, std, backend="torch"), name, ValueError)


def test_inplace_not_supported():
    raises(lambda: FA.normalize(f32(), [0.5], [0.2], inplace=True, backend="torch"), "inplace", ValueError)
    raises(lambda: FA.erase(f32(), 0, 0, 1, 1, 0.0, inplace=True, backend="torch"), "inplace", ValueError)


# --------------------------------------------------------------------------- interpolation, backend
INTERP_OPS = {
    "affine": lambda x, m: FA.affine(x, 10.0, [0.0, 0.0], 1.0, [0.0, 0.0], interpolation=m, backend="torch"),
    "rotate": lambda x, m: FA.rotate(x, 10.0, interpolation=m, backend="torch"),
    "resized_crop": lambda x, m: FA.resized_crop(x, 0, 0, 4, 4, [3, 3], interpolation=m, backend="torch"),
    "perspective": lambda x, m: FA.perspective(
        x, [[0, 0], [6, 0], [6, 5], [0, 5]], [[1, 0], [6, 1], [5, 5], [0, 4]], interpolation=m, backend="torch"
    ),
}


@pytest.mark.parametrize("op", list(INTERP_OPS))
@pytest.mark.parametrize("mode", ["bicubic", "NEAREST", "", None], ids=["bicubic", "upper", "empty", "None"])
def test_unknown_interpolation(op, mode):
    raises(lambda: INTERP_OPS[op](u8(), mode), "interpolation", ValueError)


@pytest.mark.parametrize("backend", ["cuda", "Torch", "", "pillow"])
@pytest.mark.parametrize("op", ["invert", "horizontal_flip", "equalize"])
def test_unknown_backend(op, backend):
    raises(lambda: getattr(FA, op)(u8(), backend=backend), "backend", ValueError)


def test_unknown_backend_with_magnitude():
    raises(lambda: FA.adjust_brightness(u8(), 1.1, backend="gpu"), "backend", ValueError)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA tensor (backend='numba' with a GPU tensor)")
def test_numba_backend_with_cuda_tensor():  # pragma: no cover - CPU-only here
    raises(lambda: FA.invert(u8().cuda(), backend="numba"), "numba", ValueError)


# ----------------------------------------------------------------------------- crop / resized_crop
@pytest.mark.parametrize(
    "height,width,name",
    [(3.5, 3, "height"), (3, 2.0, "width"), (0, 3, "height"), (3, -1, "width"), ("3", 3, "height"), (True, 3, "height")],
    ids=["height-float", "width-float", "height-zero", "width-negative", "height-str", "height-bool"],
)
def test_crop_bad_size(height, width, name):
    raises(lambda: FA.crop(u8(), 0, 0, height, width, backend="torch"), name)


@pytest.mark.parametrize(
    "top,left,name",
    [(1.5, 0, "top"), (0, torch.tensor([0.0, 0.5, 1.0]), "left"), (torch.zeros(B + 1), 0, "top")],
    ids=["top-float", "left-fraction", "top-len"],
)
def test_crop_bad_position(top, left, name):
    raises(lambda: FA.crop(u8(), top, left, 3, 3, backend="torch"), name)


def test_resized_crop_antialias_true():
    raises(lambda: FA.resized_crop(u8(), 0, 0, 4, 4, [3, 3], antialias=True, backend="torch"), "antialias", ValueError)


@pytest.mark.parametrize("size", [0, [3, 0], [1, 2, 3], "3", 2.5], ids=["zero", "zero-w", "three", "str", "float"])
def test_resized_crop_bad_size(size):
    raises(lambda: FA.resized_crop(u8(), 0, 0, 4, 4, size, backend="torch"), "size")


@pytest.mark.parametrize("kw,name", [(dict(height=0.0), "height"), (dict(width=-2.0), "width")])
def test_resized_crop_empty_box(kw, name):
    args = dict(top=0, left=0, height=4, width=4) | kw
    raises(lambda: FA.resized_crop(u8(), **args, size=[3, 3], backend="torch"), name)


def test_rotate_expand_true():
    raises(lambda: FA.rotate(u8(), 30.0, expand=True, backend="torch"), "expand", ValueError)


@pytest.mark.parametrize(
    "sp,ep,name",
    [
        ([[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 0], [1, 1], [0, 1]], "startpoints"),
        ([[0, 0], [1, 0], [1, 1], [0, 1]], torch.zeros(B + 1, 4, 2), "endpoints"),
    ],
    ids=["startpoints-3", "endpoints-len"],
)
def test_perspective_bad_points(sp, ep, name):
    raises(lambda: FA.perspective(u8(), sp, ep, backend="torch"), name)


# -------------------------------------------------------------------------------------- xy_masking
@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(num_masks_x=1, mask_x_length=8), "mask_x_length"),  # W = 7
        (dict(num_masks_x=1, mask_x_length=(2, 9)), "mask_x_length"),
        (dict(num_masks_y=1, mask_y_length=7), "mask_y_length"),  # H = 6
        (dict(num_masks_y=(1, 2), mask_y_length=(1, 10)), "mask_y_length"),
        (dict(num_masks_x=-1), "num_masks_x"),
        (dict(num_masks_y=(3, 1)), "num_masks_y"),
        (dict(mask_x_length=(1, 2, 3)), "mask_x_length"),
    ],
    ids=["x-length", "x-range", "y-length", "y-range", "nx-negative", "ny-reversed", "x-triple"],
)
def test_xy_masking_bad(kw, name):
    raises(lambda: FA.xy_masking(u8(), **kw, backend="torch"), name, ValueError)


def test_xy_masking_fill_wrong_channels():
    raises(lambda: FA.xy_masking(u8(), num_masks_x=1, mask_x_length=2, fill=[1, 2], backend="torch"), "fill")


# ------------------------------------------------------------------------------------------ to_dtype
@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.complex64, "float32", None], ids=str)
def test_to_dtype_bad_dtype(dtype):
    raises(lambda: FA.to_dtype(u8(), dtype, scale=True, backend="torch"), "dtype", TypeError)


# ========================================================================== property tests (hypothesis)
VALID_DTYPES = [torch.uint8, torch.float32, torch.float64, torch.float16, torch.bfloat16]
SHAPE_KEEPING_OPS = {
    # name: (op(x, u) with u in [0, 1) a per-sample magnitude source, channel counts it accepts)
    "adjust_brightness": (lambda x, u: FA.adjust_brightness(x, 2 * u, backend="torch"), (1, 2, 3, 4)),
    "adjust_contrast": (lambda x, u: FA.adjust_contrast(x, 2 * u, backend="torch"), (1, 3)),
    "adjust_saturation": (lambda x, u: FA.adjust_saturation(x, 2 * u, backend="torch"), (1, 3)),
    "adjust_hue": (lambda x, u: FA.adjust_hue(x, u - 0.5, backend="torch"), (1, 3)),
    "adjust_gamma": (lambda x, u: FA.adjust_gamma(x, 0.2 + 2 * u, 0.5 + u, backend="torch"), (1, 2, 3, 4)),
    "adjust_sharpness": (lambda x, u: FA.adjust_sharpness(x, 2 * u, backend="torch"), (1, 2, 3, 4)),
    "posterize": (lambda x, u: FA.posterize(x, torch.floor(9 * u).clamp(max=8), backend="torch"), (1, 2, 3, 4)),
    "solarize": (lambda x, u: FA.solarize(x, u * (255 if x.dtype == torch.uint8 else 1), backend="torch"), (1, 2, 3, 4)),
    "invert": (lambda x, u: FA.invert(x, backend="torch"), (1, 2, 3, 4)),
    "equalize": (lambda x, u: FA.equalize(x, backend="torch"), (1, 2, 3, 4)),
    "autocontrast": (lambda x, u: FA.autocontrast(x, backend="torch"), (1, 2, 3, 4)),
    "rgb_to_grayscale3": (lambda x, u: FA.rgb_to_grayscale(x, 3, backend="torch"), (3,)),
    "affine": (
        lambda x, u: FA.affine(
            x,
            360 * u - 180,
            torch.stack([u, -u], -1) * 3,
            0.5 + u,
            torch.stack([20 * u, -10 * u], -1),
            interpolation="bilinear",
            fill=0.5 if x.dtype != torch.uint8 else 128,
            backend="torch",
        ),
        (1, 2, 3, 4),
    ),  # fmt: skip
    "rotate": (lambda x, u: FA.rotate(x, 720 * u - 360, backend="torch"), (1, 2, 3, 4)),
    "horizontal_flip": (lambda x, u: FA.horizontal_flip(x, backend="torch"), (1, 2, 3, 4)),
    "vertical_flip": (lambda x, u: FA.vertical_flip(x, backend="torch"), (1, 2, 3, 4)),
    "erase": (lambda x, u: FA.erase(x, 0, 0, 1, 1, 0, backend="torch"), (1, 2, 3, 4)),
}


@st.composite
def valid_batches(draw):
    dtype = draw(st.sampled_from(VALID_DTYPES))
    name = draw(st.sampled_from(sorted(SHAPE_KEEPING_OPS)))
    _, channels = SHAPE_KEEPING_OPS[name]
    c = draw(st.sampled_from(channels))
    b = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    batched = draw(st.booleans()) or b > 1
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    else:
        x = torch.rand(b, c, h, w, generator=g).to(dtype)
    u = torch.rand(b, generator=g)
    if not batched:
        x, u = x[0], u[0]
    return name, x, u


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(valid_batches())
def test_property_valid_inputs_keep_shape_and_dtype(case):
    name, x, u = case
    op, _ = SHAPE_KEEPING_OPS[name]
    out = op(x, u)
    assert out.shape == x.shape, f"{name}: shape {tuple(out.shape)} != {tuple(x.shape)}"
    assert out.dtype == x.dtype, f"{name}: dtype {out.dtype} != {x.dtype}"
    if out.is_floating_point():
        assert bool(torch.isfinite(out).all()), f"{name}: non-finite output"
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0, f"{name}: float output outside [0, 1]"


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    st.sampled_from(sorted(SHAPE_KEEPING_OPS)),
    st.sampled_from([0, 1, 2, 5, 6]),
    st.sampled_from([torch.uint8, torch.float32]),
)
def test_property_invalid_rank_raises(name, rank, dtype):
    op, _ = SHAPE_KEEPING_OPS[name]
    shape = {0: (), 1: (5,), 2: (4, 5), 5: (1, 2, 3, 4, 5), 6: (1, 1, 2, 3, 4, 5)}[rank]
    x = torch.zeros(shape, dtype=dtype)
    with pytest.raises(BAD) as info:
        op(x, torch.tensor(0.5))
    assert "img" in str(info.value), f"{name}: {info.value!r} does not name img"


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    st.sampled_from(sorted(SHAPE_KEEPING_OPS)),
    st.sampled_from([torch.int8, torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64, torch.uint16]),
)
def test_property_invalid_dtype_raises(name, dtype):
    op, _ = SHAPE_KEEPING_OPS[name]
    x = torch.zeros((2, 3, 4, 5), dtype=dtype)
    with pytest.raises(TypeError) as info:
        op(x, torch.full((2,), 0.5))
    assert "img" in str(info.value), f"{name}: {info.value!r} does not name img"


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"shear": (float("nan"), 0.0)}, "shear"), ({"shear": (0.0, float("inf"))}, "shear"), ({"shear": (5.0, -5.0)}, "shear"),
    ({"shear": (0.0, 1.0, float("nan"), 2.0)}, "shear"), ({"scale": (0.5, float("inf"))}, "scale"),
    ({"scale": (float("nan"), 1.0)}, "scale"),
])  # fmt: skip
def test_random_affine_ranges_are_checked_when_built(kwargs, name):
    """RandomAffine's draws skip the device sanitizer (valid by construction): every range is checked when the
    transform is built (a NaN / inf shear pair or scale bound reached the device maps: NaN maps, or an out-of-range
    gather, a sticky device assert)."""
    with pytest.raises(ValueError, match=name):
        fastaug.RandomAffine(10, **kwargs)
