"""fastaug.functional against an independent float64 torchvision-formula oracle (tests/oracle.py), per sample.

Every op is called once on a random batch with RANDOM PER-SAMPLE magnitudes (tensors [B]); each sample
of the result must equal ``oracle.<op>`` applied to that sample alone with that sample's values:

* uint8: within 1 LSB everywhere, and >= 98% of the values exactly equal;
* float: within 1e-5.

Geometric ops with nearest sampling exclude output pixels whose sampling point (computed from the
oracle's own grid) lies within 1e-3 px of a rounding tie (a half-integer coordinate, which is also where
a tap enters or leaves the frame), where float32 and float64 may legitimately pick different pixels;
the excluded fraction is asserted to be small. Bilinear sampling (zero padding, or torchvision's fill
mask) is continuous in the sampling point, so no pixel needs excluding there; uint8 values whose exact
resampled value is a k + 0.5 rounding tie are still compared within 1 LSB but left out of the
exactness count. Nearest resize excludes the output rows/columns where torch's float32
``floor(i * in/out)`` differs from the exact floor.

Known deviations from torchvision are ``xfail(strict=True)`` with the reason: to_dtype(float -> uint8,
scale=False) raises (it would silently turn [0, 1] values into 0/1).

The same checks run for every CPU backend: "torch" (the plain reference) and "numba" (skipped until
``fastaug.kernels.numba`` provides ``apply``).

kornia is a second oracle where its formula provably agrees with torchvision (checked against
tests/oracle.py): invert, solarize, posterize (uint8 levels k/255), equalize (uint8 levels k/255),
horizontal/vertical flip, rgb_to_grayscale (with torchvision's weights passed explicitly),
adjust_sharpness, adjust_gamma, adjust_hue (radians = 2*pi*hue_factor), normalize, and bilinear
affine / rotate / perspective through kornia's matrices with align_corners=True (pixel-index space).
Not used (different formulas): adjust_brightness (kornia adds), adjust_contrast (kornia multiplies),
adjust_saturation (kornia scales S in HSV), autocontrast (no kornia equivalent), resize/crop.
"""

from __future__ import annotations

import importlib
import math

import oracle as O
import pytest
import torch

import fastaug.functional as FA

U8, F32 = torch.uint8, torch.float32
DTYPES = [pytest.param(U8, id="uint8"), pytest.param(F32, id="float32")]
FLOAT_TOL = 1e-5
EXACT_FRACTION = 0.98
TIE_TOL = 1e-3  # px
MAX_EXCLUDED = 0.05


# ------------------------------------------------------------------------------------------ fixtures
def _numba_ready() -> str | None:
    try:
        mod = importlib.import_module("fastaug.kernels.numba")
    except Exception as exc:  # pragma: no cover - depends on the other engineer's progress
        return f"fastaug.kernels.numba does not import: {exc!r}"
    if not (hasattr(mod, "apply") and hasattr(mod, "reduce")):
        return "fastaug.kernels.numba has no apply()/reduce() yet"
    return None


@pytest.fixture(params=["torch", "numba"])
def backend(request) -> str:
    if request.param == "numba":
        why = _numba_ready()
        if why:
            pytest.skip(why)
    return request.param


# ------------------------------------------------------------------------------------------- helpers
def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_batch(g: torch.Generator, b: int, c: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    if dtype == U8:
        return torch.randint(0, 256, (b, c, h, w), generator=g, dtype=U8)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float32).to(dtype)


def uniform(g: torch.Generator, n: int, lo: float, hi: float, *, edges: tuple[float, ...] = ()) -> torch.Tensor:
    """float32 values in [lo, hi] (the exact values fastaug sees); the first samples take ``edges``."""
    t = (lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)).to(torch.float32)
    for i, e in enumerate(edges[:n]):
        t[i] = e
    return t


def randint(g: torch.Generator, n: int, lo: int, hi: int) -> torch.Tensor:
    """int64 values in [lo, hi]."""
    return torch.randint(lo, hi + 1, (n,), generator=g)


