"""The op spaces of the automatic-augmentation policies and their mapping to fastaug op calls.

An op space is a tuple of :class:`PolicyOp` (torchvision's op names, magnitude bins and sign rule).
:func:`slots_calls` turns op *slots* of per-sample draws (op index, signed magnitude, applied mask)
into op calls: one affine and one rotate :class:`GeometricCall` with ``applied`` masks (a sample's
geometric ops then compose in slot order), and one :class:`ColorCall` with a per-sample ``code``
(IDENTITY where the sample's op at this slot is geometric, identity or not applied).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastaug.constants import constant
from fastaug.functional import Canvas
from fastaug.ops import geometry as G
from fastaug.ops.calls import Call, ColorCall, GeometricCall
from fastaug.plan import Op

Bins = Callable[[int, int, int], torch.Tensor | None]  # (num_bins, height, width) -> float32 [num_bins] or None

# geometric kinds (0: not geometric)
SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y, ROTATE = 1, 2, 3, 4, 5
_AFFINE_KINDS = (SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y)


@dataclass(frozen=True)
class PolicyOp:
    """One op of a policy's space.

    ``code``: the fastaug color op (IDENTITY for geometric ops and Identity); ``geo``: the geometric kind;
    the color op's value is ``scale * magnitude + offset`` (``scale`` None: the image's bound, for solarize).
    """

    name: str
    bins: Bins
    signed: bool
    code: int = int(Op.IDENTITY)
    geo: int = 0
    scale: float | None = 0.0
    offset: float = 0.0


def _none(n: int, h: int, w: int) -> None:
    return None


def _linear(hi: float) -> Bins:
    return lambda n, h, w: torch.linspace(0.0, hi, n)


def _posterize_bits(span: float) -> Bins:
    """Bits from 8 down to ``8 - span``, rounded (computed in float32 like torchvision)."""
    return lambda n, h, w: torch.round(8.0 - torch.arange(n, dtype=torch.float32) / ((n - 1) / span))


def _solarize(n: int, h: int, w: int) -> torch.Tensor:
    return torch.linspace(1.0, 0.0, n)


def _translate_x(n: int, h: int, w: int) -> torch.Tensor:
    return torch.linspace(0.0, 150.0 / 331.0 * w, n)


def _translate_y(n: int, h: int, w: int) -> torch.Tensor:
    return torch.linspace(0.0, 150.0 / 331.0 * h, n)


def _space(shear: Bins, translate: tuple[Bins, Bins], rotate: Bins, enhance: Bins, bits: Bins, identity: bool, invert: bool):
    ops = [
        PolicyOp("ShearX", shear, True, geo=SHEAR_X),
        PolicyOp("ShearY", shear, True, geo=SHEAR_Y),
        PolicyOp("TranslateX", translate[0], True, geo=TRANSLATE_X),
        PolicyOp("TranslateY", translate[1], True, geo=TRANSLATE_Y),
        PolicyOp("Rotate", rotate, True, geo=ROTATE),
        PolicyOp("Brightness", enhance, True, int(Op.BRIGHTNESS), scale=1.0, offset=1.0),
        PolicyOp("Color", enhance, True, int(Op.SATURATION), scale=1.0, offset=1.0),
        PolicyOp("Contrast", enhance, True, int(Op.CONTRAST), scale=1.0, offset=1.0),
        PolicyOp("Sharpness", enhance, True, int(Op.SHARPNESS), scale=1.0, offset=1.0),
        PolicyOp("Posterize", bits, False, int(Op.POSTERIZE), scale=1.0),
        PolicyOp("Solarize", _solarize, False, int(Op.SOLARIZE), scale=None),
        PolicyOp("AutoContrast", _none, False, int(Op.AUTOCONTRAST)),
        PolicyOp("Equalize", _none, False, int(Op.EQUALIZE)),
    ]
    if invert:
        ops.append(PolicyOp("Invert", _none, False, int(Op.INVERT)))
    if identity:
        ops.insert(0, PolicyOp("Identity", _none, False))
    return tuple(ops)


# RandAugment and AutoAugment share magnitudes; TrivialAugmentWide widens them. Order as in torchvision.
RAND_AUGMENT_SPACE = _space(
    _linear(0.3), (_translate_x, _translate_y), _linear(30.0), _linear(0.9), _posterize_bits(4), identity=True, invert=False
)
AUTO_AUGMENT_SPACE = _space(
    _linear(0.3), (_translate_x, _translate_y), _linear(30.0), _linear(0.9), _posterize_bits(4), identity=False, invert=True
)
TRIVIAL_AUGMENT_WIDE_SPACE = _space(
    _linear(0.99), (_linear(32.0), _linear(32.0)), _linear(135.0), _linear(0.99), _posterize_bits(6), identity=True, invert=False
)


@dataclass
class SpaceTables:
    """An op space as tensors on one device (built once per space, bins, image size, range and device)."""

    magnitude: torch.Tensor  # [n_ops, num_bins] float64 (0 where an op has no magnitude)
    signed: torch.Tensor  # [n_ops] bool
    code: torch.Tensor  # [n_ops] int64 color op codes
    geo: torch.Tensor  # [n_ops] int64 geometric kinds
    scale: torch.Tensor  # [n_ops] float64
    offset: torch.Tensor  # [n_ops] float64
    select: torch.Tensor  # [n_ops, SELECT_WIDTH] float64: an op's row of slots_calls' one gather (see _select_row)
    signed_values: torch.Tensor  # [n_ops, num_bins, 2] float64: the magnitude, and the same negated for signed ops
    geometric: torch.Tensor  # [n_ops, 2] bool: the op is one of the affine call's (shear / translate), the rotate call's
    code32: torch.Tensor  # [n_ops] int32 color op codes (the Plan's program dtype)


# columns of SpaceTables.select
SHEAR_XY, TRANSLATE_XY, IS_ROTATE, CENTER, SCALE, OFFSET = slice(0, 2), slice(2, 4), 4, slice(5, 7), 7, 8
SELECT_WIDTH = 9


def _select_row(op: PolicyOp, h: int, w: int, bound: float) -> list[float]:
    """1.0 / 0.0 selectors of the op's shear x / y and translate x / y columns and of rotate, the affine call's centre
    (shears pivot on the top-left corner, the rest on the image centre), the color value's scale and offset."""
    affine = [float(op.geo == kind) for kind in _AFFINE_KINDS]
    center = [0.0, 0.0] if op.geo in (SHEAR_X, SHEAR_Y) else [w * 0.5, h * 0.5]
    return [*affine, float(op.geo == ROTATE), *center,
            bound if op.scale is None else op.scale, op.offset]  # fmt: skip


