"""The Numba backend against the torch reference (``kernels/reference.py``) on random Plans.

Tolerances: float outputs ``atol`` 1e-5 of the output scale (1e-4 after normalize, which divides by
std >= 0.2); uint8 outputs within 1 LSB and at least 99% of the values exactly equal. The backend
follows the reference's float32 operation order, so almost all outputs are bit-identical; the known
exception is GAMMA, whose ``pow`` differs from torch's (Sleef, vectorised) by up to 1 ulp.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import fastaug.kernels.numba as nb
import numba
import pytest
import torch
from fastaug.kernels import reference
from random_plans import layouts, random_plan

from fastaug.engine import execute, run_stage_stats
from fastaug.plan import NUM_PARAMS, Epilogue, Op, Plan, Stage

DTYPES = {"uint8": torch.uint8, "float32": torch.float32, "float16": torch.float16}


def make_input(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


def assert_matches(got: torch.Tensor, want: torch.Tensor, normalized: bool = False) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    if want.dtype == torch.uint8:
        d = (got.int() - want.int()).abs()
        assert d.max().item() <= 1, f"max uint8 difference {d.max().item()}"
        assert (d == 0).float().mean().item() >= 0.99
    else:
        torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=1e-4 if normalized else 1e-5)


def check_plan(plan: Plan, x: torch.Tensor) -> None:
    """Run the plan on every layout of ``x`` with both backends and compare."""
    normalized = plan.epilogue.mean is not None
    for xl in layouts(x).values():
        want = execute(plan, xl, backend="torch")
        got = execute(plan, xl, backend="numba")
        assert_matches(got, want, normalized)


@pytest.mark.parametrize(
    "dtype,c,stages,out",
    list(itertools.product(DTYPES, (1, 3, 4), (1, 2), ("float32", "uint8"))),
)
def test_random_plans(dtype: str, c: int, stages: int, out: str) -> None:
    seed = 1000 * c + 100 * stages + 10 * list(DTYPES).index(dtype) + (out == "uint8")
    h, w = 7 + seed % 5, 9 + seed % 7  # small, non-power-of-two sizes (geometry outputs differ by +-2)
    x = make_input(DTYPES[dtype], (3, c, h, w), seed)
    plan = random_plan(x, seed, stages=stages, out_dtype=getattr(torch, out))
    check_plan(plan, x)


@pytest.mark.parametrize("dtype,c,out", [("uint8", 3, "float32"), ("float32", 1, "uint8"), ("float32", 4, "float32"),
                                         ("uint8", 3, "uint8"), ("float16", 3, "float32")])
def test_random_plans_with_new_ops(dtype: str, c: int, out: str) -> None:
    """Two stages: GAUSSIAN_NOISE among the ops; SHARPNESS, GAUSSIAN_BLUR or CONVOLVE per sample at k = 0 of stage 1."""
    seed = 7000 + 10 * c + list(DTYPES).index(dtype)
    x = make_input(DTYPES[dtype], (5, c, 8 + seed % 5, 9 + seed % 4), seed)
    check_plan(random_plan(x, seed, stages=2, ops_per_stage=4, out_dtype=getattr(torch, out), new_ops=True), x)


@pytest.mark.parametrize("bilinear,fill,clamp", list(itertools.product((True, False), repeat=3)))
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_geometry_modes(dtype: str, bilinear: bool, fill: bool, clamp: bool) -> None:
    seed = 4 * bilinear + 2 * fill + clamp + 10 * (dtype == "uint8")
    x = make_input(DTYPES[dtype], (4, 3, 11, 13), seed)
    plan = random_plan(x, seed, ops_per_stage=2)
    geo = plan.stages[0].geometry
    geo.bilinear, geo.clamp = bilinear, clamp
    if fill and geo.fill is None:
        geo.fill = torch.rand(4, 3) * (255.0 if dtype == "uint8" else 1.0)
    elif not fill:
        geo.fill = None
    geo.window[::2] = torch.tensor([1.0, 2.0, 9.5, 8.0])  # a shrunk window on half the samples
    check_plan(plan, x)


@pytest.mark.parametrize("to_float_at", [0, 1, 2])
@pytest.mark.parametrize("out", ["float32", "uint8"])
def test_to_float_at(to_float_at: int, out: str) -> None:
    x = make_input(torch.uint8, (4, 3, 9, 10), 7 + to_float_at)
    plan = random_plan(x, 50 + to_float_at, stages=2, out_dtype=getattr(torch, out), to_float_at=to_float_at)
    check_plan(plan, x)


@pytest.mark.parametrize("c", [16, 64])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_many_channels(c: int, dtype: str) -> None:
    """C not in (1, 3): random_plan draws per-channel ops only."""
    x = make_input(DTYPES[dtype], (2, c, 6, 7), c)
    plan = random_plan(x, c + 1, stages=2, ops_per_stage=4)
    check_plan(plan, x)


def _stage_with_stats(x: torch.Tensor, seed: int):
    plan = random_plan(x, seed, ops_per_stage=4)
    stage = plan.stages[0]
    stats, luts = run_stage_stats(reference, x, stage, x.shape[1])
    return plan, stage, stats, luts


@pytest.mark.parametrize(
    "kind", ["contiguous", "channels_last", "strided", "float16", "bfloat16", "float64", "uint8_strided"]
)
def test_apply_output_layouts_and_dtypes(kind: str) -> None:
    """``apply`` writes any output strides and dtype (engine only makes contiguous / channels-last)."""
    x = make_input(torch.uint8, (3, 3, 10, 12), 3)
    plan, stage, stats, luts = _stage_with_stats(x, 11)
    ep = dataclasses.replace(plan.epilogue, out_dtype=torch.float32)
    shape = (3, 3, *plan.out_size)
    if kind in ("float16", "bfloat16", "float64"):
        ep.out_dtype = getattr(torch, kind)
        outs = [torch.empty(shape, dtype=ep.out_dtype) for _ in range(2)]
    elif kind == "uint8_strided":
        ep = dataclasses.replace(plan.epilogue, out_dtype=torch.uint8, mean=None, std=None)
        outs = [torch.zeros(shape[:3] + (shape[3] * 3,), dtype=torch.uint8)[..., 1::3] for _ in range(2)]
    elif kind == "strided":
        outs = [torch.zeros(3, 7, shape[2], 2 * shape[3])[:, 1::2, :, ::2] for _ in range(2)]
    else:
        fmt = torch.channels_last if kind == "channels_last" else torch.contiguous_format
        outs = [torch.empty(shape, memory_format=fmt) for _ in range(2)]
    reference.apply(x, stage, stats, luts, ep, outs[0])
    nb.apply(x, stage, stats, luts, ep, outs[1])
    assert_matches(outs[1], outs[0], normalized=ep.mean is not None)


def assert_reduction(got, want, stage: Stage, k: int) -> None:
    """Compare what the ops at slot k read; the rest must be zeros (``Reduction``: "zeros where not asked")."""
    codes = set(stage.codes_at(k))
    if int(Op.CONTRAST) in codes:
        torch.testing.assert_close(got.gray_sum, want.gray_sum, rtol=1e-9, atol=1e-6)
    else:
        assert not got.gray_sum.any()
    if codes & {int(Op.AUTOCONTRAST), int(Op.EQUALIZE)}:
        assert torch.equal(got.minimum, want.minimum) and torch.equal(got.maximum, want.maximum)
        assert torch.equal(got.hist, want.hist)
    else:
        assert not (got.minimum.any() or got.maximum.any() or got.hist.any())


@pytest.mark.parametrize("slot_codes", ["all", "plan"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_reduce(dtype: str, slot_codes: str) -> None:
    x = make_input(DTYPES[dtype], (4, 3, 9, 11), 5)
    _, stage, stats, luts = _stage_with_stats(x, 21)
    if slot_codes == "all":
        stage.slot_codes = None
    for k in range(stage.program.shape[1]):
        want = reference.reduce(x, stage, stats, luts, k)
        assert_reduction(nb.reduce(x, stage, stats, luts, k), want, stage, k)


def test_sharpness_edges_and_tiny_images() -> None:
    """SHARPNESS at k = 0 of a stage without geometry, on images with H or W <= 2 and on borders."""
    for h, w in ((1, 5), (2, 7), (3, 3), (6, 2), (5, 9)):
        x = make_input(torch.uint8, (2, 3, h, w), h * 10 + w)
        plan = random_plan(x, h + w, geometry=False, stages=2, rects=1)
        check_plan(plan, x)


def test_empty_program_in_scale_out_channels() -> None:
    """K = 0, ``in_scale`` != 1 and fewer output channels than input channels."""
    x = make_input(torch.uint8, (2, 4, 5, 6), 0)
    stage = Stage(program=torch.zeros(2, 0, dtype=torch.int32), params=torch.zeros(2, 0, NUM_PARAMS), in_scale=1 / 255)
    ep = Epilogue(out_dtype=torch.float32, out_channels=3, mean=torch.rand(2, 4), std=torch.rand(2, 4) + 0.5)
    empty = torch.zeros(2, 0, 4, 2)
    want, got = torch.empty(2, 3, 5, 6), torch.empty(2, 3, 5, 6)
    reference.apply(x, stage, empty, empty, ep, want)
    nb.apply(x, stage, empty, empty, ep, got)
    assert_matches(got, want, normalized=True)


def test_neighbourhood_op_after_geometry_is_an_identity() -> None:
    """The contract: a neighbourhood op (SHARPNESS) at k = 0 of a stage with geometry is an identity (the
    compiler never emits it), in the reference and in numba alike."""
    x = make_input(torch.uint8, (3, 3, 9, 10), 2)
    plan = random_plan(x, 3, ops_per_stage=2)
    stage = plan.stages[0]
    stage.program[:, 0] = int(Op.SHARPNESS)
    stage.params[:, 0, 0] = torch.tensor([0.3, 1.7, 0.9])
    stage.slot_codes = None
    check_plan(plan, x)
    got = execute(plan, x, backend="numba")
    stage.program[:, 0] = int(Op.IDENTITY)
    assert torch.equal(got, execute(plan, x, backend="torch"))


def test_thread_counts_agree() -> None:
    x = make_input(torch.uint8, (5, 3, 17, 15), 9)
    plan = random_plan(x, 9, ops_per_stage=4, out_dtype=torch.uint8)
    before = numba.get_num_threads()
    try:
        results = []
        for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(n)
            results.append(execute(plan, x, backend="numba"))
    finally:
        numba.set_num_threads(before)
    assert all(torch.equal(r, results[0]) for r in results)


def test_bfloat16_input() -> None:
    """bfloat16 (like float16) is read as float32, as the reference does."""
    x = make_input(torch.bfloat16, (3, 3, 8, 9), 12)
    check_plan(random_plan(x, 12, stages=2), x)


@pytest.mark.slow
@pytest.mark.parametrize("out", ["float32", "uint8"])
def test_float64_input(out: str) -> None:
    """float64 input runs in float64 like the reference (a second compilation, ~15 s cold)."""
    x = make_input(torch.float64, (3, 3, 9, 11), 13)
    check_plan(random_plan(x, 13, stages=2, out_dtype=getattr(torch, out)), x)
    _, stage, stats, luts = _stage_with_stats(x, 14)
    stage.slot_codes = None
    for k in range(stage.program.shape[1]):
        want, got = reference.reduce(x, stage, stats, luts, k), nb.reduce(x, stage, stats, luts, k)
        assert_reduction(got, want, stage, k)


def _per_slot_stats(backend, x: torch.Tensor, stage: Stage, channels: int):
    """The statistics tables filled the naive way (one reduction per slot, in order): an oracle for the
    engine's per-sample rounds (``run_stage_stats``)."""
    from fastaug.engine import equalize_luts, stage_tables

    stats, luts = stage_tables(stage, x.shape[0], channels, x.device)
    h, w = stage.out_size or tuple(x.shape[-2:])
    for k in sorted(stage.stat_slots):
        red = backend.reduce(x, stage, stats, luts, k)
        stats[:, k, :, 0], stats[:, k, :, 1] = red.minimum, red.maximum
        is_contrast = stage.program[:, k] == int(Op.CONTRAST)
        stats[:, k, 0, 0] = torch.where(is_contrast, (red.gray_sum / (h * w)).float(), stats[:, k, 0, 0])
        luts[:, k] = equalize_luts(red.hist)
    return stats, luts


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_stats_rounds_match_per_slot(dtype: str) -> None:
    """One reduction per round (per-sample stops) fills the same tables as one per slot, at every
    position where a sample runs a statistics op; numba's tables match the reference's."""
    from fastaug.engine import stat_positions

    x = make_input(DTYPES[dtype], (6, 3, 9, 11), 31)
    plan = random_plan(x, 31, ops_per_stage=5)
    stage = plan.stages[0]
    stage.slot_codes = None  # any code anywhere: several statistics ops per sample
    stage.stat_slots = tuple(range(stage.program.shape[1]))
    stage.program[:, 1] = int(Op.CONTRAST)
    stage.program[::2, 3] = int(Op.EQUALIZE)
    found = stat_positions(stage)
    assert found.sum(1).max() >= 2
    contrast = found & (stage.program == int(Op.CONTRAST))
    ranged = found & ~contrast  # AUTOCONTRAST / EQUALIZE read every entry and the LUTs
    want_s, want_l = _per_slot_stats(reference, x, stage, 3)
    for backend in (reference, nb):
        got_s, got_l = run_stage_stats(backend, x, stage, 3)
        torch.testing.assert_close(got_s[contrast][:, 0, 0], want_s[contrast][:, 0, 0], rtol=1e-6, atol=1e-6)
        assert torch.equal(got_s[ranged], want_s[ranged]) and torch.equal(got_l[ranged], want_l[ranged])


