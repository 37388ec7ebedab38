"""RandAugment, TrivialAugmentWide and AutoAugment as per-sample policies.

Every sample draws its own ops, magnitude bins and signs from (seed, epoch, sample index), with
torchvision v2's op spaces, magnitude bins, sign rule and sub-policies. A policy is both a
:class:`~fastaug.transforms.Transform` (use it inside :class:`~fastaug.Compose`) and a
``torch.nn.Module`` (call it on a batch). Each op slot compiles to one per-sample color-op position
plus geometric calls with ``applied`` masks, so a whole batch runs as one Plan, without a loop over
samples. All geometric ops of a sample compose into one resampling that runs first (the documented
difference from sequential torchvision).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from fastaug.compose import Compose
from fastaug.constants import constant
from fastaug.policies.ops import (
    AUTO_AUGMENT_SPACE,
    RAND_AUGMENT_SPACE,
    TRIVIAL_AUGMENT_WIDE_SPACE,
    PolicyOp,
    SpaceTables,
    build_tables,
    signed_magnitude,
    slots_calls,
)
from fastaug.transforms import Context, Transform
from fastaug.validation import fill_values
from fastaug.validation import interpolation as check_interpolation


@dataclass
class PolicyDraw:
    """A batch's draws: per sample and op slot, the op (index into ``space``), its magnitude bin, the
    signed magnitude (0 for ops without one) and whether it applies (AutoAugment's probabilities)."""

    space: tuple[str, ...]
    op: torch.Tensor  # [B,S] int64
    bin: torch.Tensor  # [B,S] int64
    magnitude: torch.Tensor  # [B,S] float64
    applied: torch.Tensor  # [B,S] bool
    subpolicy: torch.Tensor | None = None  # [B] int64 (AutoAugment)


def _int(value, name: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return int(value)


def _check_fill(fill):
    if fill is None:
        return fill
    if isinstance(fill, numbers.Real) and not isinstance(fill, bool):
        fill_values(fill, 1, 1, "cpu")  # ValueError naming fill for NaN / inf
        return fill
    if isinstance(fill, (list, tuple)) and fill and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in fill):
        fill_values(fill, 1, len(fill), "cpu")
        return list(fill)
    raise TypeError(f"fill must be None, a number or one number per channel, got {fill!r}")


def _pick(u: torch.Tensor, n: int) -> torch.Tensor:
    """Uniform integer in [0, n) from uniforms in [0, 1): the product truncated (``rng``'s uniforms have 24 bits, so
    u * n is exact and below n for any n < 2**29; the same integers as floor)."""
    return (u * n).to(torch.int64)


def module_pipeline(policy, backend: str | None) -> Compose:
    """The Compose that runs ``policy`` called as a module: one per (seed, backend), kept with the policy's tables (so
    its calls after the first draw all their parameters in one launch, and a compiled step reuses its graph)."""
    key = ("module form", policy.seed, backend or "auto")
    if key not in policy._tables:
        policy._tables[key] = Compose([policy], seed=policy.seed, backend=backend or "auto")
    return policy._tables[key]


class _Policy(Transform, torch.nn.Module):
    """Shared machinery: op-space tables, calls from draws, and the module form."""

    space: tuple[PolicyOp, ...] = ()
    num_slots = 1

    def __init__(self, interpolation, fill, seed: int):
        torch.nn.Module.__init__(self)
        name = getattr(interpolation, "value", interpolation)
        self._bilinear = check_interpolation(name)
        self.interpolation = name
        self.fill = _check_fill(fill)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = seed
        self._tables: dict = {}

    # -- drawing ------------------------------------------------------------------------------------
    def tables(self, ctx: Context, num_bins: int) -> SpaceTables:
        cv = ctx.canvas
        key = (num_bins, cv.h, cv.w, ctx.uint8, str(cv.device))
        if key not in self._tables:
            self._tables[key] = build_tables(self.space, num_bins, cv.h, cv.w, 255.0 if ctx.uint8 else 1.0, cv.device)
        return self._tables[key]

    def _fill_values(self, ctx: Context) -> torch.Tensor | None:
        """The fill as [B,C] (cached per device and channel count: no host-to-device copy per call)."""
        if self.fill is None:
            return None
        cv = ctx.canvas
        key = ("fill", repr(self.fill), cv.c, str(cv.device))
        if key not in self._tables:
            self._tables[key] = fill_values(self.fill, 1, cv.c, cv.device)
        return self._tables[key].expand(cv.b, cv.c)

    def draw(self, ctx: Context) -> PolicyDraw:
        """Per-sample ops and magnitudes for a batch (parameters only)."""
        raise NotImplementedError

    def slot_space(self, slot: int) -> tuple[PolicyOp, ...]:
        """The ops that op slot ``slot`` may hold (static: decides the calls and the compiled stages)."""
        return self.space

    def calls(self, ctx: Context):
        cv = ctx.canvas
        if cv.c not in (1, 3):
            raise ValueError(f"{type(self).__name__} needs images with 1 or 3 channels, got {cv.c}")
        d = self.draw(ctx)
        tables = self.tables(ctx, self._num_bins())
        fill = self._fill_values(ctx)
        statics = [self.slot_space(s) for s in range(d.op.shape[1])]
        return slots_calls(cv, tables, d.op, d.magnitude, d.applied, statics, self.interpolation, self._bilinear, self.fill, fill)

    def _num_bins(self) -> int:
        return self.num_magnitude_bins

    # -- module form --------------------------------------------------------------------------------
    def forward(
        self,
        images: torch.Tensor,
        *,
        indices: torch.Tensor | None = None,
        epoch: int = 0,
        return_record: bool = False,
        backend: str | None = None,
    ):
        """Augment a batch [B,C,H,W] (uint8 or float in [0, 1]); draws depend on (seed, epoch, indices)."""
        return module_pipeline(self, backend)(images, indices=indices, epoch=epoch, return_record=return_record)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_tables"] = {}  # device tensors are rebuilt on demand
        return state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._repr_args)
        return f"{type(self).__name__}({args})"


