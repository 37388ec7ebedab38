"""downscale and Downscale: a float64 oracle written pixel by pixel from the catalogue's formula, cv2 (albumentations'
Downscale calls cv2.resize twice), backends against the reference, per-sample draws and replay, gradients, bad input.
(Triton: tests/test_triton_backend.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from images import image, image_in_layout

import fastaug
import fastaug.functional as F


def _taps(pos: int, ratio, n_in: int, bilinear: bool, f):
    if not bilinear:
        i = min(math.floor(f(pos) * ratio), n_in - 1)
        return i, i, f(0)
    s = max((f(pos) + f(0.5)) * ratio - f(0.5), f(0))
    i0 = min(math.floor(s), n_in - 1)
    return i0, min(i0 + 1, n_in - 1), s - f(math.floor(s))


def _oracle(img: torch.Tensor, scale: float, down: bool, up: bool, uint8: bool) -> np.ndarray:
    """One sample [C,H,W], pixel by pixel from the formula in numpy scalars of the working dtype (float32 for uint8
    images, float64 for float64): resize to (rint(H s), rint(W s)) with 1/s input pixels per small pixel, then back
    with hd/H, wd/W; uint8 rounds the small image and the result."""
    f = np.float32 if uint8 else np.float64
    one = f(1)
    c, h, w = img.shape
    v = img.numpy().astype(f)
    a = f(scale)
    hd, wd = int(max(np.rint(a * f(h)), one)), int(max(np.rint(a * f(w)), one))
    inv = one / a
    small = np.empty((c, hd, wd), f)
    for yd in range(hd):
        r0, r1, ly = _taps(yd, inv, h, down, f)
        for xd in range(wd):
            c0, c1, lx = _taps(xd, inv, w, down, f)
            top = (one - lx) * v[:, r0, c0] + lx * v[:, r0, c1]
            bot = (one - lx) * v[:, r1, c0] + lx * v[:, r1, c1]
            small[:, yd, xd] = (one - ly) * top + ly * bot
    if uint8:
        small = np.rint(small)
    out = np.empty((c, h, w), f)
    for y in range(h):
        u0, u1, uy = _taps(y, f(hd) / f(h), hd, up, f)
        for x in range(w):
            v0, v1, ux = _taps(x, f(wd) / f(w), wd, up, f)
            top = (one - ux) * small[:, u0, v0] + ux * small[:, u0, v1]
            bot = (one - ux) * small[:, u1, v0] + ux * small[:, u1, v1]
            out[:, y, x] = (one - uy) * top + uy * bot
    return np.rint(out) if uint8 else out


MODES = [("nearest", "nearest"), ("nearest", "bilinear"), ("bilinear", "nearest"), ("bilinear", "bilinear")]


@pytest.mark.parametrize("down,up", MODES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64])
def test_formula(down, up, dtype):
    x = image(dtype, (3, 2, 13, 17), 1)
    scales = [0.25, 0.41, 0.75]
    got = F.downscale(x, torch.tensor(scales, dtype=torch.float64), down, up, backend="torch")
    for i, s in enumerate(scales):
        want = torch.from_numpy(_oracle(x[i], s, down == "bilinear", up == "bilinear", dtype == torch.uint8))
        torch.testing.assert_close(got[i].to(want.dtype), want, atol=0, rtol=0)


@pytest.mark.parametrize("down,up", MODES)
def test_cv2_like_albumentations(down, up):
    """cv2.resize(fx=fy=s) then cv2.resize back, as albumentations' Downscale: nearest both ways exactly; bilinear
    within cv2's fixed-point weights (11 bits)."""
    cv2 = pytest.importorskip("cv2")
    flags = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR}
    x = image(torch.uint8, (3, 3, 31, 45), 2)
    scales = torch.tensor([0.25, 0.4, 0.9], dtype=torch.float64)
    got = F.downscale(x, scales, down, up)
    for i in range(3):
        im = x[i].permute(1, 2, 0).numpy()
        small = cv2.resize(im, None, fx=float(scales[i]), fy=float(scales[i]), interpolation=flags[down])
        want = torch.from_numpy(np.ascontiguousarray(cv2.resize(small, (45, 31), interpolation=flags[up]))).permute(2, 0, 1)
        diff = (got[i].int() - want.int()).abs()
        if down == up == "nearest":
            assert int(diff.max()) == 0
        else:
            assert int(diff.max()) <= 2 and float((diff > 0).double().mean()) < 0.3


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_numba_equals_reference(dtype, layout):
    x = image_in_layout(dtype, (4, 3, 15, 22), 3, layout)
    s = torch.tensor([0.1, 0.33, 0.5, 1.0])
    for down, up in MODES:
        assert torch.equal(F.downscale(x, s, down, up, backend="numba"), F.downscale(x, s, down, up, backend="torch"))


def test_in_a_pipeline_draws_per_sample_and_replays():
    x = image(torch.uint8, (8, 3, 24, 30), 4)
    aug = fastaug.Compose([fastaug.RandomResizedCrop((20, 26)), fastaug.ColorJitter(0.3, 0.3),
                           fastaug.Downscale((0.2, 0.6), {"downscale": 0, "upscale": "bilinear"}, p=0.8),
                           fastaug.GaussianNoise(0, 0.05)], seed=5)  # fmt: skip
    out, rec = aug(x, return_record=True)
    torch.testing.assert_close(rec.replay(x), out, atol=0, rtol=0)
    assert torch.equal(aug(x, backend="torch"), out)
    scales = [kw["scale"] for i in range(8) for n, kw in rec.calls(i) if n == "downscale"]
    assert 3 <= len(scales) <= 8 and all(0.2 <= s <= 0.6 for s in scales) and len(set(scales)) == len(scales)
    for i in range(8):
        y = x[i : i + 1]
        for name, kw in rec.calls(i):
            y = getattr(F, name)(y, **kw)
        assert (y[0].int() - out[i].int()).abs().max() <= 1  # one resampling per call instead of one composed


def test_gradients_to_the_image():
    x = torch.rand(2, 2, 9, 11, dtype=torch.float64)
    torch.autograd.gradcheck(lambda im: F.downscale(im, torch.tensor([0.5, 0.7]), "bilinear", "bilinear", backend="torch"),
                             (x.requires_grad_(),))  # fmt: skip
    grads = []
    for backend in ("torch", "numba"):
        xx = x.float().detach().requires_grad_(True)
        y = F.downscale(F.adjust_brightness(xx, 1.1, backend=backend), 0.4, "bilinear", "nearest", backend=backend)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(0)))
        grads.append(xx.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("call,exc,name", [
    (lambda x: F.downscale(x, 0.0), ValueError, "scale"),
    (lambda x: F.downscale(x, 1.5), ValueError, "scale"),
    (lambda x: F.downscale(x, 0.5, "bicubic"), ValueError, "down_interpolation"),
    (lambda x: F.downscale(x, 0.5, "nearest", 3), ValueError, "up_interpolation"),
    (lambda x: fastaug.Downscale((0.0, 0.5)), ValueError, "scale_range"),
    (lambda x: fastaug.Downscale(interpolation_pair={"down": 0}), ValueError, "interpolation_pair"),
])  # fmt: skip
def test_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call(torch.rand(2, 3, 8, 8))
