"""Fused backward kernels (numba; triton under TRITON_INTERPRET=1) against torch autograd of the reference:
relative error <= 1e-3 in float32, per-sample magnitudes and per-sample Compose programs."""

from __future__ import annotations

import os

import pytest
import torch
from random_op_cases import random_op_cases
from random_plans import assert_plan_grads_close, plan_grads, random_plan_case, statistics_plan, statistics_plan_magnitudes

import fastaug.functional as F
from fastaug import autograd
from fastaug import transforms as T
from fastaug.compose import Compose
from fastaug.policies import RandAugment, TrivialAugmentWide

B, C, H, W = 3, 3, 8, 9
TOL = 1e-3


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _grads(fn, x: torch.Tensor, mags: list[torch.Tensor], backend: str):
    xx = x.clone().requires_grad_(True)
    mm = [m.clone().requires_grad_(True) for m in mags]
    out = fn(xx, *mm, backend)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(g.to(out.dtype))
    return [xx.grad] + [m.grad for m in mm]


def _u(lo: float, hi: float, *shape) -> torch.Tensor:
    return torch.rand(*shape) * (hi - lo) + lo


START = torch.tensor([[0.0, 0.0], [W - 1.0, 0.0], [W - 1.0, H - 1.0], [0.0, H - 1.0]], dtype=torch.float64)

OPS = {
    "brightness": (lambda x, f, be: F.adjust_brightness(x, f, backend=be), lambda: [_u(0.5, 1.5, B)]),
    "contrast": (lambda x, f, be: F.adjust_contrast(x, f, backend=be), lambda: [_u(0.5, 1.5, B)]),
    "saturation": (lambda x, f, be: F.adjust_saturation(x, f, backend=be), lambda: [_u(0.2, 1.8, B)]),
    "hue": (lambda x, f, be: F.adjust_hue(x, f, backend=be), lambda: [_u(-0.5, 0.5, B)]),
    "gamma": (lambda x, g, k, be: F.adjust_gamma(x, g, k, backend=be), lambda: [_u(0.5, 1.5, B), _u(0.8, 0.95, B)]),
    "sharpness": (lambda x, f, be: F.adjust_sharpness(x, f, backend=be), lambda: [_u(0.0, 2.0, B)]),
    "grayscale": (lambda x, be: F.rgb_to_grayscale(x, 3, backend=be), lambda: []),
    "solarize_invert": (lambda x, be: F.invert(F.solarize(x, 0.5, backend=be), backend=be), lambda: []),
    "autocontrast": (lambda x, be: F.autocontrast(x, backend=be), lambda: []),
    "equalize_st": (lambda x, be: F.equalize(x, straight_through=True, backend=be), lambda: []),
    "normalize": (lambda x, m, s, be: F.normalize(x, m, s, backend=be), lambda: [_u(0.3, 0.6, C), _u(0.2, 0.3, C)]),
    "erase": (lambda x, v, be: F.erase(x, 2, 1, 3, 5, v, backend=be), lambda: [_u(0.0, 1.0, B, C)]),
    "affine": (
        lambda x, a, t, s, sh, f, be: F.affine(x, a, t, s, sh, interpolation="bilinear", fill=f, backend=be),
        lambda: [_u(-30, 30, B), _u(-2, 2, B, 2), _u(0.8, 1.2, B), _u(-10, 10, B, 2), _u(0, 1, B, C)],
    ),
    "affine_nearest": (
        lambda x, a, f, be: F.affine(x, a, [0.5, 0.0], 1.0, 0.0, interpolation="nearest", fill=f, backend=be),
        lambda: [_u(-30, 30, B), _u(0, 1, B, C)],
    ),
    "perspective": (
        lambda x, e, be: F.perspective(x, START, e, backend=be),
        lambda: [(START + _u(-1.5, 1.5, B, 4, 2).double())],
    ),
    "resized_crop": (
        lambda x, t, lf, be: F.resized_crop(x, t, lf, 6.3, 7.4, (5, 6), backend=be),
        lambda: [_u(0, 1.5, B), _u(0, 1.5, B)],
    ),
    "resized_crop_upsample": (  # clamped border pixels: gradient to the box through the window
        lambda x, t, lf, h, w, be: F.resized_crop(x, t, lf, h, w, (11, 12), backend=be),
        lambda: [_u(0, 1.5, B), _u(0, 1.5, B), _u(4.5, 6.5, B), _u(5.5, 7.5, B)],
    ),
    "resized_crop_ties": (  # box size == output size: edge coordinates equal the window's bounds (torch: half each)
        lambda x, t, lf, h, w, be: F.resized_crop(x, t, lf, h, w, (5, 6), backend=be),
        lambda: [_u(0, 1.5, B), _u(0, 1.5, B), torch.full((B,), 5.0), torch.full((B,), 6.0)],
    ),
}

