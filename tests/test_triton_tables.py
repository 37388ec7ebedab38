"""The Triton statistics-tables kernel (``kernels/triton/tables.py``) against the host bookkeeping, under the interpreter:
the same entries, bit for bit, for every round of random stages with CONTRAST / AUTOCONTRAST / EQUALIZE."""

from __future__ import annotations

import types

import pytest
import torch
from interpreted_triton import interpret  # noqa: F401  (first: Triton imported for the interpreter)

# isort: split
from fastaug.kernels import triton as triton_backend
from fastaug.kernels.triton import tables
from random_plans import random_plan

from fastaug import engine
from fastaug.plan import Op

HOST_BOOKS = types.SimpleNamespace(reduce=triton_backend.reduce)  # the same reduction, the entries written by torch
DEVICE_BOOKS = types.SimpleNamespace(reduce=triton_backend.reduce, reduce_into_tables=tables.reduce_into_tables)
DEVICE_SETUP = triton_backend  # the stops and reduction buffers from round_setup_kernel too


@pytest.mark.parametrize("books", [DEVICE_BOOKS, DEVICE_SETUP], ids=["host stops", "device stops"])
@pytest.mark.parametrize(("seed", "dtype"), [(0, torch.uint8), (1, torch.uint8), (2, torch.uint8), (3, torch.float32),
                                             (4, torch.float64)])  # fmt: skip
def test_tables_kernel_writes_the_host_entries(seed, dtype, books):
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = 4, 3 if seed % 3 else 1, 24, 24  # > 2 * 255 pixels: EQUALIZE steps of 2 or more
    x = torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    if dtype.is_floating_point:
        x = x.to(dtype) / 255.0
    plan = random_plan(x, seed, geometry=seed % 2 == 0, ops_per_stage=4, rects=0)
    stage = plan.stages[0]
    stat = [int(Op.CONTRAST), int(Op.AUTOCONTRAST), int(Op.EQUALIZE)]
    stage.program[:, 1] = torch.tensor(stat + stat)[seed % 3 : seed % 3 + b]  # every statistics op, per sample
    stage.program[0, 3] = int(Op.EQUALIZE)  # a second round for sample 0
    codes = [set(stage.codes_at(k)) | ({*stat} if k in (1, 3) else set()) for k in range(4)]
    stage.slot_codes = tuple(tuple(sorted(s)) for s in codes)
    stage.stat_slots = tuple(k for k in range(4) if any(o in stage.slot_codes[k] for o in stat))
    src = x if stage.geometry is None else x
    got = engine.run_stage_stats(books, src, stage, c)
    want = engine.run_stage_stats(HOST_BOOKS, src, stage, c)
    found = engine.stat_positions(stage)
    for table_got, table_want in zip(got, want, strict=True):
        if table_want.dim() == 4 and table_want.shape[-1] == 256 and table_want.stride(-1) == 0:
            continue  # no EQUALIZE possible: a zero view
        assert torch.equal(table_got[found], table_want[found])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_setup_stops_and_buffers(seed):
    """``round_setup_kernel``'s stops equal the host rule (``engine._round_stops``) for random programs, including
    samples with no or several statistics ops and positions where a statistics code is not allowed, and every round's
    buffers are initialised whatever the memory held (filled with junk first)."""
    g = torch.Generator().manual_seed(seed)
    b, k, c = 37 + seed * 20, 6, 3  # two blocks of samples for seed >= 1
    stat = [int(Op.CONTRAST), int(Op.AUTOCONTRAST), int(Op.EQUALIZE)]
    x = torch.randint(0, 256, (b, c, 8, 8), generator=g, dtype=torch.uint8)
    plan = random_plan(x, seed, geometry=False, ops_per_stage=k, rects=0)
    stage = plan.stages[0]
    pool = torch.tensor([0, int(Op.BRIGHTNESS), *stat])
    stage.program = pool[torch.randint(0, len(pool), (b, k), generator=g)].to(torch.int32)
    stage.slot_codes = tuple(tuple(sorted({0, int(Op.BRIGHTNESS), *stat} - ({int(Op.EQUALIZE)} if j == 2 else set())))
                             for j in range(k))  # fmt: skip
    stage.stat_slots = (0, 1, 2, 4, 5)  # position 3 may hold statistics codes the stage does not run there
    stage.stat_rounds = 3
    want = engine._round_stops(stage, engine.stat_positions(stage))
    stops, outputs, spec = tables.prepare_round_setup(stage, engine.allowed_stat_codes(stage, "cpu"), b, c, torch.float32, "cpu")
    stops.fill_(-5)
    for out in outputs:
        for t in out:
            t.fill_(7)
    tables.launch(spec)
    assert torch.equal(stops, want)
    for gsum, vmin, vmax, hist in outputs:
        assert (gsum == 0).all() and (vmin == float("inf")).all() and (vmax == -float("inf")).all() and (hist == 0).all()