def build_tables(space: tuple[PolicyOp, ...], num_bins: int, h: int, w: int, bound: float, device) -> SpaceTables:
    mags = []
    for op in space:
        m = op.bins(num_bins, h, w)
        mags.append(torch.zeros(num_bins, dtype=torch.float64) if m is None else m.to(torch.float64))
    tables = SpaceTables(
        magnitude=torch.stack(mags),
        signed=torch.tensor([op.signed for op in space]),
        code=torch.tensor([op.code for op in space], dtype=torch.int64),
        geo=torch.tensor([op.geo for op in space], dtype=torch.int64),
        scale=torch.tensor([bound if op.scale is None else op.scale for op in space], dtype=torch.float64),
        offset=torch.tensor([op.offset for op in space], dtype=torch.float64),
        select=torch.tensor([_select_row(op, h, w, bound) for op in space], dtype=torch.float64),
        signed_values=torch.stack([torch.stack(mags), torch.stack([-m if op.signed else m for op, m in zip(space, mags)])], -1),
        code32=torch.tensor([op.code for op in space], dtype=torch.int32),
        geometric=torch.tensor([[op.geo in _AFFINE_KINDS, op.geo == ROTATE] for op in space]),
    )
    return SpaceTables(*(t.to(device) for t in vars(tables).values()))


def signed_magnitude(tables: SpaceTables, op: torch.Tensor, bins: torch.Tensor, u_sign: torch.Tensor) -> torch.Tensor:
    """The bin's magnitude, negated with probability 1/2 for signed ops (torchvision's rule): one gather."""
    return tables.signed_values[op, bins, (u_sign < 0.5).to(torch.int64)]


