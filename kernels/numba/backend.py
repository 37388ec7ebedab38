"""Host side of the Numba backend: tables as numpy arrays, 1-D strided views, threads.

Input dtypes: uint8, float32 and float64 are read in place through their strides; any other dtype
(float16, bfloat16, ...) is first converted with one ``src.float()`` (the reference reads it as
float32 too). Working values are float32, or float64 for float64 input (as the reference computes).
Outputs of dtype uint8 / float32 (float64 for float64 input) are written in place through their
strides (contiguous, channels-last, any view); other dtypes go through a temporary and one
``out.copy_``.

Parallelism: the kernel :func:`fused.run_tasks` is a serial ``nogil`` function over a range of
(row block, sample) tasks; :func:`_launch` runs one contiguous range per thread, with
``numba.get_num_threads()`` threads (so ``numba.set_num_threads`` applies). Thread j gets row block
j of every sample: equal work per thread, and consecutive rows of an image stay on one thread.
(A ``prange`` kernel would do the same split at twice the cold compile time; see
``kernels/numba/fused.py``.)

Every table is reshaped to the exact shape the kernel indexes (a malformed Plan raises here, the
kernel itself has no bounds checks).
"""

from __future__ import annotations

import threading

import numba
import numpy as np
import torch

from fastaug.plan import NUM_PARAMS, Epilogue, Op, Reduction, Stage

from . import fused

_RGB = (int(Op.SATURATION), int(Op.HUE), int(Op.GRAYSCALE))
_CONSTS = {np.float32: fused.constants(np.float32), np.float64: fused.constants(np.float64)}


