"""gaussian_noise / GaussianNoise: the noise law (torchvision's formula, our counter-based normal), backends
against the reference, replay, gradients, bad input. (Triton: tests/test_triton_backend.py.)"""

from __future__ import annotations

import math

import pytest
import torch
from images import image, image_in_layout

import fastaug
import fastaug.functional as F
from fastaug.ops import counter


def test_counter_normal_is_standard_normal():
    z = counter.pixel_normal(torch.arange(8), 3, 128, 128, torch.float64).flatten()
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.std()) - 1) < 5 * math.sqrt(2 / n)
    # the tails: P(|z| > 2) = 0.0455, P(|z| > 3) = 0.0027
    assert abs(float((z.abs() > 2).double().mean()) - 0.0455) < 0.003
    assert abs(float((z.abs() > 3).double().mean()) - 0.0027) < 0.0008
    # channels, rows, columns and samples draw independently
    zz = z.view(8, 3, 128, 128)
    for a, b in ((zz[:, 0], zz[:, 1]), (zz[:, :, :-1], zz[:, :, 1:]), (zz[..., :-1], zz[..., 1:]), (zz[0], zz[1])):
        r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
        assert abs(float(r)) < 0.02


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_formula(dtype):
    """float: v + (mean + z * sigma), clamped into [0, 1] when clip."""
    x = image(dtype, (3, 2, 9, 11), 1)
    mean, sigma = torch.tensor([0.0, 0.1, -0.05]), torch.tensor([0.1, 0.3, 0.0])
    keys = fastaug.rng.key(5, 2, torch.tensor([7, 8, 9]), 0)
    z = counter.pixel_normal(keys, 2, 9, 11, dtype)
    want = x + (mean.to(dtype).view(3, 1, 1, 1) + z * sigma.to(dtype).view(3, 1, 1, 1))
    for clip in (False, True):
        got = F.gaussian_noise(x, mean, sigma, clip, key=keys, backend="torch")
        torch.testing.assert_close(got, want.clamp(0, 1) if clip else want, atol=1e-6, rtol=0)


def test_normal_is_box_muller_to_a_few_ulps():
    """The arithmetic log / cosine of ``fastaug.ops.counter`` against float64 libm on the same uniforms."""
    g = torch.Generator().manual_seed(0)
    h1, h2 = (torch.randint(0, 2**32, (200_000,), generator=g, dtype=torch.int64) for _ in range(2))
    even, odd = (z.double() for z in counter.normal_from_hashes(h1, h2, torch.float32))
    u1 = ((h1 >> 8) + 1).double() / 2**24
    theta = 2 * math.pi * ((h2 >> 30).double() / 4 + ((h2 >> 8) & (2**22 - 1)).double() / 2**24 - 0.125)
    r = torch.sqrt(-2 * torch.log(u1))
    assert float((even - r * torch.cos(theta)).abs().max()) < 2e-6
    assert float((odd - r * torch.sin(theta)).abs().max()) < 2e-6
    zero = counter.normal_from_hashes(torch.tensor([2**32 - 1]), torch.tensor([0]), torch.float32)
    assert float(zero[0]) == 0.0 and float(zero[1]) == 0.0  # u1 = 1


def test_uint8_formula_truncates_and_wraps_like_torchvision():
    """uint8: the noise mean*255 + z*sigma*255 truncated toward zero (torchvision's int16 cast); clip=False wraps."""
    x = image(torch.uint8, (2, 3, 8, 8), 2)
    keys = fastaug.rng.key(0, 0, torch.arange(2), 0)
    z = counter.pixel_normal(keys, 3, 8, 8, torch.float64)
    noise = torch.trunc(0.1 * 255 + z * (0.2 * 255))
    for clip in (True, False):
        got = F.gaussian_noise(x, 0.1, 0.2, clip, key=keys, backend="torch").int()
        raw = x.int() + noise.int()
        want = raw.clamp(0, 255) if clip else raw % 256
        diff = (got - want).abs()
        assert diff.max() <= 1 and (diff == 0).double().mean() > 0.99  # float32 vs float64 z at truncation edges


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_numba_matches_reference(dtype, layout):
    x = image_in_layout(dtype, (4, 3, 15, 14), 7, layout)
    for clip in (True, False):
        kw = dict(mean=torch.tensor([0.0, 0.1, -0.2, 0.05]), sigma=torch.tensor([0.05, 0.2, 0.5, 1.0]), clip=clip, seed=3)
        want = F.gaussian_noise(x, backend="torch", **kw)
        got = F.gaussian_noise(x, backend="numba", **kw)
        if dtype == torch.float64:  # torch's float64 sqrt is not always correctly rounded (an ulp)
            torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
        else:  # the normal is arithmetic (no libm): the same bits
            assert torch.equal(got, want)