def test_reduce_per_sample_stops() -> None:
    """``reduce`` with a stop per sample: each active sample as an int-k reduction at its stop (what its
    op reads), skipped samples (stop outside [0, K)) cost nothing and read as zeros."""
    x = make_input(torch.uint8, (5, 3, 9, 11), 8)
    _, stage, stats, luts = _stage_with_stats(x, 41)
    k_total = stage.program.shape[1]
    stage.slot_codes = None
    stage.program[:, 2] = torch.tensor([int(Op.CONTRAST), int(Op.EQUALIZE), int(Op.AUTOCONTRAST), 1, int(Op.CONTRAST)])
    stop = torch.tensor([2, 2, 2, k_total, -1])
    got = nb.reduce(x, stage, stats, luts, stop)
    want = reference.reduce(x, stage, stats, luts, 2)
    torch.testing.assert_close(got.gray_sum[0], want.gray_sum[0], rtol=1e-9, atol=1e-6)
    for b in (1, 2):
        assert torch.equal(got.minimum[b], want.minimum[b]) and torch.equal(got.maximum[b], want.maximum[b])
        assert torch.equal(got.hist[b], want.hist[b])
    assert not got.gray_sum[1:].any() and not got.hist[[0, 3, 4]].any() and not got.minimum[[0, 3, 4]].any()
    per_sample = reference.reduce(x, stage, stats, luts, stop)
    for f in ("gray_sum", "minimum", "maximum", "hist"):
        assert torch.equal(getattr(per_sample, f)[:3], getattr(want, f)[:3]), f


