"""Autograd through fastaug: gradcheck of every differentiable op (reference backend, float64), routing,
straight-through, dtypes, memory and a test that learns hidden augmentation parameters."""

from __future__ import annotations

import pytest
import torch

import fastaug.functional as F
from fastaug import autograd
from fastaug import transforms as T
from fastaug.compose import Compose

B, C, H, W = 2, 3, 6, 7


def _img(seed: int = 0, shape=(B, C, H, W)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)


def _t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


FAST = {"sharpness"}  # float64 conv2d is slow on CPU: random-projection gradcheck


def _check(fn, *inputs, fast: bool = False):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=fast)


START = torch.tensor([[0.0, 0.0], [W - 1.0, 0.0], [W - 1.0, H - 1.0], [0.0, H - 1.0]], dtype=torch.float64)
JITTER = torch.tensor([[0.6, 0.3], [-0.4, 0.7], [-0.8, -0.3], [0.5, -0.6]], dtype=torch.float64)

# name -> (function of (img, *magnitudes), magnitudes)
CASES = {
    "brightness": (lambda x, f: F.adjust_brightness(x, f, backend="torch"), [_t(0.7, 1.2)]),
    "contrast": (lambda x, f: F.adjust_contrast(x, f, backend="torch"), [_t(0.6, 1.3)]),
    "saturation": (lambda x, f: F.adjust_saturation(x, f, backend="torch"), [_t(0.4, 1.6)]),
    "hue": (lambda x, f: F.adjust_hue(x, f, backend="torch"), [_t(0.23, -0.31)]),
    "gamma_gain": (lambda x, g, k: F.adjust_gamma(x, g, k, backend="torch"), [_t(0.7, 1.4), _t(0.9, 1.05)]),
    "sharpness": (lambda x, f: F.adjust_sharpness(x, f, backend="torch"), [_t(0.3, 1.7)]),
    "grayscale1": (lambda x: F.rgb_to_grayscale(x, 1, backend="torch"), []),
    "grayscale3": (lambda x: F.rgb_to_grayscale(x, 3, backend="torch"), []),
    "invert": (lambda x: F.invert(x, backend="torch"), []),
    "solarize": (lambda x: F.solarize(x, 0.5, backend="torch"), []),
    "posterize": (lambda x: F.posterize(x, 3, backend="torch"), []),
    "equalize": (lambda x: F.equalize(x, backend="torch"), []),
    "autocontrast": (lambda x: F.autocontrast(x, backend="torch"), []),
    "normalize": (lambda x, m, s: F.normalize(x, m, s, backend="torch"), [_t(0.4, 0.5, 0.6), _t(0.2, 0.3, 0.25)]),
    "erase_fill": (lambda x, v: F.erase(x, 1, 2, 3, 4, v, backend="torch"), [_t(0.3, 0.5, 0.6)]),
    "affine": (
        lambda x, a, t, s, sh, f: F.affine(x, a, t, s, sh, interpolation="bilinear", fill=f, backend="torch"),
        [_t(10.0, -20.0), _t([0.3, -0.6], [1.2, 0.4]), _t(0.9, 1.1), _t([5.0, -3.0], [2.0, 7.0]), _t(0.2, 0.4, 0.6)],
    ),
    "rotate": (lambda x, a: F.rotate(x, a, interpolation="bilinear", backend="torch"), [_t(13.0, -27.0)]),
    "perspective": (
        lambda x, s, e: F.perspective(x, s, e, backend="torch"),
        [(START + 0.1).expand(B, 4, 2).clone().requires_grad_(True), (START + JITTER).expand(B, 4, 2).clone().requires_grad_(True)],
    ),
    "resized_crop": (
        lambda x, t, lf, h, w: F.resized_crop(x, t, lf, h, w, (4, 5), backend="torch"),
        [_t(0.3, 1.1), _t(0.7, 0.2), _t(4.6, 4.2), _t(5.8, 6.1)],
    ),
    # upsampling: border pixels clamp into the crop box, whose bounds then carry the gradient (no integer coordinates)
    "resized_crop_upsample": (
        lambda x, t, lf, h, w: F.resized_crop(x, t, lf, h, w, (7, 8), backend="torch"),
        [_t(0.3, 1.15), _t(0.7, 0.2), _t(3.6, 2.8), _t(4.2, 3.1)],
    ),
    "affine_nearest_image": (lambda x: F.affine(x, 17.0, [0.3, 0.2], 1.1, [3.0, 1.0], interpolation="nearest", backend="torch"), []),
    "flip_crop": (lambda x: F.crop(F.horizontal_flip(x, backend="torch"), 1, 1, 4, 5, backend="torch"), []),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_reference(name):
    fn, mags = CASES[name]
    _check(fn, _img(), *mags, fast=name in FAST)


def test_gradcheck_compose_pipeline():
    pipe = Compose(
        [T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.RandomAffine(20, translate=(0.1, 0.1), scale=(0.8, 1.2), interpolation="bilinear"),
         T.RandomAdjustSharpness(1.5, p=1.0), T.RandomErasing(p=1.0), T.Normalize([0.5, 0.4, 0.3], [0.2, 0.3, 0.25])],
        seed=3,
    )  # fmt: skip
    _check(lambda x: pipe(x, backend="torch"), _img(1), fast=True)


def test_straight_through_passes_gradient():
    x = _img()
    for fn in (F.posterize, F.solarize, F.equalize, F.autocontrast):
        args = {F.posterize: (3,), F.solarize: (0.5,)}.get(fn, ())
        (g,) = torch.autograd.grad(fn(x, *args, straight_through=True, backend="torch").sum(), x)
        assert torch.equal(g, torch.ones_like(g)), fn.__name__
    (g,) = torch.autograd.grad(F.posterize(x, 3, backend="torch").sum(), x)
    assert torch.equal(g, torch.zeros_like(g))
    (g,) = torch.autograd.grad(F.solarize(x, 0.5, backend="torch").sum(), x)
    assert torch.equal(g, torch.where(x >= 0.5, -1.0, 1.0).double())


def test_compose_straight_through_flag():
    x = _img()
    pipe = Compose([T.RandomPosterize(3, p=1.0)], straight_through=True)
    (g,) = torch.autograd.grad(pipe(x, backend="torch").sum(), x)
    assert torch.equal(g, torch.ones_like(g))


def test_inference_pays_nothing(monkeypatch):
    x = torch.rand(B, C, H, W)
    calls = []
    monkeypatch.setattr(autograd.PlanFunction, "apply", lambda *a: calls.append(a))
    out = F.adjust_brightness(x, 1.2)
    assert out.grad_fn is None and not calls
    with torch.no_grad():
        F.adjust_brightness(x.requires_grad_(True), 1.2)
    assert not calls


def test_routes_through_the_function():
    x = _img().float().detach().requires_grad_(True)
    assert type(F.adjust_brightness(x, 1.2).grad_fn).__name__ == "PlanFunctionBackward"
    f = torch.tensor([1.1, 0.9], requires_grad=True)
    assert F.adjust_brightness(x.detach(), f).requires_grad
    assert Compose([T.ColorJitter(0.3)])(x).requires_grad


def test_uint8_with_grad_magnitude_raises():
    x = torch.randint(0, 256, (B, C, H, W), dtype=torch.uint8)
    with pytest.raises(ValueError, match="float image"):
        F.adjust_brightness(x, torch.tensor([1.1, 0.9], requires_grad=True))


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_only_needed_gradients(backend, monkeypatch):
    seen = []
    orig = autograd.reference_stage_backward

    def spy(src, stage, stats, luts, ep, g, needs, st=False):
        seen.append(needs)
        return orig(src, stage, stats, luts, ep, g, needs, st)

    monkeypatch.setattr(autograd, "reference_stage_backward", spy)
    monkeypatch.setattr(autograd, "_backward_module", lambda name: None)
    x = torch.rand(B, C, H, W)
    f = torch.tensor([1.1, 0.9], requires_grad=True)
    F.adjust_brightness(x, f, backend=backend).sum().backward()
    assert seen[-1].params and not seen[-1].src
    xg = x.clone().requires_grad_(True)
    F.adjust_brightness(xg, 1.2, backend=backend).sum().backward()
    assert seen[-1].src and not seen[-1].params


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_get_float32_accumulated_grads(dtype):
    x32 = (torch.rand(B, C, 8, 9) * 0.9 + 0.05).to(dtype).float()  # the same values in float32
    ref = x32.clone().requires_grad_(True)
    # the half path rounds the intermediate (rotate's output) to the half dtype: do the same, else the
    # contrast clamp's kinks fall on different pixels
    F.adjust_contrast(F.rotate(ref, 11.0, interpolation="bilinear").to(dtype).float(), 1.3).sum().backward()
    xh = x32.to(dtype).requires_grad_(True)
    out = F.adjust_contrast(F.rotate(xh, 11.0, interpolation="bilinear"), 1.3)
    assert out.dtype == dtype
    out.float().sum().backward()
    assert xh.grad.dtype == dtype and torch.isfinite(xh.grad.float()).all()
    torch.testing.assert_close(xh.grad.float(), ref.grad, atol=0.02, rtol=0.02)


def test_backward_keeps_no_large_saved_tensor():
    x = (torch.rand(4, 3, 32, 33) * 0.9 + 0.05).requires_grad_(True)
    pipe = Compose(
        [T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.RandomAffine(20, scale=(0.8, 1.2), interpolation="bilinear"),
         T.RandomAdjustSharpness(1.5, p=1.0), T.RandomErasing(p=1.0), T.Normalize([0.5, 0.4, 0.3], [0.2, 0.3, 0.25])],
        seed=1,
    )  # fmt: skip
    sizes = []

    def pack(t):
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = pipe(x)
    out.square().sum().backward()  # (the square's own saved output is outside the hooks)
    batch = x.numel() * x.element_size()
    assert sizes and max(sizes) <= batch
    assert sum(s for s in sizes if s > batch // 4) <= batch  # only the input itself is image-sized
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_learns_hidden_brightness_contrast_rotation():
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(4, 3, 6, 6), size=(24, 24), mode="bicubic", align_corners=False)
    x = x.clamp(0.05, 0.95) * 0.7 + 0.1
    true_b = torch.tensor([0.85, 1.1, 0.95, 1.05])
    true_c = torch.tensor([1.15, 0.8, 1.05, 0.9])
    true_a = torch.tensor([8.0, -6.0, 3.0, -9.0])

    def augment(img, b, c, a):
        return F.rotate(F.adjust_contrast(F.adjust_brightness(img, b), c), a, interpolation="bilinear")

    target = augment(x, true_b, true_c, true_a)
    b = torch.ones(4, requires_grad=True)
    c = torch.ones(4, requires_grad=True)
    a = torch.zeros(4, requires_grad=True)
    opt = torch.optim.Adam([{"params": [b, c], "lr": 0.02}, {"params": [a], "lr": 0.5}])
    for _ in range(150):
        opt.zero_grad()
        loss = (augment(x, b, c, a) - target).square().mean()
        loss.backward()
        opt.step()
    assert (b - true_b).abs().max() < 0.02, b
    assert (c - true_c).abs().max() < 0.02, c
    assert (a - true_a).abs().max() < 0.5, a
