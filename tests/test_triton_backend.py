"""The Triton backend against the torch reference, under Triton's CPU interpreter.

Small random Plans with per-sample programs (B <= 3, odd sizes <= 13) cover every op, both value
domains, nearest/bilinear geometry with and without fill and clamp, perspective rows, 1 and 2 stages
(SHARPNESS in the second), uint8/float16/bfloat16/float32/float64 inputs in contiguous, channels-last
and strided layouts, 1/3/4/5 channels (5: the runtime channel loop) and uint8/float outputs. The
``gpu``-marked tests run the same comparisons natively on CUDA, plus a CUDA-graph capture.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from interpreted_triton import interpret  # noqa: F401  (first: Triton imported for the interpreter)

# isort: split
from fastaug.kernels import reference
from random_plans import layouts, plan_to, random_plan

from fastaug import engine
from fastaug.ops.calls import ColorCall
from fastaug.plan import NUM_PARAMS, RGB_OPS, Op, Plan

F16_RTOL = 2.0**-10  # one float16 rounding step
BF16_RTOL = 2.0**-7


def _input(dtype: torch.dtype, b: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)


def assert_matches(got: torch.Tensor, ref: torch.Tensor, normalized: bool) -> None:
    """Float outputs: atol 1e-5 (1e-4 after normalize; +1 rounding step of float16/bfloat16); uint8: at
    most 1 LSB off and at least 99% exact."""
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert got.stride() == ref.stride()
    if ref.dtype == torch.uint8:
        diff = (got.int() - ref.int()).abs()
        assert diff.max().item() <= 1, f"uint8 max diff {diff.max().item()}"
        assert (diff == 0).double().mean().item() >= 0.99
        return
    atol = 1e-4 if normalized else 1e-5
    rtol = {torch.float16: F16_RTOL, torch.bfloat16: BF16_RTOL}.get(ref.dtype, 0.0)
    torch.testing.assert_close(got.double(), ref.double(), atol=atol, rtol=rtol)


def _set_geometry(plan: Plan, kind: str | None, clamp: bool, fill: bool, seed: int) -> None:
    """Force the geometry's kind, clamp and fill; odd seeds get a fractional window inside the frame;
    sample 0's matrix is scaled by 2 (same mapping, divisor 2: the perspective path)."""
    geo = plan.stages[0].geometry
    if geo is None:
        return
    geo.bilinear = kind == "bilinear"
    geo.clamp = clamp
    if not fill:
        geo.fill = None
    elif geo.fill is None:
        b, c = plan.stages[0].program.shape[0], plan.channels
        g = torch.Generator().manual_seed(seed)
        geo.fill = torch.rand(b, c, generator=g) * (255.0 if geo.quantize else 1.0)
        if geo.quantize:
            geo.fill = geo.fill.round()
    if seed % 2:
        w_hi, h_hi = geo.window[:, 2].clone(), geo.window[:, 3].clone()
        geo.window = torch.stack([torch.full_like(w_hi, 0.7), torch.ones_like(w_hi), w_hi - 1.5, h_hi - 1.0], 1)
    geo.matrix = geo.matrix.clone()
    geo.matrix[0] *= 2.0


def compare(x: torch.Tensor, plan: Plan, normalized: bool) -> None:
    ref = engine.execute(plan, x, backend="torch")
    got = engine.execute(plan, x, backend="triton")
    assert_matches(got, ref, normalized)


