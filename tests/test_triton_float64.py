"""float64 images on the Triton backend (interpreter): every program op in a float64 stage computes in float64 with
float64 Plan tensors (params, keys' draws) and float64 statistics tables (``engine.table_dtype``), as the torch
reference and numba do: equal to ~1e-15, where float32 parameters, maths or tables would leave gaps of 1e-8 to 1e-7."""

from __future__ import annotations

import pytest
import torch
from interpreted_triton import interpret  # noqa: F401  (first: Triton imported for the interpreter)

# isort: split

from random_plans import random_plan

import fastaug.functional as F
from fastaug import engine
from fastaug.plan import NUM_PARAMS, RGB_OPS, Op

# params[:3] of each op (float domain); other ops: zeros
PARAMS = {
    Op.BRIGHTNESS: [1.37, 0, 0], Op.CONTRAST: [0.61, 0, 0], Op.SATURATION: [1.43, 0, 0], Op.HUE: [0.137, 0, 0],
    Op.GAMMA: [0.731, 1.2, 0], Op.POSTERIZE: [3.0, 0, 0], Op.SOLARIZE: [0.437, 0, 0], Op.RGB_SHIFT: [0.11, 0.1, -0.2],
    Op.RGB_GAIN: [1.31, 0.5, 1.3], Op.DOWNSCALE: [0.53, 3.0, 0], Op.MULTIPLICATIVE_NOISE: [0.7, 1.3, 1],
    Op.PIXEL_DROPOUT: [0.3, 0.77, 1], Op.SALT_AND_PEPPER: [0.3, 0.4, 0], Op.GAUSSIAN_NOISE: [0.01, 0.1, 0],
    Op.FOG: [0.6, 0.37, 0.2], Op.SHARPNESS: [1.7, 0, 0],
}  # fmt: skip
OPS = [op for op in Op if op not in (Op.TO_UINT8, Op.GAUSSIAN_BLUR, Op.CONVOLVE, Op.SUPERPIXELS)]


def _plan(x: torch.Tensor, op: Op):
    """Sample 0 runs ``op`` at k = 0, sample 1 a brightness then ``op`` at k = 1; float64 params (not float32-exact)."""
    plan = random_plan(x, int(op), geometry=False, stages=1, ops_per_stage=2, out_dtype=torch.float64, normalize=False,
                       rects=0)
    st = plan.stages[0]
    st.program = torch.tensor([[int(op), int(Op.IDENTITY)], [int(Op.BRIGHTNESS), int(op)]], dtype=torch.int32)
    params = torch.zeros(2, 2, NUM_PARAMS, dtype=torch.float64)
    params[1, 0, 0] = 0.9 + 1e-9
    p = torch.tensor(PARAMS.get(op, [0.0, 0.0, 0.0]), dtype=torch.float64) * (1 + 1e-9)
    if op in (Op.POSTERIZE, Op.DOWNSCALE):
        p[:2] = torch.tensor(PARAMS[op][:2], dtype=torch.float64)  # integers
    params[0, 0, :3] = params[1, 1, :3] = p
    st.params = params
    st.slot_codes = ((int(op), int(Op.BRIGHTNESS)), (int(Op.IDENTITY), int(op)))
    st.stat_slots = (0, 1) if op in (Op.CONTRAST, Op.AUTOCONTRAST, Op.EQUALIZE) else ()
    st.keys = torch.tensor([[123456789, 0], [0, 987654321]], dtype=torch.int64)
    plan.epilogue.out_scale = 1.0
    return plan


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_every_op_in_float64_matches_the_reference(op):
    c = 3 if op in (*RGB_OPS, Op.CONTRAST) else 4
    x = torch.rand(2, c, 7, 9, generator=torch.Generator().manual_seed(int(op)), dtype=torch.float64)
    plan = _plan(x, op)
    ref = engine.execute(plan, x, backend="torch")
    assert ref.dtype == torch.float64
    for be in ("triton", "numba"):
        torch.testing.assert_close(engine.execute(plan, x, backend=be), ref, atol=1e-15, rtol=0, msg=be)