def test_round_setup_views_are_aligned():
    """Every round's stops and reduction buffers start 16-byte aligned whatever B (Triton specialises a pointer on
    16-byte alignment: an unaligned round or odd batch would compile another variant mid-run)."""
    x = torch.zeros(7, 3, 8, 8, dtype=torch.uint8)
    stage = random_plan(x, 0, geometry=False, ops_per_stage=3, rects=0).stages[0]
    stage.stat_slots, stage.stat_rounds = (0, 1, 2), 3
    for b in (5, 7, 8):
        for dtype in (torch.float32, torch.float64):
            stops, outputs, _ = tables.prepare_round_setup(stage, torch.zeros(3, dtype=torch.int64), b, 3, dtype, "cpu")
            for t in [stops[r] for r in range(3)] + [t for out in outputs for t in out]:
                assert t.data_ptr() % 16 == 0 and t.is_contiguous()


@pytest.mark.parametrize("only", [Op.CONTRAST, Op.AUTOCONTRAST, Op.EQUALIZE], ids=lambda o: o.name)
def test_reduce_computes_only_what_the_stage_reads(only):
    """A stage whose statistics op is only CONTRAST (ColorJitter) reduces only the gray sum, only AUTOCONTRAST only the
    minima / maxima, only EQUALIZE only the histograms (the other buffers keep their initial values), and the entries
    the op reads equal the host bookkeeping's."""
    g = torch.Generator().manual_seed(int(only))
    b, c = 3, 3
    x = torch.randint(0, 256, (b, c, 16, 16), generator=g, dtype=torch.uint8)
    stage = random_plan(x, 5, geometry=False, ops_per_stage=2, rects=0).stages[0]
    stage.program = torch.tensor([[int(only), 0]] * b, dtype=torch.int32)
    stage.slot_codes, stage.stat_slots, stage.stat_rounds = ((0, int(only)), (0,)), (0,), 1
    got = engine.run_stage_stats(DEVICE_SETUP, x, stage, c)
    want = engine.run_stage_stats(HOST_BOOKS, x, stage, c)
    read = {Op.CONTRAST: lambda t: t[0][:, 0, 0, 0], Op.AUTOCONTRAST: lambda t: t[0][:, 0], Op.EQUALIZE: lambda t: t[1][:, 0]}[only]
    assert torch.equal(read(got), read(want))
    stats, luts, flat_stats, flat_luts = engine._stage_buffers(stage, b, c, "cpu", torch.float32)
    stops, outputs = tables.round_setup(stage, engine.allowed_stat_codes(stage, "cpu"), b, c, torch.float32, "cpu")
    tables.reduce_into_tables(x, stage, stats, luts, stops[0], flat_stats, flat_luts, 256, only == Op.CONTRAST, outputs[0])
    gsum, vmin, vmax, hist = outputs[0]
    assert bool((gsum != 0).all()) == (only == Op.CONTRAST) and bool((gsum == 0).all()) == (only != Op.CONTRAST)
    assert bool(torch.isinf(vmin).all() and torch.isinf(vmax).all()) == (only != Op.AUTOCONTRAST)
    assert int(hist.sum()) == (b * c * 256 if only == Op.EQUALIZE else 0)