# (seed, dtype, C, layout, stages, geometry, clamp, fill, out dtype, normalize, H, W)
CASES = [
    (0, torch.uint8, 3, "contiguous", 1, "bilinear", False, True, torch.float32, True, 11, 13),
    (1, torch.uint8, 3, "channels_last", 1, "nearest", False, True, torch.uint8, False, 9, 7),
    (2, torch.uint8, 3, "strided", 2, "bilinear", True, False, torch.float16, True, 7, 11),
    (3, torch.float32, 3, "contiguous", 1, "nearest", True, False, torch.float32, False, 13, 9),
    (4, torch.float32, 1, "strided", 2, None, False, False, torch.float32, False, 9, 9),
    (5, torch.float16, 4, "strided", 1, "bilinear", False, True, torch.float32, True, 7, 9),
    (6, torch.uint8, 4, "channels_last", 2, "nearest", True, True, torch.uint8, False, 11, 9),
    (7, torch.uint8, 1, "strided", 1, "bilinear", True, True, torch.uint8, False, 9, 13),
    (9, torch.bfloat16, 3, "channels_last", 1, "bilinear", False, False, torch.float32, False, 9, 11),
    (10, torch.float64, 3, "contiguous", 1, "nearest", False, True, torch.float32, True, 7, 7),
    (11, torch.uint8, 5, "contiguous", 1, "bilinear", False, True, torch.float16, False, 9, 11),
    (12, torch.float32, 5, "channels_last", 2, None, False, False, torch.float32, True, 7, 9),
    (14, torch.uint8, 3, "contiguous", 2, "bilinear", False, True, torch.uint8, False, 13, 11),
    (15, torch.float16, 3, "channels_last", 2, "bilinear", True, False, torch.float16, True, 11, 9),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"s{c[0]}-{str(c[1])[6:]}-c{c[2]}-{c[3]}-{c[4]}st-{c[5]}")
def test_random_plans(case):
    seed, dtype, c, layout, stages, geo, clamp, fill, out_dtype, normalize, h, w = case
    x = layouts(_input(dtype, 3, c, h, w, seed))[layout]
    plan = random_plan(x, seed, geometry=geo is not None, stages=stages, out_dtype=out_dtype, normalize=normalize)
    _set_geometry(plan, geo, clamp, fill, seed)
    if stages == 2:  # integer-valued uint8-domain values stay integers (no ties for rint/floor to split)
        plan.stages[1].in_scale = 2.0 if dtype == torch.uint8 else 0.5
    compare(x, plan, normalize)


def test_uint8_to_float_inside_stage():
    """A uint8-domain chain switching to the float domain mid-program (TO_FLOAT), 2 stages."""
    x = _input(torch.uint8, 3, 3, 9, 11, 8)
    plan = random_plan(x, 8, stages=2, out_dtype=torch.float32, to_float_at=1)
    compare(x, plan, True)


def test_any_code_at_any_position():
    """``slot_codes=None``: every op code may occur everywhere (the generic specialisation)."""
    x = layouts(_input(torch.uint8, 3, 3, 9, 9, 13))["strided"]
    plan = random_plan(x, 13, out_dtype=torch.uint8, normalize=False)
    plan.stages[0].slot_codes = None
    plan.stages[0].stat_slots = tuple(range(plan.stages[0].program.shape[1]))
    compare(x, plan, False)


@pytest.mark.parametrize("bilinear", [False, True])
def test_round_half_to_even(bilinear):
    """Ties round to even: nearest taps at exact half-pixel shifts, quantized bilinear midpoints and the
    uint8 cast of rect values k + 0.5."""
    x = _input(torch.uint8, 2, 3, 7, 9, 60)
    plan = random_plan(x, 60, out_dtype=torch.uint8, normalize=False, rects=2)
    st, ep = plan.stages[0], plan.epilogue
    st.out_size = plan.out_size = (7, 9)
    st.geometry.matrix = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]]).repeat(2, 1, 1)
    st.geometry.bilinear, st.geometry.clamp, st.geometry.fill = bilinear, False, None
    st.program.zero_()
    st.stat_slots = ()
    ep.rects = torch.tensor([[0, 0, 3, 3], [4, 2, 9, 7]], dtype=torch.int32).repeat(2, 1, 1)
    ep.rect_phase = torch.ones(2, 2, dtype=torch.int32)
    ep.rect_values = torch.tensor([2.5, 3.5, 254.5]).repeat(2, 2, 1)
    compare(x, plan, False)


