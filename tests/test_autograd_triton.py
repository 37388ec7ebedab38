"""Triton backward kernels (``kernels/triton/backward.py``) against torch autograd through the reference.

Under Triton's CPU interpreter on tiny batches (2x3x8x9): relative error <= 1e-3 in float32 for the
gradients of the image and of every magnitude / Plan tensor. Every triton run forbids the reference
fallback, so a pass means the fused backward kernel computed the gradient.
"""

from __future__ import annotations

import os

# Triton's own jit helpers are built for the interpreter only if TRITON_INTERPRET=1 when triton is first
# imported (see tests/test_triton_backend.py); the fixture below sets it for each test.
_PREVIOUS = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from fastaug.kernels.triton import backward as tb  # noqa: E402
from random_op_cases import random_op_cases  # noqa: E402
from random_plans import (  # noqa: E402
    assert_plan_grads_close,
    plan_grads,
    plan_to,
    random_plan_case,
    statistics_plan,
    statistics_plan_magnitudes,
)

import fastaug.functional as F  # noqa: E402
from fastaug import autograd  # noqa: E402
from fastaug import transforms as T  # noqa: E402
from fastaug.compose import Compose  # noqa: E402
from fastaug.plan import NUM_PARAMS, Stage  # noqa: E402

if _PREVIOUS is None:
    del os.environ["TRITON_INTERPRET"]
else:
    os.environ["TRITON_INTERPRET"] = _PREVIOUS

B, C, H, W = 2, 3, 8, 9
TOL = 1e-3


@pytest.fixture(autouse=True)
def interpret(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12))


def _u(lo: float, hi: float, *shape) -> torch.Tensor:
    return torch.rand(*shape) * (hi - lo) + lo


def _grads(fn, x: torch.Tensor, mags: list[torch.Tensor], backend: str, strict: bool = True):
    """Gradients of ``x`` and ``mags``; for triton with the reference fallback forbidden (``strict``)."""
    xx = x.clone().requires_grad_(True)
    mm = [m.clone().requires_grad_(True) for m in mags]
    with pytest.MonkeyPatch.context() as mp:
        if backend == "triton" and strict:
            mp.setattr(autograd, "reference_stage_backward", _no_fallback)
        out = fn(xx, *mm, backend)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        out.backward(g.to(device=out.device, dtype=out.dtype))
    return [xx.grad] + [m.grad for m in mm]


def _no_fallback(*args, **kwargs):
    raise AssertionError("the triton backward fell back to torch autograd through the reference")


def _compare(fn, x, mags, tol: float = TOL, strict: bool = True):
    ref = _grads(fn, x, mags, "torch")
    got = _grads(fn, x, mags, "triton", strict)
    for i, (a, b) in enumerate(zip(got, ref, strict=True)):
        assert a is not None and a.shape == b.shape and a.dtype == b.dtype, i
        assert torch.isfinite(a).all(), i
        assert _rel(a, b) <= tol, (i, _rel(a, b))
        assert i > 0 or b.abs().sum() > 0  # the image gradient: not a trivial comparison


