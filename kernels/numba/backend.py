"""Host side of the Numba backend: tables as numpy arrays, 1-D strided views, threads.

Input dtypes: uint8, float32 and float64 are read in place through their strides; any other dtype
(float16, bfloat16, ...) is first converted with one ``src.float()`` (the reference reads it as
float32 too). Working values are float32, or float64 in a stage whose input is float64 (as the reference computes:
only the first stage of a Plan on float64 input, ``engine.run_stage`` keeps intermediate stage outputs in float32;
the statistics tables and the reduction's minima / maxima are in the same working dtype, ``engine.table_dtype``).
Outputs of dtype uint8 / float32 (float64 for float64 input) are written in place through their
strides (contiguous, channels-last, any view); other dtypes go through a temporary and one
``out.copy_``.

Parallelism: the kernel :func:`fused.run_tasks` is a serial ``nogil`` function over a range of
(row block, sample) tasks; :func:`_launch` runs chunks of tasks on :func:`num_threads`
threads (so ``torch.set_num_threads`` applies), taken from a shared counter. Tasks are whole samples
for resampling passes when the batch splits evenly over the threads (each thread packs its samples
once, see ``I_PACK``), else one block of rows per thread and sample.
(A ``prange`` kernel would do the same split at twice the cold compile time; see
``kernels/numba/fused.py``.)

Every table is reshaped to the exact shape the kernel indexes (a malformed Plan raises here, the
kernel itself has no bounds checks).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading

import numpy as np
import torch

from fastaug.ops.catalogue import NEIGHBOURHOOD_OPS, RANDOM_OPS, RGB_OPS
from fastaug.plan import NUM_PARAMS, Epilogue, Op, Reduction, Stage

from . import fused

_RGB = tuple(int(op) for op in RGB_OPS)
_NEIGHBOURHOOD = tuple(int(op) for op in NEIGHBOURHOOD_OPS)
_RANDOM = tuple(int(op) for op in RANDOM_OPS)
_CONSTS = {np.float32: fused.constants(np.float32), np.float64: fused.constants(np.float64)}
_PACK_MAX = 1 << 22  # pixels of a sample packed into a per-thread scratch (16 MiB)
_STREAM_MIN = 4 << 20  # bytes: final float outputs from this size on are written with non-temporal stores


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
    from ``codes_at(k)``, neighbourhood ops except at k = 0 of a stage without geometry, RGB ops unless
    C == 3, random ops without keys, unknown codes."""
    prog = stage.program.detach().cpu().numpy().astype(np.int32)
    codes = np.zeros_like(prog)
    for k in range(prog.shape[1]):
        present = set(stage.codes_at(k))
        if k > 0 or stage.geometry is not None:
            present.difference_update(_NEIGHBOURHOOD)
        if channels != 3:
            present.difference_update(_RGB)
        if stage.keys is None:
            present.difference_update(_RANDOM)
        col = prog[:, k]
        codes[:, k] = np.where(np.isin(col, sorted(present)), col, 0)
    return codes


def num_threads() -> int:
    """Threads for a pass: torch's setting (``torch.set_num_threads``; 1 in DataLoader workers). The kernels
    release the GIL and run on Python threads, so numba's own threading layer is never started: its
    OpenMP layer would reset the OpenMP thread count torch relies on, and deadlock forked workers."""
    return max(1, torch.get_num_threads())