def _op_plan(x: torch.Tensor, op: Op, seed: int) -> Plan:
    """Sample 0 runs ``op`` at k=0 in the uint8 domain; sample 1 converts to float then runs it at k=1."""
    plan = random_plan(x, seed, geometry=False, stages=1, ops_per_stage=2, out_dtype=torch.float32,
                       normalize=False, rects=0)
    st = plan.stages[0]
    g = torch.Generator().manual_seed(seed)
    prog = torch.tensor([[int(op), int(Op.IDENTITY)], [int(Op.TO_FLOAT), int(op)]], dtype=torch.int32)
    params = torch.zeros(2, 2, NUM_PARAMS)
    params[0, :, 3] = 1.0
    params[1, 0, 3] = 1.0
    for b, k, u8 in ((0, 0, True), (1, 1, False)):
        u = float(torch.rand((), generator=g))
        bound = 255.0 if u8 else 1.0
        params[b, k, :3] = torch.tensor({
            Op.BRIGHTNESS: [2 * u, 0, 0], Op.CONTRAST: [2 * u, 0, 0], Op.SATURATION: [2 * u, 0, 0],
            Op.SHARPNESS: [2 * u, 0, 0], Op.HUE: [u - 0.5, 0, 0], Op.GAMMA: [0.5 + 1.5 * u, 1.2, 0],
            Op.POSTERIZE: [float(1 + int(u * 7)), 0, 0], Op.SOLARIZE: [round(u * bound) if u8 else u, 0, 0],
            Op.RGB_SHIFT: [round(u * 80 - 40) if u8 else u * 0.3 - 0.15, 0.1 * bound, -0.2 * bound], Op.RGB_GAIN: [2 * u, 0.5, 1.3],
            Op.DOWNSCALE: [0.2 + 0.7 * u, float(int(4 * u)), 0],
        }.get(op, [0.0, 0.0, 0.0]))
    st.program, st.params = prog, params
    st.slot_codes = ((int(op), int(Op.TO_FLOAT)), (int(Op.IDENTITY), int(op)))
    st.stat_slots = (0, 1) if op in (Op.CONTRAST, Op.AUTOCONTRAST, Op.EQUALIZE) else ()
    plan.epilogue.out_scale = 1.0
    return plan


@pytest.mark.parametrize("op", [o for o in Op if o != Op.SHARPNESS], ids=lambda o: o.name)
def test_each_op_both_domains(op):
    c = 3 if op in (*RGB_OPS, Op.CONTRAST) else 4
    x = _input(torch.uint8, 2, c, 7, 9, int(op))
    plan = _op_plan(x, op, int(op))
    ref = engine.execute(plan, x, backend="torch")
    got = engine.execute(plan, x, backend="triton")
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("hw", [(2, 9), (7, 9)])
def test_sharpness_both_domains(hw):
    """SHARPNESS at k=0 of a stage without geometry (uint8 and float domain samples; H <= 2: unchanged)."""
    x = (_input(torch.float32, 2, 3, *hw, 21) * 255.0).round()
    plan = random_plan(x, 21, geometry=False, ops_per_stage=1, normalize=False, rects=0)
    st = plan.stages[0]
    st.program = torch.full((2, 1), int(Op.SHARPNESS), dtype=torch.int32)
    st.params = torch.tensor([[[0.3, 0, 0, 1.0]], [[1.7, 0, 0, 0.0]]])
    st.in_scale = 1.0
    st.slot_codes = ((int(Op.SHARPNESS),),)
    x[1] /= 255.0  # sample 1 lives in the float domain
    compare(x, plan, False)


@pytest.mark.parametrize("dtype,c,hw,ks", [(torch.uint8, 3, (7, 9), (3, 5)), (torch.float32, 1, (6, 5), (5, 3)),
                                           (torch.float32, 4, (3, 2), (7, 7)), (torch.float64, 5, (5, 6), (3, 3))])
