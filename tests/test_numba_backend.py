"""The Numba backend against the plain-torch reference on random per-sample Plans."""

import pytest
import torch
from random_plans import layouts, random_plan

from fastaug import engine


def batch(dtype, c, seed, shape=(5, 13, 17)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (shape[0], c, *shape[1:]), dtype=torch.uint8, generator=g)
    return x if dtype == torch.uint8 else (x.to(torch.float32) / 255).to(dtype)


def assert_match(a, b):
    if a.dtype == torch.uint8:
        diff = (a.int() - b.int()).abs()
        assert diff.max() <= 1 and (diff == 0).float().mean() >= 0.99
    else:
        torch.testing.assert_close(b.float(), a.float(), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16])
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("stages", [1, 2])
def test_random_plans_match_reference(dtype, channels, stages):
    x = batch(dtype, channels, seed=channels * 7 + stages)
    plan = random_plan(x, seed=channels * 10 + stages, stages=stages, to_float_at=1 if dtype == torch.uint8 else None)
    assert_match(engine.execute(plan, x, "torch"), engine.execute(plan, x, "numba"))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("out_dtype", [torch.uint8, torch.float32])
def test_layouts_and_output_dtypes(layout, out_dtype):
    x = layouts(batch(torch.uint8, 3, seed=1))[layout]
    plan = random_plan(x, seed=4, out_dtype=out_dtype, normalize=out_dtype.is_floating_point)
    assert_match(engine.execute(plan, x, "torch"), engine.execute(plan, x, "numba"))


def test_many_channels_per_channel_program():
    x = batch(torch.float32, 16, seed=2, shape=(3, 9, 11))
    plan = random_plan(x, seed=9, stages=2)
    assert_match(engine.execute(plan, x, "torch"), engine.execute(plan, x, "numba"))
