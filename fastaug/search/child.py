"""The child model of a policy search: a small CNN trained from scratch per trial, augmented batch-wise by fastaug.

One training is a pure function of (data, splits, policy, seed): the model's initial weights, the batch order and
the augmentation draws (keyed by (seed, epoch, dataset index)) all come from ``seed``, and it runs on one torch
thread, so a trial gives the same history in this process, in a worker process or in a Ray task.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as nnf

from fastaug.compose import Compose
from fastaug.transforms import Transform

ModelFactory = Callable[[int, int, int], torch.nn.Module]  # (channels, size, classes) -> model


def default_model(channels: int, size: int, classes: int) -> torch.nn.Module:
    """Three conv blocks (16, 32, 64 channels, batch norm, ReLU; stride 2 while the map is larger than 4 px), global
    average pooling and a linear classifier: ~24 k parameters, sized for small images (strided convolutions: on one
    CPU thread torch's max pooling costs more than the convolutions here)."""
    layers: list[torch.nn.Module] = []
    c, s = channels, size
    for width in (16, 32, 64):
        stride = 2 if s > 4 else 1
        layers += [torch.nn.Conv2d(c, width, 3, stride=stride, padding=1, bias=False), torch.nn.BatchNorm2d(width),
                   torch.nn.ReLU()]  # fmt: skip
        c, s = width, -(-s // stride)
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(c, classes)]
    return torch.nn.Sequential(*layers)


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, scale, batch: int = 512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += int((model(_input(x[i : i + batch], scale)).argmax(1) == y[i : i + batch]).sum())
    return correct / max(1, x.shape[0])


def _input(x: torch.Tensor, scale) -> torch.Tensor:
    mean, std = scale
    return (x.float() * (1.0 / 255.0) - mean) / std


def train_child(
    images: torch.Tensor,
    labels: torch.Tensor,
    train: torch.Tensor,
    validation: torch.Tensor,
    policy: Transform | None,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    model: ModelFactory | None = None,
    device: str | torch.device = "cpu",
    lr: float = 1e-2,
) -> list[dict]:
    """Train a fresh model on ``images[train]`` (augmented by ``policy`` per batch, on ``device``) and return its
    history: per epoch the clean accuracy on the training set and on ``images[validation]``, and the mean loss.

    AdamW with a one-cycle learning rate (peak ``lr``); inputs scaled to [0, 1] and standardised by the training
    set's mean and std."""
    dev = torch.device(device)
    x, y = images.to(dev), labels.to(dev)
    tr, va = train.to(dev), validation.to(dev)
    classes = int(labels.max()) + 1
    torch.manual_seed(seed)
    net = (model or default_model)(x.shape[1], x.shape[-1], classes).to(dev)
    xt = x[tr].float() * (1.0 / 255.0)
    scale = (float(xt.mean()), float(xt.std()) or 1.0)
    steps = epochs * -(-tr.numel() // batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    augment = Compose([policy], seed=seed) if policy is not None else None
    order = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        net.train()
        perm = tr[torch.randperm(tr.numel(), generator=order).to(dev)]
        total, count = 0.0, 0
        for i in range(0, perm.numel(), batch_size):
            idx = perm[i : i + batch_size]
            batch = x[idx]
            if augment is not None:
                batch = augment(batch, indices=idx, epoch=epoch)
            loss = nnf.cross_entropy(net(_input(batch, scale)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.numel()
            count += idx.numel()
        history.append({
            "epoch": epoch, "loss": total / max(count, 1),
            "train_accuracy": _accuracy(net, x[tr], y[tr], scale), "val_accuracy": _accuracy(net, x[va], y[va], scale),
        })  # fmt: skip
    return history