class RandAugment(_Policy):
    """RandAugment (torchvision v2's op space): ``num_ops`` ops drawn uniformly per sample, each at bin
    ``magnitude`` of ``num_magnitude_bins``, with a random sign per sample and op for signed ops.

    ``fill``: None (zero padding), a number or one value per channel, in the image's value range.
    ``seed`` keys the module form's draws; inside a Compose the Compose's seed does.
    """

    space = RAND_AUGMENT_SPACE
    _repr_args = ("num_ops", "magnitude", "num_magnitude_bins", "interpolation", "fill", "seed")

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        interpolation: str = "nearest",
        fill=None,
        seed: int = 0,
    ):
        super().__init__(interpolation, fill, seed)
        self.num_ops = _int(num_ops, "num_ops", 0)
        self.num_magnitude_bins = _int(num_magnitude_bins, "num_magnitude_bins", 2)
        self.magnitude = _int(magnitude, "magnitude", 0, self.num_magnitude_bins - 1)

    def draw(self, ctx: Context) -> PolicyDraw:
        b, n = ctx.canvas.b, self.num_ops
        tables = self.tables(ctx, self.num_magnitude_bins)
        u = ctx.uniform(2 * n).view(b, n, 2)
        op = _pick(u[..., 0], len(self.space))
        bins = constant(self.magnitude, torch.int64, op.device).expand_as(op)  # cached constants' views: no op
        mag = signed_magnitude(tables, op, bins, u[..., 1])
        return PolicyDraw(tuple(o.name for o in self.space), op, bins, mag, constant(True, torch.bool, op.device).expand_as(op))


