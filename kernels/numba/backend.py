"""Host side of the Numba backend: tables as numpy arrays, 1-D strided views, task sizing.

Input dtypes: uint8, float32 and float64 are read in place (any strides); any other dtype (float16,
bfloat16, ...) is first converted to float32 with one ``src.float()`` (the reference reads it as
float32 too). Working values are float32, float64 for float64 input (as the reference computes).
Outputs of dtype uint8 / float32 / float64 are written in place through their strides; other
dtypes go through a temporary and one ``out.copy_``.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from fastaug.plan import Epilogue, Op, Reduction, Stage

from . import fused

_RGB = (int(Op.SATURATION), int(Op.HUE), int(Op.GRAYSCALE))
_DIRECT_OUT = (torch.uint8, torch.float32, torch.float64)
_CONSTS = {np.float32: fused.constants(np.float32), np.float64: fused.constants(np.float64)}


def _flat(t: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D numpy view over the memory a tensor spans, and its element strides [B, C, H, W]."""
    t = t.detach()
    span = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
    flat = torch.as_strided(t, (span,), (1,), t.storage_offset())
    return flat.numpy(), np.array(t.stride(), dtype=np.int64)


def _np(t: torch.Tensor | None, dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A small table as a C-contiguous numpy array (zeros when absent)."""
    if t is None:
        return np.zeros(shape, dtype=dtype)
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


def _effective_codes(stage: Stage, channels: int) -> np.ndarray:
    """program [B, K] with every op the reference would not run replaced by IDENTITY: codes absent
    from ``codes_at(k)``, SHARPNESS at k > 0, RGB ops unless C == 3, unknown codes."""
    prog = stage.program.detach().cpu().numpy().astype(np.int32)
    codes = np.zeros_like(prog)
    for k in range(prog.shape[1]):
        present = set(stage.codes_at(k))
        if k > 0:
            present.discard(int(Op.SHARPNESS))
        if channels != 3:
            present.difference_update(_RGB)
        col = prog[:, k]
        codes[:, k] = np.where(np.isin(col, sorted(present)), col, 0)
    return codes


def _split_geometry(src: torch.Tensor, stage: Stage) -> tuple[torch.Tensor, Stage]:
    """SHARPNESS at k = 0 of a stage with geometry (outside the contract; the reference sharpens the
    resampled image): resample first, then run the program as a stage without geometry."""
    k = stage.program.shape[1]
    if stage.geometry is None or k == 0 or int(Op.SHARPNESS) not in stage.codes_at(0):
        return src, stage
    if not bool((stage.program[:, 0] == int(Op.SHARPNESS)).any()):
        return src, stage
    b = stage.program.shape[0]
    geo_only = Stage(
        program=stage.program[:, :0], params=stage.params[:, :0], in_scale=stage.in_scale,
        geometry=stage.geometry, out_size=stage.out_size,
    )  # fmt: skip
    h, w = stage.out_size or tuple(src.shape[-2:])
    dtype = torch.float64 if src.dtype == torch.float64 else torch.float32
    tmp = torch.empty((b, src.shape[1], h, w), dtype=dtype)
    empty = torch.zeros(b, 0, src.shape[1], 2)
    apply(src, geo_only, empty, empty, None, tmp)
    rest = Stage(
        program=stage.program, params=stage.params, in_scale=1.0, geometry=None, out_size=None,
        stat_slots=stage.stat_slots, slot_codes=stage.slot_codes,
    )  # fmt: skip
    return tmp, rest


def _rows_per_task(batch: int, rows: int, per_thread: int, cap: int) -> int:
    """Rows per task so that there are about ``per_thread`` tasks per thread (1 to ``cap`` rows)."""
    target = max(1, per_thread * numba.get_num_threads())
    return int(min(max(-(-batch * rows // target), 1), max(rows, 1), cap))


def _empty(dtype) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


def _run(
    src: torch.Tensor,
    stage: Stage,
    stats: torch.Tensor,
    luts: torch.Tensor,
    stop: int,
    flags: np.ndarray,
    out: torch.Tensor | None = None,
    epilogue: Epilogue | None = None,
    partials: tuple | None = None,
    rows: int = 1,
) -> None:
    """Fill the stage's tables and run :func:`fused.stage_kernel` (apply: ``out``; reduce: ``partials``)."""
    ftype = np.float64 if src.dtype == torch.float64 else np.float32
    b, c, h, w = src.shape
    ho, wo = stage.out_size or (h, w)
    k = stage.program.shape[1]
    flat, ss = _flat(src)
    src8, srcf = (flat, _empty(ftype)) if src.dtype == torch.uint8 else (_empty(np.uint8), flat)
    flags[fused.I_SRC8] = int(src.dtype == torch.uint8)
    geo = stage.geometry
    if geo is not None:
        flags[fused.I_GEO : fused.I_QUANT + 1] = (
            2 if geo.bilinear else 1, int(geo.clamp), int(geo.fill is not None), int(geo.quantize)
        )  # fmt: skip
        mat = _np(geo.matrix.reshape(b, 9), ftype, ())
        win = _np(geo.window, ftype, ())
        fill = _np(geo.fill, ftype, (b, c))
    else:
        mat, win, fill = np.zeros((b, 9), ftype), np.zeros((b, 4), ftype), np.zeros((b, c), ftype)
    ep = epilogue
    out_scale = 1.0 if ep is None else ep.out_scale
    nr = 0 if ep is None or ep.rects is None else ep.rects.shape[1]
    flags[fused.I_NORM] = int(ep is not None and ep.mean is not None)
    flags[fused.I_RECTS] = nr
    mean = _np(None if ep is None else ep.mean, ftype, (b, c))
    std = _np(None if ep is None else ep.std, ftype, (b, c))
    if nr:
        rects = _np(ep.rects, np.int32, ())
        rphase = _np(ep.rect_phase, np.int32, ())
        rvals = _np(ep.rect_values.reshape(b, nr, c), ftype, ())
    else:
        rects, rphase, rvals = np.zeros((b, 0, 4), np.int32), np.zeros((b, 0), np.int32), np.zeros((b, 0, c), ftype)
    outs = [_empty(np.uint8), _empty(np.float32), _empty(np.float64)]
    os_ = np.zeros(4, np.int64)
    if out is not None:
        kind = (torch.uint8, torch.float32, torch.float64).index(out.dtype)
        flags[fused.I_KIND] = kind
        outs[kind], os_ = _flat(out)
    gray, mn, mx, hist = partials or (np.zeros((0, b)), np.zeros((0, b, c), ftype), np.zeros((0, b, c), ftype),
                                      np.zeros((0, b, c, 256), np.int64))  # fmt: skip
    fs = np.array([stage.in_scale, out_scale, w - 1, h - 1], dtype=ftype)
    fused.stage_kernel(
        src8, srcf, ss, c, h, w, fs, flags, mat, win, fill,
        np.arange(wo, dtype=ftype), np.arange(ho, dtype=ftype),
        _effective_codes(stage, c),
        _np(stage.params.reshape(b, k, -1), ftype, ()),
        _np(stats.reshape(b, k, c, 2), ftype, ()),
        _np(luts.reshape(b, k, c, 256), ftype, ()),
        _CONSTS[ftype], ho, wo, rows, stop, *outs, os_, mean, std, rects, rphase, rvals, gray, mn, mx, hist,
    )  # fmt: skip


def _readable(src: torch.Tensor) -> torch.Tensor:
    """uint8 / float32 / float64 are read in place; other dtypes (float16, bfloat16, ...) as float32."""
    return src if src.dtype in (torch.uint8, torch.float32, torch.float64) else src.float()


def apply(
    src: torch.Tensor,
    stage: Stage,
    stats: torch.Tensor,
    luts: torch.Tensor,
    epilogue: Epilogue | None,
    out: torch.Tensor,
) -> None:
    """Run the stage on ``src`` [B, C, H, W] and write ``out`` (the epilogue's output, or the working
    values when ``epilogue`` is None) through its strides."""
    src, stage = _split_geometry(_readable(src), stage)
    b, c = src.shape[:2]
    if out.numel() == 0:
        return
    to_int = epilogue is not None and not out.dtype.is_floating_point
    target = out
    if out.dtype not in _DIRECT_OUT or (epilogue is None and not out.dtype.is_floating_point):
        target = torch.empty_like(out, dtype=torch.uint8 if to_int else torch.float32)
    flags = np.zeros(fused.NUM_FLAGS, np.int64)
    flags[fused.I_CO] = epilogue.out_channels if epilogue is not None else c
    flags[fused.I_INT] = int(to_int)
    rows = _rows_per_task(b, out.shape[2], 16, 16)
    _run(src, stage, stats, luts, stage.program.shape[1], flags, out=target, epilogue=epilogue, rows=rows)
    if target is not out:
        out.copy_(target)


def reduce(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, k: int) -> Reduction:
    """Statistics of the chain before op ``k``, for every sample (see :class:`fastaug.plan.Reduction`)."""
    src, stage = _split_geometry(_readable(src), stage)
    b, c, h, w = src.shape
    ho, wo = stage.out_size or (h, w)
    ftype = np.float64 if src.dtype == torch.float64 else np.float32
    rows = _rows_per_task(b, ho, 8, ho)
    nblk = max(1, -(-ho // rows))
    gray = np.zeros((nblk, b), np.float64)
    mn = np.full((nblk, b, c), np.inf, ftype)
    mx = np.full((nblk, b, c), -np.inf, ftype)
    hist = np.zeros((nblk, b, c, 256), np.int64)
    if ho * wo > 0:
        flags = np.zeros(fused.NUM_FLAGS, np.int64)
        flags[fused.I_REDUCE] = 1
        _run(src, stage, stats, luts, k, flags, partials=(gray, mn, mx, hist), rows=rows)
    return Reduction(
        gray_sum=torch.from_numpy(gray.sum(0)),
        minimum=torch.from_numpy(mn.min(0)).float(),
        maximum=torch.from_numpy(mx.max(0)).float(),
        hist=torch.from_numpy(hist.sum(0)),
    )