def test_presample_is_exact() -> None:
    """``engine.presample``: resampling once into uint8 before the statistics gives the same outputs as
    the fused stage (and is skipped for fills that uint8 cannot hold)."""
    from fastaug import engine

    x = make_input(torch.uint8, (4, 3, 13, 12), 17)
    plan = random_plan(x, 17, ops_per_stage=4, stages=1)
    stage = plan.stages[0]
    stage.program[:, 1] = int(Op.CONTRAST)
    stage.stat_slots = tuple(sorted(set(stage.stat_slots) | {1}))
    stage.slot_codes = None
    assert stage.geometry is not None and stage.geometry.quantize
    src, rest = engine.presample(nb, x, stage)
    assert src.dtype == torch.uint8 and rest.geometry is None
    check_plan(plan, x)
    stage.geometry.fill = torch.full((4, 3), 0.5)
    assert engine.presample(nb, x, stage)[1] is stage


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_integral_stages_hand_over_uint8(backend):
    """A stage ending in the uint8 domain hands its values to the next stage as uint8 (exact: integers in [0, 255]);
    the result equals the float32 hand-over of autograd's path."""
    import fastaug
    from fastaug import engine
    from fastaug.compiler import compile_plan

    x = torch.randint(0, 256, (4, 3, 19, 23), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    aug = fastaug.Compose([fastaug.RandomAffine(20), fastaug.ColorJitter(0.3, 0.3, 0.3, 0.1), fastaug.GaussianNoise(0, 0.1),
                           fastaug.GaussianBlur(5, (0.5, 2.0)), fastaug.Downscale((0.3, 0.6), p=1.0),
                           fastaug.Normalize([0.5] * 3, [0.25] * 3)], seed=4)  # fmt: skip
    plan = compile_plan(aug.draw(x, torch.arange(4), 0), tuple(x.shape), x.dtype, x.device)
    assert [st.integral for st in plan.stages] == [True, True, False]
    mod = engine.load_backend(backend)
    src, loose = x, x
    for s, st in enumerate(plan.stages):
        last = s == len(plan.stages) - 1
        src, _, _ = engine.run_stage(mod, src, st, plan, last, x, compact=True)
        loose, _, _ = engine.run_stage(mod, loose, st, plan, last, x, compact=False)
        assert src.dtype == (torch.float32 if last else torch.uint8) and loose.dtype == torch.float32
    assert torch.equal(src, loose)
    assert torch.equal(engine.execute(plan, x, backend), src)


@pytest.mark.parametrize("kind", ["contiguous", "misaligned", "float64", "odd_width", "channels_last"])
def test_final_output_with_non_temporal_stores(kind: str, monkeypatch) -> None:
    """Large final float outputs are written with non-temporal stores from each row's first 32-byte boundary (here
    forced on small outputs): the same values, for every row alignment, width, dtype and layout."""
    from fastaug.kernels.numba import backend as nbb
    from fastaug.kernels.numba import fused

    monkeypatch.setattr(nbb, "_STREAM_MIN", 0)
    seen = []
    launch = nbb._launch
    monkeypatch.setattr(nbb, "_launch", lambda n, args, scratch: (seen.append(int(args[7][fused.I_STREAM])), launch(n, args, scratch)))
    w = 37 if kind == "odd_width" else 40
    x = make_input(torch.float64 if kind == "float64" else torch.uint8, (3, 3, 9, w), 5)
    plan, stage, stats, luts = _stage_with_stats(x, 12)
    ep = dataclasses.replace(plan.epilogue, out_dtype=torch.float64 if kind == "float64" else torch.float32)
    shape = (3, 3, *plan.out_size)
    if kind == "misaligned":  # every row starts 4 bytes past a 32-byte boundary
        outs = [torch.empty(math.prod(shape) + 1)[1:].view(shape) for _ in range(2)]
    elif kind == "channels_last":
        outs = [torch.empty(shape, memory_format=torch.channels_last) for _ in range(2)]
    else:
        outs = [torch.empty(shape, dtype=ep.out_dtype) for _ in range(2)]
    reference.apply(x, stage, stats, luts, ep, outs[0])
    nb.apply(x, stage, stats, luts, ep, outs[1])
    assert seen == [1]
    assert_matches(outs[1], outs[0], normalized=ep.mean is not None)