def slots_calls(
    canvas: Canvas,
    tables: SpaceTables,
    op: torch.Tensor,
    magnitude: torch.Tensor,
    applied: torch.Tensor,
    statics: list[tuple[PolicyOp, ...]],
    interpolation: str,
    bilinear: bool,
    fill,
    fill_values: torch.Tensor | None,
    by_slot: bool = False,
) -> list:
    """Op calls for S op slots of per-sample draws (``op`` indices into the space, signed ``magnitude``, ``applied``:
    [B,S]; ``statics``: every op each slot may hold, which decides the calls and the color codes the compiler must
    expect; ``fill`` as given, listed in the record, ``fill_values`` the same as [B,C], None: zero padding), slot by
    slot (``by_slot``: one list per slot). Every slot's parameters come from one gather of the ops' rows
    (``SpaceTables.select``) and a few ops on [B,S], whatever S (a device runs each as one small kernel)."""
    b, c, h, w, dev = canvas
    sel = tables.select[op]  # [B,S,SELECT_WIDTH]
    geos = {o.geo for st in statics for o in st}
    calls: list[list[Call]] = [[] for _ in statics]
    if geos - {0}:
        geo_on = tables.geometric[op] & applied.unsqueeze(-1)  # [B,S,2]: the affine call applies, the rotate call
    if geos & set(_AFFINE_KINDS):
        shear = torch.rad2deg(torch.atan(magnitude)).unsqueeze(-1)
        move = torch.trunc(magnitude)  # torchvision: int(magnitude) pixels
        if magnitude.requires_grad:  # a learned magnitude: the same pixels, the gradient straight through the truncation
            move = magnitude + (move - magnitude).detach()
        naught = constant(0.0, magnitude.dtype, dev)  # 0 + selector * value: exact, and +0 (not -0) where not selected
        shear_xy = torch.addcmul(naught, sel[..., SHEAR_XY], shear)  # [B,S,2]: (x, y)
        translate = torch.addcmul(naught, sel[..., TRANSLATE_XY], move.unsqueeze(-1))
        on = geo_on[..., 0]
        zero = constant(0.0, magnitude.dtype, dev).expand(b)
        one = constant(1.0, magnitude.dtype, dev).expand(b)
        for s, static in enumerate(statics):
            if any(o.geo in _AFFINE_KINDS for o in static):
                center = sel[:, s, CENTER]
                calls[s].append(
                    GeometricCall(
                        name="affine",
                        kwargs={
                            "angle": zero, "translate": translate[:, s], "scale": one, "shear": shear_xy[:, s],
                            "interpolation": interpolation, "fill": fill, "center": center,
                        },  # fmt: skip
                        affine=G.AffineArgs(zero, translate[:, s], one, shear_xy[:, s], (h, w), center),
                        bilinear=bilinear,
                        fill=fill_values,
                        applied=on[:, s],
                    )
                )
    if ROTATE in geos:
        angle = torch.addcmul(constant(0.0, magnitude.dtype, dev), sel[..., IS_ROTATE], magnitude)
        on = geo_on[..., 1]
        for s, static in enumerate(statics):
            if any(o.geo == ROTATE for o in static):
                calls[s].append(
                    GeometricCall(
                        name="rotate",
                        kwargs={"angle": angle[:, s], "interpolation": interpolation, "fill": fill},
                        affine=G.AffineArgs(angle[:, s], None, None, None, (h, w), rotate=True),
                        bilinear=bilinear,
                        fill=fill_values,
                        applied=on[:, s],
                    )
                )
    color = [{o.code for o in static if o.code != int(Op.IDENTITY)} for static in statics]
    if any(color):
        code = torch.where(applied, tables.code32[op], constant(0, torch.int32, dev))
        value = (sel[..., SCALE] * magnitude + sel[..., OFFSET]).to(torch.float32).unsqueeze(-1)  # [B,S,1]: the value
        for s, codes in enumerate(color):
            if codes:
                calls[s].append(ColorCall(name="policy_op", code=code[:, s], params=value[:, s],
                                          codes=tuple(sorted(codes | {int(Op.IDENTITY)}))))  # fmt: skip
    return calls if by_slot else [call for slot in calls for call in slot]
