"""The statistics tables of a reduction round, written on the device in one launch (``engine.run_stage_stats``).

A round's ``reduce`` leaves per sample a gray sum, per-channel minima / maxima and 256-bin histograms;
:func:`stats_tables_kernel` turns them into the entries the apply kernel reads at each sample's stop: the
(min, max) pair per channel, CONTRAST's gray mean in channel 0's first entry, and EQUALIZE's lookup table
(``engine.equalize_luts``' integer rule, the same bits), one program per (sample, channel). On the host
that is ~20 small torch ops per round; here it is one launch, and the histograms stay int32. The tables and the
minima / maxima are in the stage's working dtype (``engine.table_dtype``: float64 in a float64 stage, else float32).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton import knobs

from fastaug.plan import Op, Stage

from . import fused

_INTERPRETED = bool(knobs.runtime.interpret)
_CONTRAST = int(Op.CONTRAST)


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _min(a, b):
    return tl.minimum(a, b)


TABLES_PLAIN = ("B", "K", "pixels")  # batch size, program length and resolution: one compiled kernel for all


@triton.jit(do_not_specialize=TABLES_PLAIN)
def stats_tables_kernel(gsum, vmin, vmax, hist, stops, prog, flat_stats, flat_luts, B, K, pixels,
                        C: tl.constexpr, CONTRAST: tl.constexpr, LUTS: tl.constexpr, CONTRAST_CODE: tl.constexpr):
    """Entries of sample ``b`` (program 0), channel ``c`` (program 1) at row ``b * K + stops[b]`` of the flat tables
    (the spare row ``B * K`` when the sample is skipped: ``stops[b]`` outside [0, K))."""
    b = tl.program_id(0)
    c = tl.program_id(1)
    stop = tl.load(stops + b).to(tl.int64)
    inside = (stop >= 0) & (stop < K)
    row = tl.where(inside, b * K + stop, B * K)
    lo = tl.load(vmin + b * C + c)
    hi = tl.load(vmax + b * C + c)
    if CONTRAST:
        code = tl.load(prog + b * K + tl.where(inside, stop, 0))
        mean = (tl.load(gsum + b) / pixels.to(tl.float64)).to(flat_stats.dtype.element_ty)  # float64 division, then rounded
        lo = tl.where(inside & (code == CONTRAST_CODE) & (c == 0), mean, lo)
    tl.store(flat_stats + (row * C + c) * 2, lo)
    tl.store(flat_stats + (row * C + c) * 2 + 1, hi)
    if LUTS:
        bins = tl.arange(0, 256)
        h = tl.load(hist + (b * C + c) * 256 + bins).to(tl.int64)
        cum = tl.associative_scan(h, 0, _add)
        n = tl.reduce(h, 0, _add)
        last = tl.reduce(tl.where(cum == n, bins, 256), 0, _min)  # the first bin reaching the total: the last non-empty
        step = (n - tl.reduce(tl.where(bins == last, h, 0), 0, _add)) // 255
        lut = (cum - h + step // 2) // tl.maximum(step, 1)  # bin i: (cum[i - 1] + step // 2) // step; bin 0: 0
        lut = tl.minimum(tl.maximum(lut, 0), 255)
        lut = tl.where(step != 0, lut, bins.to(tl.int64))
        tl.store(flat_luts + (row * C + c) * 256 + bins, lut.to(flat_luts.dtype.element_ty))


def kernel_module(interpret: bool | None = None):
    """This module with its kernels built for the interpreter or the compiler (``None``: current mode)."""
    return fused.module_copy(__name__, __file__, _INTERPRETED, interpret)


def prepare_tables(gsum: torch.Tensor, vmin: torch.Tensor, vmax: torch.Tensor, hist: torch.Tensor, stops: torch.Tensor,
                   stage: Stage, flat_stats: torch.Tensor, flat_luts: torch.Tensor | None, pixels: int,
                   contrast: bool) -> fused.Launch:
    """The launch of :func:`stats_tables_kernel` for one round (``hist`` int32 [B, C, 256] as ``reduce_kernel`` left it)."""
    bsz, c = vmin.shape
    k_total = stage.program.shape[1]
    args = {"gsum": gsum, "vmin": vmin, "vmax": vmax, "hist": hist, "stops": stops, "prog": stage.program.contiguous(),
            "flat_stats": flat_stats, "flat_luts": flat_stats if flat_luts is None else flat_luts,
            "B": bsz, "K": k_total, "pixels": pixels}  # fmt: skip
    cx = {"C": c, "CONTRAST": contrast, "LUTS": flat_luts is not None, "CONTRAST_CODE": _CONTRAST}
    return fused.Launch("stats_tables_kernel", (bsz, c), args, cx, num_warps=1)


def launch(spec: fused.Launch) -> None:
    """Run a prepared launch with this module's kernels of the current mode (compiled or interpreted)."""
    kernel = getattr(kernel_module(), spec.kernel)
    kernel[spec.grid](**spec.args, **spec.constexprs, num_warps=spec.num_warps)


def reduce_into_tables(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, stop: torch.Tensor,
                       flat_stats: torch.Tensor, flat_luts: torch.Tensor | None, pixels: int, contrast: bool) -> None:
    """One statistics round on the device: ``reduce_kernel`` for the per-sample stops, then the tables, two launches."""
    spec = fused.prepare_reduce(src, stage, stats, luts, stop)
    if spec.grid[0] * spec.grid[1]:
        fused.launch(spec)
    a = spec.args
    if a["vmin"].numel():
        launch(prepare_tables(a["gsum"], a["vmin"], a["vmax"], a["hist"], a["stops"], stage, flat_stats, flat_luts, pixels, contrast))