def check_sample(
    got: torch.Tensor, want: torch.Tensor, what: str, exclude: torch.Tensor | None = None, ties: torch.Tensor | None = None
) -> tuple[int, int]:
    """Compare one sample; returns (exactly equal values, values counted for exactness). ``exclude``: [H,W]
    pixels not compared; ``ties``: [C,H,W] uint8 values whose exact result is a rounding tie (k + 0.5),
    compared within 1 LSB but not counted for exactness."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != oracle {tuple(want.shape)}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != oracle {want.dtype}"
    keep = torch.ones(got.shape, dtype=torch.bool)
    if exclude is not None:
        keep &= ~exclude.expand_as(got)
    if got.dtype == U8:
        full = (got.to(torch.int32) - want.to(torch.int32)).abs()
        d = full[keep]
        if d.numel():
            worst = int(d.max())
            assert worst <= 1, f"{what}: uint8 differs by {worst} LSB (>1) at {int((d > 1).sum())} values"
        counted = keep if ties is None else keep & ~ties
        return int((full[counted] == 0).sum()), int(counted.sum())
    d = (got.to(torch.float64) - want.to(torch.float64)).abs()[keep]
    assert not torch.isnan(got).any(), f"{what}: NaN in output"
    if d.numel():
        worst = float(d.max())
        assert worst <= FLOAT_TOL, f"{what}: float differs by {worst:.3g} (> {FLOAT_TOL}) at {int((d > FLOAT_TOL).sum())} values"
    return int(d.numel()), int(d.numel())


def check_batch(out: torch.Tensor, wants: list[torch.Tensor], label: str, params=None, excludes=None, record=None, raws=None) -> None:
    """Per-sample comparison; ``raws``: the oracle's unrounded float64 values (uint8 resampling) to find ties."""
    assert out.shape[0] == len(wants), f"{label}: batch size {out.shape[0]} != {len(wants)}"
    exact = total = 0
    for i, want in enumerate(wants):
        p = "" if params is None else f" params={params[i]}"
        ties = None if raws is None or out.dtype != U8 else rounding_ties(raws[i])
        e, n = check_sample(out[i], want, f"{label} sample {i}{p}", None if excludes is None else excludes[i], ties)
        exact += e
        total += n
    if out.dtype == U8 and total:
        frac = exact / total
        if record is not None:
            record("exact_fraction", round(frac, 5))
        assert frac >= EXACT_FRACTION, f"{label}: only {frac:.2%} of uint8 values exactly equal (< {EXACT_FRACTION:.0%})"


def rounding_ties(raw: torch.Tensor) -> torch.Tensor:
    """uint8 values whose exact (unrounded) result is within 1e-3 of k + 0.5: float32 vs float64 decide."""
    return ((raw - torch.floor(raw)) - 0.5).abs() < 1e-3


def tie_mask(ix: torch.Tensor, iy: torch.Tensor, mode: str) -> torch.Tensor:
    """Output pixels whose sampling point is within TIE_TOL px of a nearest-rounding tie (half-integer
    coordinates; this includes the frame edges -0.5 and size-0.5). Bilinear: none (continuous)."""
    if mode != "nearest":
        return torch.zeros(ix.shape, dtype=torch.bool)
    fx = ix - torch.floor(ix)
    fy = iy - torch.floor(iy)
    return ((fx - 0.5).abs() < TIE_TOL) | ((fy - 0.5).abs() < TIE_TOL)


def assert_few_excluded(masks: list[torch.Tensor], label: str) -> None:
    frac = float(torch.stack(masks).float().mean())
    assert frac <= MAX_EXCLUDED, f"{label}: {frac:.2%} of pixels excluded at rounding ties (> {MAX_EXCLUDED:.0%})"


def per_sample(fn, x: torch.Tensor, *args) -> list[torch.Tensor]:
    """Oracle applied sample by sample: args are per-sample tensors/lists (indexed) or constants."""
    outs = []
    for i in range(x.shape[0]):
        a = [(v[i].tolist() if isinstance(v, torch.Tensor) else v[i]) if isinstance(v, (torch.Tensor, list)) else v for v in args]
        outs.append(fn(x[i], *a))
    return outs


# ========================================================================================== color ops
COLOR_CASES = [
    # name, magnitude ranges (per argument), channel counts, edge values for the first samples
    ("adjust_brightness", [(0.0, 2.0)], (1, 3), [(0.0, 1.0)]),
    ("adjust_contrast", [(0.0, 2.0)], (1, 3), [(0.0, 1.0)]),
    ("adjust_saturation", [(0.0, 2.0)], (1, 3), [(0.0, 1.0)]),
    ("adjust_hue", [(-0.5, 0.5)], (1, 3), [(0.0, -0.5, 0.5)]),
    ("adjust_sharpness", [(0.0, 2.0)], (1, 3, 4), [(0.0, 1.0)]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,ranges,channels,edges", COLOR_CASES, ids=[c[0] for c in COLOR_CASES])
def test_factor_ops(name, ranges, channels, edges, dtype, backend, record_property):
    for k, c in enumerate(channels):
        g = gen(100 + k)
        b, h, w = 5, 11, 13
        x = rand_batch(g, b, c, h, w, dtype)
        f = uniform(g, b, *ranges[0], edges=edges[0])
        out = getattr(FA, name)(x, f, backend=backend)
        check_batch(out, per_sample(getattr(O, name), x, f), f"{name} C={c}", f.tolist(), record=record_property)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3])
