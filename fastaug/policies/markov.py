"""A first-order Markov chain over policy ops, with a magnitude distribution per op, fitted from found policies.

States are ``Identity`` and the search ops (:mod:`fastaug.policies.search_ops`: AutoAugment's ops first, then every
other catalogue op with a magnitude), so a policy found by :class:`fastaug.search.BayesianSearch` fits. A sub-policy
``((op, p, m), ...)`` (``m``: the magnitude normalised to [0, 1] of the op's range, None for ops without one) applies
each op with probability ``p``, so a position holds
``op`` with weight ``p`` and ``Identity`` with weight ``1 - p``. Fitting counts expected transitions: between
consecutive positions ``a -> b`` adds ``w_a * w_b`` for every pair of the two positions' states (``w``: those
weights), the first positions give the initial distribution. A row without any weight (a state that never precedes
another: the last op of every sub-policy it occurs in) takes the initial distribution: every row is a distribution
(``smoothing`` > 0 adds that weight to every entry first). Per op, the magnitude is a normal on ``m`` with the
probabilities as weights (mean and standard deviation, not variance), clipped to [0, 1]; ``probability`` is the mean
``p`` of the op's occurrences. An op that never occurs (reachable only through ``smoothing``) has mean 0 and std 0:
it runs at the start of its range (an identity for most ops).

Sampling: each sample draws its chain (length ``length``, or uniform in ``(min, max)`` per sample) from the initial
distribution and the transition rows by inverse CDF, and per step a magnitude ``clip(mean + std * z, 0, 1)``
(``z`` standard normal, Box-Muller from two uniforms), mapped linearly onto the op's range (posterize bits rounded)
and negated with probability 1/2 for signed ops (torchvision's rule). Every draw comes from (seed, epoch, index):
no loop over samples, no host sync; one Plan per batch, like the other policies (a step's calls cover the states the
chain can reach). Version 1 documents (AutoAugment's ops only) load with the other states at probability 0.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

import torch

from fastaug.atomic import write_text
from fastaug.constants import constant
from fastaug.policies.auto import PolicyDraw, _pick, _Policy, subpolicies
from fastaug.policies.ops import AUTO_AUGMENT_SPACE, PolicyOp, _none
from fastaug.policies.search_ops import BY_NAME, SEARCH_OPS
from fastaug.policies.sub_policies import search_calls
from fastaug.transforms import Context

IDENTITY = "Identity"
STATES_V1 = (IDENTITY, *(op.name for op in AUTO_AUGMENT_SPACE))  # version 1 documents: Identity and AutoAugment's ops
STATES: tuple[str, ...] = (IDENTITY, *(op.name for op in SEARCH_OPS))  # STATES_V1's order first
# the states as policy ops: AutoAugment's with their tables, the others as no-ops there (their calls are built apart)
SPACE: tuple[PolicyOp, ...] = (PolicyOp(IDENTITY, _none, False), *AUTO_AUGMENT_SPACE,
                               *(PolicyOp(name, _none, False) for name in STATES[len(STATES_V1):]))  # fmt: skip
WITH_MAGNITUDE = frozenset(op.name for op in SEARCH_OPS if op.magnitude)
FORMAT, VERSION = "fastaug.MarkovPolicy", 2
_N_AA = len(STATES_V1)  # states below this index are AutoAugment's (and Identity)
_AUTOAUGMENT_BINS = 10  # AutoAugment's magnitudes are bins 0..9 of 10: normalised m = bin / 9


def _entries(policies) -> list[list[tuple[str, float, float | None]]]:
    """Validated sub-policies: lists of (op, probability, normalised magnitude or None); a found policy
    (:class:`~fastaug.policies.SubPolicies` or its JSON document) gives its sub-policies."""
    from fastaug.policies.sub_policies import FORMAT as FOUND
    from fastaug.policies.sub_policies import SubPolicies, check_subpolicies

    if isinstance(policies, SubPolicies):
        policies = policies.policies
    elif isinstance(policies, dict) and policies.get("format") == FOUND:
        policies = policies.get("policies")
    return check_subpolicies(policies)  # the found policies' rules: every search op is a state


def _from_v1(d: dict) -> dict:
    """A version 1 document (states: Identity and AutoAugment's ops) over today's states: the others at probability 0
    (their rows the initial distribution, as a row without weight), magnitudes 0 +- 0."""
    if list(d["states"]) != list(STATES_V1):
        raise ValueError(f"{FORMAT} version 1 states must be {list(STATES_V1)}, got {d['states']}")
    n, k = len(STATES), len(STATES_V1)
    initial = list(d["initial"]) + [0.0] * (n - k)
    transition = [list(row) + [0.0] * (n - k) for row in d["transition"]] + [initial] * (n - k)
    none = {"mean": 0.0, "std": 0.0, "range": [0.0, 1.0], "probability": 0.0, "occurrences": 0}
    magnitudes = {**{op: {**none, "has_magnitude": op in WITH_MAGNITUDE} for op in STATES[k:]}, **d["magnitudes"]}
    return {**d, "states": list(STATES), "initial": initial, "transition": transition, "magnitudes": magnitudes}


def _length(length) -> tuple[int, int]:
    lo, hi = (length, length) if isinstance(length, numbers.Integral) and not isinstance(length, bool) else (
        tuple(length) if isinstance(length, (list, tuple)) and len(length) == 2 else (None, None))  # fmt: skip
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (lo, hi)) or not 1 <= lo <= hi:
        raise ValueError(f"length must be an int >= 1 or a (min, max) pair of them, got {length!r}")
    return int(lo), int(hi)


def _cdf(p: torch.Tensor) -> list:
    """Cumulative rows for inverse-CDF sampling (state = the number of entries <= u), the entries from each row's last
    state of positive probability on set to inf: a rounding overshoot at the end can never pick a state of probability 0."""
    c = torch.cumsum(p, -1)
    n = p.shape[-1]
    last = n - 1 - torch.argmax((p.flip(-1) > 0).to(torch.int8), -1, keepdim=True)  # the last positive state per row
    return torch.where(torch.arange(n) >= last, torch.full_like(c, math.inf), c).tolist()


def state_ranges(policy: _Policy, ctx: Context) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per state of :data:`STATES`, on the batch's device: whether its value is rounded (Posterize), its value at
    normalised magnitude 0 and at 1, and its sign rule. ``policy``: a policy over :data:`SPACE` with 2 magnitude bins."""
    cv = ctx.canvas
    tables = policy.tables(ctx, 2)
    extra = [BY_NAME[n] if i >= _N_AA else None for i, n in enumerate(STATES)]
    is_extra = constant([e is not None for e in extra], torch.bool, cv.device)
    lo = torch.where(is_extra, constant([e.lo if e else 0.0 for e in extra], torch.float64, cv.device), tables.magnitude[:, 0])
    hi = torch.where(is_extra, constant([e.hi if e else 0.0 for e in extra], torch.float64, cv.device), tables.magnitude[:, 1])
    signed = tables.signed | constant([e is not None and e.signed for e in extra], torch.bool, cv.device)
    return constant([n == "Posterize" for n in STATES], torch.bool, cv.device), lo, hi, signed


class MarkovPolicy(_Policy):
    """A policy transform sampling per-sample op chains from a fitted Markov chain (see the module docstring).

    Build it with :meth:`fit`, :meth:`from_autoaugment` or :meth:`from_json`; ``length``: the chain length, an int
    or ``(min, max)`` (drawn per sample); ``seed`` keys the module form's draws (inside a Compose the Compose's seed)."""

    space = SPACE
    num_magnitude_bins = 2  # the space's tables at the range's two ends: magnitudes are continuous
    _repr_args = ("length", "interpolation", "fill", "seed")

    def __init__(self, states, initial, transition, magnitudes: dict, length=2, interpolation: str = "nearest", fill=None,
                 seed: int = 0):  # fmt: skip
        super().__init__(interpolation, fill, seed)
        if tuple(states) != STATES:
            raise ValueError(f"states must be {list(STATES)}, got {list(states)}")
        self.states = STATES
        self.initial = torch.as_tensor(initial, dtype=torch.float64).clone()
        self.transition = torch.as_tensor(transition, dtype=torch.float64).clone()
        n = len(STATES)
        if tuple(self.initial.shape) != (n,) or tuple(self.transition.shape) != (n, n):
            raise ValueError(f"initial must have {n} entries and transition {n}x{n}")
        for name, t in (("initial", self.initial), ("transition", self.transition)):
            sums = t.sum(-1)
            if not bool(torch.isfinite(t).all()) or bool((t < 0).any()) or bool(((sums - 1.0).abs() > 1e-6).any()):
                raise ValueError(f"{name} must hold non-negative finite rows that sum to 1")
        if not isinstance(magnitudes, dict) or any(not isinstance(magnitudes.get(op), dict) for op in STATES[1:]) or any(
                not {"mean", "std", "probability"} <= set(magnitudes[op]) for op in STATES[1:]):  # fmt: skip
            raise ValueError("magnitudes must map every op to {'mean', 'std', 'probability', ...}")
        for op in STATES[1:]:
            m, sd = magnitudes[op]["mean"], magnitudes[op]["std"]
            if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in (m, sd)) or sd < 0:
                raise ValueError(f"magnitudes[{op!r}] needs a finite mean and a finite std >= 0, got mean {m!r}, std {sd!r}")
        self.magnitudes = {op: dict(magnitudes[op]) for op in STATES[1:]}
        self.length = _length(length)
        self.num_slots = self.length[1]
        # the sampling tables as host lists, made once (a call then builds nothing from host tensors)
        mean = [0.0] + [float(self.magnitudes[op]["mean"]) for op in STATES[1:]]
        std = [0.0] + [float(self.magnitudes[op]["std"]) for op in STATES[1:]]
        self._cdfs = (_cdf(self.initial), _cdf(self.transition), mean, std)
        reach, todo = set(), [i for i in range(n) if self.initial[i] > 0]  # the states a chain can visit
        while todo:
            i = todo.pop()
            if i not in reach:
                reach.add(i)
                todo += [j for j in range(n) if self.transition[i, j] > 0]
        self.reachable = [STATES[i] for i in sorted(reach)]  # in STATES' order

    # -- fitting ------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, policies, smoothing: float = 0.0, **kwargs) -> MarkovPolicy:
        """Fit from sub-policies: each a sequence of (op name, probability, magnitude normalised to [0, 1] or None)."""
        subs = _entries(policies)
        if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) or not 0.0 <= smoothing < math.inf:
            raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing!r}")
        n, index = len(STATES), {s: i for i, s in enumerate(STATES)}
        initial = torch.zeros(n, dtype=torch.float64)
        counts = torch.zeros(n, n, dtype=torch.float64)
        weights: dict[str, list[tuple[float, float]]] = {op: [] for op in STATES[1:]}
        probs: dict[str, list[float]] = {op: [] for op in STATES[1:]}
        for sub in subs:
            dist = []
            for op, p, m in sub:
                d = torch.zeros(n, dtype=torch.float64)
                d[index[op]] += p
                d[0] += 1.0 - p
                dist.append(d)
                probs[op].append(p)
                if m is not None:
                    weights[op].append((p, m))
            initial += dist[0]
            for a, b in zip(dist, dist[1:]):
                counts += torch.outer(a, b)
        initial /= initial.sum()
        counts += smoothing
        total = counts.sum(1, keepdim=True)
        transition = torch.where(total > 0, counts / total.clamp(min=1e-300), initial.expand(n, n))
        magnitudes = {}
        for op in STATES[1:]:
            w = weights[op]
            sw = sum(p for p, _ in w)
            mean = sum(p * m for p, m in w) / sw if sw > 0 else 0.0
            std = math.sqrt(sum(p * (m - mean) ** 2 for p, m in w) / sw) if sw > 0 else 0.0
            magnitudes[op] = {"mean": mean, "std": std, "range": [0.0, 1.0], "has_magnitude": op in WITH_MAGNITUDE,
                              "probability": sum(probs[op]) / len(probs[op]) if probs[op] else 0.0,
                              "occurrences": len(probs[op])}  # fmt: skip
        return cls(STATES, initial, transition, magnitudes, **kwargs)

    @classmethod
    def from_autoaugment(cls, policies=("imagenet", "cifar10", "svhn"), smoothing: float = 0.0, **kwargs) -> MarkovPolicy:
        """Fitted from AutoAugment's published sub-policies (``policies``: any of "imagenet", "cifar10", "svhn")."""
        names = (policies,) if isinstance(policies, str) else tuple(policies)
        if not names or any(p not in ("imagenet", "cifar10", "svhn") for p in names):
            raise ValueError(f"policies must name AutoAugment policies among 'imagenet', 'cifar10', 'svhn', got {policies!r}")
        subs = [[(op, p, None if m is None else m / (_AUTOAUGMENT_BINS - 1)) for op, p, m in sub] for name in names
                for sub in subpolicies(name)]  # fmt: skip
        return cls.fit(subs, smoothing=smoothing, **kwargs)

    # -- sampling -----------------------------------------------------------------------------------
    def _chain_tables(self, ctx: Context) -> tuple[torch.Tensor, ...]:
        """The chain's tables and, per state, its value range (lo, hi) and sign rule, on the batch's device."""
        cv = ctx.canvas
        key = ("markov", cv.h, cv.w, ctx.uint8, str(cv.device))
        if key not in self._tables:
            cdf0, cdf, mean, std = self._cdfs
            posterize, start, end, signed = state_ranges(self, ctx)
            values = torch.stack([constant(mean, torch.float64, cv.device), constant(std, torch.float64, cv.device), start, end], 1)
            flags = torch.stack([posterize, signed], 1)
            self._tables[key] = (constant(cdf0, torch.float64, cv.device), constant(cdf, torch.float64, cv.device), values, flags,
                                 constant(list(range(self.num_slots)), torch.int64, cv.device))  # fmt: skip
        return self._tables[key]

    def draw(self, ctx: Context) -> PolicyDraw:
        b, s = ctx.canvas.b, self.num_slots
        cdf0, cdf, values, flags, slots = self._chain_tables(ctx)
        u = ctx.uniform(1 + 4 * s)
        lo, hi = self.length
        length = lo + _pick(u[:, 0], hi - lo + 1)  # [B]
        step = u[:, 1:].view(b, s, 4)
        pick = step[..., 0].t().contiguous()  # [S,B]: each slot's uniform, contiguous
        states, prev = [], None
        for k in range(s):  # the chain: inverse CDF on the previous state's row (the number of entries <= u: a row is
            # non-decreasing and inf from its last possible state on, so the count is a state)
            if prev is None:
                prev = torch.searchsorted(cdf0, pick[k], right=True)
            else:
                prev = torch.searchsorted(cdf[prev], pick[k].unsqueeze(1), right=True).view(b)
            states.append(prev)
        op = torch.stack(states, 1)  # [B,S]
        z = torch.sqrt(-2.0 * torch.log1p(-step[..., 1])) * torch.cos((2.0 * math.pi) * step[..., 2])  # Box-Muller
        mean, std, low, high = values[op].unbind(-1)  # one gather of each state's row
        posterize, signed = flags[op].unbind(-1)
        m = torch.clamp(mean + std * z, 0.0, 1.0)
        value = low + m * (high - low)  # linear onto the op's range
        value = torch.where(posterize, torch.round(value), value)
        value = torch.where(signed & (step[..., 3] < 0.5), -value, value)
        applied = (op != 0) & (slots.unsqueeze(0) < length.unsqueeze(1))
        return PolicyDraw(STATES, op, torch.zeros_like(op), value, applied)

    def calls(self, ctx: Context):
        cv = ctx.canvas
        if cv.c not in (1, 3):
            raise ValueError(f"MarkovPolicy needs images with 1 or 3 channels, got {cv.c}")
        d = self.draw(ctx)
        static = [self.reachable] * self.num_slots  # the other ops are no-ops in the tables: slots_calls skips them
        return search_calls(self, ctx, d, static, list(d.op.unbind(1)), list(d.applied.unbind(1)))

    # -- files --------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "states": list(STATES), "initial": self.initial.tolist(),
                "transition": self.transition.tolist(), "magnitudes": self.magnitudes, "length": list(self.length),
                "interpolation": self.interpolation, "fill": self.fill, "seed": self.seed}  # fmt: skip

    def to_json(self, path) -> Path:
        """Write the policy as readable JSON, atomically (a temporary file renamed over ``path``)."""
        return write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")  # the text fails before any file is touched

    @classmethod
    def from_dict(cls, d: dict) -> MarkovPolicy:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document (format field missing or different)")
        if d.get("version") not in (1, VERSION):
            raise ValueError(f"{FORMAT} version {d.get('version')!r} is not supported (this fastaug reads versions 1 and {VERSION})")
        missing = [k for k in ("states", "initial", "transition", "magnitudes", "length") if k not in d]
        if missing:
            raise ValueError(f"{FORMAT} document without {', '.join(missing)}")
        if d["version"] == 1:
            d = _from_v1(d)
        return cls(d["states"], d["initial"], d["transition"], d["magnitudes"], length=d["length"],
                   interpolation=d.get("interpolation", "nearest"), fill=d.get("fill"), seed=d.get("seed", 0))  # fmt: skip

    @classmethod
    def from_json(cls, path) -> MarkovPolicy:
        with open(path) as f:
            return cls.from_dict(json.load(f))
