"""Bi-level training: the model learns from augmented batches, the augmentation from the validation loss.

One meta step (every ``meta_every``-th call of :meth:`MetaTrainer.step`):

1. ``x', w = augment(x)``; the weighted training loss ``L = mean(w_i l(f(x'_i; theta), y_i))``;
2. ``unroll`` inner SGD steps kept differentiable (``torch.func.functional_call``):
   ``theta_{u+1} = theta_u - lr grad_theta L(theta_u)`` (``create_graph=True``);
3. the outer loss ``L_val(theta_U)`` on a clean validation batch, plus the magnitude regulariser, back to the
   augmentation's logits and magnitudes (their optimizer steps; magnitudes are projected into [0, 1]);
4. the model's own optimizer steps with the gradient of step 1 at ``theta_0`` (computed once, shared with the inner
   step): a meta step costs one extra validation forward and the backward through the unrolled step, no second
   training forward.

Other steps are plain training steps on augmented batches (the augmentation's parameters untouched). Nothing lives
across steps but the model, the augmentation and their optimizers: every graph is dropped when a step returns.
Batch-norm statistics move once per step (the training forward); the unrolled forwards use copies.

The regulariser. With a one-step unroll the outer gradient only sees how one augmented step changes the validation
loss now; a stronger augmentation almost always makes that step less aligned with the clean validation gradient, so
a magnitude drifts to 0, and at 0 the op is a no-op whose probability no longer learns anything (measured on a task
where rotation hurts, oriented bars with an unrotated validation set, 3 seeds x 300 steps: the rotation magnitude
reaches exactly 0 in every seed without the regulariser; with the default 0.01 its minimum is 0.14-0.21 and the
rotation's probability falls from 0.5 to 0.22-0.45 instead). ``magnitude_reg`` adds
``magnitude_reg * mean_k (m_k - target_k)^2`` to the outer loss, the target being ``magnitude_target`` or, by default,
each op's magnitude when the trainer was made (a prior at the start, so an op nobody draws stays where it began): a
pull of strength ``2 magnitude_reg (m - target) / K``, which the validation gradient must beat to move a magnitude:
it settles where the two balance instead of at 0, and an op that hurts loses probability.
``tests/test_learn.py`` has the bars task with and without it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as nnf
from torch.func import functional_call

from fastaug.learn.augment import DifferentiableAugment, _number

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, targets) -> per-sample losses [B]


def _per_sample_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nnf.cross_entropy(outputs, targets, reduction="none")


class MetaTrainer:
    """Train ``model`` with ``optimizer`` on batches augmented by ``augment``, and ``augment`` with
    ``aug_optimizer`` by the bi-level gradient (see the module docstring).

    ``loss``: per-sample loss ``(outputs, targets) -> [B]`` (default cross entropy); ``unroll``: inner steps;
    ``meta_every``: a meta step every that many calls (0: never, plain training on augmented batches);
    ``inner_lr``: the inner step's learning rate (None: ``optimizer``'s current first-group lr);
    ``magnitude_reg`` / ``magnitude_target``: the regulariser (target None: the initial magnitudes);
    ``history_every``: record the augmentation's probabilities and magnitudes every that many meta steps
    (:attr:`history`, for :func:`fastaug.learn.plot_history`).
    """

    def __init__(self, model: torch.nn.Module, augment: DifferentiableAugment, optimizer: torch.optim.Optimizer,
                 aug_optimizer: torch.optim.Optimizer, *, loss: Loss | None = None, unroll: int = 1, meta_every: int = 1,
                 inner_lr: float | None = None, magnitude_reg: float = 0.01, magnitude_target: float | None = None,
                 history_every: int = 1, backend: str | None = None):  # fmt: skip
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(augment, DifferentiableAugment):
            raise TypeError(f"augment must be a fastaug.learn.DifferentiableAugment, got {type(augment).__name__}")
        for name, opt in (("optimizer", optimizer), ("aug_optimizer", aug_optimizer)):
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(f"{name} must be a torch.optim.Optimizer, got {type(opt).__name__}")
        for name, v, lo in (("unroll", unroll, 1), ("meta_every", meta_every, 0), ("history_every", history_every, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        self.model, self.augment = model, augment
        self.optimizer, self.aug_optimizer = optimizer, aug_optimizer
        self.loss = loss or _per_sample_cross_entropy
        self.unroll, self.meta_every, self.history_every = unroll, meta_every, history_every
        self.inner_lr = None if inner_lr is None else _number(inner_lr, "inner_lr", 0.0, lo_open=True)
        self.magnitude_reg = _number(magnitude_reg, "magnitude_reg", 0.0)
        self.magnitude_target = None if magnitude_target is None else _number(magnitude_target, "magnitude_target", 0.0, 1.0)
        start = augment.magnitudes.detach().clone()
        self._target = start if magnitude_target is None else torch.full_like(start, self.magnitude_target)
        self.backend = backend
        self.steps = 0
        self.meta_steps = 0
        self.history: list[dict] = []

    # -- pieces -------------------------------------------------------------------------------------
    def regulariser(self) -> torch.Tensor:
        """``magnitude_reg * mean_k (m_k - target_k)^2`` (target: ``magnitude_target``, or each op's initial magnitude)."""
        m = self.augment.magnitudes
        return self.magnitude_reg * torch.mean((m - self._target.to(m.device)) ** 2)

    def _lr(self) -> float:
        return self.inner_lr if self.inner_lr is not None else float(self.optimizer.param_groups[0]["lr"])

    def _check(self, x: torch.Tensor, y: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"{name} images must be a [B,C,H,W] tensor, got {getattr(x, 'shape', type(x).__name__)}")
        if not isinstance(y, torch.Tensor) or y.shape[:1] != x.shape[:1]:
            raise ValueError(f"{name} targets must be a tensor with one entry per image ({x.shape[0]}), got {getattr(y, 'shape', y)}")

    def hypergradient(self, x, y, val_x, val_y, *, indices=None, epoch=0) -> tuple[dict, list[torch.Tensor]]:
        """One meta step's gradients without applying them: ``({"loss", "val_loss"}, model grads at theta_0)``; the
        augmentation's parameters get theirs in ``.grad`` (accumulated, like ``backward``)."""
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        buffers = dict(self.model.named_buffers())
        xa, w = self.augment(x, indices=indices, epoch=epoch, backend=self.backend)
        losses = self.loss(functional_call(self.model, (params, buffers), (xa,)), y)
        loss = torch.mean(w * losses)
        lr = self._lr()
        fast, first = params, None
        for u in range(self.unroll):
            if u > 0:  # later inner steps: the same augmented batch, the buffers copied
                copies = {n: b.clone() for n, b in buffers.items()}
                loss = torch.mean(w * self.loss(functional_call(self.model, (fast, copies), (xa,)), y))
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
            if first is None:
                first = [g.detach() for g in grads]
            fast = {n: p - lr * g for (n, p), g in zip(fast.items(), grads, strict=True)}
        copies = {n: b.clone() for n, b in buffers.items()}
        val_loss = torch.mean(self.loss(functional_call(self.model, (fast, copies), (val_x,)), val_y))
        outer = val_loss + self.regulariser()
        aug_params = [self.augment.logits, self.augment.magnitudes]
        aug_grads = torch.autograd.grad(outer, aug_params, allow_unused=True)
        for p, g in zip(aug_params, aug_grads, strict=True):
            g = torch.zeros_like(p) if g is None else g
            p.grad = g if p.grad is None else p.grad + g
        return {"loss": float(loss.detach()), "val_loss": float(val_loss.detach())}, first

    # -- the step -----------------------------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor, val_x: torch.Tensor | None = None, val_y: torch.Tensor | None = None, *,
             indices: torch.Tensor | None = None, epoch: int = 0) -> dict:  # fmt: skip
        """One training step on ``(x, y)``; a meta step when it is due (then ``val_x, val_y`` are needed).
        Returns ``{"loss", "meta"}`` (and ``"val_loss"`` after a meta step)."""
        self._check(x, y, "training")
        self.model.train()
        meta = self.meta_every > 0 and self.steps % self.meta_every == 0
        self.steps += 1
        if not meta:
            with torch.no_grad():
                xa, _ = self.augment(x, indices=indices, epoch=epoch, backend=self.backend)
            loss = torch.mean(self.loss(self.model(xa), y))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            return {"loss": float(loss.detach()), "meta": False}
        if val_x is None or val_y is None:
            raise ValueError("a meta step needs val_x and val_y (a clean validation batch)")
        self._check(val_x, val_y, "validation")
        self.aug_optimizer.zero_grad(set_to_none=True)
        out, grads = self.hypergradient(x, y, val_x, val_y, indices=indices, epoch=epoch)
        self.aug_optimizer.step()
        self.augment.project_()
        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip((p for p in self.model.parameters() if p.requires_grad), grads, strict=True):
            p.grad = g
        self.optimizer.step()
        self.meta_steps += 1
        if (self.meta_steps - 1) % self.history_every == 0:
            self.history.append({"step": self.steps, **self.augment.summary()})
        return {**out, "meta": True}