def test_adjust_gamma(dtype, c, backend, record_property):
    g = gen(7)
    b = 6
    x = rand_batch(g, b, c, 12, 9, dtype)
    gamma = uniform(g, b, 0.2, 3.0, edges=(0.0, 1.0))
    gain = uniform(g, b, 0.5, 1.5)
    gain[::2] = 1.0  # gain == 1: no clamp (torchvision); others clamp
    out = FA.adjust_gamma(x, gamma, gain, backend=backend)
    check_batch(
        out,
        per_sample(O.adjust_gamma, x, gamma, gain),
        "adjust_gamma",
        list(zip(gamma.tolist(), gain.tolist(), strict=True)),
        record=record_property,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_out", [1, 3])
def test_rgb_to_grayscale(dtype, n_out, backend, record_property):
    g = gen(11)
    x = rand_batch(g, 4, 3, 11, 13, dtype)
    out = FA.rgb_to_grayscale(x, n_out, backend=backend)
    check_batch(out, per_sample(O.rgb_to_grayscale, x, n_out), f"rgb_to_grayscale({n_out})", record=record_property)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rgb_to_grayscale_one_channel(dtype, backend):
    x = rand_batch(gen(12), 4, 1, 11, 13, dtype)
    out = FA.rgb_to_grayscale(x, 1, backend=backend)
    check_batch(out, per_sample(O.rgb_to_grayscale, x, 1), "rgb_to_grayscale 1ch")


@pytest.mark.parametrize("dtype", DTYPES)
def test_rgb_to_grayscale_one_channel_to_three(dtype, backend):
    x = rand_batch(gen(12), 4, 1, 11, 13, dtype)
    out = FA.rgb_to_grayscale(x, 3, backend=backend)
    check_batch(out, per_sample(O.rgb_to_grayscale, x, 3), "rgb_to_grayscale 1ch -> 3")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3])
def test_invert(dtype, c, backend):
    x = rand_batch(gen(13), 4, c, 11, 13, dtype)
    check_batch(FA.invert(x, backend=backend), per_sample(O.invert, x), "invert")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3])
def test_posterize(dtype, c, backend):
    g = gen(14)
    b = 6
    x = rand_batch(g, b, c, 11, 13, dtype)
    bits = randint(g, b, 0, 8)
    bits[0], bits[1] = 0, 8
    out = FA.posterize(x, bits, backend=backend)
    check_batch(out, per_sample(O.posterize, x, bits), "posterize", bits.tolist())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3])
def test_solarize(dtype, c, backend):
    g = gen(15)
    b = 6
    x = rand_batch(g, b, c, 11, 13, dtype)
    bound = O.bound_of(dtype)
    thr = uniform(g, b, 0.0, bound, edges=(0.0, bound))
    if dtype == U8:
        thr[2:4] = torch.round(thr[2:4])  # integer thresholds hit pixel values exactly
    else:
        thr[2] = x[2, 0, 0, 0]  # a threshold equal to a pixel value: >= inverts it
    out = FA.solarize(x, thr, backend=backend)
    check_batch(out, per_sample(O.solarize, x, thr), "solarize", thr.tolist())


def _stat_batch(g: torch.Generator, b: int, c: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """Random batch with degenerate samples: a constant image, a channel with two values, a narrow range."""
    x = rand_batch(g, b, c, h, w, dtype)
    hi = O.bound_of(dtype)
    x[0] = torch.tensor(0.4 * hi).to(dtype)  # constant: autocontrast identity, equalize step 0
    two = torch.where(torch.rand(h, w, generator=g) < 0.97, 0.2 * hi, 0.9 * hi)
    x[1, 0] = two.to(dtype)  # almost all one value: equalize step 0 on that channel
    x[2] = (0.3 * hi + 0.2 * x[2].to(torch.float64)).to(dtype)  # narrow range: stretched
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3, 4])
def test_equalize(dtype, c, backend, record_property):
    x = _stat_batch(gen(16 + c), 5, c, 11, 13, dtype)
    out = FA.equalize(x, backend=backend)
    check_batch(out, per_sample(O.equalize, x), f"equalize C={c}", record=record_property)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3, 4])
def test_autocontrast(dtype, c, backend, record_property):
    x = _stat_batch(gen(26 + c), 5, c, 11, 13, dtype)
    out = FA.autocontrast(x, backend=backend)
    check_batch(out, per_sample(O.autocontrast, x), f"autocontrast C={c}", record=record_property)


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrast_saturation_degenerate_images(dtype, backend):
    """Constant / black / white images (gray rounding of 0.2989+0.587+0.114 = 0.9999 for uint8)."""
    hi = O.bound_of(dtype)
    x = torch.stack([torch.full((3, 5, 7), v * hi) for v in (0.0, 1.0, 0.5, 1 / 3)]).to(dtype)
    f = torch.tensor([0.0, 0.5, 1.5, 2.0])
    for name in ("adjust_contrast", "adjust_saturation", "adjust_brightness", "adjust_hue"):
        ff = f / 4 - 0.25 if name == "adjust_hue" else f
        check_batch(getattr(FA, name)(x, ff, backend=backend), per_sample(getattr(O, name), x, ff), name, ff.tolist())