class TrivialAugmentWide(_Policy):
    """TrivialAugmentWide: one op per sample, drawn uniformly with a uniform magnitude bin and a random
    sign for signed ops (torchvision v2's wide op space)."""

    space = TRIVIAL_AUGMENT_WIDE_SPACE
    _repr_args = ("num_magnitude_bins", "interpolation", "fill", "seed")

    def __init__(self, num_magnitude_bins: int = 31, interpolation: str = "nearest", fill=None, seed: int = 0):
        super().__init__(interpolation, fill, seed)
        self.num_magnitude_bins = _int(num_magnitude_bins, "num_magnitude_bins", 2)

    def draw(self, ctx: Context) -> PolicyDraw:
        tables = self.tables(ctx, self.num_magnitude_bins)
        u = ctx.uniform(3)
        op = _pick(u[:, 0:1], len(self.space))
        bins = _pick(u[:, 1:2], self.num_magnitude_bins)
        mag = signed_magnitude(tables, op, bins, u[:, 2:3])
        return PolicyDraw(tuple(o.name for o in self.space), op, bins, mag, constant(True, torch.bool, op.device).expand_as(op))


# AutoAugment's published sub-policies: "op probability [magnitude bin of 10]", two ops per line.
_SUBPOLICIES = {
    "imagenet": """
        Posterize .4 8, Rotate .6 9 / Solarize .6 5, AutoContrast .6 / Equalize .8, Equalize .6
        Posterize .6 7, Posterize .6 6 / Equalize .4, Solarize .2 4 / Equalize .4, Rotate .8 8
        Solarize .6 3, Equalize .6 / Posterize .8 5, Equalize 1 / Rotate .2 3, Solarize .6 8
        Equalize .6, Posterize .4 6 / Rotate .8 8, Color .4 0 / Rotate .4 9, Equalize .6
        Equalize 0, Equalize .8 / Invert .6, Equalize 1 / Color .6 4, Contrast 1 8
        Rotate .8 8, Color 1 2 / Color .8 8, Solarize .8 7 / Sharpness .4 7, Invert .6
        ShearX .6 5, Equalize 1 / Color .4 0, Equalize .6 / Equalize .4, Solarize .2 4
        Solarize .6 5, AutoContrast .6 / Invert .6, Equalize 1 / Color .6 4, Contrast 1 8
        Equalize .8, Equalize .6""",
    "cifar10": """
        Invert .1, Contrast .2 6 / Rotate .7 2, TranslateX .3 9 / Sharpness .8 1, Sharpness .9 3
        ShearY .5 8, TranslateY .7 9 / AutoContrast .5, Equalize .9 / ShearY .2 7, Posterize .3 7
        Color .4 3, Brightness .6 7 / Sharpness .3 9, Brightness .7 9 / Equalize .6, Equalize .5
        Contrast .6 7, Sharpness .6 5 / Color .7 7, TranslateX .5 8 / Equalize .3, AutoContrast .4
        TranslateY .4 3, Sharpness .2 6 / Brightness .9 6, Color .2 8 / Solarize .5 2, Invert 0
        Equalize .2, AutoContrast .6 / Equalize .2, Equalize .6 / Color .9 9, Equalize .6
        AutoContrast .8, Solarize .2 8 / Brightness .1 3, Color .7 0 / Solarize .4 5, AutoContrast .9
        TranslateY .9 9, TranslateY .7 9 / AutoContrast .9, Solarize .8 3 / Equalize .8, Invert .1
        TranslateY .7 9, AutoContrast .9""",
    "svhn": """
        ShearX .9 4, Invert .2 / ShearY .9 8, Invert .7 / Equalize .6, Solarize .6 6
        Invert .9, Equalize .6 / Equalize .6, Rotate .9 3 / ShearX .9 4, AutoContrast .8
        ShearY .9 8, Invert .4 / ShearY .9 5, Solarize .2 6 / Invert .9, AutoContrast .8
        Equalize .6, Rotate .9 3 / ShearX .9 4, Solarize .3 3 / ShearY .8 8, Invert .7
        Equalize .9, TranslateY .6 6 / Invert .9, Equalize .6 / Contrast .3 3, Rotate .8 4
        Invert .8, TranslateY 0 2 / ShearY .7 6, Solarize .4 8 / Invert .6, Rotate .8 4
        ShearY .3 7, TranslateX .9 3 / ShearX .1 6, Invert .6 / Solarize .7 2, TranslateY .6 7
        ShearY .8 4, Invert .8 / ShearX .7 9, TranslateY .8 3 / ShearY .8 5, AutoContrast .7
        ShearX .7 2, Invert .1""",
}


