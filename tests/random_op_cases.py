"""The random ops' backward cases shared by the numba and triton autograd tests: name -> (fn(x, *mags, backend), mags())."""

from __future__ import annotations

import torch

import fastaug.functional as F


def _u(lo: float, hi: float, *shape) -> torch.Tensor:
    return torch.rand(*shape) * (hi - lo) + lo


def random_op_cases(b: int) -> dict:
    """Each random op after (or without) a differentiable op, with per-sample magnitudes for a batch of ``b``."""
    return {
        "gaussian_noise_clip": (lambda x, m, s, be: F.gaussian_noise(x, m, s, True, seed=1, backend=be),
                                lambda: [_u(-0.1, 0.1, b), _u(0.05, 0.3, b)]),
        "gaussian_noise_free": (lambda x, m, s, be: F.gaussian_noise(x, m, s, False, seed=2, backend=be),
                                lambda: [_u(-0.1, 0.1, b), _u(0.05, 0.3, b)]),
        "pixel_dropout_value": (lambda x, v, be: F.pixel_dropout(x, 0.3, True, v, seed=3, backend=be), lambda: [_u(0, 1, b)]),
        "pixel_dropout_channel_values": (lambda x, f, v, be: F.pixel_dropout(F.adjust_brightness(x, f, backend=be), 0.3, False, v,
                                                                             seed=8, backend=be),
                                         lambda: [_u(0.7, 1.2, b), _u(0, 1, b, 3)]),  # one value per channel (3 channels)
        "salt_and_pepper": (lambda x, f, be: F.salt_and_pepper(F.adjust_brightness(x, f, backend=be), 0.3, 0.5, seed=4,
                                                                backend=be), lambda: [_u(0.7, 1.2, b)]),
        "multiplicative_noise": (lambda x, f, be: F.multiplicative_noise(F.adjust_brightness(x, f, backend=be), 0.6, 1.6, True,
                                                                         seed=5, backend=be), lambda: [_u(0.7, 1.2, b)]),
        "fog_density": (lambda x, d, f, be: F.fog(F.adjust_brightness(x, f, backend=be), d, 0.2, 0.3, seed=6, backend=be),
                        lambda: [_u(0.3, 1, b), _u(0.8, 1.3, b)]),
        "contrast_then_noise": (lambda x, f, s, be: F.gaussian_noise(F.adjust_contrast(x, f, backend=be), 0.0, s, seed=7,
                                                                      backend=be), lambda: [_u(0.5, 1.5, b), _u(0.05, 0.2, b)]),
    }  # fmt: skip