def _rows(height: int, batch: int, geometry: bool) -> int:
    """Rows per task: whole samples for a resampling pass when the samples split evenly (or nearly) over
    the threads (each thread then packs and resamples its own samples, see ``I_PACK``); else one block
    of rows per thread, so that every thread gets an equal share of every sample."""
    n = num_threads()
    if geometry and (batch % n == 0 or batch >= 4 * n):
        return max(1, height)
    return max(1, -(-height // n))


def _launch(ntasks: int, args: tuple, scratch: tuple) -> None:
    """Run tasks ``0..ntasks-1`` of :func:`fused.run_tasks` (``scratch`` = :func:`fused.scratch`'s arguments)."""
    run_chunked(fused.run_tasks, ntasks, args, lambda: fused.scratch(*scratch))


class _Workers:
    """Persistent worker threads of :func:`run_chunked` (a thread started per pass measured 0.2-4 ms on a busy 2-core
    VM, three passes per call). Forked children start without them (``os.register_at_fork``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.size = 0

    def get(self, n: int) -> concurrent.futures.ThreadPoolExecutor:
        with self.lock:
            if self.pool is None or self.size < n:
                if self.pool is not None:
                    self.pool.shutdown(wait=False)
                self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=n, thread_name_prefix="fastaug-numba")
                self.size = n
            return self.pool

    def forget(self) -> None:
        self.lock = threading.Lock()
        self.pool, self.size = None, 0


_WORKERS = _Workers()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WORKERS.forget)


def run_chunked(kernel, ntasks: int, args: tuple, make_scratch) -> None:
    """``kernel(t0, t1, *args, *scratch)`` over tasks ``0..ntasks-1`` on :func:`num_threads` threads (``nogil``
    kernels: the calling thread and persistent workers), each with its own scratch arrays (``make_scratch()``).
    Threads take chunks of consecutive tasks from a shared counter (about 4 per thread): a thread slowed down by a
    busy neighbour on its core does less of the work instead of holding up the pass. Every task writes its own
    outputs, so results do not depend on which thread runs it."""
    nthreads = min(num_threads(), ntasks)
    if nthreads <= 1:
        kernel(0, ntasks, *args, *make_scratch())
        return
    chunk = max(1, ntasks // (4 * nthreads))
    starts = itertools.count(0, chunk)  # next() is atomic under the GIL

    def work() -> None:
        buffers = make_scratch()
        while (t0 := next(starts)) < ntasks:
            kernel(t0, min(t0 + chunk, ntasks), *args, *buffers)

    pool = _WORKERS.get(nthreads - 1)
    futures = [pool.submit(work) for _ in range(1, nthreads)]
    error: BaseException | None = None
    try:
        work()
    except BaseException as e:  # the workers still finish (they share the counter), then it is re-raised
        error = e
    for f in futures:
        if (e := f.exception()) is not None and error is None:
            error = e
    if error is not None:
        raise error


def _empty(dtype) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


def _run(
    src: torch.Tensor,
    stage: Stage,
    stats: torch.Tensor,
    luts: torch.Tensor,
    stops: np.ndarray,
    whats: np.ndarray,
    codes: np.ndarray,
    flags: np.ndarray,
    rows: int,
    out: torch.Tensor | None = None,
    epilogue: Epilogue | None = None,
    partials: tuple[np.ndarray, ...] | None = None,
) -> None:
    """Build the kernel arguments and run it (apply: ``out``; reduce: per-sample ``stops`` / ``whats``,
    ``partials``); ``codes`` = :func:`_effective_codes`."""
    ftype = _working_dtype(src)
    b, c, h, w = src.shape
    ho, wo = _out_size(src, stage)
    k = stage.program.shape[1]
    if stage.folds:
        raise ValueError("the numba kernels run neighbourhood ops at k = 0 only: split the stage's folded SHARPNESS (fastaug.plan.unfold)")
    if stage.params.shape[-1] < NUM_PARAMS:
        raise ValueError(f"params must have {NUM_PARAMS} values per op, got {tuple(stage.params.shape)}")
    flat, ss = _flat(src)
    src8, srcf = (flat, _empty(ftype)) if src.dtype == torch.uint8 else (_empty(np.uint8), flat)
    flags[fused.I_SRC8] = int(src.dtype == torch.uint8)
    flags[fused.I_ROWS] = rows
    geo = stage.geometry
    pack = geo is not None and geo.bilinear and src.dtype == torch.uint8 and c <= 4 and rows >= ho and h * w <= _PACK_MAX
    flags[fused.I_PACK] = int(pack)
    if geo is not None:
        if sum((n - 1) * st for n, st in zip(src.shape[1:], src.stride()[1:])) >= 2**31:
            raise ValueError("numba backend: a resampled sample must span fewer than 2**31 elements")
        flags[fused.I_GEO : fused.I_QUANT + 1] = (2 if geo.bilinear else 1, geo.clamp, geo.fill is not None, geo.quantize)
        mat, win, fill = _np(geo.matrix, ftype, (b, 9)), _np(geo.window, ftype, (b, 4)), _np(geo.fill, ftype, (b, c))
        if geo.quantize:  # a uint8 image's fill: clamped into [0, 255] (the Plan contract)
            fill = np.clip(fill, 0.0, 255.0)
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
    blur = geo is None and k > 0 and stage.taps is not None and bool((codes[:, 0] == int(Op.GAUSSIAN_BLUR)).any())
    taps = _np(stage.taps, ftype, (b, 2, stage.taps.shape[-1])) if blur else np.zeros((b, 2, 1), ftype)
    conv = geo is None and k > 0 and stage.kernel is not None and bool((codes[:, 0] == int(Op.CONVOLVE)).any())
    t = stage.kernel.shape[-1] if conv else 0
    kern = _np(stage.kernel, ftype, (b, t, t)) if conv else np.zeros((b, 0, 0), ftype)
    radius = max((taps.shape[-1] - 1) // 2 if blur else 0, (t - 1) // 2 if conv else 0)
    scratch = (c, wo, ftype, flags[fused.I_GEO] == 2, src.dtype == torch.uint8, h * w if pack else 0, radius)
    args = (
        src8, srcf, ss, c, h, w, fs, flags, mat, win, fill, np.arange(wo, dtype=ftype), np.arange(ho, dtype=ftype),
        codes, _np(stage.params[..., :NUM_PARAMS], ftype, (b, k, NUM_PARAMS)),
        _np(stats, ftype, (b, k, c, 2)), _np(luts, ftype, (b, k, c, 256)), _CONSTS[ftype],
        ho, wo, stops, whats, out8, outf, os_, mean, std, rects, rphase, rvals, *partials, taps,
        _np(stage.keys, np.int64, (b, k)), kern,
        _np(geo.displacement, ftype, (b, ho, wo, 2)) if geo is not None and geo.displacement is not None else np.zeros((1, 1, 0, 2), ftype),
    )  # fmt: skip
    _launch(b * -(-ho // rows), args, scratch)


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
    src = _readable(src)
    b, c = src.shape[:2]
    co = epilogue.out_channels if epilogue is not None else c
    expected = (b, co, *_out_size(src, stage))
    if tuple(out.shape) != expected or co > c:
        raise ValueError(f"out must have shape {expected} (out_channels <= {c}), got {tuple(out.shape)}")
    if out.numel() == 0:
        return
    if src.numel() == 0:
        raise ValueError("numba backend: cannot resample an empty input into a non-empty output")
    to_int = not out.dtype.is_floating_point  # uint8: the epilogue's output, or an integral stage's values
    work = torch.float64 if src.dtype == torch.float64 else torch.float32
    target = out
    if out.dtype != (torch.uint8 if to_int else work):
        target = torch.empty_like(out, dtype=torch.uint8 if to_int else work)
    flags = np.zeros(fused.NUM_FLAGS, np.int64)
    flags[fused.I_CO] = co
    flags[fused.I_INT] = int(to_int)
    # the final output of a large batch goes to memory with non-temporal stores (it cannot stay in the caches anyway);
    # a stage's working values, read by the next stage at once, keep plain stores
    flags[fused.I_STREAM] = int(epilogue is not None and not to_int and target.numel() * target.element_size() >= _STREAM_MIN)
    stops = np.full(b, stage.program.shape[1], np.int64)
    rows = _rows(out.shape[2], b, stage.geometry is not None)
    _run(src, stage, stats, luts, stops, np.zeros(b, np.int64), _effective_codes(stage, c), flags, rows, out=target, epilogue=epilogue)
    if target is not out:
        out.copy_(target)


def _whats(stage: Stage, codes: np.ndarray, stop: int | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample stops and the statistics each sample needs (1: gray sum, 2: min / max and histograms).

    int k: what the ops that may occur at k read (all of it when ``stage.slot_codes`` is None), for every
    sample. Tensor: what the sample's own (effective) op at ``stop[b]`` reads; 0 (skip) for a stop
    outside [0, K) or an op reading no statistics."""
    b, k_total = codes.shape
    if not isinstance(stop, torch.Tensor):
        if not 0 <= stop < k_total:
            raise ValueError(f"k must index an op of the stage, got {stop}")
        present = set(stage.codes_at(stop))
        what = (int(Op.CONTRAST) in present) | 2 * bool(present & {int(Op.AUTOCONTRAST), int(Op.EQUALIZE)})
        return np.full(b, stop, np.int64), np.full(b, what, np.int64)
    stops = stop.detach().cpu().to(torch.int64).numpy().reshape(b)
    valid = (stops >= 0) & (stops < k_total)
    stops = np.where(valid, stops, 0)
    code = codes[np.arange(b), stops] if k_total else np.zeros(b, np.int32)
    what = (code == int(Op.CONTRAST)) | 2 * ((code == int(Op.AUTOCONTRAST)) | (code == int(Op.EQUALIZE)))
    return stops, np.where(valid, what, 0).astype(np.int64)


def reduce(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, stop: int | torch.Tensor) -> Reduction:
    """Statistics of each sample's chain before op ``stop`` (an int k, or a per-sample tensor [B]), see
    :class:`fastaug.plan.Reduction`. Only what is read is computed, the rest is zeros (see :func:`_whats`);
    skipped samples cost nothing."""
    src = _readable(src)
    b, c = src.shape[:2]
    codes = _effective_codes(stage, c)
    stops, whats = _whats(stage, codes, stop)
    ho, wo = _out_size(src, stage)
    ftype = _working_dtype(src)
    rows = _rows(ho, b, stage.geometry is not None)
    nblk = max(1, -(-ho // rows))
    gray = np.zeros((nblk, b), np.float64)
    mn = np.full((nblk, b, c), np.inf, ftype)
    mx = np.full((nblk, b, c), -np.inf, ftype)
    hist = np.zeros((nblk, b, c, 256), np.int64)
    if whats.any() and src.numel() > 0 and ho * wo > 0:
        flags = np.zeros(fused.NUM_FLAGS, np.int64)
        flags[fused.I_REDUCE] = 1
        _run(src, stage, stats, luts, stops, whats, codes, flags, rows, partials=(gray, mn, mx, hist))
    ranged = (whats & 2 != 0)[:, None]
    return Reduction(
        gray_sum=torch.from_numpy(gray.sum(0)),
        minimum=torch.from_numpy(np.where(ranged, mn.min(0), ftype(0))),  # the working dtype, as the tables
        maximum=torch.from_numpy(np.where(ranged, mx.max(0), ftype(0))),
        hist=torch.from_numpy(hist.sum(0)),
    )