# ========================================================================================== geometry
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3])
def test_flips(dtype, c, backend):
    x = rand_batch(gen(30), 4, c, 11, 13, dtype)
    check_batch(FA.horizontal_flip(x, backend=backend), per_sample(O.horizontal_flip, x), "horizontal_flip")
    check_batch(FA.vertical_flip(x, backend=backend), per_sample(O.vertical_flip, x), "vertical_flip")


def _fills(dtype: torch.dtype, c: int):
    number = 200 if dtype == U8 else 0.7
    per_channel = [10, 128, 250, 77][:c] if dtype == U8 else [0.1, 0.5, 0.9, 0.3][:c]
    return {"none": None, "number": number, "list": per_channel}


FILL_KINDS = ["none", "number", "list"]


def _geometric_check(out, results: list[O.Sampled], label, params, mode, record=None, few=True):
    masks = [tie_mask(r.ix, r.iy, mode) for r in results]
    if few:
        assert_few_excluded(masks, label)
    check_batch(out, [r.image for r in results], label, params, excludes=masks, record=record, raws=[r.raw for r in results])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fill_kind", FILL_KINDS)
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("with_center", [False, True], ids=["center=None", "center"])
def test_affine(mode, fill_kind, with_center, dtype, backend, record_property):
    g = gen(40)
    b, h, w = 5, 11, 13
    for c in (3, 1):
        x = rand_batch(g, b, c, h, w, dtype)
        angle = uniform(g, b, -180.0, 180.0, edges=(0.0,))
        translate = (torch.rand(b, 2, generator=g) * 6 - 3).to(torch.float32)
        scale = uniform(g, b, 0.6, 1.5, edges=(1.0,))
        shear = (torch.rand(b, 2, generator=g) * 40 - 20).to(torch.float32)
        center = (torch.rand(b, 2, generator=g) * torch.tensor([w, h])).to(torch.float32) if with_center else None
        fill = _fills(dtype, c)[fill_kind]
        out = FA.affine(x, angle, translate, scale, shear, interpolation=mode, fill=fill, center=center, backend=backend)
        results = [
            O.affine(
                x[i], float(angle[i]), translate[i].tolist(), float(scale[i]), shear[i].tolist(), mode, fill,
                None if center is None else center[i].tolist(),
            )
            for i in range(b)
        ]  # fmt: skip
        params = [
            dict(angle=float(angle[i]), translate=translate[i].tolist(), scale=float(scale[i]), shear=shear[i].tolist()) for i in range(b)
        ]
        _geometric_check(out, results, f"affine {mode} fill={fill} C={c}", params, mode, record_property)


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_scalar_shear_and_shared_values(dtype, backend):
    """A single number for every magnitude (broadcast to the batch); shear as one number = [shear, 0]."""
    x = rand_batch(gen(41), 4, 3, 11, 13, dtype)
    out = FA.affine(x, 30.0, [1.0, -2.0], 1.2, 12.0, interpolation="bilinear", backend=backend)
    wants = [O.affine(x[i], 30.0, [1.0, -2.0], 1.2, 12.0, "bilinear")[0] for i in range(4)]
    check_batch(out, wants, "affine shared")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fill_kind", FILL_KINDS)
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("with_center", [False, True], ids=["center=None", "center"])
def test_rotate(mode, fill_kind, with_center, dtype, backend, record_property):
    g = gen(50)
    b, h, w = 6, 13, 11
    x = rand_batch(g, b, 3, h, w, dtype)
    angle = uniform(g, b, -360.0, 360.0)
    center = (torch.rand(b, 2, generator=g) * torch.tensor([w, h])).to(torch.float32) if with_center else None
    fill = _fills(dtype, 3)[fill_kind]
    out = FA.rotate(x, angle, interpolation=mode, center=center, fill=fill, backend=backend)
    results = [O.rotate(x[i], float(angle[i]), mode, None if center is None else center[i].tolist(), fill) for i in range(b)]
    _geometric_check(out, results, f"rotate {mode} fill={fill}", angle.tolist(), mode, record_property)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("hw", [(9, 9), (9, 12)], ids=["square", "oblong"])
def test_rotate_special_angles(mode, hw, dtype, backend):
    """torchvision's fast paths (0, 180; 90/270 on square images: exact rot90) and their float equivalents."""
    h, w = hw
    angle = torch.tensor([0.0, 180.0, 90.0, 270.0, -90.0, 360.0, 540.0])
    x = rand_batch(gen(51), len(angle), 3, h, w, dtype)
    out = FA.rotate(x, angle, interpolation=mode, fill=None, backend=backend)
    results = [O.rotate(x[i], float(angle[i]), mode) for i in range(len(angle))]
    # 90/270 on an oblong image (odd minus even size) go through the grid and sample half-integer points:
    # nearest ties there are excluded, bilinear ties (a .5 average) only leave the exactness count
    _geometric_check(out, results, f"rotate special {mode}", angle.tolist(), mode, few=False)


