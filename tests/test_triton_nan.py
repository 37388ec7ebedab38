"""A NaN pixel in AUTOCONTRAST's statistics, the same on the torch reference, numba and Triton (interpreter).

The rule (``kernels/reference.py``, ``_min_max``): the per-channel minimum / maximum leave NaN pixels out (a channel
of NaN only: +inf / -inf), so one NaN pixel does not turn its whole channel into NaN (``amin`` / ``amax`` would), and
the order in which tiles fold their minima in (atomics) cannot matter. The NaN pixel itself stays NaN through the
op's clamp (``torch.clamp``; Triton's default min / max, min.f32 / max.f32 and np.fmin / np.fmax in the
interpreter, would return 0)."""

from __future__ import annotations

import pytest
import torch
from interpreted_triton import interpret  # noqa: F401  (first: Triton imported for the interpreter)

# isort: split

from fastaug.kernels import reference
from fastaug.kernels.numba import backend as numba_backend
from fastaug.kernels.triton import fused
from random_plans import random_plan

from fastaug import engine
from fastaug.plan import NUM_PARAMS, Op, Stage


def _image(dtype: torch.dtype) -> torch.Tensor:
    """3 samples, 3 channels, 37x45 (several tiles): NaN at the corner, at the max's place, in a whole channel."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(3, 3, 37, 45, generator=g, dtype=torch.float64).to(dtype)
    x[0, 0, 0, 0] = float("nan")  # one NaN pixel
    x[0, 1, 20:, 30:] = float("nan")  # a NaN block over several tiles
    x[1, 2] = float("nan")  # a channel of NaN only
    x[2, 0, 5, 7] = 2.0  # a clear maximum next to a NaN
    x[2, 0, 5, 8] = float("nan")
    return x


def _stage(b: int) -> Stage:
    params = torch.zeros(b, 1, NUM_PARAMS)
    return Stage(program=torch.full((b, 1), int(Op.AUTOCONTRAST), dtype=torch.int32), params=params,
                 stat_slots=(0,), slot_codes=((int(Op.AUTOCONTRAST),),))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_min_max_leave_nan_pixels_out_on_every_backend(dtype):
    x = _image(dtype)
    b, c = x.shape[:2]
    stage = _stage(b)
    stats, luts = torch.zeros(b, 1, c, 2), torch.zeros(b, 1, c, 256)
    flat = x.reshape(b, c, -1).double()
    work = engine.table_dtype(x)  # a reduction's minima / maxima: the working dtype, as the tables
    want_lo = torch.where(flat.isnan(), float("inf"), flat).amin(2).to(work)
    want_hi = torch.where(flat.isnan(), -float("inf"), flat).amax(2).to(work)
    assert want_lo[1, 2] == float("inf") and want_hi[1, 2] == -float("inf") and want_hi[2, 0] == 2.0
    for name, reduce in (("torch", reference.reduce), ("numba", numba_backend.reduce), ("triton", fused.reduce)):
        r = reduce(x, stage, stats, luts, 0)
        assert torch.equal(r.minimum, want_lo), name
        assert torch.equal(r.maximum, want_hi), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_autocontrast_with_nan_pixels_is_the_same_on_every_backend(dtype):
    """Every other pixel gets its channel's contrast from the non-NaN values; NaN pixels stay NaN. (A Plan run as the
    device runs it: the functional API raises on a NaN image on the CPU, the device takes float images as given.)"""
    x = _image(dtype)
    plan = random_plan(x, 3, geometry=False, stages=1, ops_per_stage=1, out_dtype=dtype, normalize=False, rects=0)
    plan.stages[0] = _stage(x.shape[0])
    plan.epilogue.out_scale = 1.0
    ref = engine.execute(plan, x, backend="torch")
    assert torch.isnan(ref).equal(torch.isnan(x))
    ok = ~torch.isnan(x)
    assert ref[ok].min() >= 0 and ref[ok].max() <= 1 and ref[2, 0, 5, 7] == 1.0
    for be in ("numba", "triton"):
        got = engine.execute(plan, x, backend=be)
        torch.testing.assert_close(got, ref, atol=0, rtol=0, equal_nan=True, msg=be)


def test_live_statistics_leave_nan_pixels_out():
    """The autograd ground truth (``reference.live_stats``) reads the same min / max as the tables, and its gradient
    reaches the tied non-NaN extremes only."""
    x = _image(torch.float32)[:1, :1].clone().requires_grad_(True)
    stage = _stage(1)
    st = reference.live_stats(x, stage, 0)
    flat = x.detach().reshape(-1)
    assert st[0, 0, 0] == flat[~flat.isnan()].min() and st[0, 0, 1] == flat[~flat.isnan()].max()
    st[0, 0, 1].backward()
    at_max = flat == st[0, 0, 1].detach()
    assert at_max.sum() == 1 and x.grad.reshape(-1)[at_max].item() == 1.0 and x.grad.sum() == 1.0
