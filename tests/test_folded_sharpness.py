"""SHARPNESS folded into a stage (``fastaug.plan.Fold``) gives the values of the stage split there, on every backend.

The compiler folds SHARPNESS (after the geometry, or after other ops) instead of opening a stage: the Triton kernels
write, for the samples that sharpen there only, the chain before it into a fold buffer and resume from it. Checked:
which calls fold (and which do not: after a blur, float64 maths); ``unfold`` gives back the split Plan; the reference's
folded stage equals the split Plan bit for bit; the Triton kernels (interpreter) and numba (which runs the unfolded
Plan) match the reference on random folded stages (one and two folds; geometry nearest / bilinear with fill,
statistics ops before and after a fold, random ops, 1 / 3 / 4 / 5 channels) and on compiled policies (uint8 fold
buffers); gradients (autograd runs the unfolded Plan) equal the reference's autograd of the folded Plan.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from interpreted_triton import interpret  # noqa: F401  (first: Triton imported for the interpreter)

# isort: split
from fastaug.kernels.numba import backend as numba_backend
from random_plans import _param, plan_to, random_plan
from test_triton_backend import assert_matches

import fastaug
from fastaug import engine
from fastaug.compiler import compile_plan
from fastaug.plan import Fold, Op, Plan, unfold
from fastaug.policies import RandAugment

SHARP = int(Op.SHARPNESS)


def _plan(transforms, x: torch.Tensor, seed: int = 0) -> Plan:
    pipe = fastaug.Compose(transforms, seed=seed)
    calls = pipe.draw(x, torch.arange(x.shape[0]), 1)
    return compile_plan(calls, tuple(x.shape), x.dtype, x.device)


def _images(dtype=torch.uint8, b=6, c=3, h=11, w=13, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)


def test_compiler_folds_sharpness():
    x = _images()
    sharp = fastaug.RandomAdjustSharpness(2.0, p=0.7)
    norm = fastaug.Normalize([0.5] * 3, [0.2] * 3)
    plan = _plan([fastaug.RandomAffine(degrees=20), sharp, fastaug.ColorJitter(contrast=0.4), sharp, norm], x)
    assert len(plan.stages) == 1  # geometry | SHARPNESS, contrast | SHARPNESS were three stages
    assert plan.stages[0].folds == (Fold(0, True, (0, 1)), Fold(2, True, (1, 0))) and plan.stages[0].geometry is not None
    split = unfold(plan)
    assert [st.program.shape[1] for st in split.stages] == [0, 2, 1]
    assert [st.geometry is not None for st in split.stages] == [True, False, False]
    assert [st.stat_slots for st in split.stages] == [(), (1,), ()] and [st.rounds() for st in split.stages] == [0, 1, 0]
    assert [st.integral for st in split.stages] == [True, True, False] and all(not st.folds for st in split.stages)
    assert split.stages[1].program.data_ptr() == plan.stages[0].program.data_ptr()  # views, no copy
    assert unfold(split) is split
    # without geometry, a SHARPNESS after a color op folds at its position
    plan = _plan([fastaug.ColorJitter(brightness=0.3), sharp], x)
    assert len(plan.stages) == 1 and [f.position for f in plan.stages[0].folds] == [1]
    # a blur opens a stage, and a SHARPNESS after it too (the blur reads the stage input); float64 maths never folds
    plan = _plan([fastaug.ColorJitter(brightness=0.3), fastaug.GaussianBlur(3), sharp], x)
    assert [st.folds for st in plan.stages] == [(), (), ()]
    plan = _plan([fastaug.RandomAffine(degrees=20), sharp], _images(torch.float64))
    assert len(plan.stages) == 2 and not plan.stages[0].folds


def test_policies_run_one_stage():
    """RandAugment(2) and MarkovPolicy(3): each slot may sharpen; every slot folds into the geometry's stage."""
    norm = fastaug.Normalize([0.5] * 3, [0.2] * 3)
    plan = _plan([RandAugment(num_ops=2, magnitude=9), norm], _images(b=8))
    assert len(plan.stages) == 1 and [f.position for f in plan.stages[0].folds] == [0, 1]
    assert len(unfold(plan).stages) == 3
    plan = _plan([fastaug.MarkovPolicy.from_autoaugment(length=3), norm], _images(b=8))
    assert len(plan.stages) == 1 and [f.position for f in plan.stages[0].folds] == [0, 1, 2]


