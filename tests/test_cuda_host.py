"""The CUDA path's host side on fake CUDA tensors (no GPU needed): no host <-> device copy or sync in a call, the
Triton launches the Plan implies, and a ceiling on the torch ops dispatched per call (``cuda_cases.py`` prints them)."""

from __future__ import annotations

import pytest
import torch
from cuda_cases import CASES, MEAN, STD, B, H, W, draw_launches, run_case, spy_plans

import fastaug
import fastaug.compose
import fastaug.functional

# torch ops that run a kernel, per call (B=8), measured on 2026-12-02: ceilings against regressions; the reference
# pipeline's and RandAugment + Normalize's are the goals (<= 30, <= 40)
CEILING = {
    "reference pipeline": 30,
    "blur-noise pipeline": 98,
    "RandAugment + Normalize": 40,
    "TrivialAugmentWide + Normalize": 34,
    "AutoAugment + Normalize": 36,
    "MarkovPolicy(length=3) + Normalize": 68,
    "XYMasking + RandomErasing": 98,
    "RandomPerspective + RandomResizedCrop": 111,
    "ElasticTransform + RandomFog": 104,
}


@pytest.fixture
def plans():
    """(plan, shape, dtype) of every Plan the test compiles (Compose's; functional ops', such as ElasticTransform's
    field), in order."""
    with spy_plans() as seen:
        yield seen