def _autocontrast64(x: torch.Tensor) -> torch.Tensor:
    """AUTOCONTRAST in float64 by plain torch ops (torchvision's float rule); autograd shares a tie's gradient as
    ``amin`` / ``amax`` do."""
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def _contrast64(x: torch.Tensor, factor: float) -> torch.Tensor:
    """CONTRAST in float64 by plain torch ops (torchvision's float rule: the gray image's mean)."""
    gray = x[:, 0:1] * 0.2989 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114
    return (x * factor + gray.mean((1, 2, 3), keepdim=True) * (1.0 - factor)).clamp(0.0, 1.0)


@pytest.mark.parametrize("be", ["torch", "numba", "triton"])
def test_float64_autocontrast_backward_finds_the_extremes(be):
    """Every backend's float64 AUTOCONTRAST gradient equals autograd through plain float64 torch ops: the min / max
    gradients reach the extreme pixels. With float32 statistics tables a float64 pixel at its channel's min / max
    rarely equalled the table's entry and those gradients were lost (numba and triton: ~58 % of the norm off)."""
    x0 = torch.rand(2, 3, 8, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    g = torch.randn(2, 3, 8, 9, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    want_x = x0.clone().requires_grad_(True)
    want = _autocontrast64(want_x)
    want.backward(g)
    x = x0.clone().requires_grad_(True)
    out = F.autocontrast(x, backend=be)
    out.backward(g)
    torch.testing.assert_close(out.detach(), want.detach(), atol=1e-12, rtol=0)
    assert float((x.grad - want_x.grad).norm() / want_x.grad.norm()) < 1e-12


@pytest.mark.parametrize("be", ["torch", "numba", "triton"])
def test_float64_statistics_ops_forward_in_float64(be):
    """The float64 forward of AUTOCONTRAST and CONTRAST (no autograd: the engine's tables) equals the same op in plain
    float64 torch to ~1e-12 on every backend, the same with and without a gradient; EQUALIZE agrees bit for bit with
    the reference backend. Float32 tables moved autocontrast by ~3e-8 and contrast by ~6e-9 (a float32 min / max /
    gray mean), and the torch backend's output differed with and without requires_grad."""
    x = torch.rand(3, 3, 11, 13, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 0.8 + 0.1
    torch.testing.assert_close(F.autocontrast(x, backend=be), _autocontrast64(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(F.autocontrast(x.clone().requires_grad_(True), backend=be).detach(), _autocontrast64(x),
                               atol=1e-12, rtol=0)
    factor = 0.61 * (1 + 1e-9)
    torch.testing.assert_close(F.adjust_contrast(x, factor, backend=be), _contrast64(x, factor), atol=1e-12, rtol=0)
    torch.testing.assert_close(F.adjust_contrast(x.clone().requires_grad_(True), factor, backend=be).detach(),
                               _contrast64(x, factor), atol=1e-12, rtol=0)
    assert torch.equal(F.equalize(x, backend=be), F.equalize(x, backend="torch"))


@pytest.mark.parametrize("be", ["torch", "numba", "triton"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.uint8], ids=str)
def test_statistics_tables_take_the_stage_working_dtype(be, dtype):
    """The statistics tables (min / max / gray mean, EQUALIZE's lookup tables) are float64 for a float64 stage input,
    float32 otherwise (float32 / uint8 keep exactly their former tables), and the same on every backend."""
    x = torch.rand(2, 3, 6, 7, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x = (x * 255).to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)
    for op in (Op.AUTOCONTRAST, Op.EQUALIZE, Op.CONTRAST):
        plan = _plan(x.double(), op)
        stage = plan.stages[0]
        if dtype != torch.float64:
            stage.params = stage.params.float()
        stats, luts = engine.run_stage_stats(engine.load_backend(be), x, stage, 3)
        want = torch.float64 if dtype == torch.float64 else torch.float32
        assert stats.dtype == want and luts.dtype == want, op.name
        ref_stats, ref_luts = engine.run_stage_stats(engine.load_backend("torch"), x, stage, 3)
        at = (torch.arange(2), torch.tensor([0, 1]))  # the entries the op reads: sample 0 at k = 0, sample 1 at k = 1
        if op == Op.AUTOCONTRAST:
            assert torch.equal(stats[at], ref_stats[at])
        elif op == Op.CONTRAST:
            torch.testing.assert_close(stats[at][:, 0, 0], ref_stats[at][:, 0, 0], atol=1e-15, rtol=0)
        else:
            assert torch.equal(luts[at], ref_luts[at])
