"""Run a Plan on a backend: stage orchestration and statistics, shared by every backend.

A backend is a module with ``reduce(src, stage, stats, luts, stop) -> Reduction`` and
``apply(src, stage, stats, luts, epilogue, out)``; see ``fastaug/plan.py`` and ``kernels/reference.py``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import importlib
import math
import os
import sys
import threading
from types import ModuleType

import torch

from fastaug.constants import cached, constant
from fastaug.ops.catalogue import NEIGHBOURHOOD_OPS
from fastaug.plan import STAT_OPS, Epilogue, Op, Plan, Stage, unfold

BACKENDS = ("torch", "numba", "triton")
_MODULES = {"torch": "fastaug.kernels.reference", "numba": "fastaug.kernels.numba", "triton": "fastaug.kernels.triton"}


def _triton_usable(device: torch.device) -> bool:
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto``: triton for CUDA tensors, numba for CPU tensors."""
    if backend == "auto":
        return "triton" if device.type == "cuda" else "numba"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend == "numba" and device.type != "cpu":
        raise ValueError(f"backend='numba' runs on CPU tensors, got a tensor on {device}")
    if backend == "triton" and not _triton_usable(device):
        raise ValueError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter)")
    return backend


def load_backend(name: str) -> ModuleType:
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as e:
        if name == "triton" and (e.name or "").split(".")[0] == "triton":
            raise ImportError("backend='triton' needs Triton: pip install 'fastaug[triton]' (CUDA builds of torch bring it)") from e
        raise