def test_draws_depend_on_seed_epoch_index_only():
    x = torch.full((4, 3, 6, 6), 0.5)
    a = F.gaussian_noise(x, 0.0, 0.1, seed=1, epoch=2, indices=torch.tensor([10, 11, 12, 13]))
    b = F.gaussian_noise(x[2:], 0.0, 0.1, seed=1, epoch=2, indices=torch.tensor([12, 13]))
    assert torch.equal(a[2:], b)  # batch composition does not matter
    c = F.gaussian_noise(x, 0.0, 0.1, seed=1, epoch=3, indices=torch.tensor([10, 11, 12, 13]))
    assert not torch.equal(a, c)


def test_transform_in_a_fused_pipeline_replays():
    x = image(torch.uint8, (6, 3, 20, 18), 11)
    aug = fastaug.Compose([
        fastaug.RandomAffine(15, interpolation="bilinear"), fastaug.ColorJitter(0.3, 0.3),
        fastaug.GaussianNoise(0.0, (0.01, 0.1)), fastaug.RandomAutocontrast(p=0.5),
        fastaug.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3]),
    ], seed=4)  # fmt: skip
    out, record = aug(x, indices=torch.arange(100, 106), epoch=1, return_record=True)
    torch.testing.assert_close(record.replay(x), out, atol=0, rtol=0)
    torch.testing.assert_close(aug(x, indices=torch.arange(100, 106), epoch=1, backend="torch"), out, atol=1e-4, rtol=0)
    names = [[n for n, _ in record.calls(i)] for i in range(6)]
    assert all("gaussian_noise" in n for n in names)
    kw = dict(record.calls(0))["gaussian_noise"]
    assert 0.01 <= kw["sigma"] <= 0.1 and kw["clip"] is True


def test_gradients_to_image_mean_and_sigma():
    x = image(torch.float64, (2, 2, 5, 6), 9).requires_grad_(True)
    mean = torch.tensor([0.01, -0.02], dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.05, 0.1], dtype=torch.float64, requires_grad=True)
    fn = lambda a, m, s: F.gaussian_noise(a, m, s, clip=False, backend="torch")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, mean, sigma))
    for backend in ("numba",):
        xx, mm, ss = (t.detach().float().requires_grad_(True) for t in (x, mean, sigma))
        F.gaussian_noise(xx, mm, ss, clip=True, backend=backend).sum().backward()
        xr, mr, sr = (t.detach().float().requires_grad_(True) for t in (x, mean, sigma))
        F.gaussian_noise(xr, mr, sr, clip=True, backend="torch").sum().backward()
        for a, b in ((xx, xr), (mm, mr), (ss, sr)):
            torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw,exc,name", [
    ({"sigma": -0.1}, ValueError, "sigma"), ({"sigma": float("nan")}, ValueError, "sigma"),
    ({"mean": float("inf")}, ValueError, "mean"), ({"clip": 1}, TypeError, "clip"),
    ({"sigma": torch.ones(5)}, ValueError, "sigma"), ({"epoch": -1}, ValueError, "epoch"),
    ({"seed": 1.5}, TypeError, "seed"),
])  # fmt: skip
def test_bad_input(kw, exc, name):
    with pytest.raises(exc, match=name):
        F.gaussian_noise(torch.rand(3, 3, 8, 8), **kw)


@pytest.mark.parametrize("kw", [{"sigma": -1.0}, {"sigma": (0.2, 0.1)}, {"clip": "yes"}, {"mean": float("nan")}])
def test_transform_bad_input(kw):
    with pytest.raises((ValueError, TypeError)):
        fastaug.GaussianNoise(**kw)