def test_gaussian_blur_then_ops(dtype, c, hw, ks):
    """GAUSSIAN_BLUR at k=0 (per-sample kernels, reflected and periodically mirrored borders), then a program with
    statistics, then the epilogue; 5 channels take the runtime channel loop."""
    import fastaug.functional as F
    from fastaug.compiler import compile_plan

    x = _input(dtype, 2, c, *hw, 40 + c)
    cv = F.Canvas(2, c, *hw, x.device)
    sigma = torch.tensor([[0.4, 1.3], [2.0, 0.7]], dtype=torch.float64)
    calls = [F.gaussian_blur_call(cv, ks, sigma, dtype),
             ColorCall(name="autocontrast", code=int(Op.AUTOCONTRAST), params=torch.zeros(2, 3)),
             ColorCall(name="adjust_brightness", code=int(Op.BRIGHTNESS), params=torch.tensor([[1.3, 0, 0], [0.6, 0, 0]]))]
    plan = compile_plan(calls, tuple(x.shape), x.dtype, x.device)
    assert plan.stages[0].radius == max(ks) // 2
    compare(x, plan, False)


@pytest.mark.parametrize("seed,dtype,c,out_dtype", [(70, torch.uint8, 3, torch.float32), (71, torch.float32, 1, torch.uint8),
                                                   (72, torch.float16, 4, torch.float32)])
def test_random_plans_with_new_ops(seed, dtype, c, out_dtype):
    """Two stages: GAUSSIAN_NOISE among the ops; SHARPNESS, GAUSSIAN_BLUR or CONVOLVE per sample at k = 0 of stage 1."""
    x = _input(dtype, 5, c, 7, 9, seed)
    plan = random_plan(x, seed, stages=2, ops_per_stage=3, out_dtype=out_dtype, new_ops=True)
    compare(x, plan, True)


@pytest.mark.parametrize("dtype,c", [(torch.uint8, 3), (torch.float32, 1), (torch.float64, 5), (torch.float16, 4)])
def test_uniform_noise_ops(dtype, c):
    """PIXEL_DROPOUT (per channel; one value per channel: a slot per channel), SALT_AND_PEPPER and MULTIPLICATIVE_NOISE
    (shared) from the counter-based uniforms; FOG's value noise."""
    import fastaug.functional as F
    from fastaug import rng
    from fastaug.compiler import compile_plan

    x = _input(dtype, 3, c, 7, 9, 80 + c)
    cv = F.Canvas(3, c, 7, 9, x.device)
    idx = torch.tensor([3, 4, 5])
    u8 = dtype == torch.uint8
    calls = [F.pixel_dropout_call(cv, torch.tensor([0.1, 0.3, 0.5]), True, 100.0 if u8 else 0.4, u8, rng.key(2, 1, idx, 0)),
             *F.pixel_dropout_calls(cv, 0.3, c % 2 == 1, [(255 if u8 else 1) * (k + 1) / (c + 1) for k in range(c)], u8,
                                    rng.key(2, 1, idx, 4)),
             F.salt_and_pepper_call(cv, torch.tensor([0.2, 0.1, 0.3]), 0.5, rng.key(2, 1, idx, 1)),
             F.multiplicative_noise_call(cv, 0.6, 1.4, False, rng.key(2, 1, idx, 2)),
             F.fog_call(cv, torch.tensor([0.5, 1.0, 0.8]), torch.tensor([0.01, 0.3, 1.5]), torch.tensor([0.0, 0.5, 0.2]),
                        rng.key(2, 1, idx, 3))]
    plan = compile_plan(calls, tuple(x.shape), x.dtype, x.device)
    compare(x, plan, False)


@pytest.mark.parametrize("dtype,c,hw,t", [(torch.uint8, 3, (7, 9), 3), (torch.float32, 1, (6, 5), 5),
                                          (torch.float32, 4, (3, 2), 7), (torch.float64, 5, (5, 6), 3)])
