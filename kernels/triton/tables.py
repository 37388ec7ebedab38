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


SETUP_PLAIN = ("B", "K", "SS", "GS", "ES")  # batch size, program length, row strides: one compiled kernel for all
SETUP_BLOCK = 32


@triton.jit(do_not_specialize=SETUP_PLAIN)
def round_setup_kernel(prog, allowed, stops, gsum, vmin, vmax, hist, B, K, SS, GS, ES, R: tl.constexpr, C: tl.constexpr,
                       CP: tl.constexpr, BLOCK: tl.constexpr):
    """The statistics rounds of a stage, set up for a block of samples (program 0) and round ``r`` (program 1):
    ``stops[r, b]``, the position of sample b's (r+1)-th statistics op or K (skipped; ``engine.stat_positions``'
    rule: a statistics code that ``allowed[k]``, a bit per code, admits at k), and round r's zeroed reduction
    buffers (gray sum 0, minima +inf, maxima -inf, histograms 0). Rows of round r start at r * SS (stops), r * GS
    (gray sums), r * ES (minima / maxima), r * B * C * 256 (histograms)."""
    r = tl.program_id(1)
    b = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = b < B
    if r == 0:
        for q in tl.static_range(R):
            tl.store(stops + q * SS + b, K, mask=live)
        count = tl.full((BLOCK,), 0, tl.int32)
        for k in range(K):
            code = tl.load(prog + b.to(tl.int64) * K + k, mask=live, other=0)
            bits = tl.load(allowed + k)
            hit = ((bits >> code.to(tl.int64)) & 1) != 0
            count += hit.to(tl.int32)
            tl.store(stops + (count - 1) * SS + b, k, mask=live & hit & (count <= R))
    tl.store(gsum + r * GS + b, tl.full((BLOCK,), 0.0, tl.float64), mask=live)
    ch = tl.arange(0, CP)
    at = r * ES + b[:, None] * C + ch[None, :]
    inside = live[:, None] & (ch[None, :] < C)
    big = tl.full((BLOCK, CP), float("inf"), vmin.dtype.element_ty)
    tl.store(vmin + at, big, mask=inside)
    tl.store(vmax + at, -big, mask=inside)
    bins = tl.arange(0, 256)
    rb = r * B + b
    for c in tl.static_range(C):
        tl.store(hist + (rb[:, None].to(tl.int64) * C + c) * 256 + bins[None, :], tl.full((BLOCK, 256), 0, tl.int32),
                 mask=live[:, None])


def prepare_round_setup(stage: Stage, allowed: torch.Tensor, batch: int, channels: int, dtype: torch.dtype, device: torch.device,
                        rounds: int | None = None) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]], fused.Launch]:
    """``stops`` [R,B] int32, each round's reduction buffers (gray sum, min, max, hist: ``fused.prepare_reduce``'s
    ``outputs``), all views of one allocation, each round's row 16-byte aligned (the kernels that read them compile
    one variant whatever B and the round), and the launch that fills them. ``allowed`` [K] int64: bit ``code`` set
    where statistics op ``code`` may run at position k."""
    rounds, k = stage.rounds() if rounds is None else rounds, stage.program.shape[1]
    parts = [(torch.int32, batch), (torch.float64, batch), (dtype, batch * channels), (dtype, batch * channels),
             (torch.int32, batch * channels * 256)]  # (dtype, elements per round): stops, gsum, vmin, vmax, hist
    strides = [fused.aligned16(n * t.itemsize) for t, n in parts]  # bytes per round's row
    raw = torch.empty(rounds * sum(strides), dtype=torch.uint8, device=device)
    views, at = [], 0
    for (t, n), stride in zip(parts, strides, strict=True):
        rows = raw[at : at + rounds * stride].view(t).view(rounds, stride // t.itemsize)
        views.append(rows[:, :n])
        at += rounds * stride
    stops, gsum, vmin, vmax, hist = views
    outputs = [(gsum[r], vmin[r].view(batch, channels), vmax[r].view(batch, channels), hist[r].view(batch, channels, 256))
               for r in range(rounds)]  # fmt: skip
    # a split stage's program is a view of its folded stage's (plan.unfold): the kernel reads rows of K
    args = {"prog": stage.program.contiguous(), "allowed": allowed, "stops": stops, "gsum": gsum, "vmin": vmin, "vmax": vmax, "hist": hist,
            "B": batch, "K": k, "SS": stops.stride(0), "GS": gsum.stride(0), "ES": vmin.stride(0)}  # fmt: skip
    cx = {"R": rounds, "C": channels, "CP": triton.next_power_of_2(channels), "BLOCK": SETUP_BLOCK}
    return stops, outputs, fused.Launch("round_setup_kernel", (triton.cdiv(batch, SETUP_BLOCK), rounds), args, cx, num_warps=4)


def round_setup(stage: Stage, allowed: torch.Tensor, batch: int, channels: int, dtype: torch.dtype,
                device: torch.device, rounds: int | None = None) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]]]:
    """The stops [R,B] of every statistics round of ``stage`` (``rounds`` of them, default ``stage.rounds()``; the
    positions ``allowed`` admits) and their zeroed reduction buffers: one allocation, one launch (instead of ~9 torch
    ops for the stops and 4 allocations per round)."""
    stops, outputs, spec = prepare_round_setup(stage, allowed, batch, channels, dtype, device, rounds)
    if batch and spec.constexprs["R"]:
        launch(spec)
    return stops, outputs


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
    fused.run_launch(kernel_module(), spec)


def reduce_into_tables(src: torch.Tensor, stage: Stage, stats: torch.Tensor, luts: torch.Tensor, stop: torch.Tensor,
                       flat_stats: torch.Tensor, flat_luts: torch.Tensor | None, pixels: int, contrast: bool,
                       outputs: tuple[torch.Tensor, ...] | None = None, folds: torch.Tensor | None = None) -> None:
    """One statistics round on the device: ``reduce_kernel`` for the per-sample stops, then the tables, two launches
    (``outputs``: the round's initialised reduction buffers from :func:`round_setup`; None: allocated here)."""
    autocontrast = stage.may_run(Op.AUTOCONTRAST, positions=stage.stat_slots)
    # only the statistics the stage's ops read: AUTOCONTRAST the min / max, EQUALIZE the histograms, CONTRAST the gray sum
    spec = fused.prepare_reduce(src, stage, stats, luts, stop, outputs, (autocontrast, flat_luts is not None, contrast), folds)
    if spec.grid[0] * spec.grid[1]:
        fused.launch(spec)
    a = spec.args
    if a["vmin"].numel():
        launch(prepare_tables(a["gsum"], a["vmin"], a["vmax"], a["hist"], a["stops"], stage, flat_stats, flat_luts, pixels, contrast))
