"""pytest-benchmark suite of the single functional ops on the numba backend (small batch).

Not a test suite (CI does not collect ``benchmarks/``): run it explicitly, e.g.
``pytest benchmarks/test_single_ops.py --benchmark-columns=median,iqr,ops --benchmark-sort=name``.
Every op gets per-sample magnitudes (a ``[B]`` tensor), on a uint8 batch of B=16, 3x224x224.
"""

from __future__ import annotations

import pytest
import torch

from fastaug import functional as F

pytest.importorskip("pytest_benchmark")

B, C, H, W = 16, 3, 224, 224
CORNERS = [[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]]


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return torch.randint(0, 256, (B, C, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _u(lo: float, hi: float, seed: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(B, generator=torch.Generator().manual_seed(seed))


OPS = {
    "adjust_brightness": lambda x: F.adjust_brightness(x, _u(0.6, 1.4, 1), backend="numba"),
    "adjust_contrast": lambda x: F.adjust_contrast(x, _u(0.6, 1.4, 2), backend="numba"),
    "adjust_saturation": lambda x: F.adjust_saturation(x, _u(0.6, 1.4, 3), backend="numba"),
    "adjust_hue": lambda x: F.adjust_hue(x, _u(-0.1, 0.1, 4), backend="numba"),
    "adjust_gamma": lambda x: F.adjust_gamma(x, _u(0.7, 1.5, 5), backend="numba"),
    "adjust_sharpness": lambda x: F.adjust_sharpness(x, _u(0.0, 2.0, 6), backend="numba"),
    "rgb_to_grayscale": lambda x: F.rgb_to_grayscale(x, 3, backend="numba"),
    "invert": lambda x: F.invert(x, backend="numba"),
    "posterize": lambda x: F.posterize(x, 4, backend="numba"),
    "solarize": lambda x: F.solarize(x, _u(64, 192, 7).round(), backend="numba"),
    "equalize": lambda x: F.equalize(x, backend="numba"),
    "autocontrast": lambda x: F.autocontrast(x, backend="numba"),
    "affine_bilinear": lambda x: F.affine(x, _u(-30, 30, 8), [10, -5], 1.0, [5.0, 0.0], "bilinear", backend="numba"),
    "rotate_nearest": lambda x: F.rotate(x, _u(-30, 30, 9), backend="numba"),
    "horizontal_flip": lambda x: F.horizontal_flip(x, backend="numba"),
    "resized_crop": lambda x: F.resized_crop(x, 10, 20, 150, 160, [224, 224], backend="numba"),
    "perspective": lambda x: F.perspective(x, CORNERS, [[5, 3], [220, 8], [210, 215], [2, 220]], backend="numba"),
    "normalize": lambda x: F.normalize(x.float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], backend="numba"),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op(benchmark, batch: torch.Tensor, name: str) -> None:
    fn = OPS[name]
    fn(batch)  # compile / warm up outside the timing
    out = benchmark(fn, batch)
    assert out.shape[0] == B
