"""A learnable augmentation: per-op probabilities and magnitudes that receive gradients.

:class:`DifferentiableAugment` holds one logit and one magnitude per op. Each sample draws ``num_ops`` ops (one per
slot, independently) from ``softmax(logits / temperature)`` by inverse CDF on a counter-based uniform of (seed,
epoch, index), so a batch replays exactly; ``Identity`` is a state like the ops, so "how often to augment" is learned
too. Drawn ops run at their op's magnitude ``m`` (normalised to [0, 1]; value ``lo + m (hi - lo)`` of the op's range,
the ranges of :mod:`fastaug.policies.search_ops`), negated with probability 1/2 for signed ops, all in one fused Plan
whose per-sample magnitude tensors carry the gradient back to ``m``.

The draw itself has no gradient, so the probabilities get theirs through the loss: :meth:`~DifferentiableAugment.forward`
returns per-sample weights ``w_i = prod_s p[op_is] / p[op_is].detach()`` (1 in value) that multiply each sample's
training loss (the estimator of the known kornia + ``higher`` implementation): ``d w_i / d logits`` is the score
``d log p[op_i]``, so through the unrolled step a sample whose op helps the validation loss raises its op's
probability. A relaxed estimator (Gumbel-softmax, straight-through) instead needs every op's output for every
sample, K forward and backward passes of the augmentation per step instead of one; ``benchmarks/bench_learn.py``
measures both (the weighting is the one used).

The exported policy (:meth:`~DifferentiableAugment.export`) is a :class:`~fastaug.MarkovPolicy` whose rows all equal
the learned probabilities and whose magnitudes are the learned ones with standard deviation 0: the same distribution
of ops, values and signs, as a fixed policy transform with JSON save / load.
"""

from __future__ import annotations

import math
import numbers

import torch

from fastaug.constants import constant
from fastaug.ops.calls import Call
from fastaug.policies.auto import PolicyDraw, _Policy, module_pipeline
from fastaug.policies.markov import IDENTITY, SPACE, STATES, MarkovPolicy, state_ranges
from fastaug.policies.search_ops import BY_NAME, SEARCH_OPS
from fastaug.policies.sub_policies import search_calls
from fastaug.transforms import Context

# search ops whose output is differentiable in their magnitude (tests/test_learn.py checks every one, and that each
# other op with a magnitude gets no gradient: its value is rounded, drawn from or thresholded)
DIFFERENTIABLE: tuple[str, ...] = (
    "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness",
    "Hue", "Gamma", "GaussianBlur", "GaussianNoise", "Sharpen", "Emboss", "MultiplicativeNoise", "RGBShift", "RGBGain",
    "Fog", "SafeRotate", "ElasticTransform",
)  # fmt: skip
_FUNCTIONS: dict[str, tuple[str, ...]] = {}
for _op in SEARCH_OPS:
    if _op.name in DIFFERENTIABLE:
        _FUNCTIONS.setdefault(_op.function, ())
        _FUNCTIONS[_op.function] += (_op.name,)