PIPELINES = {
    "jitter_affine_erase_normalize": lambda: [
        T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.RandomAffine(20, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=5, interpolation="bilinear"),
        T.RandomErasing(p=1.0), T.Normalize([0.5, 0.4, 0.3], [0.2, 0.3, 0.25]),
    ],  # fmt: skip
    "randaugment_sharpness": lambda: [RandAugment(num_ops=3, interpolation="bilinear"), T.RandomAdjustSharpness(1.5, p=1.0)],
    "trivial_stats_ops": lambda: [
        T.RandomAutocontrast(p=0.5), TrivialAugmentWide(interpolation="bilinear"), T.RandomEqualize(p=0.5),
        T.RandomPosterize(4, p=0.5), T.RandomSolarize(0.5, p=0.5),
    ],  # fmt: skip
    "crop_perspective_gray": lambda: [
        T.RandomResizedCrop((7, 8), scale=(0.5, 0.9)), T.RandomPerspective(0.3, p=1.0), T.RandomGrayscale(p=0.5), T.RandomInvert(p=0.5),
    ],  # fmt: skip
}


def _backends() -> list[str]:
    out = ["numba"]
    if os.environ.get("TRITON_INTERPRET") == "1":
        out.append("triton")
    return out


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("name", sorted(OPS))
def test_op_backward_matches_reference(name, backend):
    torch.manual_seed(sum(map(ord, name)))  # stable across processes (str hash is salted)
    fn, mags = OPS[name]
    x = torch.rand(B, C, H, W) * 0.9 + 0.05
    m = mags()
    ref = _grads(fn, x, m, "torch")
    got = _grads(fn, x, m, backend)
    for i, (a, b) in enumerate(zip(got, ref, strict=True)):
        assert _rel(a, b) <= TOL, (name, i, _rel(a, b))


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("straight_through", [False, True])
@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_compose_backward_matches_reference(name, straight_through, backend):
    pipe = Compose(PIPELINES[name](), seed=3, straight_through=straight_through)
    x = torch.rand(6, C, H, W, generator=torch.Generator().manual_seed(2)) * 0.9 + 0.05
    ref = _grads(lambda xx, be: pipe(xx, backend=be), x, [], "torch")[0]
    got = _grads(lambda xx, be: pipe(xx, backend=be), x, [], backend)[0]
    assert _rel(got, ref) <= TOL


def test_numba_channels_last_input():
    x = (torch.rand(B, C, H, W) * 0.9 + 0.05).to(memory_format=torch.channels_last)
    fn, mags = OPS["affine"]
    m = mags()
    for a, b in zip(_grads(fn, x, m, "numba"), _grads(fn, x, m, "torch"), strict=True):
        assert _rel(a, b) <= TOL


@pytest.mark.parametrize("backend", _backends())
def test_statistics_passes_and_epilogue_plan_tensors(backend):
    """Two live statistics ops per sample (two extra backward passes) and an epilogue whose mean, std and
    rect values need gradients: each pass must add the epilogue's gradients once, not once per pass."""
    fn = lambda x, p, m, s, v, be: autograd.execute(statistics_plan(p, m, s, v, H, W), x, be)  # noqa: E731
    x = torch.rand(2, C, H, W, generator=torch.Generator().manual_seed(4)) * 0.9 + 0.05
    mags = statistics_plan_magnitudes(C)
    for i, (a, b) in enumerate(zip(_grads(fn, x, mags, backend), _grads(fn, x, mags, "torch"), strict=True)):
        assert _rel(a, b) <= TOL, (i, _rel(a, b))