def _img(seed: int = 0, shape=(B, C, H, W)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 0.9 + 0.05


START = torch.tensor([[0.0, 0.0], [W - 1.0, 0.0], [W - 1.0, H - 1.0], [0.0, H - 1.0]], dtype=torch.float64)

OPS = {
    # per-sample colour ops (magnitude gradients too)
    "brightness": (lambda x, f, be: F.adjust_brightness(x, f, backend=be), lambda: [_u(0.5, 1.5, B)]),
    "saturation": (lambda x, f, be: F.adjust_saturation(x, f, backend=be), lambda: [_u(0.2, 1.8, B)]),
    "hue": (lambda x, f, be: F.adjust_hue(x, f, backend=be), lambda: [_u(-0.5, 0.5, B)]),
    "gamma_gain": (lambda x, g, k, be: F.adjust_gamma(x, g, k, backend=be), lambda: [_u(0.5, 1.5, B), _u(0.8, 0.95, B)]),
    "gray_solarize_invert": (
        lambda x, be: F.invert(F.solarize(F.rgb_to_grayscale(x, 3, backend=be), 0.5, backend=be), backend=be), lambda: []),
    # statistics ops: global per-sample passes
    "contrast": (lambda x, f, be: F.adjust_contrast(x, f, backend=be), lambda: [_u(0.5, 1.5, B)]),
    "autocontrast": (lambda x, be: F.autocontrast(x, backend=be), lambda: []),
    "posterize_equalize_st": (
        lambda x, be: F.equalize(F.posterize(x, 3, straight_through=True, backend=be), straight_through=True, backend=be),
        lambda: []),
    # SHARPNESS: 3x3 stencil scatter
    "sharpness": (lambda x, f, be: F.adjust_sharpness(x, f, backend=be), lambda: [_u(0.0, 2.0, B)]),
    # resampling: taps, fill and the matrix (through angle / translate / scale / shear / corners / box)
    "affine_bilinear_fill": (
        lambda x, a, t, s, sh, f, be: F.affine(x, a, t, s, sh, interpolation="bilinear", fill=f, backend=be),
        lambda: [_u(-30, 30, B), _u(-2, 2, B, 2), _u(0.8, 1.2, B), _u(-10, 10, B, 2), _u(0, 1, B, C)],
    ),
    "perspective": (lambda x, e, be: F.perspective(x, START, e, backend=be), lambda: [START + _u(-1.5, 1.5, B, 4, 2).double()]),
    "resized_crop_clamp": (
        lambda x, t, lf, be: F.resized_crop(x, t, lf, 6.3, 7.4, (5, 6), backend=be), lambda: [_u(0, 1.5, B), _u(0, 1.5, B)]),
    "affine_nearest_fill": (
        lambda x, a, f, be: F.affine(x, a, [0.5, 0.0], 1.0, 0.0, interpolation="nearest", fill=f, backend=be),
        lambda: [_u(-30, 30, B), _u(0, 1, B, C)],
    ),
    # epilogue: normalize (mean / std) and erasing (rect values)
    "normalize_erase": (
        lambda x, m, s, v, be: F.normalize(F.erase(x, 2, 1, 3, 5, v, backend=be), m, s, backend=be),
        lambda: [_u(0.3, 0.6, C), _u(0.2, 0.3, C), _u(0.0, 1.0, B, C)],
    ),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_backward_matches_reference(name):
    torch.manual_seed(sum(map(ord, name)))
    fn, mags = OPS[name]
    _compare(fn, _img(), mags())


def test_compose_backward_matches_reference():
    """A multi-op pipeline: jitter (per-sample order, CONTRAST pass), affine, autocontrast, erasing, normalize."""
    pipe = Compose([
        T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.RandomAffine(20, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=5, interpolation="bilinear"),
        T.RandomAutocontrast(p=0.5), T.RandomErasing(p=1.0), T.Normalize([0.5, 0.4, 0.3], [0.2, 0.3, 0.25]),
    ], seed=3)  # fmt: skip
    _compare(lambda xx, be: pipe(xx, backend=be), _img(2, (4, C, H, W)), [])


def test_statistics_passes_and_epilogue_plan_tensors():
    """Every Plan tensor's gradient (params, mean, std, rect values) with two live statistics ops per sample."""
    fn = lambda x, p, m, s, v, be: autograd.execute(statistics_plan(p, m, s, v, H, W), x, be)  # noqa: E731
    _compare(fn, _img(4), statistics_plan_magnitudes(C))


def test_straight_through_compose():
    pipe = Compose([T.RandomAutocontrast(p=0.7), T.RandomPosterize(4, p=0.5), T.RandomSolarize(0.5, p=0.5),
                    T.RandomEqualize(p=0.5), T.ColorJitter(0.3, 0.3)], seed=5, straight_through=True)
    _compare(lambda xx, be: pipe(xx, backend=be), _img(6, (4, C, H, W)), [])


def test_half_precision_and_channels_last():
    """float16 input (gradients accumulate in float32, cast at the end) and a channels-last float32 input."""
    fn, mags = OPS["affine_bilinear_fill"]
    torch.manual_seed(7)
    m = mags()
    _compare(fn, _img(7).half(), m, tol=2e-3)
    _compare(fn, _img(8).to(memory_format=torch.channels_last), m)


def test_single_channel_contrast():
    """C == 1: CONTRAST's mean is of channel 0 itself (no gray weights)."""
    torch.manual_seed(9)
    fn, mags = OPS["contrast"]
    _compare(fn, _img(9, (B, 1, H, W)), mags())


def test_triton_backward_kernel_is_used(monkeypatch):
    """The dispatch goes to ``kernels/triton/backward.py`` (its ``stage_backward`` runs, the fallback never)."""
    calls = []
    real = tb.stage_backward

    def spy(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(tb, "stage_backward", spy)
    monkeypatch.setattr(autograd, "reference_stage_backward", _no_fallback)
    x = _img().requires_grad_(True)
    f = torch.tensor([0.6, 1.4], requires_grad=True)
    F.adjust_contrast(F.rotate(x, 15.0, interpolation="bilinear", backend="triton"), f, backend="triton").sum().backward()
    assert len(calls) == 2 and x.grad is not None and f.grad is not None


def test_declined_stages_fall_back():
    """5 channels: ``supports`` declines, torch autograd through the reference answers."""
    x = _img(0, (B, 5, H, W))
    stage = Stage(program=torch.zeros(B, 0, dtype=torch.int32), params=torch.zeros(B, 0, NUM_PARAMS))
    assert not tb.supports(x, stage, None)
    assert tb.supports(x[:, :3], stage, None) and tb.supports(x[:, :3].double(), stage, None)
    _compare(lambda xx, be: F.adjust_brightness(xx, 1.3, backend=be), x, [], strict=False)


@pytest.mark.parametrize("name", ["brightness", "hue", "gamma_gain", "affine_bilinear_fill", "normalize_erase"])
def test_float64_backward_in_float64(name):
    """float64 input: the backward kernel computes and accumulates in float64 with float64 Plan tensors, as the
    reference: gradients equal to ~1e-12 (float32 would leave ~1e-7). (Statistics ops read the engine's float32
    tables on every backend: their magnitude gradients differ by ~1e-7 in float64, numba's too.)"""
    torch.manual_seed(sum(map(ord, name)))
    fn, mags = OPS[name]
    _compare(fn, _img().double(), [m.double() for m in mags()], tol=1e-11)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["affine_bilinear_fill", "contrast", "sharpness", "normalize_erase"])
def test_native_cuda_backward_matches_reference(name, monkeypatch):
    """The compiled kernels on a CUDA device (native, not the interpreter)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    torch.manual_seed(sum(map(ord, name)))
    fn, mags = OPS[name]
    _compare(fn, _img().cuda(), [m.cuda() for m in mags()])


@pytest.mark.parametrize("name", ["hue", "autocontrast"])
def test_ties_match_reference(name):
    """Images converted from uint8 tie often (r == g, several pixels at a channel's max, which AUTOCONTRAST maps
    to exactly 1): clamps pass the gradient at their bounds, HUE's max / min chains split a tie evenly."""
    fn = {"hue": lambda x, f, be: F.adjust_hue(x, f, backend=be), "autocontrast": lambda x, be: F.autocontrast(x, backend=be)}[name]
    mags = [torch.tensor([0.2, -0.35])] if name == "hue" else []
    x = torch.randint(0, 5, (B, C, H, W), generator=torch.Generator().manual_seed(7)).float() / 4
    _compare(fn, x, mags)


@pytest.mark.parametrize("seed", [0, 3, 5, 7, 9])
def test_random_plans_backward(seed):
    """Random per-sample Plans (see ``random_plans.random_plan_case``): the image's and every Plan tensor's gradient."""
    plan, x = random_plan_case(seed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(autograd, "reference_stage_backward", _no_fallback)
        got = plan_grads(plan, x, "triton")
    assert_plan_grads_close(got, plan_grads(plan, x, "torch"))


@pytest.mark.gpu
@pytest.mark.parametrize("seed", range(12))
def test_native_cuda_random_plans_backward(seed, monkeypatch):
    """The random-plan gradient cases (ties, black pixels, 1 / 3 / 4 channels, two stages) with the compiled kernels
    on a CUDA device, against the reference on CPU."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    plan, x = random_plan_case(seed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(autograd, "reference_stage_backward", _no_fallback)
        got = plan_grads(plan_to(plan, torch.device("cuda")), x.cuda(), "triton")
    assert_plan_grads_close({k: None if v is None else v.cpu() for k, v in got.items()}, plan_grads(plan, x, "torch"))


RANDOM_OPS_CASES = random_op_cases(B)


@pytest.mark.parametrize("name", sorted(RANDOM_OPS_CASES))
def test_random_ops_backward_is_fused(name):
    """The draws recomputed in the backward kernel (the forward's helpers): gradients as the reference's, no fallback."""
    torch.manual_seed(sum(map(ord, name)))
    fn, mags = RANDOM_OPS_CASES[name]
    _compare(fn, _img(), mags())


@pytest.mark.parametrize("name", sorted(n for n in RANDOM_OPS_CASES if "contrast" not in n))
def test_random_ops_backward_in_float64(name):
    """The random ops' float64 backward: the draws recomputed in float64, gradients as the reference's to ~1e-12."""
    torch.manual_seed(sum(map(ord, name)))
    fn, mags = RANDOM_OPS_CASES[name]
    _compare(fn, _img().double(), [m.double() for m in mags()], tol=1e-11)