def op_names(ops=None, channels: int = 3) -> tuple[str, ...]:
    """The learnable ops: ``ops`` as search-op names (``"Rotate"``, ``"ShearX"``) or functional names (``"rotate"``,
    ``"affine"`` = ShearX, ShearY, TranslateX, TranslateY); None: every differentiable op (RGB-only ones left out when
    ``channels`` is 1)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if ops is None:
        return tuple(n for n in DIFFERENTIABLE if channels == 3 or not BY_NAME[n].rgb)
    if isinstance(ops, str) or not isinstance(ops, (list, tuple)) or not ops:
        raise ValueError(f"ops must be None or a non-empty list of op names, got {ops!r}")
    out: list[str] = []
    for name in ops:
        names = (name,) if name in DIFFERENTIABLE else _FUNCTIONS.get(name)
        if names is None:
            reason = "has no differentiable magnitude" if name in BY_NAME or name in {o.function for o in SEARCH_OPS} else "is unknown"
            raise ValueError(f"ops: {name!r} {reason} (learnable ops: {', '.join(DIFFERENTIABLE)}; or their functional names)")
        for n in names:
            if BY_NAME[n].rgb and channels != 3:
                raise ValueError(f"ops: {n} needs 3 channels (channels={channels})")
            if n not in out:
                out.append(n)
    return tuple(out)


def _number(value, name: str, lo: float, hi: float = math.inf, lo_open: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or float(value) < lo or (lo_open and float(value) == lo) or float(value) > hi:
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise ValueError(f"{name} must be a finite number {bound}" + (f" and <= {hi}" if hi < math.inf else "") + f", got {value!r}")
    return float(value)


class DifferentiableAugment(_Policy):
    """Learnable op probabilities and magnitudes (see the module docstring).

    ``ops``: op names (:func:`op_names`); ``num_ops``: ops per sample (each slot draws independently, Identity
    included); ``temperature``: of the softmax over the logits; ``magnitude``: the initial normalised magnitude of
    every op; ``identity``: initial probability of Identity (the ops share the rest equally); ``channels``: 1 or 3 (the
    images' channels: decides the default ops). Parameters: ``logits`` [1 + K] (Identity first, then ``ops``) and
    ``magnitudes`` [K] (keep them in [0, 1]: :meth:`project_`, which :class:`~fastaug.learn.MetaTrainer` calls after
    every update). Call it on a float batch (uint8 is scaled to [0, 1]) for ``(augmented, weights)``."""

    space = SPACE
    num_magnitude_bins = 2
    _repr_args = ("ops", "num_ops", "temperature", "interpolation", "fill", "seed")

    def __init__(self, ops=None, num_ops: int = 1, temperature: float = 1.0, magnitude: float = 0.5, identity: float | None = None,
                 interpolation: str = "bilinear", fill=None, seed: int = 0, channels: int = 3):  # fmt: skip
        super().__init__(interpolation, fill, seed)
        self.ops = op_names(ops, channels)
        if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 1:
            raise ValueError(f"num_ops must be an int >= 1, got {num_ops!r}")
        self.num_ops = self.num_slots = num_ops
        self.temperature = _number(temperature, "temperature", 0.0, lo_open=True)
        magnitude = _number(magnitude, "magnitude", 0.0, 1.0)
        k = len(self.ops)
        p_id = 1.0 / (k + 1) if identity is None else identity
        if isinstance(p_id, bool) or not isinstance(p_id, numbers.Real) or not 0.0 < float(p_id) < 1.0:
            raise ValueError(f"identity must be a probability in (0, 1), got {identity!r}")
        start = torch.tensor([math.log(p_id)] + [math.log((1.0 - p_id) / k)] * k) * self.temperature
        self.logits = torch.nn.Parameter(start.to(torch.float32))
        self.magnitudes = torch.nn.Parameter(torch.full((k,), float(magnitude)))
        self._state = [STATES.index(IDENTITY)] + [STATES.index(n) for n in self.ops]  # each entry's index in STATES
        self._drawn: torch.Tensor | None = None

    # -- the distribution ---------------------------------------------------------------------------
    def probabilities(self) -> torch.Tensor:
        """[1 + K]: Identity's probability, then each op's (differentiable)."""
        return torch.softmax(self.logits / self.temperature, 0)

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the magnitudes into [0, 1] (a projected gradient step)."""
        self.magnitudes.clamp_(0.0, 1.0)

    def draw(self, ctx: Context) -> PolicyDraw:
        b, s, dev = ctx.canvas.b, self.num_slots, ctx.canvas.device
        key = ("ranges", ctx.canvas.h, ctx.canvas.w, ctx.uint8, str(dev))
        if key not in self._tables:  # built once per image size and device, like MarkovPolicy's tables
            self._tables[key] = state_ranges(self, ctx)
        _, lo, hi, signed = self._tables[key]
        p = self.probabilities().to(dev)
        cdf = torch.cumsum(p.detach().to(torch.float64), 0)
        cdf[-1] = math.inf  # a rounding shortfall at the end still picks the last entry
        u = ctx.uniform(2 * s).view(b, s, 2)
        pick = torch.clamp((cdf <= u[..., :1]).sum(-1), max=len(self.ops))  # [B,S] entries (0: Identity)
        state = constant(self._state, torch.int64, dev)[pick]
        m = torch.cat([torch.zeros(1, device=dev), self.magnitudes.to(dev)]).to(torch.float64)[pick]
        value = lo[state] + m * (hi[state] - lo[state])
        value = torch.where(signed[state] & (u[..., 1] < 0.5), -value, value)
        self._drawn = pick
        return PolicyDraw(STATES, state, torch.zeros_like(state), value, pick > 0)

    def calls(self, ctx: Context) -> list[Call]:
        if ctx.canvas.c not in (1, 3):
            raise ValueError(f"DifferentiableAugment needs images with 1 or 3 channels, got {ctx.canvas.c}")
        d = self.draw(ctx)
        static = [[IDENTITY, *self.ops]] * self.num_slots
        return search_calls(self, ctx, d, static, list(d.op.unbind(1)), list(d.applied.unbind(1)))

    def weights(self) -> torch.Tensor:
        """[B] per-sample loss weights of the last draw: ``prod_s p[op_s] / p[op_s].detach()`` (value 1)."""
        if self._drawn is None:
            raise RuntimeError("weights() needs a batch drawn first (call the module)")
        p = self.probabilities().to(self._drawn.device)[self._drawn]  # [B,S]
        return (p / p.detach()).prod(1)

    # -- module form --------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, *, indices: torch.Tensor | None = None, epoch: int = 0, backend: str | None = None):
        """``(augmented, weights)`` for a batch [B,C,H,W] (float in [0, 1]; uint8 is scaled to float32 first)."""
        if images.dtype == torch.uint8:
            images = images.to(torch.float32) / 255.0
        out = module_pipeline(self, backend)(images, indices=indices, epoch=epoch)
        return out, self.weights()

    def summary(self) -> dict:
        """Plain numbers: ``{"probabilities": {name: p}, "magnitudes": {name: m}}`` (Identity first)."""
        p = self.probabilities().detach().cpu().tolist()
        m = self.magnitudes.detach().cpu().tolist()
        return {"probabilities": dict(zip((IDENTITY, *self.ops), p, strict=True)), "magnitudes": dict(zip(self.ops, m, strict=True))}

    def export(self, seed: int | None = None) -> MarkovPolicy:
        """The learned policy as a fixed :class:`~fastaug.MarkovPolicy` (same op distribution, values and signs; JSON
        with ``to_json`` / ``MarkovPolicy.from_json``)."""
        s = self.summary()
        p = torch.zeros(len(STATES), dtype=torch.float64)
        for name, v in s["probabilities"].items():
            p[STATES.index(name)] = v
        p /= p.sum()
        magnitudes = {}
        for name in STATES[1:]:
            learned = name in s["magnitudes"]
            magnitudes[name] = {"mean": min(1.0, max(0.0, s["magnitudes"][name])) if learned else 0.0, "std": 0.0,
                                "range": [0.0, 1.0], "has_magnitude": BY_NAME[name].magnitude,
                                "probability": float(p[STATES.index(name)]), "occurrences": int(learned)}  # fmt: skip
        return MarkovPolicy(STATES, p, p.expand(len(STATES), -1), magnitudes, length=self.num_ops,
                            interpolation=self.interpolation, fill=self.fill, seed=self.seed if seed is None else seed)  # fmt: skip