def _one_contrast_stage(x, br, co, sa, ang, sc, fill, shp, be):
    """One stage (sharpness or bilinear affine with fill, brightness, CONTRAST, saturation, normalize): a single live
    statistic per sample, folded into the final backward pass (numba)."""
    from fastaug.ops.calls import ColorCall, NormalizeCall
    from fastaug.plan import Op

    b, c, h, w = x.shape
    z = torch.zeros(b, 2)
    calls = []
    if shp is not None:
        calls.append(ColorCall(name="adjust_sharpness", code=int(Op.SHARPNESS), params=torch.stack([shp, 0 * shp, 0 * shp], 1)))
    calls += [
        ColorCall(name="adjust_brightness", code=int(Op.BRIGHTNESS), params=torch.stack([br, 0 * br, 0 * br], 1)),
        ColorCall(name="adjust_contrast", code=int(Op.CONTRAST), params=torch.stack([co, 0 * co, 0 * co], 1)),
        ColorCall(name="adjust_saturation", code=int(Op.SATURATION), params=torch.stack([sa, 0 * sa, 0 * sa], 1)),
    ]
    if shp is None:
        calls.append(F.affine_call(F.Canvas(b, c, h, w, x.device), ang, z, sc, z, "bilinear", fill=fill))
    calls.append(NormalizeCall(name="normalize", mean=torch.tensor([0.5, 0.4, 0.3]), std=torch.tensor([0.2, 0.3, 0.25])))
    return F.run_calls(x, calls, be)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("geometry", [True, False])