def test_rotate_expand_raises():
    x = torch.zeros(2, 3, 5, 7, dtype=U8)
    with pytest.raises(ValueError, match="expand"):
        FA.rotate(x, 10.0, expand=True, backend="torch")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fill_kind", FILL_KINDS)
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_perspective(mode, fill_kind, dtype, backend, record_property):
    g = gen(60)
    b, h, w = 5, 11, 13
    x = rand_batch(g, b, 3, h, w, dtype)
    corners = torch.tensor([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]])
    start = corners.expand(b, 4, 2).clone()
    end = corners + (torch.rand(b, 4, 2, generator=g) - 0.5) * torch.tensor([0.5 * w, 0.5 * h])
    fill = _fills(dtype, 3)[fill_kind]
    out = FA.perspective(x, start, end, interpolation=mode, fill=fill, backend=backend)
    results = [O.perspective(x[i], start[i].tolist(), end[i].tolist(), mode, fill) for i in range(b)]
    _geometric_check(out, results, f"perspective {mode} fill={fill}", end.tolist(), mode, record_property)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3])
def test_crop(dtype, c, backend):
    g = gen(70)
    b, h, w = 6, 11, 13
    x = rand_batch(g, b, c, h, w, dtype)
    hh, ww = 7, 9
    top = randint(g, b, -5, h - 2)
    left = randint(g, b, -6, w - 3)
    top[0], left[0] = 0, 0  # inside
    top[1], left[1] = -3, w - 4  # partly outside on two sides
    top[2], left[2] = h + 2, 0  # completely outside: all zeros
    out = FA.crop(x, top, left, hh, ww, backend=backend)
    check_batch(out, per_sample(O.crop, x, top, left, hh, ww), "crop", list(zip(top.tolist(), left.tolist(), strict=True)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(7, 9), (17, 19), (11, 6)], ids=["down", "up", "mixed"])
def test_resized_crop(mode, size, dtype, backend, record_property):
    g = gen(80)
    b, h, w = 6, 11, 13
    x = rand_batch(g, b, 3, h, w, dtype)
    top = randint(g, b, -2, 5)
    left = randint(g, b, -2, 6)
    height = randint(g, b, 3, 10)
    width = randint(g, b, 3, 12)
    top[0], left[0], height[0], width[0] = 0, 0, h, w  # whole image
    top[1], left[1], height[1], width[1] = 2, 3, size[0], size[1]  # crop size == output size: no resampling
    top[2], left[2], height[2], width[2] = -3, 8, 9, 8  # partly outside: zero padding, then resize
    out = FA.resized_crop(x, top, left, height, width, list(size), interpolation=mode, antialias=False, backend=backend)
    wants = per_sample(O.resized_crop, x, top, left, height, width, size, mode)
    raws = per_sample(O.resized_crop_raw, x, top, left, height, width, size, mode)
    masks = []
    for i in range(b):  # nearest: positions where float32 floor(i * in/out) is not the exact floor
        my = O.nearest_index_ambiguous(size[0], int(height[i])) if mode == "nearest" else torch.zeros(size[0], dtype=torch.bool)
        mx = O.nearest_index_ambiguous(size[1], int(width[i])) if mode == "nearest" else torch.zeros(size[1], dtype=torch.bool)
        masks.append(my.view(-1, 1) | mx.view(1, -1))
    assert_few_excluded(masks, "resized_crop")
    params = list(zip(top.tolist(), left.tolist(), height.tolist(), width.tolist(), strict=True))
    check_batch(out, wants, f"resized_crop {mode} {size}", params, excludes=masks, record=record_property, raws=raws)


def test_resized_crop_antialias_true_raises():
    x = torch.zeros(2, 3, 8, 8, dtype=U8)
    with pytest.raises(ValueError, match="antialias"):
        FA.resized_crop(x, 0, 0, 4, 4, [2, 2], antialias=True, backend="torch")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3])
def test_erase(dtype, c, backend):
    g = gen(90)
    b, h, w = 5, 11, 13
    x = rand_batch(g, b, c, h, w, dtype)
    i, j = randint(g, b, 0, h - 1), randint(g, b, 0, w - 1)
    hh, ww = randint(g, b, 0, 8), randint(g, b, 0, 9)
    v = rand_batch(g, b, c, 1, 1, dtype).view(b, c)
    out = FA.erase(x, i, j, hh, ww, v, backend=backend)
    check_batch(
        out,
        per_sample(O.erase, x, i, j, hh, ww, v),
        "erase",
        list(zip(i.tolist(), j.tolist(), hh.tolist(), ww.tolist(), strict=True)),
    )


