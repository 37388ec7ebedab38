"""The op spaces of the automatic-augmentation policies and their mapping to fastaug op calls.

An op space is a tuple of :class:`PolicyOp` (torchvision's op names, magnitude bins and sign rule).
:func:`slot_calls` turns one op *slot* of per-sample draws (op index, signed magnitude, applied mask)
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
    )
    return SpaceTables(*(t.to(device) for t in vars(tables).values()))


def signed_magnitude(tables: SpaceTables, op: torch.Tensor, bins: torch.Tensor, u_sign: torch.Tensor) -> torch.Tensor:
    """The bin's magnitude, negated with probability 1/2 for signed ops (torchvision's rule)."""
    m = tables.magnitude[op, bins]
    flip = tables.signed[op] & (u_sign < 0.5)
    return torch.where(flip, -m, m)


def slot_calls(
    canvas: Canvas,
    tables: SpaceTables,
    op: torch.Tensor,
    magnitude: torch.Tensor,
    applied: torch.Tensor,
    static: tuple[PolicyOp, ...],
    interpolation: str,
    bilinear: bool,
    fill,
    fill_values: torch.Tensor | None,
) -> list[Call]:
    """Op calls for one op slot. ``op``, ``magnitude``, ``applied``: [B]; ``static``: every op the
    slot may hold (decides which calls exist and the color codes the compiler must expect); ``fill``
    as given (listed in the record), ``fill_values`` the same as a [B,C] tensor (None: zero padding)."""
    b, c, h, w, dev = canvas
    kind = torch.where(applied, tables.geo[op], 0)
    zero = torch.zeros_like(magnitude)
    calls: list[Call] = []
    if any(o.geo in _AFFINE_KINDS for o in static):
        shear = torch.rad2deg(torch.atan(magnitude))
        move = torch.trunc(magnitude)  # torchvision: int(magnitude) pixels
        if magnitude.requires_grad:  # a learned magnitude: the same pixels, the gradient straight through the truncation
            move = magnitude + (move - magnitude).detach()
        kinds = kind.unsqueeze(1) == constant([[SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y]], kind.dtype, dev)  # [B,4]
        shear_xy = torch.where(kinds[:, :2], shear.unsqueeze(1), 0.0)  # [B,2]: (x, y)
        translate = torch.where(kinds[:, 2:], move.unsqueeze(1), 0.0)
        middle = constant([[w * 0.5, h * 0.5]], magnitude.dtype, dev)
        center = torch.where(kinds[:, :2].any(1, keepdim=True), 0.0, middle)  # shears pivot on the top-left corner
        one = constant(1.0, magnitude.dtype, dev).expand(b)
        calls.append(
            GeometricCall(
                name="affine",
                kwargs={
                    "angle": zero, "translate": translate, "scale": one, "shear": shear_xy,
                    "interpolation": interpolation, "fill": fill, "center": center,
                },  # fmt: skip
                affine=G.AffineArgs(zero, translate, one, shear_xy, (h, w), center),
                bilinear=bilinear,
                fill=fill_values,
                applied=(kind >= SHEAR_X) & (kind <= TRANSLATE_Y),
            )
        )
    if any(o.geo == ROTATE for o in static):
        is_rot = kind == ROTATE
        angle = torch.where(is_rot, magnitude, zero)
        calls.append(
            GeometricCall(
                name="rotate",
                kwargs={"angle": angle, "interpolation": interpolation, "fill": fill},
                affine=G.AffineArgs(angle, None, None, None, (h, w), rotate=True),
                bilinear=bilinear,
                fill=fill_values,
                applied=is_rot,
            )
        )
    codes = {o.code for o in static if o.code != int(Op.IDENTITY)}
    if codes:
        code = torch.where(applied, tables.code[op], 0)
        value = (tables.scale[op] * magnitude + tables.offset[op]).to(torch.float32)
        params = torch.nn.functional.pad(value.unsqueeze(1), (0, 2))  # [B,3]: the value, two zeros
        calls.append(ColorCall(name="policy_op", code=code, params=params, codes=tuple(sorted(codes | {int(Op.IDENTITY)}))))
    return calls
