"""rgb_shift / rgb_gain and RGBShift / RGBGain: float64 oracles of the formulas, albumentations' RGBShift, backends
against the reference, per-sample draws and replay, gradients, bad input. (Triton: tests/test_triton_backend.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from images import image, image_in_layout

import fastaug
import fastaug.functional as F


def _oracle(x: torch.Tensor, values: torch.Tensor, gain: bool) -> torch.Tensor:
    """clamp(channel + shift) or clamp(channel * gain) into the value range, truncated for uint8, in the working dtype
    (float32; float64 for float64 images: the product before truncation is rounded to it)."""
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    v = x.to(work)
    p = values.to(work).view(-1, 3, 1, 1)
    top = 255.0 if x.dtype == torch.uint8 else 1.0
    y = torch.clamp(v * p if gain else v + p, 0.0, top)
    return torch.floor(y).to(x.dtype) if x.dtype == torch.uint8 else y.to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("gain", [False, True])
def test_formula(dtype, gain):
    x = image(dtype, (3, 3, 11, 13), 1)
    if gain:
        values = torch.tensor([[1.5, 0.5, 1.0], [0.0, 2.0, 0.9], [1.1, 1.1, 3.0]])
    else:
        values = torch.tensor([[40.0, -30.0, 0.0], [-255.0, 7.0, 100.0], [3.0, 3.0, -3.0]])
        if dtype != torch.uint8:
            values = values / 255.0
    fn = F.rgb_gain if gain else F.rgb_shift
    for backend in ("torch", "numba"):
        got = fn(x, values[:, 0], values[:, 1], values[:, 2], backend=backend)
        want = _oracle(x, values, gain)
        if dtype == torch.uint8:
            assert torch.equal(got, want)
        else:
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_gain_of_three_equal_values_is_brightness():
    x = image(torch.uint8, (2, 3, 9, 9), 2)
    f = torch.tensor([0.7, 1.6])
    assert torch.equal(F.rgb_gain(x, f, f, f), F.adjust_brightness(x, f))


def test_albumentations_rgb_shift():
    """albumentations' RGBShift with a fixed integer shift per channel on a uint8 image: the same pixels."""
    A = pytest.importorskip("albumentations")
    x = image(torch.uint8, (1, 3, 16, 20), 3)
    np_img = x[0].permute(1, 2, 0).numpy().copy()
    aug = A.RGBShift(r_shift_limit=(25, 25), g_shift_limit=(-40, -40), b_shift_limit=(200, 200), p=1.0)
    want = torch.from_numpy(np.ascontiguousarray(aug(image=np_img)["image"])).permute(2, 0, 1)
    got = F.rgb_shift(x, 25, -40, 200)[0]
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_numba_equals_reference(dtype, layout):
    x = image_in_layout(dtype, (4, 3, 10, 12), 4, layout)
    aug = fastaug.Compose([fastaug.RGBShift(p=0.8), fastaug.RGBGain(0.5, p=0.8), fastaug.ColorJitter(0.3, 0.3, 0.3, 0.1)], seed=3)
    assert torch.equal(aug(x, backend="numba"), aug(x, backend="torch"))


def test_transforms_draw_in_the_images_units_and_replay():
    x = image(torch.uint8, (16, 3, 8, 8), 5)
    aug = fastaug.Compose([fastaug.RGBShift((-20, 20), 0.1, (-1, 1), p=1.0), fastaug.ToDtype(torch.float32, scale=True),
                           fastaug.RGBShift(r_shift_limit=(10, 10), g_shift_limit=0, b_shift_limit=0, p=1.0),
                           fastaug.RGBGain(r_gain=(0.5, 0.6), g_gain=0, b_gain=(1.0, 2.0), p=1.0)], seed=4)  # fmt: skip
    out, rec = aug(x, return_record=True)
    torch.testing.assert_close(rec.replay(x), out, atol=0, rtol=0)
    seen = set()
    for i in range(16):
        calls = rec.calls(i)
        shifts = [kw for n, kw in calls if n == "rgb_shift"]
        gains = [kw for n, kw in calls if n == "rgb_gain"]
        assert len(shifts) == 2 and len(gains) == 1
        first, second = shifts
        assert -20 <= first["r_shift"] <= 20 and -25.5 <= first["g_shift"] <= 25.5 and -255 <= first["b_shift"] <= 255
        assert second["r_shift"] == pytest.approx(10 / 255) and second["g_shift"] == 0
        assert 0.5 <= gains[0]["r_gain"] <= 0.6 and gains[0]["g_gain"] == 1 and 1 <= gains[0]["b_gain"] <= 2
        seen.add(round(first["r_shift"], 6))
    assert len(seen) == 16  # one draw per sample


def test_gradients_to_image_and_values():
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64) * 0.8 + 0.1
    s = torch.tensor([0.05, -0.1], dtype=torch.float64)
    g = torch.tensor([1.2, 0.7], dtype=torch.float64)
    torch.autograd.gradcheck(lambda im, a, b: F.rgb_gain(F.rgb_shift(im, a, 0.02, -a, backend="torch"), b, 1.0, 0.9,
                                                         backend="torch"), (x.requires_grad_(), s.requires_grad_(), g.requires_grad_()))
    grads = []
    for backend in ("torch", "numba"):
        xx = x.float().detach().requires_grad_(True)
        ss = s.float().detach().requires_grad_(True)
        gg = g.float().detach().requires_grad_(True)
        y = F.rgb_gain(F.rgb_shift(xx, ss, 0.3, -ss, backend=backend), gg, 1.0, 0.9, backend=backend)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(0)))
        grads.append((xx.grad, ss.grad, gg.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert float(grads[0][1].abs().min()) > 0 and float(grads[0][2].abs().min()) > 0


@pytest.mark.parametrize("call,exc,name", [
    (lambda x: F.rgb_shift(x[:, :1], 0.1), ValueError, "rgb_shift"),
    (lambda x: F.rgb_gain(torch.rand(2, 4, 5, 5), 1.1), ValueError, "rgb_gain"),
    (lambda x: F.rgb_gain(x, -0.1), ValueError, "r_gain"),
    (lambda x: F.rgb_shift(x, 0.0, float("nan")), ValueError, "g_shift"),
    (lambda x: F.rgb_shift(x, 0.0, 0.0, "a"), TypeError, "b_shift"),
    (lambda x: fastaug.Compose([fastaug.RGBShift(p=1.0)])(x[:, :2]), ValueError, "RGBShift"),
    (lambda x: fastaug.RGBShift(r_shift_limit=(5, -5)), ValueError, "r_shift_limit"),
    (lambda x: fastaug.RGBGain(g_gain=(-1.0, 2.0)), ValueError, "g_gain"),
    (lambda x: fastaug.RGBGain(b_gain=float("inf")), ValueError, "b_gain"),
])  # fmt: skip
def test_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call(torch.rand(2, 3, 6, 6))