def test_erase_fractional_value_uint8(backend):
    """torchvision's assignment image[..., i:i+h, j:j+w] = v truncates (200.7 -> 200)."""
    x = rand_batch(gen(91), 3, 3, 6, 7, U8)
    v = torch.tensor([[200.7, 10.5, 0.9], [99.5, 254.6, 1.5], [3.2, 4.8, 5.5]])
    out = FA.erase(x, 1, 2, 3, 4, v, backend=backend)
    for i in range(3):
        want = O.erase(x[i], 1, 2, 3, 4, v[i].tolist())
        assert torch.equal(out[i], want), f"erase v={v[i].tolist()}: got {out[i, :, 1, 2].tolist()}, want {want[:, 1, 2].tolist()}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3])
def test_normalize(dtype, c, backend):
    x = rand_batch(gen(95), 4, c, 11, 13, dtype)
    mean = [0.485, 0.456, 0.406][:c]
    std = [0.229, 0.224, 0.225][:c]
    out = FA.normalize(x, mean, std, backend=backend)
    check_batch(out, [O.normalize(x[i], mean, std) for i in range(4)], "normalize")
    out = FA.normalize(x, 0.5, 0.25, backend=backend)  # one value for every channel
    check_batch(out, [O.normalize(x[i], 0.5, 0.25) for i in range(4)], "normalize scalar")


TO_DTYPE_TRUNCATE = pytest.mark.xfail(
    strict=True,
    raises=ValueError,
    reason="fastaug deviation (README, differences): to_dtype(float -> uint8, scale=False) raises ValueError "
    "'would truncate [0, 1] values to 0/1; use scale=True'; torchvision returns image.to(uint8) (0 or 1)",
)


@pytest.mark.parametrize(
    "src,dst,scale",
    [
        (U8, F32, True), (U8, F32, False), (F32, U8, True), pytest.param(F32, U8, False, marks=TO_DTYPE_TRUNCATE),
        (F32, torch.float64, True), (U8, torch.float64, True), (U8, U8, True), (F32, F32, False),
    ],
    ids=["u8-f32-scale", "u8-f32", "f32-u8-scale", "f32-u8", "f32-f64-scale", "u8-f64-scale", "u8-u8", "f32-f32"],
)  # fmt: skip
def test_to_dtype(src, dst, scale, backend):
    g = gen(97)
    x = rand_batch(g, 4, 3, 11, 13, src)
    if src != U8:
        x[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 0.5, 254.5 / 255])  # extremes and near-integer products
    out = FA.to_dtype(x, dst, scale, backend=backend)
    check_batch(out, per_sample(O.to_dtype, x, dst, scale), f"to_dtype {src}->{dst} scale={scale}")


# ================================================================== layouts, batch sizes, other dtypes
LAYOUT_OPS = {
    # name: (fastaug call with per-sample tensors, oracle call for sample i)
    "adjust_contrast": (lambda x, f, be: FA.adjust_contrast(x, f, backend=be), lambda xi, fi: O.adjust_contrast(xi, fi)),
    "adjust_hue": (lambda x, f, be: FA.adjust_hue(x, f - 0.5, backend=be), lambda xi, fi: O.adjust_hue(xi, fi - 0.5)),
    "adjust_sharpness": (
        lambda x, f, be: FA.adjust_sharpness(x, 2 * f, backend=be),
        lambda xi, fi: O.adjust_sharpness(xi, 2 * fi),
    ),
    "equalize": (lambda x, f, be: FA.equalize(x, backend=be), lambda xi, fi: O.equalize(xi)),
    "rotate": (
        lambda x, f, be: FA.rotate(x, 360 * f, interpolation="bilinear", backend=be),
        lambda xi, fi: O.rotate(xi, 360 * fi, "bilinear").image,
    ),
    "resized_crop": (
        lambda x, f, be: FA.resized_crop(x, 1, 2, 7, 8, [5, 11], backend=be),
        lambda xi, fi: O.resized_crop(xi, 1, 2, 7, 8, (5, 11)),
    ),
}


def _layout_case(name, x, backend, f):
    fa, oracle = LAYOUT_OPS[name]
    out = fa(x, f, backend)
    # fastaug sees float32 magnitudes: give the oracle the same values
    wants = [oracle(x[i], float(f[i].to(torch.float32) if f.dim() else f.to(torch.float32))) for i in range(x.shape[0])]
    return out, wants


