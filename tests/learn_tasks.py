"""Small tasks for the bi-level tests: digits with a rotated validation set, and oriented bars (the label is the
bar's orientation, so rotating a training image moves it towards another class)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf

import fastaug.functional as F
from fastaug.learn import DifferentiableAugment, MetaTrainer
from fastaug.search.child import default_model
from fastaug.search.datasets import packaged


def bars(n: int, size: int, seed: int, classes: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` gray images of one bright bar through a point near the centre, at angle ``label * 180 / classes`` degrees
    (+- 6 degrees), on a dark background with Gaussian noise; float32 [n,1,size,size] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    theta = y.float() * math.pi / classes + (torch.rand(n, generator=g) - 0.5) * 0.2
    c = (torch.rand(n, 2, generator=g) - 0.5) * size * 0.3 + (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    dx, dy = xx - c[:, 0].view(-1, 1, 1), yy - c[:, 1].view(-1, 1, 1)
    dist = (dx * torch.sin(theta).view(-1, 1, 1) - dy * torch.cos(theta).view(-1, 1, 1)).abs()
    img = torch.clamp(1.5 - dist, 0, 1) * 0.8 + 0.1 + 0.05 * torch.randn(n, size, size, generator=g)
    return img.clamp(0, 1).unsqueeze(1), y


def digits(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = packaged("digits")
    return nnf.interpolate(x.float() / 255, size=(size, size), mode="bilinear", antialias=True), y


def rotated_digits(seed: int = 0, size: int = 16):
    """(train x, train y, validation x, validation y): 1,000 upright digits; 400 others rotated by +-30 degrees."""
    x, y = digits(size)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    tr, va = perm[:1000], perm[1000:1400]
    angle = torch.where(torch.rand(len(va), generator=g) < 0.5, -30.0, 30.0)
    return x[tr], y[tr], F.rotate(x[va], angle, interpolation="bilinear"), y[va]


def small_cnn(classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, 2, 1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, classes),
    )  # fmt: skip


def learn_rotation(data, *, steps: int, seed: int, magnitude_reg: float = 0.01, classes: int = 10, batch_norm: bool = False):
    """Meta-train a rotation-only augmentation (start: magnitude 0.5, probability 0.5) with a small CNN (the search's
    child CNN with ``batch_norm``); returns the augmentation and the magnitude after every step."""
    x, y, xv, yv = data
    torch.manual_seed(seed)
    net = default_model(1, x.shape[-1], classes) if batch_norm else small_cnn(classes)
    aug = DifferentiableAugment(ops=["Rotate"], identity=0.5, channels=1, magnitude=0.5)
    trainer = MetaTrainer(net, aug, torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9), torch.optim.Adam(aug.parameters(), lr=0.01),
                          inner_lr=0.05, magnitude_reg=magnitude_reg)  # fmt: skip
    g = torch.Generator().manual_seed(seed + 2)
    trace = []
    for s in range(steps):
        i = torch.randint(0, len(x), (32,), generator=g)
        j = torch.randint(0, len(xv), (64,), generator=g)
        trainer.step(x[i], y[i], xv[j], yv[j], indices=i, epoch=s)
        trace.append(float(aug.magnitudes[0]))
    return aug, trace