def test_single_contrast_every_magnitude(geometry, backend):
    """One CONTRAST per sample below a bilinear resampling with fill (or above SHARPNESS): every magnitude requires grad."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(B, C, H, W, generator=g) * 0.9 + 0.05
    br, co, sa = (0.6 + 0.8 * torch.rand(B, generator=g) for _ in range(3))
    ang, sc = torch.rand(B, generator=g) * 40 - 20, 0.8 + 0.4 * torch.rand(B, generator=g)
    fill, shp = torch.rand(B, C, generator=g), 2 * torch.rand(B, generator=g)
    mags = [br, co, sa, ang, sc, fill] if geometry else [br, co, sa, shp]

    def fn(xx, *m):
        *m, be = m
        if geometry:
            return _one_contrast_stage(xx, *m, None, be)
        return _one_contrast_stage(xx, *m[:3], None, None, None, m[3], be)

    for i, (a, b) in enumerate(zip(_grads(fn, x, mags, backend), _grads(fn, x, mags, "torch"), strict=True)):
        assert _rel(a, b) <= TOL, (i, _rel(a, b))


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("name", ["affine", "affine_nearest", "resized_crop_upsample"])
def test_only_asked_gradients(name, backend):
    """Each input alone requiring grad (the kernels skip what is not asked): same gradient as the reference."""
    torch.manual_seed(sum(map(ord, name)))
    fn, mags = OPS[name]
    x = torch.rand(B, C, H, W) * 0.9 + 0.05
    m = mags()
    inputs = [x, *m]
    for i in range(len(inputs)):
        got = []
        for be in ("torch", backend):
            leaves = [t.clone().requires_grad_(j == i) for j, t in enumerate(inputs)]
            out = fn(*leaves, be)
            (g,) = torch.autograd.grad(out, leaves[i], torch.randn(out.shape, generator=torch.Generator().manual_seed(1)))
            got.append(g)
        assert _rel(got[1], got[0]) <= TOL, (name, i, _rel(got[1], got[0]))


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("channels", [1, 2, 4])
def test_channel_counts_bilinear(channels, backend):
    """One stage with a bilinear resampling for channel counts other than RGB (the kernels' generic per-channel
    loops): brightness, CONTRAST where defined (1 channel: its mean folded into the final pass), affine with a
    per-channel fill, normalize."""
    from fastaug.ops.calls import ColorCall, NormalizeCall
    from fastaug.plan import Op

    g = torch.Generator().manual_seed(6 + channels)
    x = torch.rand(B, channels, H, W, generator=g) * 0.9 + 0.05
    mags = [0.6 + 0.8 * torch.rand(B, generator=g), torch.rand(B, generator=g) * 40 - 20, torch.rand(B, channels, generator=g)]
    co = 0.6 + 0.8 * torch.rand(B, generator=g)

    def fn(xx, br, ang, fill, be):
        z = torch.zeros(B, 2)
        calls = [ColorCall(name="adjust_brightness", code=int(Op.BRIGHTNESS), params=torch.stack([br, 0 * br, 0 * br], 1))]
        if channels == 1:
            calls.append(ColorCall(name="adjust_contrast", code=int(Op.CONTRAST), params=torch.stack([co, 0 * co, 0 * co], 1)))
        calls += [
            F.affine_call(F.Canvas(B, channels, H, W, xx.device), ang, z + 0.4, 1.1 + 0 * ang, z + 3.0, "bilinear", fill=fill),
            NormalizeCall(name="normalize", mean=torch.linspace(0.3, 0.6, channels), std=torch.full((channels,), 0.25)),
        ]
        return F.run_calls(xx, calls, be)

    for i, (a, b) in enumerate(zip(_grads(fn, x, mags, backend), _grads(fn, x, mags, "torch"), strict=True)):
        assert _rel(a, b) <= TOL, (channels, i, _rel(a, b))


def _quantized(shape, seed: int) -> torch.Tensor:
    """Values k/4: ties everywhere (r == g == b, pixels at 0 and 1, many pixels at a channel's min and max), as
    in images converted from uint8."""
    return torch.randint(0, 5, shape, generator=torch.Generator().manual_seed(seed)).float() / 4


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("name", ["hue", "saturation", "autocontrast", "sharpness", "brightness", "contrast"])
def test_ties_match_reference(name, backend):
    """At ties the backends follow torch's rules as the reference applies them: a clamp passes the gradient at
    its bounds (AUTOCONTRAST maps the max to exactly 1), ``maximum`` / ``minimum`` chains (HUE) split it evenly."""
    torch.manual_seed(sum(map(ord, name)))
    fn, mags = OPS[name]
    m = [torch.ones(B)] if name in ("brightness", "contrast") else mags()  # factor 1: white pixels sit on the bound
    x = _quantized((B, C, H, W), 7)
    for i, (a, b) in enumerate(zip(_grads(fn, x, m, backend), _grads(fn, x, m, "torch"), strict=True)):
        assert _rel(a, b) <= TOL, (name, i, _rel(a, b))


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("name", ["jitter_affine_erase_normalize", "trivial_stats_ops"])
def test_ties_compose_match_reference(name, backend):
    pipe = Compose(PIPELINES[name](), seed=3)
    x = _quantized((6, C, H, W), 8)
    ref = _grads(lambda xx, be: pipe(xx, backend=be), x, [], "torch")[0]
    got = _grads(lambda xx, be: pipe(xx, backend=be), x, [], backend)[0]
    assert _rel(got, ref) <= TOL


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("seed", range(12))
def test_random_plans_backward_matches_reference(seed, backend):
    """Random per-sample programs of every op (1, 3 or 4 channels; with or without geometry; one or two stages; erasing
    and normalize), on images converted from uint8 (k / 255) or tie-heavy ones (k / 4)."""
    plan, x = random_plan_case(seed)
    ref = plan_grads(plan, x, "torch")
    with pytest.MonkeyPatch.context() as mp:  # the fused backward must compute every stage
        mp.setattr(autograd, "reference_stage_backward", _no_fallback)
        got = plan_grads(plan, x, backend)
    assert_plan_grads_close(got, ref)


def _no_fallback(*args, **kwargs):
    raise AssertionError("the fused backward fell back to torch autograd through the reference")


@pytest.mark.parametrize("backend", _backends())
def test_gamma_black_pixels(backend):
    """GAMMA < 1 on black pixels: d(v^a)/dv is infinite at 0; fastaug defines the image gradient there as 0 (finite
    everywhere, no NaN once a later op multiplies it by 0) in every backend, and the factor's gradient as torch's."""
    x = torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(9))
    x[:, :, :3] = 0.0
    gamma = torch.tensor([0.5, 0.8, 1.6])

    def fn(xx, a, be):
        return F.equalize(F.adjust_gamma(xx, a, backend=be), straight_through=False, backend=be)  # zero gradient after

    for b, r in zip(_grads(fn, x, [gamma], backend), _grads(fn, x, [gamma], "torch"), strict=True):
        assert torch.isfinite(b).all() and torch.isfinite(r).all()
    xg = _grads(lambda xx, a, be: F.adjust_gamma(xx, a, backend=be), x, [gamma], backend)
    ref = _grads(lambda xx, a, be: F.adjust_gamma(xx, a, backend=be), x, [gamma], "torch")
    assert (xg[0][:, :, :3] == 0).all() and (ref[0][:, :, :3] == 0).all()
    for a, b in zip(xg, ref, strict=True):
        assert _rel(a, b) <= TOL


RANDOM_OPS_CASES = random_op_cases(B)
NEIGHBOURHOOD_CASES = {
    "blur_sigma_then_brightness": (
        lambda x, s, f, be: F.adjust_brightness(F.gaussian_blur(x, [5, 3], s, backend=be), f, backend=be),
        lambda: [_u(0.4, 1.6, B, 2), _u(0.8, 1.2, B)]),
    "affine_then_blur": (
        lambda x, a, s, be: F.gaussian_blur(F.rotate(x, a, interpolation="bilinear", backend=be), 7, s, backend=be),
        lambda: [_u(-20, 20, B), _u(0.5, 2.0, B)]),
    "blur_then_autocontrast_noise": (
        lambda x, s, be: F.gaussian_noise(F.autocontrast(F.gaussian_blur(x, 3, s, backend=be), backend=be), 0.0, 0.1, backend=be),
        lambda: [_u(0.3, 1.2, B)]),
    "convolve_kernel": (lambda x, k, be: F.convolve(x, k, backend=be), lambda: [_u(-0.1, 0.2, B, 5, 5)]),
    "sharpen_alpha_lightness": (lambda x, a, li, be: F.sharpen(x, a, li, backend=be), lambda: [_u(0.2, 0.8, B), _u(0.5, 1.0, B)]),
    "affine_then_emboss": (
        lambda x, a, s, be: F.emboss(F.rotate(x, a, interpolation="bilinear", backend=be), 0.5, s, backend=be),
        lambda: [_u(-20, 20, B), _u(0.2, 0.7, B)]),
    "downscale_bilinear_then_brightness": (
        lambda x, f, be: F.adjust_brightness(F.downscale(x, torch.tensor([0.3, 0.5, 0.8]), "bilinear", "bilinear", backend=be), f,
                                             backend=be), lambda: [_u(0.8, 1.2, B)]),
    "downscale_nearest_bilinear": (
        lambda x, be: F.downscale(x, 0.45, "nearest", "bilinear", backend=be), lambda: []),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(RANDOM_OPS_CASES) + sorted(NEIGHBOURHOOD_CASES))
def test_numba_backward_is_fused_and_matches(name):
    """No reference fallback: the random ops recompute their per-pixel draws with the forward's row functions;
    GAUSSIAN_BLUR / CONVOLVE at k = 0 scatter through the reflected rows and give the taps (so sigma) / the kernel (so
    alpha, lightness, strength) their gradient; DOWNSCALE scatters through its up- and down-sampling taps."""
    torch.manual_seed(sum(map(ord, name)))
    fn, mags = {**RANDOM_OPS_CASES, **NEIGHBOURHOOD_CASES}[name]
    x = torch.rand(B, C, H, W) * 0.9 + 0.05
    m = mags()
    ref = _grads(fn, x, m, "torch")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(autograd, "reference_stage_backward", _no_fallback)
        got = _grads(fn, x, m, "numba")
    for i, (a, b) in enumerate(zip(got, ref, strict=True)):
        assert _rel(a, b) <= 1e-5, (name, i, _rel(a, b))
    assert float(got[0].abs().sum()) > 0


def test_numba_random_ops_in_a_pipeline_backward():
    pipe = Compose([T.ColorJitter(0.3, 0.3, 0.3), T.GaussianNoise(0.0, 0.1), T.PixelDropout(0.1, p=1.0),
                    T.MultiplicativeNoise((0.8, 1.2), elementwise=True, p=1.0), T.RandomFog(p=1.0)], seed=3)  # fmt: skip
    x = torch.rand(6, C, H, W, generator=torch.Generator().manual_seed(2)) * 0.9 + 0.05
    ref = _grads(lambda xx, be: pipe(xx, backend=be), x, [], "torch")[0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(autograd, "reference_stage_backward", _no_fallback)
        got = _grads(lambda xx, be: pipe(xx, backend=be), x, [], "numba")[0]
    assert _rel(got, ref) <= 1e-5


def test_numba_blur_with_contrast_falls_back_and_matches():
    """A CONTRAST in a blur stage: its folded mean stream has no taps gradient, so the stage takes the reference's."""
    x = torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(3))
    fn = lambda xx, s, be: F.adjust_contrast(F.gaussian_blur(xx, 5, s, backend=be), 1.3, backend=be)  # noqa: E731
    s = _u(0.5, 1.5, B)
    ref, got = _grads(fn, x, [s], "torch"), _grads(fn, x, [s], "numba")
    for a, b in zip(got, ref, strict=True):
        assert _rel(a, b) <= 1e-5
