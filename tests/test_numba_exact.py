"""The numba rows that keep the reference's bits exactly (not within a tolerance): HUE and GAUSSIAN_NOISE, whose rows
are written for speed (two loops and two divisions for HUE, an exponent read off float(n) for the noise), checked
bit for bit against the torch reference on rows with ties and on every dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastaug.functional as F


def _rgb_with_ties(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (24, 3, 17, 23), dtype=torch.uint8, generator=g)
    x[0:4, 1] = x[0:4, 0]  # r == g
    x[4:8, 2] = x[4:8, 1]  # g == b
    x[8:12, 2] = x[8:12, 0]  # r == b
    x[12:16, 1:] = x[12:16, :1]  # gray: r == g == b
    x[16:18] = 255
    x[18:20] = 0
    return x


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_hue_row_is_the_reference_bit_for_bit(dtype):
    x = _rgb_with_ties(0)
    img = x if dtype == torch.uint8 else x.to(dtype) / 255
    shifts = torch.tensor([-0.5, 0.5, 0.0, 1e-7, -1e-7, 0.25, -0.25, 1 / 3, -1 / 6, 0.1] * 3)[:24]
    a = F.adjust_hue(img, shifts, backend="torch")
    b = F.adjust_hue(img, shifts, backend="numba")
    assert torch.equal(a, b), (a.double() - b.double()).abs().max()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("clip", [True, False])
def test_gaussian_noise_row_is_the_reference_bit_for_bit(dtype, clip):
    x = _rgb_with_ties(1)
    img = x if dtype == torch.uint8 else x.to(dtype) / 255
    kw = dict(mean=torch.linspace(-0.1, 0.1, 24), sigma=torch.linspace(0.0, 0.3, 24), clip=clip, seed=7, epoch=3)
    a = F.gaussian_noise(img, backend="torch", **kw)
    b = F.gaussian_noise(img, backend="numba", **kw)
    assert torch.equal(a, b), (a.double() - b.double()).abs().max()


def test_exponent_of_float_is_bit_length_minus_one():
    """The noise kernel's ``bit_length(n) - 1`` for the n it sees (1 <= n <= 2**24), read off float32(n)'s exponent."""
    n = np.arange(1, 2**24 + 1, dtype=np.int32)
    e = (n.astype(np.float32).view(np.int32) >> 23) - 127
    assert np.array_equal(e, np.floor(np.log2(n.astype(np.float64))).astype(np.int32))
    assert np.array_equal(1 << e.astype(np.int64), 1 << (np.frexp(n.astype(np.float64))[1].astype(np.int64) - 1))
