"""GAMMA on uint8 images: the same bits on the torch reference, numba and Triton (interpreter) for every uint8 value and
a grid of gammas and gains. The power is computed in float64 and rounded to float32 on every backend
(``reference.gamma_pow``); a float32 ``pow`` is within an ulp only (torch's vectorised Sleef or libm by position,
libm powf, libdevice's powf), and ``floor(x * 255.999)`` turned that ulp into a difference of 1."""

from __future__ import annotations

import torch
from interpreted_triton import interpret  # noqa: F401  (first: Triton imported for the interpreter)

# isort: split

from fastaug.kernels import reference

import fastaug.functional as F


def _grid() -> tuple[torch.Tensor, torch.Tensor]:
    """(gamma, gain) per sample: a grid of gammas in [0.05, 5] and the usual ones, with gains 1 and 0.77."""
    gammas = torch.cat([torch.linspace(0.05, 5.0, 97), torch.tensor([0.5, 1.0, 2.0, 1 / 2.2, 2.2, 0.25, 3.0, 1.5])])
    gains = torch.tensor([1.0, 0.77])
    return gammas.repeat(len(gains)), gains.repeat_interleave(len(gammas))


def _every_uint8(b: int) -> torch.Tensor:
    return torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(b, 1, 16, 16).contiguous()


def test_gamma_is_the_same_on_every_backend_for_every_uint8_value():
    gamma, gain = _grid()
    x = _every_uint8(len(gamma))
    ref = F.adjust_gamma(x, gamma, gain, backend="torch")
    v = (x.float() * (1.0 / 255.0)).double()  # the rule, in the test's own words
    y = torch.pow(v, gamma.double().view(-1, 1, 1, 1)).float()
    y = torch.where(gain.view(-1, 1, 1, 1) != 1.0, (y * gain.view(-1, 1, 1, 1)).clamp(0.0, 1.0), y)
    assert torch.equal(ref, torch.floor(y * 255.999).to(torch.uint8))
    for be in ("numba", "triton"):
        got = F.adjust_gamma(x, gamma, gain, backend=be)
        diff = (got.int() - ref.int()).abs()
        assert torch.equal(got, ref), f"{be}: {int((diff > 0).sum())} values differ, at most by {int(diff.max())}"


def test_gamma_in_the_float_domain_is_the_same_on_every_backend():
    """float32 images: the same float32 power everywhere too (it is the power in float64, rounded)."""
    gamma, gain = _grid()
    x = _every_uint8(len(gamma)).float() / 255
    ref = F.adjust_gamma(x, gamma, gain, backend="torch")
    for be in ("numba", "triton"):
        assert torch.equal(F.adjust_gamma(x, gamma, gain, backend=be), ref), be


def test_gamma_pow_is_the_rounded_float64_power():
    """The rule itself: float32 x, a -> float32(float64 x ** float64 a), differentiable; float64 stays float64."""
    x = torch.linspace(0.0, 1.0, 1001)
    a = torch.full_like(x, 0.37, requires_grad=True)
    y = reference.gamma_pow(x, a)
    assert y.dtype == torch.float32
    assert torch.equal(y.detach(), torch.pow(x.double(), a.detach().double()).float())
    y.sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad[1:]).all()
    assert reference.gamma_pow(x.double(), a.detach().double()).dtype == torch.float64