@pytest.mark.parametrize("name", list(CASES))
def test_call_copies_nothing_and_launches_what_the_plan_implies(name, plans):
    log, out = run_case(name)
    assert log.host_to_device == [] and log.host_to_device_async == []
    assert log.device_to_host == []
    assert out.device.type == "cuda" and out.shape[0] == B
    second = [p for p, _, _ in plans[len(plans) // 2 :]]  # the logged (second) call's: ElasticTransform's field is one too
    stages = [stage for plan in second for stage in plan.stages]
    # a stage's statistics rounds: all at once, or with folds part by part (between two folds: plan.Fold)
    parts = [[rounds for _, _, rounds in stage.parts()] for stage in stages]
    reduce_rounds = sum(sum(p) for p in parts)  # on a GPU every round launches (no early exit)
    assert log.launches.count("apply_kernel") == len(stages)
    assert log.launches.count("reduce_kernel") == reduce_rounds
    assert log.launches.count("stats_tables_kernel") == reduce_rounds  # each round's entries written on the device
    assert draw_launches(log) == 1  # every parameter draw of the call in one launch (rng.bank)
    geometric = sum(plan.stages[0].geometry is not None for plan in second)
    assert log.launches.count("compose_kernel") == geometric  # a plan's geometric maps built and composed in one launch
    with_stats = sum(r > 0 for p in parts for r in p)
    assert log.launches.count("round_setup_kernel") == with_stats  # a part's round stops and reduction buffers: one launch
    fills = sum(len(stage.folds) for stage in stages)
    assert log.launches.count("fold_fill_kernel") == fills  # a fold's buffer: one launch (the samples that sharpen write)
    assert len(log.launches) == len(stages) + 2 * reduce_rounds + 1 + geometric + with_stats + fills
    assert log.kernel_ops <= CEILING[name], dict(log.kernels.most_common(8))
    assert not [op for op in log.ops if "_assert_async" in op]  # no sticky device assert (fastaug.validation)


def test_host_indices_cost_one_non_blocking_copy():
    log, _ = run_case("reference pipeline", host_indices=True)
    assert log.host_to_device == [] and log.device_to_host == []
    assert len(log.host_to_device_async) == 1 and "validation.py" in log.host_to_device_async[0]


def test_float_input():
    log, out = run_case("RandAugment + Normalize", dtype=torch.float32)
    assert log.host_to_device == [] and log.device_to_host == []
    assert tuple(out.shape) == (B, 3, H, W)


def test_harness_sees_a_host_copy_and_a_sync():
    """The checks above can fail: the harness logs a blocking copy and refuses a device read."""
    from fake_cuda import fake_cuda

    with fake_cuda() as log:
        x = torch.zeros(4, device="cuda")
        y = x + torch.tensor([1.0, 2.0, 3.0, 4.0]).to("cuda")
        assert log.host_to_device and "to_copy" in log.host_to_device[0]
        with pytest.raises(Exception, match="local_scalar_dense"):
            bool((y > 0).all())
        assert log.device_to_host


@pytest.mark.parametrize("name", ["reference pipeline", "RandAugment + Normalize", "ElasticTransform + RandomFog"])
def test_device_epoch_copies_nothing(name):
    """The epoch as a device tensor (what a captured CUDA graph reads at replay): no copy, and the same draw launches
    as with a Python int epoch (the kernel reads the epoch instead of the host hashing it)."""
    log, _ = run_case(name, device_epoch=True)
    assert log.host_to_device == [] and log.host_to_device_async == [] and log.device_to_host == []
    plain, _ = run_case(name)
    assert log.launches == plain.launches


def test_host_indices_are_checked_on_the_host():
    """Host indices are read on the host (a negative one raises now, not as a device assert)."""
    from fake_cuda import fake_cuda

    from fastaug.validation import check_indices

    bad, good = torch.tensor([0, 5, -1]), torch.tensor([3, 1, 2])
    with fake_cuda() as log:
        with pytest.raises(ValueError, match="indices must be non-negative"):
            check_indices(bad, 3, torch.device("cuda"))
        out = check_indices(good, 3, torch.device("cuda"))
    assert out.device.type == "cuda" and len(log.host_to_device_async) == 1


def _every_transform():
    import inspect

    from fastaug.transforms import Transform

    needs_args = {"GaussianBlur": lambda: fastaug.GaussianBlur(5, (0.1, 2.0)), "Normalize": lambda: fastaug.Normalize(MEAN, STD),
                  "RandomAdjustSharpness": lambda: fastaug.RandomAdjustSharpness(2.0),
                  "RandomAffine": lambda: fastaug.RandomAffine(20, (0.1, 0.1), (0.8, 1.2), 10, fill=[10, 20, 30]),  # a list fill
                  "RandomPosterize": lambda: fastaug.RandomPosterize(3), "RandomResizedCrop": lambda: fastaug.RandomResizedCrop(24),
                  "RandomRotation": lambda: fastaug.RandomRotation(30, fill=[7]), "RandomSolarize": lambda: fastaug.RandomSolarize(100),
                  "MarkovPolicy": lambda: fastaug.MarkovPolicy.from_autoaugment(length=2),
                  "SubPolicies": lambda: fastaug.AutoAugment()}  # fmt: skip
    for name in sorted(dir(fastaug)):
        cls = getattr(fastaug, name)
        if inspect.isclass(cls) and issubclass(cls, Transform) and cls is not Transform:
            yield name, needs_args.get(name, cls)


@pytest.mark.parametrize(("name", "build"), list(_every_transform()))
def test_every_transform_copies_nothing(name, build):
    """Every public transform, alone in a Compose on a fake CUDA batch: no host <-> device copy (its second call)."""
    from fake_cuda import fake_cuda

    pipe = fastaug.Compose([build()], seed=0)
    with fake_cuda() as log:
        idx = torch.arange(4, device="cuda")
        for epoch in range(2):
            x = torch.empty(4, 3, 32, 32, dtype=torch.uint8, device="cuda")
            log.reset()
            out = pipe(x, indices=idx, epoch=epoch)
    assert log.host_to_device == [] and log.device_to_host == [] and log.host_to_device_async == []
    assert out.device.type == "cuda"


@pytest.mark.parametrize("kind", ["list", "device tensor"])
def test_functional_normalize_copies_nothing(kind):
    from fake_cuda import fake_cuda

    with fake_cuda() as log:
        mean = MEAN if kind == "list" else torch.empty(3, device="cuda")
        std = STD if kind == "list" else torch.empty(3, device="cuda")
        x = torch.empty(4, 3, 32, 32, dtype=torch.uint8, device="cuda")
        fastaug.functional.normalize(x, mean, std)  # the first call caches the list's constants
        log.reset()
        out = fastaug.functional.normalize(x, mean, std)
    assert log.host_to_device == [] and log.device_to_host == [] and out.dtype == torch.float32


def test_keypoints_and_boxes_are_mapped_on_the_device():
    """Targets stay on the device: keypoints and boxes (not dropped: min_size < 0, Compose's own mapping step) are mapped
    without a host copy or a device read; dropping boxes reads which survive (variable sizes), nothing else."""
    from fake_cuda import fake_cuda

    from fastaug.compiler import compile_plan
    from fastaug.targets import transform_boxes, transform_keypoints

    pipe = fastaug.Compose([fastaug.RandomAffine(20, (0.1, 0.1)), fastaug.RandomHorizontalFlip(), fastaug.ElasticTransform()])
    with fake_cuda() as log:
        x = torch.empty(2, 3, 32, 32, dtype=torch.uint8, device="cuda")
        idx = torch.arange(2, device="cuda")
        plan = compile_plan(pipe.draw(x, idx, 0), tuple(x.shape), x.dtype, x.device)
        kps = [torch.empty(3, 2, device="cuda"), torch.empty(0, 2, device="cuda")]
        boxes = [torch.empty(2, 4, device="cuda"), torch.empty(1, 4, device="cuda")]
        for _ in range(2):  # the first call builds the cached constants
            log.reset()
            points, visible = transform_keypoints(kps, plan.notes["matrix64"], plan.out_size, plan.notes["displacement"])
            mapped, _ = transform_boxes(boxes, None, plan.notes["matrix64"], plan.out_size, min_size=-1.0,
                                        displacement=plan.notes["displacement"])  # fmt: skip
    assert log.host_to_device == [] and log.device_to_host == []
    assert [p.shape[0] for p in points] == [3, 0] and all(p.device.type == "cuda" for p in points + visible + mapped)
    assert [tuple(m.shape) for m in mapped] == [(2, 4), (1, 4)]


BACKWARD_CEILING = {"reference pipeline": 16, "RandAugment + Normalize": 40, "TrivialAugmentWide + Normalize": 28,
                    "XYMasking + RandomErasing": 16}  # fmt: skip


@pytest.mark.parametrize("name", list(BACKWARD_CEILING))
def test_backward_copies_nothing(name):
    """The image gradient of a call (``autograd.plan_backward``, as ``PlanFunction.backward`` runs it, with the forward's
    tables): no host <-> device copy (its per-position op tables were ``torch.tensor(..., device=...)`` copies), the
    launches the Plan implies, a few torch ops."""
    from cuda_cases import run_backward

    log, gx, plan = run_backward(name)
    assert log.host_to_device == [] and log.host_to_device_async == [] and log.device_to_host == []
    assert gx.device.type == "cuda" and tuple(gx.shape) == (B, 3, H, W)
    # each stage's backward, and the forward of every stage but the last again (the stage inputs are recomputed)
    assert log.launches.count("apply_kernel") == len(plan.stages) - 1 and log.launches.count("backward_kernel") >= len(plan.stages)
    assert set(log.launches) <= {"backward_kernel", "apply_kernel"}
    assert log.kernel_ops <= BACKWARD_CEILING[name], dict(log.kernels.most_common(8))