def equalize_luts(hist: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Equalization lookup tables [..., 256] from histograms [..., 256] (PIL/torchvision's rule), as ``dtype`` (the
    stage's working dtype: :func:`table_dtype`; the entries are integers 0..255, exact in either)."""
    hist = hist.to(torch.int64)
    n = hist.sum(-1, keepdim=True)
    cum = hist.cumsum(-1)
    last = cum.argmax(-1, keepdim=True)  # first bin reaching the total: the last non-empty bin
    step = torch.div(n - hist.gather(-1, last), 255, rounding_mode="floor")
    lut = torch.div(cum[..., :-1] + torch.div(step, 2, rounding_mode="floor"), step.clamp(min=1), rounding_mode="floor")
    lut = torch.nn.functional.pad(lut.clamp(0, 255), (1, 0))  # bin 0 maps to 0
    identity = constant(list(range(256)), torch.int64, hist.device).expand_as(lut)
    return torch.where(step != 0, lut, identity).to(dtype)


def stat_positions(stage: Stage) -> torch.Tensor:
    """[B,K] bool: sample b runs a statistics op at position k (a code of ``STAT_OPS`` that ``codes_at(k)``
    allows; other codes there are not run, so they need no statistics). Three ops, whatever K."""
    prog = stage.program
    stat_codes = [int(op) for op in STAT_OPS]
    allowed = [[k in stage.stat_slots and code in stage.codes_at(k) for code in stat_codes] for k in range(prog.shape[1])]
    hit = prog.unsqueeze(-1) == constant(stat_codes, prog.dtype, prog.device)  # [B,K,S]; scalars: no host -> device copy
    return (hit & constant(allowed, torch.bool, prog.device)).any(-1)


def allowed_stat_codes(stage: Stage, device: torch.device, part: tuple[int, int] | None = None) -> torch.Tensor:
    """[K] int64, a cached constant: bit ``code`` set where statistics op ``code`` may run at position k (the rule of
    :func:`stat_positions` as bits, for a kernel); ``part`` = (lo, hi): positions lo <= k < hi only."""
    stat = [int(op) for op in STAT_OPS]
    lo, hi = part or (0, stage.program.shape[1])
    bits = [sum(1 << code for code in stat if k in stage.stat_slots and code in stage.codes_at(k)) if lo <= k < hi else 0
            for k in range(stage.program.shape[1])]  # fmt: skip
    return constant(bits, torch.int64, device)


def table_dtype(src: torch.Tensor) -> torch.dtype:
    """The dtype of a stage's statistics tables: its working dtype, float64 for a float64 stage input (only the first
    stage of a Plan on float64 input; every backend then computes in float64), else float32. A float64 pixel at its
    channel's minimum / maximum equals the table's entry only when the entry is float64 too (AUTOCONTRAST's backward
    finds the extremes by equality), and a float32 min / max / gray mean would move every float64 output by ~1e-8."""
    return torch.float64 if src.dtype == torch.float64 else torch.float32


def stage_tables(stage: Stage, batch: int, channels: int, device: torch.device, dtype: torch.dtype = torch.float32):
    """Zeroed statistics [B,K,C,2] and equalization tables [B,K,C,256] of a stage, as ``dtype`` (:func:`table_dtype`
    of the stage input). The tables are allocated only where EQUALIZE can run (else a zero view of one cached
    element: no op, no memory, never read)."""
    stats, luts, _, _ = _stage_buffers(stage, batch, channels, device, dtype)
    return stats, luts


def _stage_buffers(stage: Stage, batch: int, channels: int, device: torch.device, dtype: torch.dtype = torch.float32):
    """(stats, luts, their flat buffers or None) where the flat buffers hold one more row than ``B*K``: the row that
    the statistics rounds write for the samples they skip (one ``index_put`` per round, no read-modify-write)."""
    k = stage.program.shape[1]
    if not stage.stat_slots:  # nothing written or read: zero views of one cached element (no op, no memory)
        zero = constant(0.0, dtype, device)
        return zero.expand(batch, k, channels, 2), zero.expand(batch, k, channels, 256), None, None
    rows = batch * k + 1
    flat_stats = torch.zeros(rows, channels, 2, dtype=dtype, device=device)
    stats = flat_stats[: batch * k].view(batch, k, channels, 2)
    if not stage.may_run(Op.EQUALIZE, positions=stage.stat_slots):
        luts = constant(0.0, dtype, device).expand(batch, k, channels, 256)
        return stats, luts, flat_stats, None
    flat_luts = torch.zeros(rows, channels, 256, dtype=dtype, device=device)
    return stats, flat_luts[: batch * k].view(batch, k, channels, 256), flat_stats, flat_luts


def _round_stops(stage: Stage, found: torch.Tensor) -> torch.Tensor:
    """[R,B] int32: per statistics round r, each sample's position of its r-th statistics op, or K (skipped)."""
    k_total = stage.program.shape[1]
    rounds = stage.rounds()
    dev = found.device
    count = found.cumsum(1, dtype=torch.int32)  # [B,K]: statistics ops up to k (the r-th one has count r + 1)
    r1 = constant(list(range(1, rounds + 1)), torch.int32, dev).view(rounds, 1, 1)
    pos = constant(list(range(k_total)), torch.int32, dev)
    return torch.where(found.unsqueeze(0) & (count.unsqueeze(0) == r1), pos, k_total).amin(2)  # int32: the kernels' stops


def run_stage_stats(backend: ModuleType, src: torch.Tensor, stage: Stage, channels: int, folds: torch.Tensor | None = None):
    """Fill the statistics tables of a stage: one reduction per *round*, not per slot.

    Round r reduces, for every sample at once, the chain before that sample's r-th statistics op
    (``reduce`` with a per-sample ``stop``; samples with fewer statistics ops are skipped). A sample's
    r-th reduction reads only its earlier statistics ops, filled by rounds < r. ColorJitter (CONTRAST at
    a per-sample random one of four slots) thus needs one reduction pass, not four. The number of
    rounds is static (``stage.rounds()``: the most statistics ops one sample may run, no host sync); on CPU
    the loop stops at the first round without any sample (free there), on GPU empty rounds cost a launch
    of early-exiting programs.
    The stops of every round are computed at once; a round writes its entries with one ``index_put`` (skipped
    samples write the spare row of the flat tables), or, on a backend with ``reduce_into_tables`` (Triton), the
    round's reduction and its entries are two launches.
    With ``folds`` (a backend's fold buffers, ``plan.Fold``), the rounds run part by part (the positions between two
    folds), each part followed by its fold's buffer fill: a sample's statistics after a fold read its chain resumed
    from that fold's buffer."""
    batch = src.shape[0]
    work = table_dtype(src)
    stats, luts, flat_stats, flat_luts = _stage_buffers(stage, batch, channels, src.device, work)
    if folds is not None and stage.folds:
        _rounds_and_fills(backend, src, stage, channels, folds, (stats, luts, flat_stats, flat_luts), work)
        return stats, luts
    if not stage.stat_slots:
        return stats, luts
    h, w = stage.out_size or tuple(src.shape[-2:])
    k_total = stage.program.shape[1]
    setup = getattr(backend, "round_setup", None)
    found = stat_positions(stage) if src.device.type == "cpu" or setup is None else None
    if found is not None and src.device.type == "cpu" and stage.rounds() < len(stage.stat_slots) and bool(
        (found.sum(1) > stage.rounds()).any()
    ):
        raise RuntimeError(f"a sample runs more statistics ops than the stage's bound of {stage.rounds()} rounds (a compiler bug)")
    contrast = stage.may_run(Op.CONTRAST, positions=stage.stat_slots)
    on_device = getattr(backend, "reduce_into_tables", None)  # a backend that writes the entries itself (one launch)
    if on_device is not None:
        if setup is not None:  # the stops and the rounds' reduction buffers: one allocation and one launch
            stops, outputs = setup(stage, allowed_stat_codes(stage, src.device), batch, channels, work, src.device)
        else:
            stops, outputs = _round_stops(stage, found), [None] * stage.rounds()
        for r in range(stage.rounds()):
            on_device(src, stage, stats, luts, stops[r], flat_stats, flat_luts, h * w, contrast, outputs[r])
        return stats, luts
    stops = _round_stops(stage, found)  # [R,B]
    rows = cached(("flat rows", batch, k_total, src.device), lambda: torch.arange(0, batch * k_total, k_total, device=src.device))
    target = torch.where(stops < k_total, rows + stops, batch * k_total)  # [R,B]: flat row, or the spare one
    if contrast:  # CONTRAST reads the gray mean from channel 0's first entry; other statistics ops their own entries
        is_contrast = stage.program.reshape(-1).gather(0, target.clamp(max=batch * k_total - 1).reshape(-1)) == int(Op.CONTRAST)
        is_contrast = is_contrast.view(stops.shape)
    for r in range(stage.rounds()):
        stop = stops[r]
        if src.device.type == "cpu" and bool((stop == k_total).all()):
            break
        red = backend.reduce(src, stage, stats, luts, stop)
        entry = torch.stack([red.minimum.to(work), red.maximum.to(work)], -1)  # [B,C,2]
        if contrast:
            mean = (red.gray_sum / (h * w)).to(work)  # float64 division, rounded to the tables' dtype
            entry[:, 0, 0] = torch.where(is_contrast[r], mean, entry[:, 0, 0])
        flat_stats.index_put_((target[r],), entry)
        if flat_luts is not None:
            flat_luts.index_put_((target[r],), equalize_luts(red.hist, work))
    return stats, luts


def _rounds_and_fills(backend: ModuleType, src: torch.Tensor, stage: Stage, channels: int, folds: torch.Tensor, tables,
                      work: torch.dtype) -> None:
    """:func:`run_stage_stats` of a stage with folds on a backend with fold buffers (Triton): per part, its statistics
    rounds (round setup + reduction + tables launches), then the fill of the fold that ends it."""
    stats, luts, flat_stats, flat_luts = tables
    batch = src.shape[0]
    h, w = stage.out_size or tuple(src.shape[-2:])
    contrast = stage.may_run(Op.CONTRAST, positions=stage.stat_slots)
    for p, (lo, hi, rounds) in enumerate(stage.parts()):
        if rounds:
            allowed = allowed_stat_codes(stage, src.device, (lo, hi))
            stops, outputs = backend.round_setup(stage, allowed, batch, channels, work, src.device, rounds)
            for r in range(rounds):
                backend.reduce_into_tables(src, stage, stats, luts, stops[r], flat_stats, flat_luts, h * w, contrast, outputs[r],
                                           folds)  # fmt: skip
        if p < len(stage.folds):
            backend.fold_fill(src, stage, stats, luts, folds, p)


def presample(backend: ModuleType, src: torch.Tensor, stage: Stage) -> tuple[torch.Tensor, Stage]:
    """Resample once, before the statistics, where the backend asks for it (``backend.PRESAMPLE``).

    A stage with geometry and statistics otherwise resamples in every pass (reduction and apply). When
    the resampled values are exact in uint8 (uint8 input read with ``in_scale`` 1, ``quantize``, a fill
    of integers in [0, 255]: a blend of such values rounded), the geometry runs alone into a uint8
    buffer and the program runs on it as a stage without geometry: bit-identical results, one
    resampling plus a uint8 round trip through memory. Only CPU tensors (the fill check reads values).
    Returns the (possibly new) stage input and stage."""
    geo = stage.geometry
    if not getattr(backend, "PRESAMPLE", False) or geo is None or not stage.stat_slots or src.device.type != "cpu":
        return src, stage
    if src.dtype != torch.uint8 or stage.in_scale != 1.0 or not geo.quantize:
        return src, stage
    if geo.fill is not None and not bool(((geo.fill >= 0) & (geo.fill <= 255) & (geo.fill == torch.round(geo.fill))).all()):
        return src, stage
    b, c = src.shape[:2]
    h, w = stage.out_size or tuple(src.shape[-2:])
    geo_only = Stage(program=stage.program[:, :0], params=stage.params[:, :0], geometry=geo, out_size=(h, w))
    tmp = empty((b, c, h, w), torch.uint8, src.device)
    none = torch.zeros(b, 0, c, 2, device=src.device)
    backend.apply(src, geo_only, none, none, Epilogue(out_dtype=torch.uint8, out_channels=c), tmp)
    program = stage.program
    if program.shape[1]:  # a neighbourhood op is an identity in a stage with geometry: it must stay one
        first = program[:, :1]
        neighbourhood = torch.isin(first, torch.tensor([int(op) for op in NEIGHBOURHOOD_OPS], dtype=first.dtype))
        program = torch.cat([torch.where(neighbourhood, torch.zeros_like(first), first), program[:, 1:]], 1)
    rest = dataclasses.replace(stage, program=program, geometry=None, out_size=None)
    return tmp, rest


def prologue(backend: ModuleType, src: torch.Tensor, stage: Stage) -> tuple[torch.Tensor, Stage]:
    """SUPERPIXELS at k = 0 of a stage without geometry, in torch (``fastaug.kernels.reference.superpixels_of``), for a
    backend whose kernels see an identity there: returns the new stage input (working values, float) and the stage
    with SUPERPIXELS replaced by IDENTITY and ``in_scale`` 1."""
    if getattr(backend, "RUNS_WHOLE_IMAGE_OPS", False) or stage.geometry is not None or stage.program.shape[1] == 0:
        return src, stage
    if int(Op.SUPERPIXELS) not in stage.codes_at(0) or stage.keys is None or stage.max_segments < 1:
        return src, stage
    ref = load_backend("torch")
    first = stage.program[:, 0]
    active = first == int(Op.SUPERPIXELS)
    work = torch.float64 if src.dtype == torch.float64 else torch.float32
    v = src.to(work) * stage.in_scale
    out = torch.where(active.view(-1, 1, 1, 1), ref.superpixels_of(v, stage, active), v)
    program = torch.cat([torch.where(active, torch.zeros_like(first), first).unsqueeze(1), stage.program[:, 1:]], 1)
    return out, dataclasses.replace(stage, program=program, in_scale=1.0)


def run_stage(
    mod: ModuleType, src: torch.Tensor, stage: Stage, plan: Plan, last: bool, layout: torch.Tensor, tables=None,
    compact: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One stage on a backend module: presample where it pays, the statistics rounds (or the given
    ``tables`` = (stats, luts)), then ``apply`` into a fresh output (the last stage: the epilogue's
    dtype, channels and ``layout``'s memory format; else float32 working values, or with ``compact`` uint8 when
    the stage is ``integral``: a quarter of the memory traffic, the same values). The one stage loop
    body of the engine and of autograd. Returns (output, stats, luts)."""
    src, stage = prologue(mod, src, stage)
    src, stage = presample(mod, src, stage)
    buffers = getattr(mod, "fold_buffers", None)
    folds = buffers(src, stage) if buffers is not None and stage.folds else None  # plan.Fold, filled with the rounds
    if tables is not None and folds is not None:
        raise ValueError("a stage with folded SHARPNESS ops fills its fold buffers with its statistics: run it without tables")
    stats, luts = tables if tables is not None else run_stage_stats(mod, src, stage, plan.channels, folds)
    more = {} if folds is None else {"folds": folds}
    batch = src.shape[0]
    h, w = stage.out_size or tuple(src.shape[-2:])
    if last:
        ep = plan.epilogue
        fmt = torch.channels_last if is_channels_last(layout) else torch.contiguous_format
        out = empty((batch, ep.out_channels, h, w), ep.out_dtype, src.device, fmt)
        mod.apply(src, stage, stats, luts, ep, out, **more)
    else:
        out = empty((batch, plan.channels, h, w), torch.uint8 if compact and stage.integral else torch.float32, src.device)
        mod.apply(src, stage, stats, luts, None, out, **more)
    return out, stats, luts


def execute(plan: Plan, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Run every stage of the plan on ``x`` [B,C,H,W]; returns the output batch."""
    mod = load_backend(resolve_backend(backend, x.device))
    if not getattr(mod, "FOLDS_SHARPNESS", False):  # the backend runs neighbourhood ops at k = 0 only: split the folds
        plan = unfold(plan)
    src = x
    for s, stage in enumerate(plan.stages):
        src, _, _ = run_stage(mod, src, stage, plan, s == len(plan.stages) - 1, x, compact=True)
    return src


_HUGE_MIN = 4 << 20  # bytes: CPU outputs from this size on are backed by transparent huge pages
_MADV_HUGEPAGE = 14


@functools.cache
def _madvise():
    """libc's ``madvise`` (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


class BufferPool:
    """Large CPU buffers kept for reuse once nothing outside the pool holds them (a CPU analogue of torch's CUDA
    caching allocator).

    A fresh output of tens of MB costs a page fault (and the kernel's zeroing) per page on first write: measured,
    64x3x224x224 float32 on 2 cores, 6 ms for an 11 ms pass even with huge pages. A training loop drops each batch
    before the next call, so the next call of the same size gets the same memory back, already mapped. A buffer is
    reused only when its storage's use count says that the pool holds the only reference (any tensor or view of it
    alive elsewhere keeps it out), and never once it has moved to shared memory (a DataLoader worker's batch is read
    by the main process after the worker dropped it). It keeps at most ``capacity`` buffers and ``max_bytes`` in all
    (``FASTAUG_BUFFER_POOL_MB``, default 1024), the least recently used dropped first (a dropped buffer still in use
    lives on with its tensors). ``FASTAUG_BUFFER_POOL=0`` turns it off; :meth:`clear` frees it."""

    def __init__(self, capacity: int = 8, max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes if max_bytes is not None else int(os.environ.get("FASTAUG_BUFFER_POOL_MB", "1024")) << 20
        self.enabled = os.environ.get("FASTAUG_BUFFER_POOL", "1") != "0" and hasattr(torch._C, "_storage_Use_Count")
        self._lock = threading.Lock()
        self._storages: list[torch.UntypedStorage] = []  # least recently used first

    def take(self, nbytes: int) -> torch.UntypedStorage | None:
        """A free pooled storage of exactly ``nbytes``, or None."""
        with self._lock:
            for i, st in enumerate(self._storages):
                if st.nbytes() == nbytes and torch._C._storage_Use_Count(st._cdata) == 1 and not st.is_shared():
                    self._storages.append(self._storages.pop(i))
                    return st
        return None

    def keep(self, storage: torch.UntypedStorage) -> None:
        with self._lock:
            self._storages = [st for st in self._storages if not st.is_shared()]
            self._storages.append(storage)
            del self._storages[: max(0, len(self._storages) - self.capacity)]
            while len(self._storages) > 1 and sum(st.nbytes() for st in self._storages) > self.max_bytes:
                del self._storages[0]

    def clear(self) -> None:
        with self._lock:
            self._storages = []


buffer_pool = BufferPool()


def empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, fmt=torch.contiguous_format) -> torch.Tensor:
    """``torch.empty``; a large CPU tensor comes from :data:`buffer_pool` when it has a free buffer of that size,
    else it is allocated and its 2 MiB-aligned interior advised ``MADV_HUGEPAGE`` (one fault per 2 MiB instead of
    one per 4 KiB page: 25 ms of faults for an 8 ms write measured before; torch's own ``THP_MEM_ALLOC_ENABLE=1``
    does the same for every allocation, but only when set before torch starts)."""
    device = torch.device(device)
    nbytes = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or nbytes < _HUGE_MIN:
        return torch.empty(shape, dtype=dtype, device=device, memory_format=fmt)
    pool = buffer_pool if buffer_pool.enabled else None
    storage = pool.take(nbytes) if pool is not None else None
    if storage is not None:
        stride = torch.empty(shape, dtype=dtype, device="meta", memory_format=fmt).stride()
        return torch.empty(0, dtype=dtype).set_(storage, 0, shape, stride)
    out = torch.empty(shape, dtype=dtype, device=device, memory_format=fmt)
    if (fn := _madvise()) is not None:
        start = out.data_ptr()
        lo = (start + (1 << 21) - 1) & ~((1 << 21) - 1)
        hi = (start + nbytes) & ~((1 << 21) - 1)
        if hi > lo:
            fn(lo, hi - lo, _MADV_HUGEPAGE)  # advisory: failure (THP off) changes nothing
    if pool is not None:
        pool.keep(out.untyped_storage())
    return out


def is_channels_last(x: torch.Tensor) -> bool:
    """A [B,C,H,W] batch (C > 1) stored channels-last (and not also contiguous): its output keeps that layout."""
    return x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
