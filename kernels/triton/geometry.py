"""A call's geometric maps composed on the device in one launch (``fastaug.compiler``'s geometry on CUDA).

Each geometric op of a call gives per sample either a ready 3x3 map or the arguments of an affine map (torchvision's
``affine`` / ``rotate``); on the host that is ~20 small torch ops per affine op plus a masked matrix product per op.
:func:`compose_kernel` builds every affine map, keeps the identity where an op was not applied, and multiplies the
maps in order, in float64, one program per block of samples.

Row layout (``rows`` [B, N, 9]), by kind (``kinds`` [N] int32):
- ``MATRIX``: the op's 3x3 map, row-major;
- ``AFFINE``: angle (degrees, clockwise), translate x / y (pixels), scale, shear x / y (degrees), the pivot x / y in
  continuous coordinates (pixel i spans [i, i+1)), unused;
- ``ROTATE``: the same with the angle counter-clockwise (torchvision's ``rotate``).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton import knobs

from . import fused

MATRIX, AFFINE, ROTATE = 0, 1, 2
_INTERPRETED = bool(knobs.runtime.interpret)
BLOCK = 128
_DEG = math.pi / 180.0


@triton.jit
def _affine(r0, r1, r2, r3, r4, r5, r6, r7, sign, deg):
    """The inverse affine map (output index -> input index) of one row, as ``fastaug.ops.geometry.affine_matrix``:
    [[u + tan(sx) v], [v]] / scale with u = (cos r, sin r), v = (-sin(r - sy), cos(r - sy)) / cos(sy)."""
    angle = r0 * sign
    rot = angle * deg
    rot_sy = (angle - r5) * deg
    sy = r5 * deg
    sx = r4 * deg
    cos_sy = tl.cos(sy)
    v0 = -tl.sin(rot_sy) / cos_sy
    v1 = tl.cos(rot_sy) / cos_sy
    t = tl.sin(sx) / tl.cos(sx)
    m00 = (tl.cos(rot) + t * v0) / r3
    m01 = (tl.sin(rot) + t * v1) / r3
    m10 = v0 / r3
    m11 = v1 / r3
    px = r6 - 0.5  # the pivot in pixel-index space and the point it moves to
    py = r7 - 0.5
    qx = px + r1
    qy = py + r2
    m02 = px - (m00 * qx + m01 * qy)
    m12 = py - (m10 * qx + m11 * qy)
    return m00, m01, m02, m10, m11, m12


@triton.jit(do_not_specialize=("B",))
def compose_kernel(rows, kinds, applied, out64, out, B, N: tl.constexpr, APPLIED: tl.constexpr, DEG: tl.constexpr,
                   WORK: tl.constexpr, BLOCK: tl.constexpr):
    """``out64`` / ``out`` [B, 9] (float64 / the Plan dtype): the product of the N maps of each sample, in order. An
    affine map is built in WORK (the rows' dtype: float32 rows as the torch path builds float32 arguments' maps), the
    product in float64."""
    b = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = b < B
    one = tl.full((BLOCK,), 1.0, tl.float64)
    zero = tl.full((BLOCK,), 0.0, tl.float64)  # (tl.zeros is a jit helper: interpreted only if Triton was imported so)
    deg = tl.full((BLOCK,), DEG, WORK)  # pi / 180 in WORK (a bare float constexpr would be float32)
    a00, a01, a02, a10, a11, a12, a20, a21, a22 = one, zero, zero, zero, one, zero, zero, zero, one
    for n in tl.static_range(N):
        kind = tl.load(kinds + n)
        base = rows + (b.to(tl.int64) * N + n) * 9
        r0 = tl.load(base + 0, mask=live, other=0.0).to(WORK)
        r1 = tl.load(base + 1, mask=live, other=0.0).to(WORK)
        r2 = tl.load(base + 2, mask=live, other=0.0).to(WORK)
        r3 = tl.load(base + 3, mask=live, other=1.0).to(WORK)
        r4 = tl.load(base + 4, mask=live, other=0.0).to(WORK)
        r5 = tl.load(base + 5, mask=live, other=0.0).to(WORK)
        r6 = tl.load(base + 6, mask=live, other=0.0).to(WORK)
        r7 = tl.load(base + 7, mask=live, other=0.0).to(WORK)
        r8 = tl.load(base + 8, mask=live, other=1.0).to(WORK)
        is_affine = kind != 0
        sign = tl.where(kind == 2, -1.0, 1.0).to(WORK)
        f00, f01, f02, f10, f11, f12 = _affine(r0, r1, r2, tl.where(is_affine, r3, 1.0), r4, r5, r6, r7, sign, deg)
        m00 = tl.where(is_affine, f00, r0).to(tl.float64)
        m01 = tl.where(is_affine, f01, r1).to(tl.float64)
        m02 = tl.where(is_affine, f02, r2).to(tl.float64)
        m10 = tl.where(is_affine, f10, r3).to(tl.float64)
        m11 = tl.where(is_affine, f11, r4).to(tl.float64)
        m12 = tl.where(is_affine, f12, r5).to(tl.float64)
        m20 = tl.where(is_affine, 0.0, r6).to(tl.float64)
        m21 = tl.where(is_affine, 0.0, r7).to(tl.float64)
        m22 = tl.where(is_affine, 1.0, r8).to(tl.float64)
        if APPLIED:
            on = tl.load(applied + b.to(tl.int64) * N + n, mask=live, other=0) != 0
            m00 = tl.where(on, m00, 1.0)
            m01 = tl.where(on, m01, 0.0)
            m02 = tl.where(on, m02, 0.0)
            m10 = tl.where(on, m10, 0.0)
            m11 = tl.where(on, m11, 1.0)
            m12 = tl.where(on, m12, 0.0)
            m20 = tl.where(on, m20, 0.0)
            m21 = tl.where(on, m21, 0.0)
            m22 = tl.where(on, m22, 1.0)
        c00 = a00 * m00 + a01 * m10 + a02 * m20
        c01 = a00 * m01 + a01 * m11 + a02 * m21
        c02 = a00 * m02 + a01 * m12 + a02 * m22
        c10 = a10 * m00 + a11 * m10 + a12 * m20
        c11 = a10 * m01 + a11 * m11 + a12 * m21
        c12 = a10 * m02 + a11 * m12 + a12 * m22
        c20 = a20 * m00 + a21 * m10 + a22 * m20
        c21 = a20 * m01 + a21 * m11 + a22 * m21
        c22 = a20 * m02 + a21 * m12 + a22 * m22
        a00, a01, a02, a10, a11, a12, a20, a21, a22 = c00, c01, c02, c10, c11, c12, c20, c21, c22
    o = b.to(tl.int64) * 9
    tl.store(out64 + o + 0, a00, mask=live)
    tl.store(out64 + o + 1, a01, mask=live)
    tl.store(out64 + o + 2, a02, mask=live)
    tl.store(out64 + o + 3, a10, mask=live)
    tl.store(out64 + o + 4, a11, mask=live)
    tl.store(out64 + o + 5, a12, mask=live)
    tl.store(out64 + o + 6, a20, mask=live)
    tl.store(out64 + o + 7, a21, mask=live)
    tl.store(out64 + o + 8, a22, mask=live)
    ty = out.dtype.element_ty
    tl.store(out + o + 0, a00.to(ty), mask=live)
    tl.store(out + o + 1, a01.to(ty), mask=live)
    tl.store(out + o + 2, a02.to(ty), mask=live)
    tl.store(out + o + 3, a10.to(ty), mask=live)
    tl.store(out + o + 4, a11.to(ty), mask=live)
    tl.store(out + o + 5, a12.to(ty), mask=live)
    tl.store(out + o + 6, a20.to(ty), mask=live)
    tl.store(out + o + 7, a21.to(ty), mask=live)
    tl.store(out + o + 8, a22.to(ty), mask=live)


def prepare_compose(rows: torch.Tensor, kinds: torch.Tensor, applied: torch.Tensor | None,
                    dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, fused.Launch]:
    """The outputs [B,3,3] (float64, ``dtype``) and the launch of :func:`compose_kernel` for ``rows`` [B,N,9] (float32
    or float64, contiguous; float16 / bfloat16 rows are read as float32), ``kinds`` [N] int32 and ``applied`` [B,N]
    bool (None: every op applied)."""
    b, n = rows.shape[:2]
    if dtype == torch.float64:
        out64 = out = torch.empty(b, 3, 3, dtype=torch.float64, device=rows.device)
    else:  # one allocation for both (views of its bytes, each 16-byte aligned: one compiled variant for every B)
        at = fused.aligned16(b * 72)
        raw = torch.empty(at + b * 9 * dtype.itemsize, dtype=torch.uint8, device=rows.device)
        out64 = raw[: b * 72].view(torch.float64).view(b, 3, 3)
        out = raw[at:].view(dtype).view(b, 3, 3)
    args = {"rows": rows, "kinds": kinds, "applied": rows if applied is None else applied, "out64": out64, "out": out,
            "B": b}
    cx = {"N": n, "APPLIED": applied is not None, "DEG": _DEG, "WORK": tl.float64 if rows.dtype == torch.float64 else tl.float32,
          "BLOCK": BLOCK}
    return out64, out, fused.Launch("compose_kernel", (max(triton.cdiv(b, BLOCK), 1), 1), args, cx, num_warps=4)


def kernel_module(interpret: bool | None = None):
    """This module with its kernels built for the interpreter or the compiler (``None``: current mode)."""
    return fused.module_copy(__name__, __file__, _INTERPRETED, interpret)


def launch(spec: fused.Launch) -> None:
    """Run a prepared launch with this module's kernels of the current mode (compiled or interpreted)."""
    fused.run_launch(kernel_module(), spec)


def compose(rows: torch.Tensor, kinds: torch.Tensor, applied: torch.Tensor | None,
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The composed maps [B,3,3] in float64 and in ``dtype`` (see the module docstring), one launch."""
    out64, out, spec = prepare_compose(rows, kinds, applied, dtype)
    if rows.shape[0]:
        launch(spec)
    return out64, out
