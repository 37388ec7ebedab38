"""A whole meta-training run on arrays: the policy-search child's recipe with the augmentation learned alongside.

Like :func:`fastaug.search.child.train_child` (the same default CNN, AdamW with a one-cycle learning rate, inputs
standardised by the training set's mean and std, one run a pure function of its seed), except that the batches go
through a :class:`~fastaug.learn.DifferentiableAugment` trained by a :class:`~fastaug.learn.MetaTrainer` on batches of
the validation split.
"""

from __future__ import annotations

import time

import torch

from fastaug.learn.augment import DifferentiableAugment
from fastaug.learn.meta import MetaTrainer
from fastaug.search.child import ModelFactory, _accuracy, default_model


class Standardize(torch.nn.Module):
    """``(x - mean) / std`` with fixed numbers (the model's input convention, after the augmentation)."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def meta_train(
    images: torch.Tensor,
    labels: torch.Tensor,
    train: torch.Tensor,
    validation: torch.Tensor,
    augment: DifferentiableAugment | None,
    *,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    lr: float = 1e-2,
    aug_lr: float = 0.05,
    meta_every: int = 1,
    magnitude_reg: float = 0.01,
    model: ModelFactory | None = None,
    evaluate: torch.Tensor | None = None,
    on_epoch=None,
) -> tuple[torch.nn.Module, MetaTrainer | None, list[dict]]:
    """Train a fresh model on ``images[train]`` (uint8 [N,C,H,W]); ``augment`` None trains without augmentation,
    ``meta_every`` 0 with ``augment`` fixed. Meta steps draw a validation batch of ``batch_size`` from
    ``images[validation]``. Returns ``(model, trainer, history)``: per epoch the loss, the seconds it took, and the clean
    accuracy on ``images[evaluate]`` when given. ``on_epoch(epoch, record)`` is called after each epoch."""
    x = images.to(torch.float32) / 255.0
    y = labels
    classes = int(labels.max()) + 1
    torch.manual_seed(seed)
    xt = x[train]
    net = torch.nn.Sequential(Standardize(float(xt.mean()), float(xt.std()) or 1.0),
                              (model or default_model)(x.shape[1], x.shape[-1], classes))  # fmt: skip
    steps = epochs * -(-train.numel() // batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    trainer = None
    if augment is not None:
        aug_opt = torch.optim.Adam(augment.parameters(), lr=aug_lr)
        trainer = MetaTrainer(net, augment, opt, aug_opt, meta_every=meta_every, magnitude_reg=magnitude_reg)
    order = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        start = time.perf_counter()
        net.train()
        perm = train[torch.randperm(train.numel(), generator=order)]
        total = 0.0
        for i in range(0, perm.numel(), batch_size):
            idx = perm[i : i + batch_size]
            if trainer is None:
                loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                value = float(loss.detach())
            else:
                v = validation[torch.randint(0, validation.numel(), (batch_size,), generator=order)]
                value = trainer.step(x[idx], y[idx], x[v], y[v], indices=idx, epoch=epoch)["loss"]
            sched.step()
            total += value * idx.numel()
        record = {"epoch": epoch, "loss": total / train.numel(), "seconds": time.perf_counter() - start}
        if evaluate is not None:
            record["accuracy"] = _accuracy(net, images[evaluate], y[evaluate], (0.0, 1.0))  # uint8 / 255: the model standardises
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
    return net, trainer, history