def _folded(plan: Plan) -> Plan:
    """The stages of ``plan`` (each after the first opening with SHARPNESS) as one stage with folds."""
    first, *rest = plan.stages
    stage, folds = first, []
    for b in rest:
        k = stage.program.shape[1]
        keys = None if stage.keys is None else torch.cat([stage.keys, b.keys], 1)
        rounds = (folds[-1].rounds[1] if folds else len(stage.stat_slots), len(b.stat_slots))
        folds.append(Fold(k, False, rounds))
        stage = dataclasses.replace(
            stage, program=torch.cat([stage.program, b.program], 1), params=torch.cat([stage.params, b.params], 1),
            stat_slots=stage.stat_slots + tuple(s + k for s in b.stat_slots), stat_rounds=None,
            slot_codes=stage.slot_codes + b.slot_codes, keys=keys, folds=tuple(folds),
        )  # fmt: skip
    return dataclasses.replace(plan, stages=[stage])


def _random_case(seed: int, c: int, dtype: torch.dtype, geometry: bool, new_ops: bool):
    x = _images(dtype, b=4, c=c, h=9 + seed % 3, w=10 + seed % 4, seed=seed)
    split = random_plan(x, seed, geometry=geometry, stages=2 + seed % 2, ops_per_stage=3, rects=1, new_ops=False)
    if new_ops:  # random ops before and after the fold (keys per position)
        random_ops = ([Op.GAUSSIAN_NOISE, Op.PIXEL_DROPOUT], [Op.SALT_AND_PEPPER, Op.FOG], [Op.FOG, Op.GAUSSIAN_NOISE])
        for st, ops in zip(split.stages, random_ops, strict=False):
            st.program[:, 2] = torch.tensor([int(ops[i % 2]) for i in range(4)], dtype=torch.int32)
            g = torch.Generator().manual_seed(seed)
            st.params[:, 2, :3] = torch.tensor([_param(ops[i % 2], g, bool(st.params[i, 2, 3] > 0.5)) for i in range(4)])
            st.slot_codes = st.slot_codes[:2] + (tuple(sorted(int(o) for o in ops)),)
            st.stat_slots = tuple(s for s in st.stat_slots if s != 2)
            st.keys = torch.randint(0, 2**32, (4, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.int64)
    assert bool((split.stages[1].program[:, 0] == SHARP).any())
    return x, split, _folded(split)


CASES = [(seed, c, dtype, geometry, new_ops)
         for seed, (c, dtype, geometry, new_ops) in enumerate([
             (3, torch.uint8, True, False), (3, torch.float32, True, False), (3, torch.uint8, False, False),
             (1, torch.uint8, True, False), (4, torch.float32, True, False), (5, torch.uint8, True, False),
             (3, torch.uint8, True, True), (3, torch.float16, False, True),
         ])]  # fmt: skip


@pytest.mark.parametrize("seed,c,dtype,geometry,new_ops", CASES)
def test_reference_folded_equals_split(seed, c, dtype, geometry, new_ops):
    x, split, folded = _random_case(seed, c, dtype, geometry, new_ops)
    ref = engine.execute(split, x, backend="torch")
    assert torch.equal(engine.execute(folded, x, backend="torch"), ref)
    unfolded = unfold(folded)
    assert len(unfolded.stages) == len(split.stages)
    assert torch.equal(engine.execute(unfolded, x, backend="torch"), ref)


@pytest.mark.parametrize("seed,c,dtype,geometry,new_ops", CASES)
def test_backends_match_reference_on_folded_stages(seed, c, dtype, geometry, new_ops):
    x, split, folded = _random_case(seed, c, dtype, geometry, new_ops)
    ref = engine.execute(folded, x, backend="torch")
    normalized = folded.epilogue.mean is not None
    got = engine.execute(folded, x, backend="triton")
    assert_matches(got, ref, normalized)
    assert torch.equal(got, engine.execute(split, x, backend="triton"))
    assert torch.equal(got, engine.execute(unfold(folded), x, backend="triton"))  # the split stages are views
    assert_matches(engine.execute(folded, x, backend="numba"), ref, normalized)


@pytest.mark.parametrize("fill", [None, 300.0])
def test_compiled_plans_give_the_split_values_on_every_backend(fill):
    """Compiled uint8 plans (their split intermediates are uint8: Fold.integral): folded and unfolded, every backend. A
    fill outside a uint8 image's range is clamped, so a stage boundary (or none) after the geometry changes nothing."""
    x = _images(b=8, h=12, w=15, seed=11)
    sharp = fastaug.RandomAdjustSharpness(0.3, p=0.8)
    for transforms in ([RandAugment(num_ops=2, magnitude=9, fill=fill)],
                       [fastaug.RandomAffine(degrees=40, fill=fill), sharp, fastaug.RandomEqualize(p=0.7), sharp]):
        plan = _plan(transforms, x, seed=4)
        assert plan.stages[0].folds and all(f.integral for f in plan.stages[0].folds)
        ref = engine.execute(plan, x, backend="torch")
        assert torch.equal(engine.execute(unfold(plan), x, backend="torch"), ref)
        assert torch.equal(engine.execute(unfold(plan), x, backend="triton"), engine.execute(plan, x, backend="triton"))
        assert_matches(engine.execute(plan, x, backend="triton"), ref, False)
        assert_matches(engine.execute(plan, x, backend="numba"), ref, False)
    if fill is not None:  # clamped: as the largest fill a uint8 image holds
        a = _plan([fastaug.RandomAffine(degrees=40, fill=fill), sharp], x, seed=4)
        b = _plan([fastaug.RandomAffine(degrees=40, fill=255.0), sharp], x, seed=4)
        assert torch.equal(engine.execute(a, x, backend="torch"), engine.execute(b, x, backend="torch"))


@pytest.mark.parametrize("c", [1, 3, 5])
def test_three_folds_without_geometry_on_any_channel_count(c):
    """Three folds in a stage without geometry, uint8 buffers, statistics between them; 1, 3 and 5 channels (5: the
    kernels' runtime channel loop); some samples sharpen at two or three folds."""
    x = _images(b=12, c=c, h=10, w=13, seed=c)
    sharp = fastaug.RandomAdjustSharpness(0.2, p=0.6)
    plan = _plan([fastaug.ColorJitter(brightness=0.4), sharp, fastaug.RandomEqualize(p=0.7), sharp,
                  fastaug.RandomPosterize(4, p=0.5), sharp], x, seed=c)  # fmt: skip
    stage = plan.stages[0]
    assert len(plan.stages) == 1 and len(stage.folds) == 3 and all(f.integral for f in stage.folds)
    sharpen = torch.stack([stage.program[:, f.position] == int(Op.SHARPNESS) for f in stage.folds], 1)
    assert bool((sharpen.sum(1) >= 2).any())
    ref = engine.execute(plan, x, backend="torch")
    assert torch.equal(engine.execute(unfold(plan), x, backend="torch"), ref)
    assert_matches(engine.execute(plan, x, backend="triton"), ref, False)
    assert_matches(engine.execute(plan, x, backend="numba"), ref, False)


def test_a_folded_stage_fills_its_buffers_with_its_statistics():
    """The fold buffers are filled between the statistics rounds: a stage with folds cannot run with given tables."""
    x = _images(b=4)
    plan = _plan([fastaug.RandomAffine(degrees=20), fastaug.RandomAdjustSharpness(2.0, p=1.0)], x)
    stage = plan.stages[0]
    k = stage.program.shape[1]
    tables = (torch.zeros(4, k, 3, 2), torch.zeros(4, k, 3, 256))
    with pytest.raises(ValueError, match="without tables"):
        engine.run_stage(engine.load_backend("triton"), x, stage, plan, True, x, tables)


def test_statistics_after_the_fold_read_the_sharpened_chain():
    """AUTOCONTRAST right after a folded SHARPNESS: its reduction runs the fold (min / max of the sharpened values)."""
    x = _images(b=5, h=12, w=14, seed=7)
    plan = _plan([fastaug.RandomAffine(degrees=30), fastaug.RandomAdjustSharpness(0.0, p=1.0), fastaug.RandomAutocontrast(p=1.0)], x)
    assert plan.stages[0].folds and plan.stages[0].stat_slots == (1,)
    ref = engine.execute(unfold(plan), x, backend="torch")
    assert torch.equal(engine.execute(plan, x, backend="torch"), ref)
    assert_matches(engine.execute(plan, x, backend="triton"), ref, False)


@pytest.mark.parametrize("stat", [False, True])
def test_gradients_run_the_split_plan(stat):
    """autograd.execute runs the split Plan (its stages are views of the folded ones: the kernels must read them as
    such); forward values and image gradients as the reference's autograd of the folded Plan."""
    x = _images(torch.float32, b=4, seed=3).requires_grad_(True)
    middle = [fastaug.RandomAutocontrast(p=1.0)] if stat else []
    pipe = fastaug.Compose([fastaug.RandomResizedCrop(9), *middle, fastaug.RandomAdjustSharpness(0.0, p=0.8)], seed=1)
    calls = pipe.draw(x, torch.arange(4), 0)
    plan = compile_plan(calls, tuple(x.shape), x.dtype, x.device)
    assert [f.position for f in plan.stages[0].folds] == [len(middle)]
    with torch.no_grad():
        inference = engine.execute(plan, x, backend="torch")
    ref = fastaug.autograd._reference_forward(plan, x, False)  # the folded Plan, differentiated by torch
    (gref,) = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(ref, inference, rtol=0, atol=1e-6)
    for backend in ("torch", "numba", "triton"):
        out = fastaug.autograd.execute(plan, x, backend)
        (gx,) = torch.autograd.grad(out.square().sum(), x)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(gx, gref, rtol=1e-5, atol=1e-5)


def test_numba_refuses_a_folded_stage():
    x, _, folded = _random_case(0, 3, torch.uint8, True, False)
    out = torch.empty(x.shape[0], 3, *folded.out_size, dtype=torch.float32)
    stage = folded.stages[0]
    stats = torch.zeros(x.shape[0], stage.program.shape[1], 3, 2)
    luts = torch.zeros(x.shape[0], stage.program.shape[1], 3, 256)
    with pytest.raises(ValueError, match="unfold"):
        numba_backend.apply(x, stage, stats, luts, None, out)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("seed,c,dtype,geometry,new_ops", CASES)
def test_folded_stages_cuda(seed, c, dtype, geometry, new_ops, monkeypatch):
    """The same random folded stages, compiled for the GPU (fold fills, resumes, statistics after folds)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x, _, folded = _random_case(seed, c, dtype, geometry, new_ops)
    ref = engine.execute(folded, x, backend="torch")
    got = engine.execute(plan_to(folded, torch.device("cuda")), x.cuda(), backend="triton")
    assert_matches(got.cpu(), ref, folded.epilogue.mean is not None)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("policy", ["randaugment", "markov"])
def test_folded_policies_cuda(policy, monkeypatch):
    """RandAugment(2) and MarkovPolicy(3) + Normalize as one folded stage on the GPU, against the reference on the CPU."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = _images(b=64, h=61, w=75, seed=5)
    chosen = RandAugment(num_ops=2, magnitude=9) if policy == "randaugment" else fastaug.MarkovPolicy.from_autoaugment(length=3)
    pipe = fastaug.Compose([chosen, fastaug.Normalize([0.5] * 3, [0.2] * 3)], seed=2)
    want = pipe(x, indices=torch.arange(64), epoch=1, backend="torch")
    got = pipe(x.cuda(), indices=torch.arange(64, device="cuda"), epoch=1, backend="triton")
    assert_matches(got.cpu(), want, True)