def subpolicies(policy: str) -> list[tuple[tuple[str, float, int | None], ...]]:
    """AutoAugment's sub-policies for ``policy`` as ((op, probability, magnitude bin or None), ...)."""
    out = []
    for text in _SUBPOLICIES[policy].replace("\n", " / ").split("/"):
        if not text.strip():
            continue
        entries = []
        for part in text.split(","):
            fields = part.split()
            entries.append((fields[0], float(fields[1]), int(fields[2]) if len(fields) > 2 else None))
        out.append(tuple(entries))
    return out


class AutoAugment(_Policy):
    """AutoAugment: per sample, one of the policy's 25 sub-policies drawn uniformly; each of its two ops
    applies with its probability at its fixed magnitude bin (of 10), with a random sign for signed ops.

    ``policy``: "imagenet", "cifar10" or "svhn" (or torchvision's ``AutoAugmentPolicy``).
    """

    space = AUTO_AUGMENT_SPACE
    num_bins = 10
    _repr_args = ("policy", "interpolation", "fill", "seed")

    def __init__(self, policy: str = "imagenet", interpolation: str = "nearest", fill=None, seed: int = 0):
        super().__init__(interpolation, fill, seed)
        name = getattr(policy, "value", policy)
        if not isinstance(name, str) or name.lower() not in _SUBPOLICIES:
            raise ValueError(f"policy must be one of {sorted(_SUBPOLICIES)}, got {policy!r}")
        self.policy = name.lower()
        names = [o.name for o in self.space]
        subs = subpolicies(self.policy)
        self._sub_op = [[names.index(op) for op, _, _ in sub] for sub in subs]
        self._sub_bin = [[0 if m is None else m for _, _, m in sub] for sub in subs]
        self._sub_prob = [[p for _, p, _ in sub] for sub in subs]
        self.num_slots = len(subs[0])

    def _num_bins(self) -> int:
        return self.num_bins

    def slot_space(self, slot: int) -> tuple[PolicyOp, ...]:
        return tuple(self.space[row[slot]] for row in self._sub_op)

    def _sub_tables(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = ("subpolicies", str(device))
        if key not in self._tables:
            self._tables[key] = (
                torch.tensor(self._sub_op, dtype=torch.int64).to(device),
                torch.tensor(self._sub_bin, dtype=torch.int64).to(device),
                torch.tensor(self._sub_prob, dtype=torch.float64).to(device),
            )
        return self._tables[key]

    def draw(self, ctx: Context) -> PolicyDraw:
        b, s = ctx.canvas.b, self.num_slots
        tables = self.tables(ctx, self.num_bins)
        sub_op, sub_bin, sub_prob = self._sub_tables(ctx.canvas.device)
        u = ctx.uniform(1 + 2 * s)
        sub = _pick(u[:, 0], len(self._sub_op))
        op, bins, prob = sub_op[sub], sub_bin[sub], sub_prob[sub]  # [B,S]
        coin, sign = u[:, 1:].view(b, s, 2).unbind(-1)
        applied = coin < prob
        mag = signed_magnitude(tables, op, bins, sign)
        return PolicyDraw(tuple(o.name for o in self.space), op, bins, mag, applied, sub)