def test_convolve_then_ops(dtype, c, hw, t):
    """CONVOLVE at k=0 (per-sample T x T kernels, reflected and periodically mirrored borders, clamp), then a program
    with statistics; 5 channels take the runtime channel loop."""
    import fastaug.functional as F
    from fastaug.compiler import compile_plan

    x = _input(dtype, 2, c, *hw, 60 + c)
    cv = F.Canvas(2, c, *hw, x.device)
    kern = torch.randn(2, t, t, generator=torch.Generator().manual_seed(t)) / t
    calls = [F.convolve_call(cv, kern),
             ColorCall(name="autocontrast", code=int(Op.AUTOCONTRAST), params=torch.zeros(2, 3)),
             ColorCall(name="adjust_brightness", code=int(Op.BRIGHTNESS), params=torch.tensor([[1.3, 0, 0], [0.6, 0, 0]]))]
    plan = compile_plan(calls, tuple(x.shape), x.dtype, x.device)
    assert plan.stages[0].radius == t // 2
    compare(x, plan, False)


@pytest.mark.parametrize("dtype,c,geo", [(torch.uint8, 3, True), (torch.float32, 1, False), (torch.float64, 5, True),
                                          (torch.float16, 4, False)])
def test_gaussian_noise_in_a_program(dtype, c, geo):
    """GAUSSIAN_NOISE (per-pixel counter-based normals; clip on / off, uint8 wrap) after geometry, before statistics."""
    import fastaug.functional as F
    from fastaug import rng
    from fastaug.compiler import compile_plan

    x = _input(dtype, 3, c, 7, 9, 50 + c)
    cv = F.Canvas(3, c, 7, 9, x.device)
    idx = torch.tensor([3, 4, 5])
    calls = [F.gaussian_noise_call(cv, torch.tensor([0.0, 0.1, -0.1]), torch.tensor([0.05, 0.3, 1.0]), clip, rng.key(2, 1, idx, s))
             for s, clip in enumerate((True, False))]
    calls.append(ColorCall(name="autocontrast", code=int(Op.AUTOCONTRAST), params=torch.zeros(3, 3)))
    if geo:
        calls.insert(0, F.rotate_call(cv, torch.tensor([10.0, -20.0, 35.0]), "bilinear", fill=[0.5] * c))
    plan = compile_plan(calls, tuple(x.shape), x.dtype, x.device)
    ref = engine.execute(plan, x, backend="torch")
    got = engine.execute(plan, x, backend="triton")
    if dtype == torch.uint8:  # an ulp of log / cos may move a truncation edge
        diff = (got.int() - ref.int()).abs()
        assert diff.max() <= 1 and (diff == 0).double().mean() > 0.99
    else:
        assert_matches(got, ref, False)


@pytest.mark.parametrize("seed,dtype,c", [(30, torch.uint8, 3), (31, torch.float32, 5)])
def test_reduce_fields(seed, dtype, c):
    """``reduce`` against the reference field by field, at every statistics slot (geometry stage)."""
    from fastaug.kernels import triton as tb

    x = layouts(_input(dtype, 3, c, 9, 11, seed))["channels_last"]
    plan = random_plan(x, seed, ops_per_stage=3)
    st = plan.stages[0]
    st.slot_codes = None
    stats, luts = engine.run_stage_stats(reference, x, st, c)
    for k in range(st.program.shape[1]):
        want = reference.reduce(x, st, stats, luts, k)
        got = tb.reduce(x, st, stats, luts, k)
        for f in dataclasses.fields(want):
            a, b = getattr(got, f.name), getattr(want, f.name)
            assert a.dtype == b.dtype and a.shape == b.shape, f.name
            torch.testing.assert_close(a, b, atol=1e-9 if f.name == "gray_sum" else 0, rtol=1e-12, msg=f.name)