@pytest.mark.parametrize("name", list(LAYOUT_OPS))
@pytest.mark.parametrize("layout", ["channels_last", "non_contiguous", "unbatched", "batch_of_one"])
def test_layouts(name, layout, backend):
    """Memory layout and batch shape do not change the values (or the output shape)."""
    g = gen(400)
    x = rand_batch(g, 4, 3, 11, 13, U8)
    f = torch.rand(4, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "non_contiguous":
        x = rand_batch(g, 4, 3, 11, 26, U8)[..., ::2]
        assert not x.is_contiguous()
    if layout in ("unbatched", "batch_of_one"):
        x1 = x[0] if layout == "unbatched" else x[:1]
        f1 = f[0] if layout == "unbatched" else f[:1]
        out = LAYOUT_OPS[name][0](x1, f1, backend)
        want = LAYOUT_OPS[name][1](x[0], float(f[0]))
        if layout == "unbatched":
            check_sample(out, want, f"{name} unbatched")
        else:
            check_batch(out, [want], f"{name} B=1")
        return
    out, wants = _layout_case(name, x, backend, f)
    check_batch(out, wants, f"{name} {layout}")


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_per_sample_fill(mode, dtype, backend):
    """fastaug's per-sample fill [B,C]: each sample equals torchvision with that sample's fill list."""
    g = gen(410)
    b, c, h, w = 5, 3, 11, 13
    x = rand_batch(g, b, c, h, w, dtype)
    fill = rand_batch(g, b, c, 1, 1, dtype).view(b, c).to(torch.float32)
    angle = uniform(g, b, -180.0, 180.0)
    out = FA.affine(x, angle, [1.0, -1.0], 0.8, [5.0, 0.0], interpolation=mode, fill=fill, backend=backend)
    results = [O.affine(x[i], float(angle[i]), [1.0, -1.0], 0.8, [5.0, 0.0], mode, fill[i].tolist()) for i in range(b)]
    _geometric_check(out, results, f"affine per-sample fill {mode}", angle.tolist(), mode)


F64_OPS = ["adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue", "adjust_sharpness"]


@pytest.mark.parametrize("name", F64_OPS)
def test_float64_images(name, backend):
    """float64 images: torchvision computes in float64; fastaug's float32 working values stay within 1e-5."""
    g = gen(420)
    x = rand_batch(g, 4, 3, 11, 13, torch.float64)
    f = uniform(g, 4, -0.5, 0.5) if name == "adjust_hue" else uniform(g, 4, 0.0, 2.0)
    out = getattr(FA, name)(x, f, backend=backend)
    check_batch(out, per_sample(getattr(O, name), x, f), f"{name} float64", f.tolist())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(2, 9), (9, 2), (3, 3), (1, 1)])
def test_sharpness_tiny_images(hw, dtype, backend):
    """H <= 2 or W <= 2: unchanged; 3x3: one interior pixel."""
    g = gen(430)
    x = rand_batch(g, 4, 3, *hw, dtype)
    f = uniform(g, 4, 0.0, 2.0)
    check_batch(FA.adjust_sharpness(x, f, backend=backend), per_sample(O.adjust_sharpness, x, f), f"sharpness {hw}")


# =============================================================================== kornia, second oracle
@pytest.fixture
def kornia():
    return pytest.importorskip("kornia")


def _kornia_check(out: torch.Tensor, want: torch.Tensor, label: str, tol: float = FLOAT_TOL) -> None:
    d = (out.to(torch.float64) - want.to(torch.float64)).abs()
    assert float(d.max()) <= tol, f"{label}: fastaug vs kornia differ by {float(d.max()):.3g}"


def test_kornia_pointwise(kornia, backend):
    g = gen(200)
    b = 5
    x = rand_batch(g, b, 3, 11, 13, F32)
    x64 = x.to(torch.float64)
    ke = kornia.enhance
    _kornia_check(FA.invert(x, backend=backend), ke.invert(x64), "invert")
    thr = uniform(g, b, 0.0, 1.0)
    want = torch.stack([ke.solarize(x64[i : i + 1], float(thr[i]))[0] for i in range(b)])
    _kornia_check(FA.solarize(x, thr, backend=backend), want, "solarize")
    _kornia_check(FA.horizontal_flip(x, backend=backend), kornia.geometry.transform.hflip(x64), "hflip")
    _kornia_check(FA.vertical_flip(x, backend=backend), kornia.geometry.transform.vflip(x64), "vflip")
    tv_weights = torch.tensor([0.2989, 0.587, 0.114], dtype=torch.float64)
    _kornia_check(FA.rgb_to_grayscale(x, 1, backend=backend), kornia.color.rgb_to_grayscale(x64, rgb_weights=tv_weights), "gray")
    f = uniform(g, b, 0.0, 2.0)
    _kornia_check(FA.adjust_sharpness(x, f, backend=backend), ke.sharpness(x64, f.to(torch.float64)), "sharpness")
    gamma, gain = uniform(g, b, 0.2, 3.0), uniform(g, b, 0.5, 1.5)
    want = torch.stack([ke.adjust_gamma(x64[i : i + 1], float(gamma[i]), float(gain[i]))[0] for i in range(b)])
    _kornia_check(FA.adjust_gamma(x, gamma, gain, backend=backend), want, "gamma")
    hue = uniform(g, b, -0.5, 0.5)
    want = torch.stack([ke.adjust_hue(x64[i : i + 1], 2 * math.pi * float(hue[i]))[0] for i in range(b)])
    _kornia_check(FA.adjust_hue(x, hue, backend=backend), want, "hue")
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    _kornia_check(
        FA.normalize(x, mean.tolist(), std.tolist(), backend=backend), ke.normalize(x64, mean.double(), std.double()), "normalize"
    )


