"""fog and RandomFog / Clouds: the value noise against a float64 oracle written from the contract's formula, the blend,
backends against the reference, per-sample draws and replay, gradients, bad input. (Triton: tests/test_triton_backend.py.)"""

from __future__ import annotations

import math

import pytest
import torch
from images import image, image_in_layout

import fastaug
import fastaug.functional as F
from fastaug import rng
from fastaug.ops import counter

KEYS = rng.key(0, 0, torch.arange(3), 0)


def _mix(h: int) -> int:
    h ^= h >> 16
    h = (h * counter.M1) & counter.MASK
    h ^= h >> 15
    h = (h * counter.M2) & counter.MASK
    return h ^ (h >> 16)


def _noise_oracle(key: int, scale: float, h: int, w: int) -> torch.Tensor:
    """The value noise of fastaug.ops.counter's doc, pixel by pixel in Python floats (float64), hashes in Python ints."""
    out = torch.empty(h, w, dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            total = 0.0
            for o in range(counter.FOG_OCTAVES):
                s = max(scale * max(h, w) * 2.0**-o, 1.0)
                gy, gx = (y + 0.5) / s, (x + 0.5) / s
                j, i = math.floor(gy), math.floor(gx)
                sy = (gy - j) ** 2 * (3 - 2 * (gy - j))
                sx = (gx - i) ** 2 * (3 - 2 * (gx - i))
                base = _mix(key ^ o)

                def lat(jj: int, ii: int, base=base) -> float:
                    return (_mix(_mix(base ^ jj) ^ ii) >> 8) * 2.0**-24

                top = lat(j, i) + (lat(j, i + 1) - lat(j, i)) * sx
                bot = lat(j + 1, i) + (lat(j + 1, i + 1) - lat(j + 1, i)) * sx
                total += (top + (bot - top) * sy) * 0.5**o
            m = total / 1.875
            out[y, x] = min(max((m - 0.5) * counter.FOG_CONTRAST + 0.5, 0.0), 1.0)
    return out


@pytest.mark.parametrize("scale,h,w", [(0.3, 17, 23), (0.05, 12, 9), (1.0, 8, 30)])
def test_value_noise_against_the_formula(scale, h, w):
    key = int(KEYS[1])
    got = counter.fog_noise(torch.tensor([key]), torch.tensor([scale], dtype=torch.float64), h, w, torch.float64)[0, 0]
    torch.testing.assert_close(got, _noise_oracle(key, scale, h, w), atol=1e-12, rtol=0)
    got32 = counter.fog_noise(torch.tensor([key]), torch.tensor([scale]), h, w, torch.float32)[0, 0]
    torch.testing.assert_close(got32.double(), got, atol=2e-6, rtol=0)


def test_value_noise_is_smooth_and_spread():
    """Neighbouring pixels differ little (a coarse cell spans many pixels), the values cover most of [0, 1]."""
    n = counter.fog_noise(KEYS, torch.full((3,), 0.4), 96, 96, torch.float64)
    assert float((n[..., 1:] - n[..., :-1]).abs().max()) < 0.2
    assert float(n.std()) > 0.2 and float(n.min()) < 0.1 and float(n.max()) > 0.9


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_blend_formula(dtype):
    x = image(dtype, (3, 3, 14, 18), 1)
    d, s, t = torch.tensor([0.5, 1.0, 0.8]), torch.tensor([0.3, 0.5, 0.2]), torch.tensor([0.0, 0.4, 0.9])
    got = F.fog(x, d, s, t, key=KEYS, backend="torch")
    work = torch.float64 if dtype == torch.float64 else torch.float32
    n = counter.fog_noise(KEYS, s, 14, 18, work)
    tt = t.to(work).view(3, 1, 1, 1)
    alpha = d.to(work).view(3, 1, 1, 1) * torch.clamp((n - tt) / (1 - tt), 0, 1)
    top = 255.0 if dtype == torch.uint8 else 1.0
    y = x.to(work) + alpha * (top - x.to(work))
    want = torch.floor(y).to(dtype) if dtype == torch.uint8 else y.to(dtype)
    assert torch.equal(got, want)
    assert bool((got.double() >= x.double()).all())  # towards white only


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_numba_equals_reference(dtype, layout):
    x = image_in_layout(dtype, (4, 3, 13, 21), 2, layout)
    for fn in (lambda im, be: F.fog(im, torch.tensor([0.2, 0.5, 0.9, 1.0]), torch.tensor([0.01, 0.3, 0.6, 2.0]), 0.3, seed=3, backend=be),
               lambda im, be: F.fog(F.adjust_contrast(im, 1.3, backend=be), 0.7, backend=be)):  # fmt: skip
        got, want = fn(x, "numba"), fn(x, "torch")
        if dtype == torch.float64:  # CONTRAST's float64 gray mean is a float64 sum: its last bit follows the summation order
            torch.testing.assert_close(got, want, atol=4e-16, rtol=0)
        else:
            assert torch.equal(got, want)


def test_transforms_draw_per_sample_and_replay():
    x = image(torch.uint8, (8, 3, 24, 24), 4)
    aug = fastaug.Compose([fastaug.RandomResizedCrop(20), fastaug.RandomFog(p=0.8), fastaug.Clouds(p=0.8)], seed=2)
    out, rec = aug(x, return_record=True)
    torch.testing.assert_close(rec.replay(x), out, atol=0, rtol=0)
    assert torch.equal(aug(x, backend="torch"), out)
    for i in range(8):
        for name, kw in rec.calls(i):
            if name == "fog":
                assert 0.3 <= kw["density"] <= 1.0 and 0.2 <= kw["scale"] <= 0.7 and 0.0 <= kw["threshold"] <= 0.6
                assert isinstance(kw["key"], int)
    firsts = {round(kw["density"], 6) for i in range(8) for n, kw in rec.calls(i) if n == "fog"}
    assert len(firsts) > 4


def test_gradients_to_image_and_density():
    x = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    d = torch.tensor([0.4, 0.9], dtype=torch.float64)
    torch.autograd.gradcheck(lambda im, dd: F.fog(im, dd, 0.3, 0.2, backend="torch"), (x.requires_grad_(), d.requires_grad_()))
    grads = []
    for backend in ("torch", "numba"):
        xx = x.float().detach().requires_grad_(True)
        dd = d.float().detach().requires_grad_(True)
        y = F.fog(F.adjust_brightness(xx, 0.9, backend=backend), dd, 0.3, backend=backend)
        y.backward(torch.ones_like(y))
        grads.append((xx.grad, dd.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert float(grads[0][1].abs().min()) > 0


@pytest.mark.parametrize("call,exc,name", [
    (lambda x: F.fog(x, 1.5), ValueError, "density"),
    (lambda x: F.fog(x, 0.5, -0.1), ValueError, "scale"),
    (lambda x: F.fog(x, 0.5, 0.3, float("nan")), ValueError, "threshold"),
    (lambda x: F.fog(x, 0.5, key=-1), ValueError, "key"),
    (lambda x: fastaug.RandomFog(fog_coef_range=(0.5, 0.2)), ValueError, "fog_coef_range"),
    (lambda x: fastaug.Clouds(threshold_range=(0.5, 1.0)), ValueError, "threshold_range"),
])  # fmt: skip
def test_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call(torch.rand(2, 3, 6, 6))