def test_apply_writes_through_out_strides():
    """``out`` with arbitrary strides (a channel-reversed, column-strided view of a larger buffer)."""
    from fastaug.kernels import triton as tb

    x = _input(torch.uint8, 2, 3, 7, 9, 40)
    plan = random_plan(x, 40, out_dtype=torch.float32, normalize=True)
    st, ep = plan.stages[0], plan.epilogue
    stats, luts = engine.run_stage_stats(reference, x, st, 3)
    ho, wo = plan.out_size
    want = torch.empty(2, 3, ho, wo)
    reference.apply(x, st, stats, luts, ep, want)
    big = torch.full((2, ho, 2 * wo, 3), -7.0)
    out = big.permute(0, 3, 1, 2)[..., ::2]  # strides (6*ho*wo, 1, 6*wo, 6)
    tb.apply(x, st, stats, luts, ep, out)
    torch.testing.assert_close(out, want, atol=1e-4, rtol=0)
    assert (big[:, :, 1::2] == -7.0).all()


@pytest.mark.parametrize("c,oc", [(4, 3), (3, 2)])
def test_fewer_output_channels(c, oc):
    """``out_channels < C``: RGBA -> RGB with a per-channel program, and RGB-mixing programs keeping 2."""
    x = _input(torch.uint8, 3, c, 9, 7, 70 + c)
    plan = random_plan(x, 70 + c, out_dtype=torch.float16, normalize=True)
    plan.epilogue.out_channels = oc
    compare(x, plan, True)