def test_kornia_uint8_levels(kornia, backend):
    """posterize / equalize on uint8 images, through kornia on the exact float levels k/255."""
    g = gen(201)
    b = 5
    x = rand_batch(g, b, 3, 11, 13, U8)
    levels = x.to(torch.float64) / 255.0
    bits = randint(g, b, 0, 8)
    want = torch.stack([kornia.enhance.posterize(levels[i : i + 1], int(bits[i]))[0] for i in range(b)])
    got = FA.posterize(x, bits, backend=backend)
    assert torch.equal(got, torch.round(want * 255).to(U8)), "posterize: fastaug vs kornia"
    want = kornia.enhance.equalize(levels)
    got = FA.equalize(x, backend=backend)
    assert torch.equal(got, torch.round(want * 255).to(U8)), "equalize: fastaug vs kornia"


def test_kornia_geometry(kornia, backend):
    """Bilinear affine / rotate / perspective (fill=None, float) against kornia's own matrices in pixel-index
    space (align_corners=True): torchvision's continuous coordinates are kornia's pixel indices + 0.5."""
    from kornia.geometry.transform import get_affine_matrix2d, get_perspective_transform, warp_affine, warp_perspective

    g = gen(202)
    b, h, w = 5, 11, 13
    d = torch.float64
    x = rand_batch(g, b, 3, h, w, F32)
    x64 = x.to(d)
    angle = uniform(g, b, -180.0, 180.0)
    translate = (torch.rand(b, 2, generator=g) * 6 - 3).to(torch.float32)
    scale = uniform(g, b, 0.6, 1.5)
    shear = (torch.rand(b, 2, generator=g) * 40 - 20).to(torch.float32)
    ctr = torch.tensor([[(w - 1) / 2, (h - 1) / 2]], dtype=d).expand(b, 2)
    m = get_affine_matrix2d(
        translate.to(d), ctr, scale.to(d).view(b, 1).expand(b, 2), angle.to(d),
        torch.deg2rad(shear[:, 0].to(d)), torch.deg2rad(shear[:, 1].to(d)),
    )  # fmt: skip
    want = warp_affine(x64, m[:, :2], (h, w), mode="bilinear", align_corners=True)
    _kornia_check(FA.affine(x, angle, translate, scale, shear, interpolation="bilinear", backend=backend), want, "affine")

    center = (torch.rand(b, 2, generator=g) * torch.tensor([w, h])).to(torch.float32)
    want = kornia.geometry.transform.rotate(x64, angle.to(d), center=center.to(d) - 0.5, mode="bilinear", align_corners=True)
    _kornia_check(FA.rotate(x, angle, interpolation="bilinear", center=center, backend=backend), want, "rotate")

    corners = torch.tensor([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]], dtype=d)
    start = corners.expand(b, 4, 2).clone()
    end = corners + (torch.rand(b, 4, 2, generator=g, dtype=d) - 0.5) * torch.tensor([0.5 * w, 0.5 * h], dtype=d)
    hm = get_perspective_transform(start - 0.5, end - 0.5)
    want = warp_perspective(x64, hm, (h, w), mode="bilinear", align_corners=True)
    _kornia_check(FA.perspective(x, start, end, interpolation="bilinear", backend=backend), want, "perspective")


# ================================================================================= oracle self-checks
def test_oracle_resize_matches_interpolate():
    """The oracle's resize re-derives interpolate; it must equal torch's (torchvision's resize kernel)."""
    import torch.nn.functional as tnf

    g = gen(300)
    for h, w, oh, ow in [(11, 13, 7, 9), (5, 7, 15, 17), (10, 12, 5, 6), (7, 9, 7, 20), (9, 9, 4, 27)]:
        x = torch.rand(3, h, w, generator=g, dtype=torch.float64)
        want = tnf.interpolate(x[None], size=(oh, ow), mode="bilinear", align_corners=False, antialias=False)[0]
        assert torch.allclose(O.resize(x, (oh, ow), "bilinear"), want, atol=1e-12)
        assert torch.equal(O.resize(x, (oh, ow), "nearest"), tnf.interpolate(x[None], size=(oh, ow), mode="nearest")[0])


def test_oracle_rotate_fast_paths_match_grid():
    """torchvision's rot90 fast paths equal its grid path (a centre given disables the fast path)."""
    x = rand_batch(gen(301), 1, 3, 9, 9, U8)[0]
    for a in (90.0, 180.0, 270.0):
        fast = O.rotate(x, a, "nearest")[0]
        grid = O.rotate(x, a, "nearest", center=[4.5, 4.5])[0]
        assert torch.equal(fast, grid), a
