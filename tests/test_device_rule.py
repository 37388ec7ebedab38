"""The device rule of ``fastaug.validation``: values on an accelerator are never asserted (a sticky device assert ends
the CUDA context); per-sample magnitudes are made valid instead, the same way for every backend. Exercised on CPU by
turning the CPU's eager checks off (``checks_values``), and on fake CUDA tensors (no ``_assert_async`` dispatched)."""

from __future__ import annotations

import math

import pytest
import torch

import fastaug.functional as F
from fastaug import validation

NAN, INF = math.nan, math.inf


@pytest.fixture
def device_rule(monkeypatch):
    """CPU tensors handled as a device's: no check raises, values are made valid."""
    for module in (validation, F):
        monkeypatch.setattr(module, "checks_values", lambda t: False)


def test_sanitize():
    t = torch.tensor([NAN, INF, -INF, -2.0, 0.5, 7.6], dtype=torch.float64)
    assert validation.sanitize(t, 0.0, 1.0, neutral=1.0).tolist() == [1.0, 1.0, 0.0, 0.0, 0.5, 1.0]
    assert validation.sanitize(t, 0.0, None, neutral=1.0).tolist() == [1.0, 1.0, 0.0, 0.0, 0.5, 7.6]
    assert validation.sanitize(t).tolist() == [0.0, 0.0, 0.0, -2.0, 0.5, 7.6]
    assert validation.sanitize(t, 0.0, 8.0, integer=True, neutral=8.0).tolist() == [8.0, 8.0, 0.0, 0.0, 0.0, 8.0]


def test_cpu_still_raises():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="brightness_factor contains NaN"):
        F.adjust_brightness(x, torch.tensor([NAN, 1.0]))
    with pytest.raises(ValueError, match=r"must hold values in \[0, 1\]"):
        F.adjust_brightness(x + 1.0000001, 1.0)


@pytest.mark.parametrize("backend", ["torch", "numba", "triton"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_invalid_magnitudes_are_made_valid_on_every_backend(device_rule, backend, dtype, monkeypatch):
    """NaN -> the op's identity, +-inf and out-of-range values -> the range's bounds: each backend gives the output
    of the valid values."""
    if backend == "triton":
        pytest.importorskip("triton")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 9, 11), generator=g, dtype=torch.uint8)
    x = x if dtype == torch.uint8 else x.float() / 255.0
    cases = [
        (F.adjust_brightness, [NAN, INF, -3.0, 1.5], [1.0, 1.0, 0.0, 1.5]),
        (F.adjust_saturation, [NAN, -INF, 0.5, 2.0], [1.0, 0.0, 0.5, 2.0]),
        (F.adjust_hue, [NAN, 0.7, -INF, 0.1], [0.0, 0.5, -0.5, 0.1]),
        (F.posterize, [NAN, 9.4, -1.0, 3.2], [8.0, 8.0, 0.0, 3.0]),
        (lambda img, s, backend: F.gaussian_blur(img, 3, s, backend=backend), [NAN, -1.0, 0.0, 0.8], [1e-6, 1e-6, 1e-6, 0.8]),
    ]
    for fn, bad, good in cases:
        got = fn(x, torch.tensor(bad, dtype=torch.float64), backend=backend)
        want = fn(x, torch.tensor(good, dtype=torch.float64), backend=backend)
        assert torch.equal(got, want), fn


def test_float_images_are_used_as_given(device_rule):
    """No [0, 1] check of a float batch on a device (torchvision does none): 1.0000001 after a resize is used as given."""
    x = torch.full((2, 3, 4, 4), 1.0000001)
    assert torch.equal(F.adjust_brightness(x, 1.0, backend="torch"), torch.ones_like(x))  # the op's clamp
    out = F.to_dtype(x, torch.uint8, scale=True, backend="torch")
    assert out.dtype == torch.uint8 and int(out.max()) == 255


def test_cross_argument_rules(device_rule):
    x = torch.randint(0, 256, (2, 3, 12, 12), dtype=torch.uint8)
    assert torch.equal(F.multiplicative_noise(x, torch.tensor([1.2, 0.9]), torch.tensor([0.8, 1.1]), key=torch.tensor([1, 2])),
                       F.multiplicative_noise(x, torch.tensor([1.2, 0.9]), torch.tensor([1.2, 1.1]), key=torch.tensor([1, 2])))  # fmt: skip
    assert torch.equal(F.downscale(x, torch.tensor([0.0, 0.5])), F.downscale(x, torch.tensor([1e-6, 0.5])))


def test_no_device_assert_on_fake_cuda():
    """Invalid values on (fake) CUDA tensors: no ``aten._assert_async`` and no host read."""
    from fake_cuda import fake_cuda

    with fake_cuda() as log:
        x = torch.empty(4, 3, 16, 16, device="cuda")
        bad = torch.full((4,), NAN, dtype=torch.float64, device="cuda")
        F.adjust_brightness(x, bad)
        F.gaussian_blur(x, 3, bad)
        F.affine(x, bad, [0.0, 0.0], 1.0, [0.0, 0.0])
        F.multiplicative_noise(x, bad, bad, key=torch.zeros(4, dtype=torch.int64, device="cuda"))
    assert "aten._assert_async.msg" not in log.ops and "aten._assert_async.default" not in log.ops
    assert log.device_to_host == []


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_nan_magnitudes_leave_their_sample_unchanged(device_rule, dtype):
    """NaN is the op's identity also where the range holds none (solarize: no threshold inverts nothing) and for
    two-value ops (multiplicative noise, blur)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (3, 3, 9, 11), generator=g, dtype=torch.uint8)
    x = x if dtype == torch.uint8 else x.float() / 255.0
    nan = torch.tensor([NAN, NAN, NAN], dtype=torch.float64)
    key = torch.tensor([1, 2, 3])
    assert torch.equal(F.solarize(x, nan, backend="torch"), x)
    assert torch.equal(F.multiplicative_noise(x, nan, nan, key=key, backend="torch"), x)
    assert torch.equal(F.gaussian_blur(x, 3, nan, backend="torch"), x)
    half = torch.tensor([NAN, 100.0 if dtype == torch.uint8 else 0.4, NAN], dtype=torch.float64)
    got = F.solarize(x, half, backend="torch")
    assert torch.equal(got[0], x[0]) and torch.equal(got[2], x[2]) and not torch.equal(got[1], x[1])