# ------------------------------------------------------------------------------------------------
# native CUDA runs
# ------------------------------------------------------------------------------------------------


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"s{c[0]}")
def test_random_plans_cuda(case, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    seed, dtype, c, layout, stages, geo, clamp, fill, out_dtype, normalize, h, w = case
    x = _input(dtype, 4, c, 8 * h + 1, 8 * w + 3, seed).cuda()
    if layout == "strided":
        wide = torch.zeros(x.shape[:3] + (2 * x.shape[3],), dtype=x.dtype, device=x.device)
        wide[..., ::2] = x
        x = wide[..., ::2]
    elif layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    plan = random_plan(x.cpu(), seed, geometry=geo is not None, stages=stages, out_dtype=out_dtype,
                       normalize=normalize)
    _set_geometry(plan, geo, clamp, fill, seed)
    compare(x, plan_to(plan, x.device), normalize)


@pytest.mark.gpu
@cuda
def test_cuda_graph_capture(monkeypatch):
    """apply/reduce never synchronise: a whole Plan (statistics included) replays from a CUDA graph."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = _input(torch.uint8, 4, 3, 61, 75, 50).cuda()
    plan = plan_to(random_plan(x.cpu(), 50, stages=2, out_dtype=torch.float16), x.device)
    plan.stages[0].slot_codes = None
    want = engine.execute(plan, x, backend="torch")
    engine.execute(plan, x, backend="triton")  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        got = engine.execute(plan, x, backend="triton")
    graph.replay()
    torch.cuda.synchronize()
    assert_matches(got, want, True)


def test_reduce_per_sample_stops():
    """``reduce`` with a stop per sample equals the reference's, field by field, for the active samples;
    skipped samples (stop outside [0, K)) leave their entries at the initial values."""
    from fastaug.kernels import triton as tb

    x = _input(torch.uint8, 4, 3, 9, 11, 32)
    plan = random_plan(x, 32, ops_per_stage=4)
    st = plan.stages[0]
    st.slot_codes = None
    k_total = st.program.shape[1]
    stats, luts = engine.run_stage_stats(reference, x, st, 3)
    stop = torch.tensor([0, 3, k_total, 2])
    want = reference.reduce(x, st, stats, luts, stop)
    got = tb.reduce(x, st, stats, luts, stop)
    active = torch.tensor([0, 1, 3])
    for f in dataclasses.fields(want):
        a, b = getattr(got, f.name)[active], getattr(want, f.name)[active]
        torch.testing.assert_close(a, b, atol=1e-9 if f.name == "gray_sum" else 0, rtol=1e-12, msg=f.name)
    assert got.gray_sum[2] == 0 and not got.hist[2].any() and torch.isinf(got.minimum[2]).all()


@pytest.mark.parametrize("dtype,c", [(torch.uint8, 3), (torch.float32, 1), (torch.float64, 5), (torch.float16, 4)])
def test_downscale_every_mode(dtype, c):
    """DOWNSCALE at k = 0 of a stage (nearest / bilinear each way, per sample), then an op."""
    import fastaug.functional as F
    from fastaug.compiler import compile_plan

    x = _input(dtype, 4, c, 9, 13, 90 + c)
    cv = F.Canvas(4, c, 9, 13, x.device)
    for down, up in (("nearest", "nearest"), ("nearest", "bilinear"), ("bilinear", "nearest"), ("bilinear", "bilinear")):
        calls = [F.downscale_call(cv, torch.tensor([0.1, 0.3, 0.5, 1.0]), down, up),
                 ColorCall(name="b", code=int(Op.BRIGHTNESS), params=torch.tensor([[1.2, 0.0, 0.0]]).expand(4, 3))]
        plan = compile_plan(calls, tuple(x.shape), x.dtype, x.device)
        compare(x, plan, False)


@pytest.mark.parametrize("dtype,interp", [(torch.uint8, "bilinear"), (torch.float32, "nearest"), (torch.float16, "bilinear")])
def test_elastic_displacement(dtype, interp):
    """An elastic displacement after an affine map, in the one resampling; the reduction pass (contrast) reads it too."""
    import fastaug.functional as F
    from fastaug.compiler import compile_plan

    x = _input(dtype, 3, 3, 10, 12, 95)
    cv = F.Canvas(3, 3, 10, 12, x.device)
    g = torch.Generator().manual_seed(3)
    d = (torch.rand(3, 10, 12, 2, generator=g) * 2 - 1) * 0.3
    calls = [F.rotate_call(cv, torch.tensor([10.0, -20.0, 0.0]), interp), F.elastic_call(cv, d, interp, fill=[0.5, 0.2, 0.1]),
             ColorCall(name="c", code=int(Op.CONTRAST), params=torch.tensor([[1.3, 0.0, 0.0]]).expand(3, 3))]
    plan = compile_plan(calls, tuple(x.shape), x.dtype, x.device)
    assert plan.stages[0].geometry.displacement is not None
    compare(x, plan, False)


def test_integral_stages_hand_over_uint8():
    """Stages ending in the uint8 domain hand over uint8 (engine.execute); the result as the reference's."""
    import fastaug
    from fastaug.compiler import compile_plan

    x = _input(torch.uint8, 3, 3, 11, 14, 97)
    aug = fastaug.Compose([fastaug.RandomAffine(20), fastaug.ColorJitter(0.3, 0.3), fastaug.GaussianBlur(3, (0.5, 1.5)),
                           fastaug.Downscale((0.3, 0.6), p=1.0)], seed=4)  # fmt: skip
    plan = compile_plan(aug.draw(x, torch.arange(3), 0), tuple(x.shape), x.dtype, x.device)
    assert [st.integral for st in plan.stages] == [True, True, False]
    compare(x, plan, False)


@pytest.mark.parametrize("name", ["blur", "brightness", "affine"])
def test_float64_input_matches_the_reference_in_float64(name):
    """float64 input: the kernels read the Plan tensors (params, taps, matrix, window, fill, ...) in float64 and compute
    in float64, as the reference: equal to ~1e-12 (float32 Plan tensors left gaps of 1e-8 to 1e-7)."""
    import fastaug.functional as F

    x = _input(torch.float64, 3, 3, 11, 13, 90)
    calls = {
        "blur": lambda im, be: F.gaussian_blur(im, 7, torch.tensor([0.7, 1.3, 2.1], dtype=torch.float64), backend=be),
        "brightness": lambda im, be: F.adjust_brightness(im, torch.tensor([0.61, 0.93, 1.37], dtype=torch.float64), backend=be),
        "affine": lambda im, be: F.affine(im, torch.tensor([13.3, -27.1, 41.7], dtype=torch.float64), [0.37, -1.21], 1.13,
                                          [3.1, -5.3], interpolation="bilinear", fill=0.3, backend=be),
    }[name]  # fmt: skip
    got, ref = calls(x, "triton"), calls(x, "torch")
    assert got.dtype == ref.dtype == torch.float64
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)
