"""convolve / sharpen / emboss / motion_blur and their transforms: albumentations' formulas (float64 oracles and
albumentations itself where installed), backends against the reference, gradients, records, bad input.
(Triton: tests/test_triton_backend.py.)"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import fastaug
import fastaug.functional as F

A = pytest.importorskip("albumentations")
from albumentations.augmentations.blur.functional import create_motion_kernel  # noqa: E402
from albumentations.augmentations.pixel import functional as fpixel  # noqa: E402
from images import image, image_in_layout  # noqa: E402


def _albumentations(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    out = [fpixel.convolve(np.ascontiguousarray(x[i].permute(1, 2, 0).numpy()), kernels[i].float().numpy()) for i in range(x.shape[0])]
    return torch.stack([torch.from_numpy(o).reshape(x.shape[2], x.shape[3], -1).permute(2, 0, 1) for o in out])


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    if got.dtype == torch.uint8:  # float32 sums vs cv2's: an exact .5 may round apart
        diff = (got.int() - want.int()).abs()
        assert diff.max() <= 1 and (diff == 0).double().mean() > 0.99
    else:
        torch.testing.assert_close(got, want.to(got.dtype), atol=2e-6, rtol=0)


def test_kernels_follow_albumentations_formulas():
    a, li = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64), torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    for i in range(3):
        eye = np.zeros((3, 3))
        eye[1, 1] = 1
        m = -np.ones((3, 3))
        m[1, 1] = 8 + float(li[i])
        np.testing.assert_allclose(F.sharpen_kernel(a, li)[i].numpy(), (1 - float(a[i])) * eye + float(a[i]) * m, atol=1e-12)
        s = float(li[i])
        e = np.array([[-1 - s, -s, 0], [-s, 1, s], [0, s, 1 + s]])
        np.testing.assert_allclose(F.emboss_kernel(a, li)[i].numpy(), (1 - float(a[i])) * eye + float(a[i]) * e, atol=1e-12)


class _Fixed:
    """A random.Random stand-in returning given uniforms (albumentations draws the shift from it)."""

    def __init__(self, values):
        self.values = list(values)

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.values.pop(0)


def test_motion_kernel_equals_albumentations():
    rs = random.Random(0)
    for _ in range(500):
        k, angle, direction = rs.choice([3, 5, 7, 9]), rs.uniform(0, 360), rs.choice([rs.uniform(-1, 1), -1.0, 0.0, 1.0])
        ux, uy = rs.random(), rs.random()
        want = create_motion_kernel(k, angle, direction, True, _Fixed([ux, uy]))
        want = want / want.sum()
        shift = torch.tensor([[(2 * ux - 1) * (k // 2) / 2, (2 * uy - 1) * (k // 2) / 2]], dtype=torch.float64)
        got = F.motion_blur_kernel(torch.tensor([k]), torch.tensor([angle], dtype=torch.float64),
                                   torch.tensor([direction], dtype=torch.float64), shift, 11)[0]  # fmt: skip
        off = (11 - k) // 2
        np.testing.assert_allclose(got[off : off + k, off : off + k].numpy(), want, atol=1e-7)
        assert float(got.sum()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("c", [1, 3, 4])
def test_sharpen_emboss_motion_equal_albumentations(dtype, c):
    x = image(dtype, (3, c, 17, 19), c)
    a, li = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64), torch.tensor([0.5, 0.7, 1.0], dtype=torch.float64)
    for backend in ("torch", "numba"):
        _close(F.sharpen(x, a, li, backend=backend), _albumentations(x, F.sharpen_kernel(a, li)))
        _close(F.emboss(x, a, li, backend=backend), _albumentations(x, F.emboss_kernel(a, li)))
        k, ang, d = torch.tensor([3, 5, 7]), torch.tensor([0.0, 45.0, 100.0]), torch.tensor([0.0, 0.5, -0.7])
        kern = F.motion_blur_kernel(k, ang, d, torch.zeros(3, 2), 7)
        _close(F.motion_blur(x, k, ang, d, backend=backend), _albumentations(x, kern))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_numba_equals_reference_exactly(dtype, layout):
    x = image_in_layout(dtype, (4, 3, 15, 14), 7, layout)
    kern = torch.randn(4, 5, 5, generator=torch.Generator().manual_seed(2)) * 0.3
    assert torch.equal(F.convolve(x, kern, backend="numba"), F.convolve(x, kern, backend="torch"))


def test_tiny_images_and_large_kernels_mirror_periodically():
    x = image(torch.float32, (2, 2, 2, 3), 3)
    kern = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(1)) / 49
    assert torch.equal(F.convolve(x, kern, backend="numba"), F.convolve(x, kern, backend="torch"))


def test_transforms_draw_per_sample_and_replay():
    x = image(torch.uint8, (8, 3, 16, 16), 4)
    aug = fastaug.Compose([fastaug.RandomAffine(10), fastaug.MotionBlur((3, 7), p=1.0), fastaug.Sharpen(p=0.5),
                           fastaug.Emboss(p=0.5), fastaug.RandomAutocontrast(p=0.5)], seed=2)  # fmt: skip
    out, rec = aug(x, return_record=True)
    torch.testing.assert_close(rec.replay(x), out, atol=0, rtol=0)
    torch.testing.assert_close(aug(x, backend="torch"), out, atol=1, rtol=0)
    sizes = set()
    for i in range(8):
        calls = dict(rec.calls(i))
        sizes.add(calls["motion_blur"]["kernel_size"])
        assert calls["motion_blur"]["kernel_size"] in (3, 5, 7)
        if "sharpen" in calls:
            assert 0.2 <= calls["sharpen"]["alpha"] <= 0.5 and 0.5 <= calls["sharpen"]["lightness"] <= 1.0
        if "emboss" in calls:
            assert 0.2 <= calls["emboss"]["alpha"] <= 0.5 and 0.2 <= calls["emboss"]["strength"] <= 0.7
    assert len(sizes) > 1


def test_gradients_to_image_and_magnitudes():
    x = image(torch.float64, (2, 2, 6, 7), 9).requires_grad_(True)
    a = torch.tensor([0.3, 0.6], dtype=torch.float64, requires_grad=True)
    li = torch.tensor([0.1, 0.2], dtype=torch.float64, requires_grad=True)
    # mid-range values (away from the clamp) keep the function smooth for finite differences
    xm = (0.25 + 0.5 * x.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda im, p, q: F.sharpen(im, p, q, backend="torch"), (xm, a, li * 0.1))
    assert torch.autograd.gradcheck(lambda im, p, q: F.emboss(im, p, q, backend="torch"), (xm, a, li))
    for name in ("sharpen", "emboss"):
        grads = []
        for backend in ("torch", "numba"):
            xx, aa, ll = (t.detach().float().requires_grad_(True) for t in (xm, a, li))
            getattr(F, name)(xx, aa, ll, backend=backend).sum().backward()
            grads.append((xx.grad, aa.grad, ll.grad))
        for g1, g2 in zip(*grads):
            torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("call,exc,name", [
    (lambda x: F.convolve(x, torch.ones(4, 4)), ValueError, "kernel"),
    (lambda x: F.convolve(x, torch.ones(2, 3, 3)), ValueError, "kernel"),
    (lambda x: F.convolve(x, torch.ones(3, 3, dtype=torch.int64)), TypeError, "kernel"),
    (lambda x: F.convolve(x, torch.full((3, 3), float("nan"))), ValueError, "kernel"),
    (lambda x: F.sharpen(x, 1.5, 1.0), ValueError, "alpha"),
    (lambda x: F.sharpen(x, 0.5, -1.0), ValueError, "lightness"),
    (lambda x: F.emboss(x, 0.5, float("nan")), ValueError, "strength"),
    (lambda x: F.motion_blur(x, 4, 0.0), ValueError, "kernel_size"),
    (lambda x: F.motion_blur(x, 5, 0.0, 2.0), ValueError, "direction"),
])  # fmt: skip
def test_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call(torch.rand(3, 3, 8, 8))


@pytest.mark.parametrize("make", [
    lambda: fastaug.Sharpen(alpha=(0.5, 1.5)), lambda: fastaug.Sharpen(method="median"),
    lambda: fastaug.Emboss(strength=(-1, 0)), lambda: fastaug.MotionBlur(blur_limit=(3, 6)),
    lambda: fastaug.MotionBlur(blur_limit=1), lambda: fastaug.MotionBlur(direction_range=(-2, 0)),
])  # fmt: skip
def test_transform_bad_input(make):
    with pytest.raises((ValueError, TypeError)):
        make()


def _unsharp_oracle(x: torch.Tensor, alpha: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    """float64: v + alpha (v - G v), G the k x k Gaussian of cv2 (reflect-101 borders), clamped; uint8 rounded."""
    import cv2

    out = []
    for i in range(x.shape[0]):
        img = x[i].permute(1, 2, 0).double().numpy()
        blur = cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
        blur = blur.reshape(img.shape)
        out.append(torch.from_numpy(img + float(alpha[i]) * (img - blur)).permute(2, 0, 1))
    y = torch.stack(out).clamp(0, 255.0 if x.dtype == torch.uint8 else 1.0)
    return y.round().to(torch.uint8) if x.dtype == torch.uint8 else y.to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("c", [1, 3])
def test_sharpen_gaussian_is_the_unsharp_mask(dtype, c):
    x = image(dtype, (3, c, 17, 19), 7 + c)
    a = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    want = _unsharp_oracle(x, a, 5, 1.2)
    for backend in ("torch", "numba"):
        _close(F.sharpen(x, a, method="gaussian", kernel_size=5, sigma=1.2, backend=backend), want)
    if dtype == torch.float32 and c == 3:  # albumentations' own function: float images (its uint8 path wraps v - G v
        # around) with 3 channels (one channel fails there: cv2 drops the channel axis of its blurred copy)
        for i in range(3):
            ref = fpixel.sharpen_gaussian(np.ascontiguousarray(x[i].permute(1, 2, 0).numpy()), float(a[i]), 5, 1.2)
            got = F.sharpen(x[i : i + 1], float(a[i]), method="gaussian", kernel_size=5, sigma=1.2)[0]
            torch.testing.assert_close(got, torch.from_numpy(np.clip(ref, 0, 1)).reshape(17, 19, c).permute(2, 0, 1),
                                       atol=2e-6, rtol=0)  # fmt: skip


def test_sharpen_gaussian_transform_draws_alpha_and_replays():
    x = image(torch.uint8, (16, 3, 12, 14), 3)
    aug = fastaug.Compose([fastaug.Sharpen(alpha=(0.2, 0.8), method="gaussian", kernel_size=3, sigma=0.8, p=1.0)], seed=4)
    out, rec = aug(x, indices=torch.arange(16), return_record=True)
    torch.testing.assert_close(rec.replay(x), out, atol=0, rtol=0)
    for i in range(16):
        (name, kw), = rec.calls(i)
        assert name == "sharpen" and kw["method"] == "gaussian" and kw["kernel_size"] == 3 and 0.2 <= kw["alpha"] <= 0.8
        assert torch.equal(F.sharpen(x[i], **kw), out[i])
    for bad, match in ((dict(method="median"), "method"), (dict(method="gaussian", kernel_size=4), "kernel_size"),
                       (dict(method="gaussian", sigma=0.0), "sigma")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            fastaug.Sharpen(**bad)
    with pytest.raises(ValueError, match="lightness must be given"):
        F.sharpen(x, 0.5)
