"""A found policy as a transform: sub-policies of (op, probability, magnitude), drawn per sample.

Per sample: one sub-policy, uniformly; each of its ops applies with its probability, at its magnitude (normalised
to [0, 1] of the op's range, see :mod:`fastaug.policies.search_ops`), negated with probability 1/2 for signed ops.
Every draw comes from (seed, epoch, index); one Plan per batch, like the other policies. As there, all geometric
ops of a sample compose into one resampling that runs first, and an ``ElasticTransform`` op runs after the sample's
other geometric ops (its field lives on the final grid).
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import torch

from fastaug.atomic import write_text
from fastaug.constants import constant
from fastaug.ops.calls import Call
from fastaug.policies.auto import PolicyDraw, _pick, _Policy
from fastaug.policies.ops import AUTO_AUGMENT_SPACE, slots_calls
from fastaug.policies.search_ops import BY_NAME, SEARCH_OPS
from fastaug.transforms import Context

FORMAT, VERSION = "fastaug.SubPolicies", 1
NAMES: tuple[str, ...] = tuple(op.name for op in SEARCH_OPS)
_AA_INDEX = {op.name: i for i, op in enumerate(AUTO_AUGMENT_SPACE)}
_INNER_SLOTS = 1 << 20  # an op's own draws: slots far above any Compose position's (positions < 16384)
IDENTITY = "Identity"


def check_subpolicies(policies) -> list[list[tuple[str, float, float | None]]]:
    """Validated sub-policies: lists of (op name, probability, magnitude in [0, 1] or None for ops without one)."""
    if not isinstance(policies, (list, tuple)) or not policies:
        raise ValueError("policies must be a non-empty list of sub-policies, each a sequence of (op, probability, magnitude)")
    out = []
    for i, sub in enumerate(policies):
        if not isinstance(sub, (list, tuple)) or not sub:
            raise ValueError(f"policies[{i}] must be a non-empty sequence of (op, probability, magnitude), got {sub!r}")
        entries = []
        for j, entry in enumerate(sub):
            if not isinstance(entry, (list, tuple)) or len(entry) != 3:
                raise ValueError(f"policies[{i}][{j}] must be (op, probability, magnitude), got {entry!r}")
            name, p, m = entry
            if name not in BY_NAME:
                raise ValueError(f"policies[{i}][{j}]: unknown op {name!r} (ops: {', '.join(NAMES)})")
            if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"policies[{i}][{j}]: the probability must be in [0, 1], got {p!r}")
            if m is None:
                if BY_NAME[name].magnitude:
                    raise ValueError(f"policies[{i}][{j}]: {name} needs a magnitude in [0, 1] (normalised), got None")
            elif isinstance(m, bool) or not isinstance(m, numbers.Real) or not 0.0 <= float(m) <= 1.0:
                raise ValueError(f"policies[{i}][{j}] magnitude must be None or in [0, 1] (normalised), got {m!r}")
            entries.append((str(name), float(p), None if m is None else float(m)))
        out.append(entries)
    return out


def search_calls(policy: _Policy, ctx: Context, d: PolicyDraw, static: list[list[str]], aa_op: list, aa_applied: list) -> list[Call]:
    """Calls for per-sample draws over the search ops (a SubPolicies' or a MarkovPolicy's): per slot ``s``, AutoAugment's
    ops through ``slots_calls`` (``aa_op[s]``: indices into its space, ``aa_applied[s]``), then each other op in
    ``static[s]`` (the op names the slot may hold) once, for the samples that drew it (``d.op``: indices into
    ``d.space``, ``d.magnitude``: their signed values); ElasticTransform's entries add into one field after every other
    geometric op. Each op's own draws come from slots of their own (``ctx.slot + (64 s + op + 1) 2^20``; the field:
    ``64 S + 1``)."""
    cv = ctx.canvas
    tables = policy.tables(ctx, policy.num_magnitude_bins)
    fill = policy._fill_values(ctx)
    out: list[Call] = []
    alpha = None  # ElasticTransform: one field per sample (linear in alpha)
    aa_statics = [tuple(AUTO_AUGMENT_SPACE[_AA_INDEX[n]] for n in sorted(set(names) & set(_AA_INDEX), key=_AA_INDEX.get))
                  for names in static]  # fmt: skip
    aa_calls = [[] for _ in static]
    if any(aa_statics):  # every slot's AutoAugment ops at once
        aa_calls = slots_calls(cv, tables, torch.stack(aa_op, 1), d.magnitude[:, : len(static)], torch.stack(aa_applied, 1),
                               aa_statics, policy.interpolation, policy._bilinear, policy.fill, fill, by_slot=True)  # fmt: skip
    for s, names in enumerate(static):
        out += aa_calls[s]
        for name in sorted(set(names) - set(_AA_INDEX) - {IDENTITY}, key=d.space.index):
            op, k = BY_NAME[name], d.space.index(name)
            if op.rgb and cv.c != 3:
                raise ValueError(f"{type(policy).__name__}: {name} needs 3 channels, got {cv.c}")
            mask = d.applied[:, s] & (d.op[:, s] == k)
            value = torch.where(mask, d.magnitude[:, s], op.value(0.0))  # a valid value where the op does not apply
            if op.function == "elastic_transform":
                add = torch.where(mask, value, 0.0)
                alpha = add if alpha is None else alpha + add
                continue
            inner = Context(cv, ctx.seed, ctx.epoch, ctx.indices, ctx.slot + (64 * s + k + 1) * _INNER_SLOTS, ctx.uint8)
            for call in op.calls(inner, value, policy.interpolation, policy.fill):
                call.applied = mask if call.applied is None else call.applied & mask
                out.append(call)
    if alpha is not None:
        inner = Context(cv, ctx.seed, ctx.epoch, ctx.indices, ctx.slot + (64 * len(static) + 1) * _INNER_SLOTS, ctx.uint8)
        (call,) = BY_NAME["ElasticTransform"].calls(inner, alpha, policy.interpolation, policy.fill)
        call.applied = alpha > 0
        out.append(call)
    return out


class SubPolicies(_Policy):
    """Per sample one sub-policy, each op with its probability and magnitude (see the module docstring).

    ``policies``: sub-policies, each a sequence of ``(op, probability, magnitude)`` with ``op`` a name of
    :data:`fastaug.policies.search_ops.SEARCH_OPS` and ``magnitude`` normalised to [0, 1] (None for ops without one).
    ``fill``: None (zero padding), a number or one value per channel, for every geometric op; ``seed`` keys the module
    form's draws."""

    space = AUTO_AUGMENT_SPACE  # the tables of AutoAugment's ops; the other ops build their own calls
    num_magnitude_bins = 2  # the range's two ends: magnitudes are continuous
    _repr_args = ("policies", "interpolation", "fill", "seed")

    def __init__(self, policies, interpolation: str = "nearest", fill=None, seed: int = 0):
        super().__init__(interpolation, fill, seed)
        self.policies = check_subpolicies(policies)
        self.num_slots = max(len(sub) for sub in self.policies)
        s = self.num_slots
        pad = [sub + [("", 0.0, 0.0)] * (s - len(sub)) for sub in self.policies]  # a missing op never applies
        self._aa = [[_AA_INDEX.get(e[0], 0) for e in sub] for sub in pad]
        self._is_aa = [[e[0] in _AA_INDEX for e in sub] for sub in pad]
        self._prob = [[e[1] for e in sub] for sub in pad]
        # AutoAugment's ops: the normalised magnitude (mapped onto the range per device); the others: their value
        self._mag = [[(e[2] or 0.0) if not e[0] or e[0] in _AA_INDEX else BY_NAME[e[0]].value(e[2] or 0.0) for e in sub]
                     for sub in pad]  # fmt: skip
        self._signed = [[bool(e[0]) and BY_NAME[e[0]].signed for e in sub] for sub in pad]
        self._op = [[NAMES.index(e[0]) if e[0] else 0 for e in sub] for sub in pad]

    def _sub_tables(self, device):
        key = ("subpolicies", str(device))
        if key not in self._tables:
            self._tables[key] = (
                constant(self._aa, torch.int64, device), constant(self._is_aa, torch.bool, device),
                constant(self._prob, torch.float64, device), constant(self._mag, torch.float64, device),
                constant(self._signed, torch.bool, device), constant(self._op, torch.int64, device),
            )  # fmt: skip
        return self._tables[key]

    def draw(self, ctx: Context) -> PolicyDraw:
        """Per sample: the sub-policy, and per slot the op (index into the search ops), its signed value in the op's
        range, whether it applies."""
        b, s = ctx.canvas.b, self.num_slots
        aa, is_aa, prob, mag, signed, names = self._sub_tables(ctx.canvas.device)
        tables = self.tables(ctx, self.num_magnitude_bins)
        u = ctx.uniform(1 + 2 * s)
        sub = _pick(u[:, 0], len(self.policies))
        coin, sign = u[:, 1:].view(b, s, 2).unbind(-1)
        applied = coin < prob[sub]
        op, m = aa[sub], mag[sub]
        ends = tables.magnitude[op]  # [B,S,2]
        value = torch.where(is_aa[sub], ends[..., 0] + m * (ends[..., 1] - ends[..., 0]), m)
        value = torch.where(is_aa[sub] & (op == _AA_INDEX["Posterize"]), torch.round(value), value)
        value = torch.where(signed[sub] & (sign < 0.5), -value, value)
        return PolicyDraw(NAMES, names[sub], torch.zeros_like(op), value, applied, sub)

    def calls(self, ctx: Context) -> list[Call]:
        cv = ctx.canvas
        if cv.c not in (1, 3):
            raise ValueError(f"SubPolicies needs images with 1 or 3 channels, got {cv.c}")
        d = self.draw(ctx)
        aa, is_aa, *_ = self._sub_tables(cv.device)
        static = [[sub[s][0] for sub in self.policies if s < len(sub)] for s in range(self.num_slots)]
        aa_op = [aa[d.subpolicy, s] for s in range(self.num_slots)]
        aa_applied = [d.applied[:, s] & is_aa[d.subpolicy, s] for s in range(self.num_slots)]
        return search_calls(self, ctx, d, static, aa_op, aa_applied)

    # -- files --------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "policies": [[list(e) for e in sub] for sub in self.policies],
                "interpolation": self.interpolation, "fill": self.fill, "seed": self.seed}  # fmt: skip

    def to_json(self, path) -> Path:
        """Write the policy as readable JSON, atomically."""
        return write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> SubPolicies:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document (format field missing or different)")
        if d.get("version") != VERSION:
            raise ValueError(f"{FORMAT} version {d.get('version')!r} is not supported (this fastaug reads version {VERSION})")
        if "policies" not in d:
            raise ValueError(f"{FORMAT} document without policies")
        return cls(d["policies"], interpolation=d.get("interpolation", "nearest"), fill=d.get("fill"), seed=d.get("seed", 0))

    @classmethod
    def from_json(cls, path) -> SubPolicies:
        with open(path) as f:
            return cls.from_dict(json.load(f))