def _flat(t: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D numpy view over the memory a non-empty tensor spans, and its element strides."""
    t = t.detach()
    span = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
    flat = torch.as_strided(t, (span,), (1,), t.storage_offset())
    return flat.numpy(), np.array(t.stride(), dtype=np.int64)


def _np(t: torch.Tensor | None, dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A small table reshaped to ``shape`` as a C-contiguous numpy array (zeros when absent)."""
    if t is None:
        return np.zeros(shape, dtype=dtype)
    return np.ascontiguousarray(t.detach().cpu().reshape(shape).numpy(), dtype=dtype)


def _working_dtype(src: torch.Tensor):
    return np.float64 if src.dtype == torch.float64 else np.float32


def _readable(src: torch.Tensor) -> torch.Tensor:
    """uint8 / float32 / float64 are read in place; other dtypes (float16, bfloat16, ...) as float32."""
    return src if src.dtype in (torch.uint8, torch.float32, torch.float64) else src.float()


def _out_size(src: torch.Tensor, stage: Stage) -> tuple[int, int]:
    """(Ho, Wo): ``out_size`` applies to stages with geometry (the reference never resizes otherwise)."""
    h, w = src.shape[-2:]
    return tuple(stage.out_size or (h, w)) if stage.geometry is not None else (h, w)


def _effective_codes(stage: Stage, channels: int) -> np.ndarray:
    """program [B, K] with every op the reference does not run replaced by IDENTITY: codes absent
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
    resampled image): resample into a temporary first, then run the program without geometry."""
    if stage.geometry is None or stage.program.shape[1] == 0 or int(Op.SHARPNESS) not in stage.codes_at(0):
        return src, stage
    if not bool((stage.program[:, 0] == int(Op.SHARPNESS)).any()):
        return src, stage
    b, c = src.shape[:2]
    geo_only = Stage(
        program=stage.program[:, :0], params=stage.params[:, :0], in_scale=stage.in_scale,
        geometry=stage.geometry, out_size=stage.out_size,
    )  # fmt: skip
    dtype = torch.float64 if src.dtype == torch.float64 else torch.float32
    tmp = torch.empty((b, c, *_out_size(src, stage)), dtype=dtype)
    empty = torch.zeros(b, 0, c, 2)
    apply(src, geo_only, empty, empty, None, tmp)
    rest = Stage(
        program=stage.program, params=stage.params, stat_slots=stage.stat_slots, slot_codes=stage.slot_codes,
    )  # fmt: skip
    return tmp, rest


def _rows(height: int) -> int:
    """Rows per task: one block of rows per thread."""
    return max(1, -(-height // max(1, numba.get_num_threads())))


def _launch(ntasks: int, args: tuple, scratch: tuple) -> None:
    """Run tasks ``0..ntasks-1`` of :func:`fused.run_tasks`, one contiguous range per thread, each
    thread with its own scratch arrays (``scratch`` = :func:`fused.scratch`'s arguments)."""
    nthreads = max(1, min(numba.get_num_threads(), ntasks))
    bounds = [ntasks * j // nthreads for j in range(nthreads + 1)]
    if nthreads == 1:
        fused.run_tasks(0, ntasks, *args, *fused.scratch(*scratch))
        return
    errors: list[BaseException] = []

    def work(j: int) -> None:
        try:
            fused.run_tasks(bounds[j], bounds[j + 1], *args, *fused.scratch(*scratch))
        except BaseException as e:  # re-raised in the calling thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(j,), daemon=True) for j in range(1, nthreads)]
    for th in threads:
        th.start()
    work(0)
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


def _empty(dtype) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


def _run(
    src: torch.Tensor,
    stage: Stage,
    stats: torch.Tensor,
    luts: torch.Tensor,
    stop: int,
    flags: np.ndarray,
    rows: int,
    out: torch.Tensor | None = None,
    epilogue: Epilogue | None = None,
    partials: tuple[np.ndarray, ...] | None = None,
) -> None:
    """Build the kernel arguments and run it (apply: ``out``; reduce: ``partials``)."""
    ftype = _working_dtype(src)
    b, c, h, w = src.shape
    ho, wo = _out_size(src, stage)
    k = stage.program.shape[1]
    if stage.params.shape[-1] < NUM_PARAMS:
        raise ValueError(f"params must have {NUM_PARAMS} values per op, got {tuple(stage.params.shape)}")
    flat, ss = _flat(src)
    src8, srcf = (flat, _empty(ftype)) if src.dtype == torch.uint8 else (_empty(np.uint8), flat)
    flags[fused.I_SRC8] = int(src.dtype == torch.uint8)
    flags[fused.I_ROWS] = rows
    geo = stage.geometry
    if geo is not None:
        if sum((n - 1) * st for n, st in zip(src.shape[1:], src.stride()[1:])) >= 2**31:
            raise ValueError("numba backend: a resampled sample must span fewer than 2**31 elements")
        flags[fused.I_GEO : fused.I_QUANT + 1] = (2 if geo.bilinear else 1, geo.clamp, geo.fill is not None, geo.quantize)
        mat, win, fill = _np(geo.matrix, ftype, (b, 9)), _np(geo.window, ftype, (b, 4)), _np(geo.fill, ftype, (b, c))
    else:
        mat, win, fill = np.zeros((b, 9), ftype), np.zeros((b, 4), ftype), np.zeros((b, c), ftype)
    ep = epilogue
    nr = 0 if ep is None or ep.rects is None else ep.rects.shape[1]
    flags[fused.I_NORM] = int(ep is not None and ep.mean is not None)
    flags[fused.I_RECTS] = nr
    mean = _np(None if ep is None else ep.mean, ftype, (b, c))
    std = _np(None if ep is None else ep.std, ftype, (b, c))
    rects = _np(None if nr == 0 else ep.rects, np.int32, (b, nr, 4))
    rphase = _np(None if nr == 0 else ep.rect_phase, np.int32, (b, nr))
    rvals = _np(None if nr == 0 else ep.rect_values, ftype, (b, nr, c))
    out8, outf, os_ = _empty(np.uint8), _empty(ftype), np.zeros(4, np.int64)
    if out is not None:
        if out.dtype == torch.uint8:
            out8, os_ = _flat(out)
        else:
            outf, os_ = _flat(out)
    if partials is None:
        partials = (np.zeros((0, b)), np.zeros((0, b, c), ftype), np.zeros((0, b, c), ftype), np.zeros((0, b, c, 256), np.int64))
    out_scale = 1.0 if ep is None else ep.out_scale
    fs = np.array([stage.in_scale, out_scale, w - 1, h - 1], dtype=ftype)
    args = (
        src8, srcf, ss, c, h, w, fs, flags, mat, win, fill, np.arange(wo, dtype=ftype), np.arange(ho, dtype=ftype),
        _effective_codes(stage, c), _np(stage.params[..., :NUM_PARAMS], ftype, (b, k, NUM_PARAMS)),
        _np(stats, ftype, (b, k, c, 2)), _np(luts, ftype, (b, k, c, 256)), _CONSTS[ftype],
        ho, wo, stop, out8, outf, os_, mean, std, rects, rphase, rvals, *partials,
    )  # fmt: skip
    _launch(b * -(-ho // rows), args, (c, wo, ftype, flags[fused.I_GEO] == 2, src.dtype == torch.uint8))


def apply(
    src: torch.Tensor,
    stage: Stage,
    stats: torch.Tensor,
    luts: torch.Tensor,
    epilogue: Epilogue | None,
    out: torch.Tensor,
) -> None:
    """Run the stage on ``src`` [B, C, H, W] and write ``out`` [B, Co, Ho, Wo] (the epilogue's
    output, or the working values when ``epilogue`` is None) through its strides."""
    src, stage = _split_geometry(_readable(src), stage)
    b, c = src.shape[:2]
    co = epilogue.out_channels if epilogue is not None else c
    expected = (b, co, *_out_size(src, stage))
    if tuple(out.shape) != expected or co > c:
        raise ValueError(f"out must have shape {expected} (out_channels <= {c}), got {tuple(out.shape)}")
    if out.numel() == 0:
        return
    if src.numel() == 0:
        raise ValueError("numba backend: cannot resample an empty input into a non-empty output")
    to_int = epilogue is not None and not out.dtype.is_floating_point
    work = torch.float64 if src.dtype == torch.float64 else torch.float32
    target = out
    if out.dtype != (torch.uint8 if to_int else work):
        target = torch.empty_like(out, dtype=torch.uint8 if to_int else work)
    flags = np.zeros(fused.NUM_FLAGS, np.int64)
    flags[fused.I_CO] = co
    flags[fused.I_INT] = int(to_int)
    _run(src, stage, stats, luts, stage.program.shape[1], flags, _rows(out.shape[2]), out=target, epilogue=epilogue)
    if target is not out:
        out.copy_(target)


def reduce(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, k: int) -> Reduction:
    """Statistics of the chain before op ``k``, for every sample (see :class:`fastaug.plan.Reduction`).

    Only what the ops that may occur at ``k`` read is computed, the rest is zeros: the gray sum for
    CONTRAST, min / max and histograms for AUTOCONTRAST and EQUALIZE (all of it when
    ``stage.slot_codes`` is None)."""
    src, stage = _split_geometry(_readable(src), stage)
    if not 0 <= k < stage.program.shape[1]:
        raise ValueError(f"k must index an op of the stage, got {k}")
    codes = set(stage.codes_at(k))
    what = (int(Op.CONTRAST) in codes) | 2 * bool(codes & {int(Op.AUTOCONTRAST), int(Op.EQUALIZE)})
    b, c = src.shape[:2]
    ho, wo = _out_size(src, stage)
    ftype = _working_dtype(src)
    rows = _rows(ho)
    nblk = max(1, -(-ho // rows))
    gray = np.zeros((nblk, b), np.float64)
    mn = np.full((nblk, b, c), np.inf if what & 2 else 0.0, ftype)
    mx = np.full((nblk, b, c), -np.inf if what & 2 else 0.0, ftype)
    hist = np.zeros((nblk, b, c, 256), np.int64)
    if what and src.numel() > 0 and ho * wo > 0:
        flags = np.zeros(fused.NUM_FLAGS, np.int64)
        flags[fused.I_REDUCE] = what
        _run(src, stage, stats, luts, k, flags, rows, partials=(gray, mn, mx, hist))
    return Reduction(
        gray_sum=torch.from_numpy(gray.sum(0)),
        minimum=torch.from_numpy(mn.min(0)).float(),
        maximum=torch.from_numpy(mx.max(0)).float(),
        hist=torch.from_numpy(hist.sum(0)),
    )
